"""Idempotent operations. Each declares the facts it needs and, given those facts,
returns either a :class:`Change` (the commands to run) or a :class:`NoChange`
with the reason. Nothing here talks to a host: plans are pure functions of facts.

The model lives in ``ops_base``, the kinds in ``ops_files`` and ``ops_system``;
this module is where callers import them from.
"""

from meshctl.core.ops_base import (
    PHASES,
    Change,
    Cmd,
    NoChange,
    Operation,
    OperationError,
    PlanResult,
    _q,
    attr_fixes,
    backup_commands,
)
from meshctl.core.ops_files import Absent, Directory, File, Upload
from meshctl.core.ops_system import (
    Command,
    Group,
    GuardedService,
    Packages,
    Service,
    User,
    changed_reasons,
)

__all__ = [
    "PHASES", "Absent", "Change", "Cmd", "Command", "Directory", "File", "Group", "GuardedService", "NoChange",
    "Operation", "OperationError", "Packages", "PlanResult", "Service", "Upload", "User", "_q", "attr_fixes",
    "backup_commands", "changed_reasons",
]
