"""Idempotent operations. Each declares the facts it needs and, given those facts,
returns either a :class:`Change` (the commands to run) or a :class:`NoChange`
with the reason. Nothing here talks to a host: plans are pure functions of facts.
"""

from __future__ import annotations

import base64
import difflib
import hashlib
import os
import posixpath
import shlex
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
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


def _q(value: str) -> str:
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


@dataclass
class File(Operation):
    """A file with exact content, mode and ownership, written atomically
    (temporary file in the same directory, then rename)."""

    path: str = ""
    content: str | bytes = ""
    mode: str | int = "0644"
    owner: str = "root"
    group: str = "root"

    def __post_init__(self) -> None:
        self.id = self.id or f"file:{self.path}"
        self.description = self.description or self.path

    @property
    def data(self) -> bytes:
        return self.content.encode() if isinstance(self.content, str) else self.content

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.file_fact(self.path, content=not self.secret)]

    def write_commands(self) -> list[Cmd]:
        d = posixpath.dirname(self.path) or "/"
        body = base64.encodebytes(self.data).decode()
        return backup_commands(self.backup, self.path) + [
            Cmd(f"_tmp=$(mktemp {_q(d)}/.meshctl.XXXXXX)"),
            Cmd('base64 -d > "$_tmp"', stdin=body),
            Cmd(f'chown {_q(self.owner)}:{_q(self.group)} "$_tmp"'),
            Cmd(f'chmod {_mode(self.mode):04o} "$_tmp"'),
            Cmd(f'mv -f "$_tmp" {_q(self.path)}'),
            Cmd("_tmp="),
        ]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        fact = facts[f"file:{self.path}"]
        kind = fact.get("kind")
        if kind == "absent":
            return Change(self, "create", self.write_commands, diff=lambda: self._diff(b"", new=True))
        if kind != "file":
            raise OperationError(f"{self.path} exists but is a {kind}, not a regular file")
        want = hashlib.sha256(self.data).hexdigest()
        if fact.get("sha256") != want:
            return Change(self, "update content", self.write_commands,
                          diff=lambda: self._diff(F.decode_content(fact)))
        notes, cmds = attr_fixes(self.path, fact, _mode(self.mode), self.owner, self.group)
        if cmds:
            return Change(self, ", ".join(notes), cmds)
        return NoChange(self, "content, mode and owner match")

    def _diff(self, old: bytes | None, new: bool = False) -> str | None:
        if self.secret:
            return None
        if old is None:
            return "(previous content not shown: file too large or unreadable)"
        try:
            a = old.decode().splitlines(keepends=True)
            b = self.data.decode().splitlines(keepends=True)
        except UnicodeDecodeError:
            return "(binary content)"
        return "".join(
            difflib.unified_diff(a, b, "/dev/null" if new else self.path, self.path, n=2)
        )


@dataclass
class Directory(Operation):
    path: str = ""
    mode: str | int = "0755"
    owner: str = "root"
    group: str = "root"

    def __post_init__(self) -> None:
        self.id = self.id or f"dir:{self.path}"
        self.description = self.description or self.path + "/"

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.file_fact(self.path, content=False)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        fact = facts[f"file:{self.path}"]
        kind = fact.get("kind")
        p = _q(self.path)
        if kind == "absent":
            return Change(self, "create", [
                Cmd(f"mkdir -p {p}"),
                Cmd(f"chown {_q(self.owner)}:{_q(self.group)} {p}"),
                Cmd(f"chmod {_mode(self.mode):04o} {p}"),
            ])
        if kind != "dir":
            raise OperationError(f"{self.path} exists but is a {kind}, not a directory")
        notes, cmds = attr_fixes(self.path, fact, _mode(self.mode), self.owner, self.group)
        if cmds:
            return Change(self, ", ".join(notes), cmds)
        return NoChange(self, "exists with mode and owner")


@dataclass
class Absent(Operation):
    """A file or directory that must not exist (removal, cleanup of old layouts)."""

    path: str = ""

    def __post_init__(self) -> None:
        self.id = self.id or f"absent:{self.path}"
        self.description = self.description or f"{self.path} (absent)"

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.file_fact(self.path, content=False)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        if facts[f"file:{self.path}"].get("kind") == "absent":
            return NoChange(self, "already absent")
        return Change(self, "remove", [Cmd(f"rm -rf -- {_q(self.path)}")])


@dataclass
class Packages(Operation):
    """System packages, installed with the host's package manager."""

    default_category: ClassVar[str] = "packages"
    names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.id = self.id or "packages:" + ",".join(self.names)
        self.description = self.description or "packages " + " ".join(self.names)

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.package_fact(n, manager) for n in self.names]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        missing = [n for n in self.names if not facts[f"package:{manager}:{n}"].get("installed")]
        if not missing:
            return NoChange(self, "all installed")
        names = " ".join(_q(n) for n in missing)
        if manager == "apt":
            env = "DEBIAN_FRONTEND=noninteractive"
            install = f"{env} apt-get install -y -q --no-install-recommends {names}"
            # A fresh host may have no package lists yet: update once, then retry.
            cmd = f"{install} >/tmp/.meshctl-apt.log 2>&1 || {{ apt-get update -q && {install}; }}"
        else:
            cmd = f"dnf install -y -q {names}"
        return Change(self, "install " + " ".join(missing), [Cmd(cmd)])


@dataclass
class Group(Operation):
    name: str = ""
    system: bool = True

    def __post_init__(self) -> None:
        self.id = self.id or f"group:{self.name}"
        self.description = self.description or f"group {self.name}"

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.group_fact(self.name)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        if facts[f"group:{self.name}"].get("exists"):
            return NoChange(self, "exists")
        flag = "--system " if self.system else ""
        return Change(self, "create", [Cmd(f"groupadd {flag}{_q(self.name)}")])


@dataclass
class User(Operation):
    name: str = ""
    group: str = ""
    home: str = ""
    shell: str = "/bin/bash"
    system: bool = True

    def __post_init__(self) -> None:
        self.id = self.id or f"user:{self.name}"
        self.description = self.description or f"user {self.name}"
        self.home = self.home or f"/home/{self.name}"

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.user_fact(self.name)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        fact = facts[f"user:{self.name}"]
        if not fact.get("exists"):
            flags = ["--system"] if self.system else []
            flags += ["--create-home", "--home-dir", self.home, "--shell", self.shell]
            if self.group:
                flags += ["--gid", self.group]
            return Change(self, "create", [Cmd("useradd " + " ".join(_q(f) for f in flags) + " " + _q(self.name))])
        fixes = []
        if fact.get("home") != self.home:
            fixes.append(("home", f"usermod --home {_q(self.home)} {_q(self.name)}"))
        if fact.get("shell") != self.shell:
            fixes.append(("shell", f"usermod --shell {_q(self.shell)} {_q(self.name)}"))
        if fixes:
            return Change(self, "fix " + ", ".join(k for k, _ in fixes), [Cmd(c) for _, c in fixes])
        return NoChange(self, "exists with home and shell")


@dataclass
class Service(Operation):
    """A systemd unit: enabled or not, started/stopped (``state=None`` leaves the
    running state alone). Restarted when an operation naming it in ``notify``
    changed, reloaded (``reload_command``) when only ``reload`` ones did."""

    default_category: ClassVar[str] = "service"
    unit: str = ""
    enabled: bool | None = True
    state: str | None = "started"  # "started" | "stopped" | None
    reload_command: str | None = None
    #: Id of the operation writing the unit file: its change means daemon-reload.
    unit_file_op: str | None = None

    def __post_init__(self) -> None:
        self.id = self.id or f"service:{self.unit}"
        self.description = self.description or f"service {self.unit}"

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.service_fact(self.unit)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        fact = facts[f"service:{self.unit}"]
        u = _q(self.unit)
        cmds: list[Cmd] = []
        notes: list[str] = []
        restart = self.id in changed and "restart" in changed_reasons(changed, self.id)
        reload = self.id in changed and not restart
        if self.unit_file_op and self.unit_file_op in changed:
            cmds.append(Cmd("systemctl daemon-reload"))
            notes.append("daemon-reload")
        enabled = fact.get("enabled", "")
        if self.enabled is True and enabled != "enabled":
            cmds.append(Cmd(f"systemctl enable {u}"))
            notes.append("enable")
        elif self.enabled is False and enabled == "enabled":
            cmds.append(Cmd(f"systemctl disable {u}"))
            notes.append("disable")
        active = fact.get("active") == "active"
        if self.state == "started":
            if not active:
                cmds.append(Cmd(f"systemctl start {u}"))
                notes.append("start")
            elif restart:
                cmds.append(Cmd(f"systemctl restart {u}"))
                notes.append("restart")
            elif reload:
                cmds.append(Cmd(self.reload_command or f"systemctl reload {u}"))
                notes.append("reload")
        elif self.state == "stopped" and active:
            cmds.append(Cmd(f"systemctl stop {u}"))
            notes.append("stop")
        if not cmds:
            return NoChange(self, f"{enabled or 'unknown'}, {fact.get('active') or 'unknown'}")
        return Change(self, ", ".join(notes), cmds)


@dataclass
class GuardedService(Service):
    """A service whose restarts are checked. Before a start, restart or reload the
    host prints ``preflight_script``'s output and ``preflight`` (run here) must find
    no problem; after it the unit must stay active for ``settle`` seconds. Any
    failure restores the files this run changed (their ``backup`` copies) and
    restarts the service with them, so the host keeps a configuration its service
    accepts."""

    preflight_script: str | None = None
    preflight: Callable[[str], list[str]] | None = None
    wait: int = 30
    settle: int = 3
    log_tail: str | None = None  # a command printing the service's last log lines

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        result = super().plan(facts, changed, manager)
        if not isinstance(result, Change) or self.state != "started":
            return result
        touches = any(c.line.startswith(("systemctl start", "systemctl restart")) or c.line == self.reload_command
                      for c in result.commands)
        if not touches:
            return result
        service_cmds = result.commands
        if self.preflight_script is None or self.preflight is None:
            return Change(self, result.summary, lambda: self._guarded(service_cmds))

        def after(output: str) -> list[Cmd]:
            problems = self.preflight(output) if self.preflight else []
            if problems:
                from meshctl.core.errors import MeshctlError

                raise MeshctlError("preflight refused the new configuration, so the service was not "
                                   "restarted and the previous files are back: " + "; ".join(problems))
            return self._guarded(service_cmds)

        return Change(self, result.summary + " (after preflight)", [Cmd(self.preflight_script)], exchange=after)

    def _guarded(self, service_cmds: list[Cmd]) -> list[Cmd]:
        u = _q(self.unit)
        tail = self.log_tail or f"journalctl -u {u} -n 20 --no-pager"
        check = (
            # Bounded wait for active, then it must still be active (and not have been
            # restarted by systemd) after the settle time.
            f"i=0; while [ $i -lt {int(self.wait)} ] && ! systemctl is-active --quiet {u}; do sleep 1; i=$((i+1)); done; "
            f"n0=$(systemctl show -p NRestarts --value {u}); sleep {int(self.settle)}; "
            f"if ! systemctl is-active --quiet {u} || [ \"$(systemctl show -p NRestarts --value {u})\" != \"$n0\" ]; then "
            f"echo '{self.unit} did not stay active; its last log lines:'; {tail}; (exit 1); fi"
        )
        return [Cmd("_svc=" + _q(self.unit)), *service_cmds, Cmd(check)]


def changed_reasons(changed: set[str], op_id: str) -> set[str]:
    """Triggers are recorded as ``<op id>`` plus ``<op id>#restart`` or ``#reload``."""
    return {c.split("#", 1)[1] for c in changed if c.startswith(op_id + "#")}


@dataclass
class Command(Operation):
    """A command guarded by a fact: it runs only when ``creates`` does not exist,
    ``unless`` fails, or an operation listing this one in ``notify`` changed."""

    command: str = ""
    creates: str | None = None
    unless: str | None = None
    only_when_notified: bool = False

    def __post_init__(self) -> None:
        if not (self.creates or self.unless or self.only_when_notified):
            raise ValueError(f"command {self.command!r} needs a guard (creates, unless or only_when_notified)")
        self.id = self.id or f"cmd:{self.command}"
        self.description = self.description or self.command

    def facts(self, manager: str) -> list[F.Fact]:
        out = []
        if self.creates:
            out.append(F.exists_fact(self.creates))
        if self.unless:
            out.append(F.command_fact(self.unless))
        return out

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        notified = self.id in changed
        if self.only_when_notified and not notified:
            return NoChange(self, "not notified")
        if self.creates and facts[f"exists:{self.creates}"]["rc"] == 0 and not notified:
            return NoChange(self, f"{self.creates} exists")
        if self.unless and facts[f"rc:{self.unless}"]["rc"] == 0 and not notified:
            return NoChange(self, "guard holds")
        return Change(self, "run" + (" (notified)" if notified else ""), [Cmd(self.command)])


_digests: dict[tuple[str, int, int], str] = {}
_digests_lock = threading.Lock()


def _local_sha256(path: str) -> str:
    """Digest of a local file, once per run for every host uploading it (a
    wheelhouse to many nodes). Keyed by size and mtime: a file changed meanwhile
    is hashed again."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    with _digests_lock:
        if key in _digests:
            return _digests[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    with _digests_lock:
        _digests[key] = h.hexdigest()
    return _digests[key]


@dataclass
class Upload(Operation):
    """A (large or binary) file copied from this machine by SFTP, then installed
    atomically with mode and owner: a receptor binary, Python wheels."""

    path: str = ""
    source: str = ""  # local path
    mode: str | int = "0644"
    owner: str = "root"
    group: str = "root"
    #: Compare size and mtime (the copy gets the source's mtime), as rsync does by
    #: default, instead of hashing the file on the host every run. For caches
    #: whose names pin their content (wheels); not for what runs as root.
    quick_check: bool = False

    def __post_init__(self) -> None:
        self.id = self.id or f"upload:{self.path}"
        self.description = self.description or self.path

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.file_fact(self.path, content=False, digest=not self.quick_check)]

    def _same(self, fact: dict[str, Any]) -> bool:
        if not self.quick_check:
            return fact.get("sha256") == self.local_sha256()
        st = os.stat(self.source)
        return fact.get("size") == st.st_size and fact.get("mtime") == int(st.st_mtime)

    def local_sha256(self) -> str:
        return _local_sha256(self.source)

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        fact = facts[f"file:{self.path}"]
        kind = fact.get("kind")
        if kind not in ("absent", "file"):
            raise OperationError(f"{self.path} exists but is a {kind}, not a regular file")
        size = os.path.getsize(self.source)
        if kind == "absent" or not self._same(fact):
            name = f"{len(self.path)}-{posixpath.basename(self.path)}"
            d, q = posixpath.dirname(self.path) or "/", _q(self.path)
            cmds = backup_commands(self.backup, self.path) + [
                Cmd(f"_tmp=$(mktemp {_q(d)}/.meshctl.XXXXXX)"),
                Cmd(f'cp "$_stage"/{_q(name)} "$_tmp"'),
                Cmd(f'chown {_q(self.owner)}:{_q(self.group)} "$_tmp"'),
                Cmd(f'chmod {_mode(self.mode):04o} "$_tmp"'),
                *([Cmd(f'touch -m -d @{int(os.stat(self.source).st_mtime)} "$_tmp"')] if self.quick_check else []),
                Cmd(f'mv -f "$_tmp" {q}'),
                Cmd("_tmp="),
            ]
            what = "upload" if kind == "absent" else (
                "replace (size or mtime differs)" if self.quick_check else "replace (checksum differs)")
            return Change(self, f"{what}, {size} bytes", cmds, uploads=[(self.source, name)])
        notes, cmds = attr_fixes(self.path, fact, _mode(self.mode), self.owner, self.group)
        if cmds:
            return Change(self, ", ".join(notes), cmds)
        return NoChange(self, f"{'size, mtime' if self.quick_check else 'checksum'}, mode and owner match")
