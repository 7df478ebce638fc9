"""Carry a plan out against AWX, then read AWX again: a write AWX accepted but did
not keep (an instance id taken for an address id, a flag dropped) is an error."""

from __future__ import annotations

from typing import Any

from meshctl.plugin import MeshctlError, Topology
from meshctl.plugins.awx.client import AwxClient, AwxError, describe
from meshctl.plugins.awx.plan import Current, Step, Want, read, steps

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
                addresses = client.all("receptor_addresses/")
                canonical = {a["instance"]: a["id"] for a in addresses if a.get("canonical")}
                peer_ids = sorted(canonical[ids[p]] for p in step.body["peers"])
                client.patch(f"instances/{ids[step.target]}/", {"peers": peer_ids})
            elif step.kind in ("associate", "disassociate"):
                body: dict[str, Any] = {"id": ids[step.target]}
                if step.kind == "disassociate":
                    body["disassociate"] = True
                client.post(f"instance_groups/{group_ids[step.group]}/instances/", body)
        except AwxError as exc:
            raise refusal(topology, want, exc) from None


def sync(client: AwxClient, topology: Topology, wants: list[Want]) -> list[Step]:
    groups = {g for w in wants for g in w.groups}
    cur = read(client, groups)
    todo, _ = steps(wants, cur)
    apply(client, topology, wants, todo, cur)
    if todo:
        left, _ = steps(wants, read(client, groups))
        if left:
            raise MeshctlError("AWX accepted but did not keep: " + "; ".join(str(s) for s in left))
    return todo
