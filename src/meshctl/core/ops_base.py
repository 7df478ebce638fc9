"""The operation model: commands, plan results, and the Operation base class
every kind of operation subclasses. Nothing here talks to a host."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

from meshctl.core import facts as F


@dataclass
class Cmd:
    """One shell command; ``stdin`` (a heredoc body) is how file content travels,
    so secrets never appear on a command line (visible in ``ps``)."""

    line: str
    stdin: str | None = None


class Change:
    """What an operation will do. ``commands`` and ``diff`` may be given as
    zero-argument callables: they are built only when needed (apply, display), which
    keeps planning thousands of nodes cheap."""

    __slots__ = ("op", "summary", "_commands", "_diff", "exchange", "uploads", "escalate")

    def __init__(self, op: Operation, summary: str, commands: list[Cmd] | Callable[[], list[Cmd]],
                 diff: str | None | Callable[[], str | None] = None,
                 exchange: Callable[[str], list[Cmd]] | None = None,
                 uploads: list[tuple[str, str]] | None = None):
        self.op = op
        self.summary = summary
        self._commands = commands
        self._diff = diff
        #: For changes that need the host's answer mid-apply (a CSR made on the node):
        #: called with the output of ``commands``; returns the commands that follow,
        #: run in the next round trip.
        self.exchange = exchange
        #: (local path, staged name): copied by SFTP into a private staging directory
        #: before the apply script runs; commands find them under "$_stage/<name>".
        self.uploads = uploads or []
        #: Set by an operation whose change turned out to need more than a reload:
        #: its ``reload`` targets are restarted instead.
        self.escalate = False

    @property
    def commands(self) -> list[Cmd]:
        if callable(self._commands):
            self._commands = self._commands()
        return self._commands

    @property
    def diff(self) -> str | None:
        if callable(self._diff):
            self._diff = self._diff()
        return self._diff

    @property
    def secret(self) -> bool:
        return self.op.secret

    def __repr__(self) -> str:
        return f"Change({self.op.id!r}, {self.summary!r})"


@dataclass
class NoChange:
    op: Operation
    reason: str
    #: Something the user must act on (plans and summaries always show it).
    warning: bool = False


PlanResult = Change | NoChange

#: Where an operation runs among a node's operations, in this order. Within a phase,
#: operations keep the order their hooks returned them (node operations before
#: registry files, plugins in registration order). An operation that names no phase
#: is in "main" ("late" from ``meshctl_registry_files``); a ``Service`` is in
#: "services", after the files it reacts to, and in removal in "first".
PHASES = ("first", "main", "late", "services", "last")


class OperationError(Exception):
    """An operation cannot be planned from these facts (e.g. a directory where a file
    must go). Reported for that host only."""


@dataclass
class Operation:
    """Base class. ``id`` is unique per host; ``notify`` lists service operation ids to
    restart when this one changes, ``reload`` those to reload. ``category`` is the
    kind of drift its change is in plan summaries ("receptor.conf", "certificates"):
    a subclass sets ``default_category``, an instance may override it."""

    #: Plan summaries group changes by it; "other files" unless a class or instance says.
    default_category: ClassVar[str] = "other files"

    id: str = ""
    description: str = ""
    notify: list[str] = field(default_factory=list, kw_only=True)
    reload: list[str] = field(default_factory=list, kw_only=True)
    secret: bool = field(default=False, kw_only=True)
    #: Set by the engine when a guarded service depends on this file: the previous
    #: content is saved first, so a failed change can be rolled back.
    backup: bool = field(default=False, kw_only=True)
    category: str = field(default="", kw_only=True)
    #: One of PHASES; None: the hook's default (see PHASES).
    phase: str | None = field(default=None, kw_only=True)

    def facts(self, manager: str) -> list[F.Fact]:
        return []

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        raise NotImplementedError

    def __str__(self) -> str:
        return self.description or self.id


def backup_commands(enabled: bool, path: str) -> list[Cmd]:
    """Save ``path`` (or that it was absent) once per run before it changes; the apply
    script restores every saved file if the run fails (see engine.render_apply_script)."""
    return [Cmd(f"_bk {_q(path)}")] if enabled else []


def _mode(value: str | int) -> int:
    return value if isinstance(value, int) else int(str(value), 8)


@lru_cache(maxsize=16384)
def _q(value: str) -> str:
    # Cached: every node of a mesh quotes the same paths, hundreds of thousands of times.
    return shlex.quote(value)


def attr_fixes(path: str, fact: dict[str, Any], mode: int, owner: str, group: str) -> tuple[list[str], list[Cmd]]:
    notes, cmds = [], []
    have_mode = int(fact.get("mode", "0"), 8)
    if have_mode != mode:
        notes.append(f"mode {have_mode:04o} -> {mode:04o}")
        cmds.append(Cmd(f"chmod {mode:04o} {_q(path)}"))
    if fact.get("owner") != owner or fact.get("group") != group:
        notes.append(f"owner {fact.get('owner')}:{fact.get('group')} -> {owner}:{group}")
        cmds.append(Cmd(f"chown {_q(owner)}:{_q(group)} {_q(path)}"))
    return notes, cmds
