"""What a run found per host, and the progress callbacks: the engine fills these,
the output shows them, and neither imports the other."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from meshctl.core.ops import Change, NoChange


@dataclass
class HostResult:
    node: str
    status: str = "ok"  # ok | changed | failed | unreachable
    changes: list[Change] = field(default_factory=list)
    unchanged: list[NoChange] = field(default_factory=list)
    error: str | None = None
    cause: str | None = None
    failed_step: str | None = None
    round_trips: int = 0
    duration: float = 0.0
    os: str = ""
    applied: bool = False
    #: Filled by ``Engine.facts`` (``meshctl facts``), and by probes that report details.
    recorded: dict[str, Any] | None = None
    #: Filled by ``verify`` and probes: (check name, passed, detail).
    checks: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def changed(self) -> int:
        return len(self.changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "status": self.status,
            "os": self.os,
            "changed": self.changed,
            "ok": len(self.unchanged),
            "applied": self.applied,
            "round_trips": self.round_trips,
            "duration_s": round(self.duration, 3),
            "error": self.error,
            "cause": self.cause,
            "warnings": [nc.reason for nc in self.unchanged if nc.warning],
            "drift": drift(self.changes),
            "failed_step": self.failed_step,
            "checks": [{"name": n, "ok": ok, "detail": d} for n, ok, d in self.checks],
            "changes": [
                {
                    "id": c.op.id,
                    "description": c.op.description,
                    "summary": c.summary,
                    "secret": c.secret,
                    "diff": None if c.secret else c.diff,
                }
                for c in self.changes
            ],
        }


@dataclass(frozen=True)
class StatusView:
    """Another system's view of the nodes, shown beside meshctl's in ``meshctl status``
    (what :func:`meshctl_status_view` returns).

    ``name`` keys each node's JSON row (``row[name] = nodes[node]``); ``columns`` are
    (heading, key of ``nodes[node]``) pairs for the text table; ``disagree`` lists,
    per node, where this view and meshctl's differ (any entry makes status exit 1).
    Nodes meshctl did not probe (unmanaged ones) get a row of their own."""

    name: str
    columns: Sequence[tuple[str, str]]
    nodes: Mapping[str, Mapping[str, Any]]
    disagree: Mapping[str, Sequence[str]] = field(default_factory=dict)


class Reporter:
    """Progress callbacks; the CLI supplies a rich or plain implementation."""

    def host_phase(self, node: str, phase: str) -> None: ...
    def step(self, node: str, index: int, total: int, description: str) -> None: ...
    def host_done(self, result: HostResult) -> None: ...


def drift(changes: list[Change]) -> list[str]:
    """What kinds of things differ from the topology, for one-line plan summaries:
    the categories the operations declare, in order of first appearance."""
    kinds: list[str] = []
    for c in changes:
        kind = c.op.category or c.op.default_category
        if kind not in kinds:
            kinds.append(kind)
    return kinds
