"""AWX's record of each node beside mesh.yml's (``awx status``) and beside meshctl's
own probe of the hosts (``status --awx``), and where the views disagree."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from meshctl.plugin import StatusView, Topology
from meshctl.plugins.awx.sync import Survey

#: What AWX's health check writes when it could not ask the node (recorded, 114).
NO_VERSION = ("", "ansible-runner-???")

#: The table columns ``status --awx`` adds: (heading, key of the node's AWX record).
COLUMNS = (("in awx", "registered"), ("awx state", "node_state"), ("capacity", "capacity"),
           ("awx version", "version"), ("awx errors", "errors"))


def record(inst: Mapping[str, Any], node_type: str, differs: list[str]) -> dict[str, Any]:
    """One node as AWX records it (``inst`` empty: not registered)."""
    ready = node_type != "execution" or inst.get("node_state") == "ready"
    return {"node_type": node_type, "registered": bool(inst), "node_state": inst.get("node_state"),
            # Hop nodes run no work: AWX's 0 is no capacity, not a lack of it.
            "capacity": None if node_type == "hop" else inst.get("capacity"),
            "version": inst.get("version"), "enabled": inst.get("enabled"),
            "last_health_check": inst.get("last_health_check"), "errors": inst.get("errors") or "",
            "differs": differs, "ok": bool(inst) and not differs and ready}


def awx_rows(found: Survey) -> dict[str, dict[str, Any]]:
    """AWX's record of every node mesh.yml wants in AWX, with what differs (the writes
    awx sync would make, and what it refuses), by hostname."""
    rows = {}
    for w in found.wants:
        differs = [s.detail for s in found.todo if s.target == w.hostname]
        differs += [why for r, _, why in found.refused if r is w]
        rows[w.hostname] = record(found.cur.instances.get(w.hostname) or {}, w.node_type, differs)
    return rows


def disagreements(mine: Mapping[str, Any] | None, awx: Mapping[str, Any]) -> list[str]:
    """Where meshctl's row for a node (None: meshctl did not probe it) and AWX's
    record of it (:func:`record`) disagree, or AWX and mesh.yml do."""
    if not awx["registered"]:
        return ["not registered in AWX (meshctl awx sync registers it)"]
    out = [f"AWX differs from mesh.yml: {d}" for d in awx["differs"]]
    if awx["node_type"] != "execution":
        return out  # AWX health-checks execution nodes only
    state, errors = awx["node_state"], awx["errors"]
    awx_ready = state == "ready" and not errors
    healthy = None if mine is None else mine.get("healthy")
    if healthy is True and not awx_ready:
        said = f"{state}: {errors}" if errors else state
        out.append(f"AWX says {said}, meshctl says healthy")
    elif healthy is False and state == "ready":
        seen = "unreachable" if mine and mine.get("ssh") == "unreachable" else "unhealthy"
        out.append(f"AWX says ready, meshctl says {seen}")
    if awx["last_health_check"] and (state == "ready" or healthy):
        missing = [what for what, gone in (("version", awx["version"] in NO_VERSION),
                                           ("capacity", not awx["capacity"] and awx["enabled"] is not False))
                   if gone]
        if missing:
            out.append(f"AWX's health check ({awx['last_health_check']}) left no {' and no '.join(missing)}")
    return out


def status_view(found: Survey, topology: Topology, nodes: list[Any], rows: list[Mapping[str, Any]]) -> StatusView:
    """``status --awx``: AWX's record of each node meshctl probed, and of the unmanaged
    nodes when no ``--limit`` narrowed the run (the control node is AWX's own)."""
    mine = {r["node"]: r for r in rows}
    wants = awx_rows(found)
    names = [n.name for n in nodes]
    if set(names) == {n.name for n in topology.managed_nodes}:
        names += [n.name for n in topology.nodes if not n.managed]
    view: dict[str, dict[str, Any]] = {}
    disagree: dict[str, list[str]] = {}
    for name in names:
        if name in wants:
            view[name] = wants[name]
            disagree[name] = disagreements(mine.get(name), wants[name])
        else:  # a control node: AWX registers and checks it itself
            view[name] = record(found.cur.instances.get(name) or {}, "control", [])
    return StatusView("awx", COLUMNS, view, {k: v for k, v in disagree.items() if v})
