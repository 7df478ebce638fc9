"""meshctl: provision and operate Receptor mesh execution and hop nodes."""

__version__ = "0.1.0"
