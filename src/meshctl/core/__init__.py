"""The meshctl core: hookspecs, plugin manager, topology, engine, transport, CLI."""
