"""System operations: packages, accounts, services, guarded commands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from meshctl.core import facts as F
from meshctl.core.ops_base import (
    Change,
    Cmd,
    NoChange,
    Operation,
    PlanResult,
    _q,
)


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
