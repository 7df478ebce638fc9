"""Pieces OS plugins share (so no OS plugin imports another): state facts, guarded
firewall rules, plan notices, the ``firewall:`` section and the "runs work" test."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from meshctl.core import facts as F
from meshctl.core.ops import Change, Cmd, NoChange, Operation, PlanResult
from meshctl.core.topology import StrictModel
from meshctl.core.types import NodeContext


def parse_kv(output: str, rc: int) -> dict[str, Any]:
    """``key=value`` lines; values lower-cased (``getenforce`` says "Enforcing")."""
    out: dict[str, Any] = {}
    for line in output.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key:
            out[key] = value.strip().lower()
    return out


def state_fact(key: str, command: str) -> F.Fact:
    """A fact whose command prints ``state=active|inactive|absent``."""
    return F.Fact(key=key, command=command, kind="state", parser=parse_kv)



@dataclass
class FirewallRule(Operation):
    """A firewall command guarded twice: it applies only while ``gate`` (a
    :func:`state_fact`) says ``active``, and only when ``unless`` fails (the rule is not
    there yet). Otherwise a NoChange whose reason the plan shows."""

    command: str = ""
    unless: str = ""
    gate: F.Fact | None = None
    service: str = ""  # the gate's name in reasons: "firewalld", "ufw"
    inactive: str = "not running"  # how reasons say the gate's "inactive"
    summary: str = "run"
    done: str = "guard holds"

    def __post_init__(self) -> None:
        if not (self.command and self.unless and self.gate):
            raise ValueError("a FirewallRule needs command, unless and gate")
        self.id = self.id or f"cmd:{self.command}"
        self.description = self.description or self.command

    def facts(self, manager: str) -> list[F.Fact]:
        assert self.gate is not None
        return [self.gate, F.command_fact(self.unless)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        assert self.gate is not None
        state = facts[self.gate.key].get("state", "unknown")
        if state != "active":
            said = {"inactive": self.inactive, "absent": "not installed"}.get(state, state)
            return NoChange(self, f"{self.service} {said}: nothing to open")
        if self.id not in changed and facts[f"rc:{self.unless}"]["rc"] == 0:
            return NoChange(self, self.done)
        return Change(self, self.summary, [Cmd(self.command)])


@dataclass
class Notice(Operation):
    """Never changes anything: says why in the plan. With a ``gate``, ``active`` is
    the reason while the gate's state is active and ``inactive`` otherwise."""

    gate: F.Fact | None = None
    active: str = ""
    inactive: str = ""

    def facts(self, manager: str) -> list[F.Fact]:
        return [self.gate] if self.gate is not None else []

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        if self.gate is not None and facts[self.gate.key].get("state") == "active":
            return NoChange(self, self.active, warning=self.active.startswith("WARNING"))
        return NoChange(self, self.inactive)



class FirewallSection(StrictModel):
    """``firewall:`` in mesh.yml: opening the receptor listener port on nodes.

    ``zone`` is the firewalld zone (that of the interface receptor listens on);
    ``manage: false`` leaves every firewall alone (the plan still says so)."""

    manage: bool = True
    zone: str = Field(default="public", pattern=r"^[A-Za-z0-9_-]{1,17}$")


def firewall_settings(ctx: NodeContext) -> FirewallSection:
    return ctx.section("firewall") or FirewallSection()


def runs_work(ctx: NodeContext) -> bool:
    """Nodes whose role runs work get podman."""
    return ctx.topology.role_of(ctx.node).runs_work
