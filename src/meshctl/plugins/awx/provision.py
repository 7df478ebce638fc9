"""``provision --awx`` in AWX's own order (register the instances, install them,
wait for AWX's health check), and the install bundles the ``awx-api`` certificate
backend asks for."""

from __future__ import annotations

from typing import Any

from meshctl.plugin import CheckResult, MeshctlError
from meshctl.plugins.awx.client import client_for
from meshctl.plugins.awx.lifecycle import health_check
from meshctl.plugins.awx.sync import survey, sync, sync_summary


def before_provision(topology: Any) -> list[CheckResult]:
    """Register, peer and group the nodes first: AWX hands out a node's certificate
    (install bundle) only for an instance it knows. A refusal stops the run before a
    host is touched."""
    client = client_for(topology)
    found = survey(client, topology)
    done = sync(client, topology, found)
    return [CheckResult(True, sync_summary(done)), *(CheckResult(False, p) for p in found.problems(topology))]


def after_provision(topology: Any) -> list[CheckResult]:
    """The hosts are in place: AWX's health check of every execution node it accepted."""
    client = client_for(topology)
    found = survey(client, topology)
    out = [CheckResult(False, f"awx: {step} (changed in AWX during the run)") for step in found.todo]
    hosts = [w.hostname for w in found.wants if w.node_type == "execution" and w.hostname not in found.refused_hosts()]
    for h in health_check(client, hosts, topology.sections["awx"].health_check_timeout) if hosts else []:
        out.append(CheckResult(h.ready, f"awx: {h.summary()}"))
    return out


def install_bundle(topology: Any, node_id: str) -> bytes:
    """A fresh install bundle for the instance ``node_id`` (AWX mints a new key each GET)."""
    client = client_for(topology)
    found = client.get("instances/", hostname=node_id).get("results", [])
    if not found:
        raise MeshctlError(f"AWX has no instance {node_id!r} to download a certificate for: register the mesh "
                           "first (meshctl awx sync, or meshctl provision --awx, which registers before installing)")
    return client.request("GET", f"instances/{found[0]['id']}/install_bundle/", raw=True)
