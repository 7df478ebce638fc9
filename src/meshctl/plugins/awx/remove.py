"""``remove --awx``: AWX lets go of the nodes before their hosts are cleaned."""

from __future__ import annotations

from typing import Any

from meshctl.plugin import CheckResult
from meshctl.plugins.awx.client import client_for
from meshctl.plugins.awx.lifecycle import deprovision


def before_remove(topology: Any, nodes: list[Any], timeout: float | None) -> list[CheckResult]:
    """Deprovision each node in AWX and wait (bounded) until AWX has deleted it. A node
    AWX still lists is not ok: its host must stay as it is while AWX may run jobs there.
    A node AWX does not list is ok (removed already, or never registered)."""
    client = client_for(topology)
    wait = timeout or topology.sections["awx"].deprovision_timeout
    out = []
    for node in nodes:
        if not client.all("instances/", hostname=node.name):
            out.append(CheckResult(True, f"awx: {node.name} is not registered in AWX: nothing to deprovision"))
            continue
        left = deprovision(client, node.name, wait)
        out.append(CheckResult(not left, left or f"awx: {node.name} deprovisioned and removed from AWX"))
    return out
