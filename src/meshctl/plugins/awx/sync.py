"""Carry a plan out against AWX, then read AWX again: a write AWX accepted but did
not keep (an instance id taken for an address id, a flag dropped) is an error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from meshctl.plugin import MeshctlError, Topology
from meshctl.plugins.awx.client import AwxClient, AwxError, describe
from meshctl.plugins.awx.plan import Current, Step, Want, read, steps, wanted

#: AWX's error fields and the mesh.yml keys they come from.
FIELD_PATHS = {"hostname": ("name",), "node_type": ("role",), "listener_port": ("listener", "port"),
               "peers": ("peers",), "peers_from_control_nodes": ("peers_from_control_nodes",),
               "enabled": ("awx", "enabled"), "capacity_adjustment": ("awx", "capacity_adjustment"),
               "managed_by_policy": ("awx", "managed_by_policy")}


def located(topology: Topology, want: Want | None, field: str, message: str) -> str:
    """``message`` at the mesh.yml line of ``want``'s node (its key for ``field``)."""
    if want is None:
        return message
    # An AWX field name, or a mesh.yml key of the node (the plan's own refusals).
    path: tuple = ("nodes", want.node.index, *FIELD_PATHS.get(field, (field,) if field else ()))
    for cut in range(len(path), 1, -1):  # the deepest key the file has
        try:
            return str(topology.located.diag(path[:cut], message))
        except (KeyError, IndexError, TypeError):
            continue
    return message


#: What AWX answers when it does not run on Kubernetes/OpenShift (IS_K8S false).
NOT_K8S = "Can only create instances on Kubernetes or OpenShift."


def refusal(topology: Topology, want: Want | None, exc: AwxError) -> MeshctlError:
    body = exc.body if isinstance(exc.body, dict) else {}
    if NOT_K8S in describe(exc.body):
        return MeshctlError(
            "this AWX does not run on Kubernetes or OpenShift, and only there does its API register nodes: "
            "register them on the controller with awx-manage provision_instance, add_receptor_address, "
            "register_peers and register_queue (or the AAP installer's inventory), then meshctl awx plan "
            "shows what still differs")
    field = next((k for k in body if k in FIELD_PATHS), "")
    where = want.hostname if want else ""
    return MeshctlError(located(topology, want, field, f"AWX refused {where}: {describe(exc.body)}"))


def apply(client: AwxClient, topology: Topology, wants: list[Want], todo: list[Step], cur: Current) -> None:
    by_host = {w.hostname: w for w in wants}
    ids = {h: i["id"] for h, i in cur.instances.items()}
    group_ids = {n: g["id"] for n, g in cur.groups.items()}
    canonical: dict[int, int] | None = None
    for step in todo:
        want = by_host.get(step.target)
        try:
            if step.kind == "group":
                group_ids[step.target] = client.post("instance_groups/", step.body)["id"]
            elif step.kind == "create":
                ids[step.target] = client.post("instances/", step.body)["id"]
            elif step.kind == "update":
                client.patch(f"instances/{ids[step.target]}/", step.body)
            elif step.kind == "peers":
                if canonical is None:  # read once: every create comes before the first peers step
                    canonical = {a["instance"]: a["id"] for a in client.all("receptor_addresses/")
                                 if a.get("canonical")}
                peer_ids = sorted(canonical[ids[p]] for p in step.body["peers"])
                client.patch(f"instances/{ids[step.target]}/", {"peers": peer_ids})
            elif step.kind in ("associate", "disassociate"):
                body: dict[str, Any] = {"id": ids[step.target]}
                if step.kind == "disassociate":
                    body["disassociate"] = True
                client.post(f"instance_groups/{group_ids[step.group]}/instances/", body)
        except AwxError as exc:
            raise refusal(topology, want, exc) from None


@dataclass
class Survey:
    """mesh.yml's wants, AWX as read, the writes between them and the refusals."""

    wants: list[Want]
    cur: Current
    todo: list[Step]
    refused: list[tuple[Want, str, str]]

    @property
    def groups(self) -> set[str]:
        return {g for w in self.wants for g in w.groups}

    def refused_hosts(self) -> set[str]:
        return {w.hostname for w, _, _ in self.refused}

    def problems(self, topology: Topology) -> list[str]:
        return [located(topology, w, field, f"{w.hostname}: {why}") for w, field, why in self.refused]


def survey(client: AwxClient, topology: Topology) -> Survey:
    wants, _ = wanted(topology)
    cur = read(client, {g for w in wants for g in w.groups})
    return Survey(wants, cur, *steps(wants, cur))


def sync(client: AwxClient, topology: Topology, found: Survey) -> list[Step]:
    """Make the surveyed writes (refused nodes have none), then read AWX back."""
    apply(client, topology, found.wants, found.todo, found.cur)
    if found.todo:
        left, _ = steps(found.wants, read(client, found.groups))
        if left:
            raise MeshctlError("AWX accepted but did not keep: " + "; ".join(str(s) for s in left))
    return found.todo


def sync_summary(done: list[Step]) -> str:
    """The line awx sync (and provision --awx) ends with."""
    return f"awx: {len(done)} change(s) made" if done else "awx: already in sync"
