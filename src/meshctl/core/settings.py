"""The engine's own settings: how a run goes, as opposed to what plugins are told.

Plugin CLI options reach plugins as ``NodeContext.options``; these never do, and a
plugin option may not take one of their names (``meshctl.core.plugins``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from meshctl.core.hostcache import cache_root


@dataclass(frozen=True)
class EngineSettings:
    #: Seconds an apply round trip may take.
    apply_timeout: float = 3600.0
    #: Seconds a probe script (preflight, status) may take.
    probe_timeout: float = 300.0
    #: Where the controller keeps what it last read from each host; None: no cache.
    host_cache: Path | None = field(default_factory=cache_root)
    #: Only operations it accepts are planned (``certs rotate`` plans certificates only).
    op_filter: Callable[[Any], bool] | None = None
    #: Plan ``meshctl_removal_operations`` instead of the node's operations.
    remove: bool = False
    #: With ``remove``: the service user and its data go too.
    purge_user: bool = False


ENGINE_SETTINGS = frozenset(f.name for f in fields(EngineSettings))
