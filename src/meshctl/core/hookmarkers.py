"""pluggy's markers for meshctl's hooks (kept apart so spec modules can use them
without importing the module that gathers them)."""

import pluggy

PROJECT = "meshctl"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
