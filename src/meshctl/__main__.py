from meshctl.core.cli import main

main()
