"""After provisioning and before removal: AWX's health check of each execution node
(bounded wait, AWX's own verdict reported), and deprovisioning in AWX (AWX waits for
the node's running jobs, then deletes the record)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from meshctl.plugin import MeshctlError
from meshctl.plugins.awx.client import AwxClient, AwxError

#: Seconds between polls of a pending health check or a deprovisioning node.
POLL = 2.0


@dataclass
class Health:
    hostname: str
    node_state: str
    capacity: int
    version: str
    errors: str
    done: bool  # False: still pending when the wait ran out

    @property
    def ready(self) -> bool:
        return self.done and self.node_state == "ready" and not self.errors

    def summary(self) -> str:
        verdict = "ready" if self.ready else (self.node_state if self.done else "still pending")
        return (f"{self.hostname}: {verdict} (capacity {self.capacity}, {self.version or 'no version'})"
                + (f": {self.errors}" if self.errors else ""))

    def to_json(self) -> dict[str, Any]:
        return {"node": self.hostname, "node_state": self.node_state, "capacity": self.capacity,
                "version": self.version, "errors": self.errors, "done": self.done, "ready": self.ready}


def _instance(client: AwxClient, hostname: str) -> dict[str, Any]:
    found = client.all("instances/", hostname=hostname)
    if not found:
        raise MeshctlError(f"AWX has no instance {hostname!r}: run meshctl awx sync first")
    return found[0]


def health_check(client: AwxClient, hostnames: list[str], timeout: float,
                 sleep: Callable[[float], None] = time.sleep) -> list[Health]:
    """Ask AWX to check every node, then poll until none is pending or ``timeout``."""
    ids = {}
    for host in hostnames:
        inst = _instance(client, host)
        client.post(f"instances/{inst['id']}/health_check/", {})
        ids[host] = inst["id"]
    deadline = time.monotonic() + timeout
    out: dict[str, Health] = {}
    for _ in range(int(timeout / POLL) + 2):  # bounded in count as well as in time
        for host, ident in ids.items():
            if host in out:
                continue
            inst = client.get(f"instances/{ident}/")
            if not inst.get("health_check_pending"):
                out[host] = Health(host, inst["node_state"], inst["capacity"], inst["version"], inst["errors"], True)
        if len(out) == len(ids) or time.monotonic() >= deadline:
            break
        sleep(POLL)
    for host, ident in ids.items():
        if host not in out:
            inst = client.get(f"instances/{ident}/")
            out[host] = Health(host, inst["node_state"], inst["capacity"], inst["version"], inst["errors"], False)
    return [out[h] for h in hostnames]


def deprovision(client: AwxClient, hostname: str, timeout: float,
                sleep: Callable[[float], None] = time.sleep) -> str:
    """Mark the node for removal and wait (bounded) until AWX has deleted it; returns
    what is left to say ("" when AWX removed it)."""
    inst = _instance(client, hostname)
    if inst.get("managed"):
        raise MeshctlError(f"AWX manages {hostname} itself (installer or operator): remove it there")
    client.patch(f"instances/{inst['id']}/", {"node_state": "deprovisioning"})
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / POLL) + 2):
        try:
            client.get(f"instances/{inst['id']}/")
        except AwxError as exc:
            if exc.status == 404:
                return ""
            raise
        if time.monotonic() >= deadline:
            break
        sleep(POLL)
    return (f"AWX still lists {hostname} as deprovisioning after {timeout:.0f}s: it removes the record once "
            "the node's running jobs finish; its receptor links are gone already")
