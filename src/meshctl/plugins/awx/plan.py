"""What AWX should record about the mesh (from mesh.yml), what it records now (read
through the API), and the writes that make the one the other.

AWX's vocabulary: an *instance* per node (``hostname`` = the receptor node ID), a
canonical *receptor address* per listener (address = hostname), ``peers`` as
receptor-address ids of the nodes it dials, instance groups by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshctl.plugin import Node, Topology

#: Instance fields meshctl keeps in step (the ones AWX lets a client write).
FIELDS = ("listener_port", "peers_from_control_nodes", "enabled", "capacity_adjustment", "managed_by_policy")


@dataclass(frozen=True)
class Want:
    """One node as AWX should record it."""

    node: Node
    node_type: str  # execution | hop
    fields: dict[str, Any]
    peers: tuple[str, ...]  # hostnames of the nodes it dials that AWX can address
    groups: tuple[str, ...]

    @property
    def hostname(self) -> str:
        return self.node.name


@dataclass(frozen=True)
class Note:
    """Something the plan cannot do or the user should know, at a node's mesh.yml path."""

    path: tuple
    message: str
    severity: str = "warning"  # warning | error


@dataclass
class Current:
    instances: dict[str, dict[str, Any]]  # by hostname
    addresses: list[dict[str, Any]]
    groups: dict[str, dict[str, Any]]  # by name
    members: dict[str, set[str]]  # group name -> hostnames

    def address_of(self, hostname: str) -> dict[str, Any] | None:
        inst = self.instances.get(hostname)
        if inst is None:
            return None
        return next((a for a in self.addresses if a["instance"] == inst["id"] and a.get("canonical")), None)

    def peer_hostnames(self, hostname: str) -> set[str]:
        by_id = {i["id"]: h for h, i in self.instances.items()}
        ids = set(self.instances[hostname].get("peers", []))
        return {by_id.get(a["instance"], "?") for a in self.addresses if a["id"] in ids}


@dataclass
class Step:
    """One write: ``kind`` is create, update, peers, group, associate or disassociate."""

    kind: str
    target: str  # a hostname, or a group name for kind "group"
    detail: str
    body: dict[str, Any] = field(default_factory=dict)
    group: str | None = None

    def __str__(self) -> str:
        return f"{self.target}: {self.detail}"


def same(key: str, have: Any, want: Any) -> bool:
    if key == "capacity_adjustment" and have is not None and want is not None:
        return f"{float(have):.2f}" == f"{float(want):.2f}"  # AWX answers a decimal string
    return have == want


def wanted(topology: Topology) -> tuple[list[Want], list[Note]]:
    wants, notes = [], []
    for node in topology.nodes:
        role = topology.role_of(node)
        if role.controller:
            continue  # AWX registers its control plane itself
        own = node.sections.get("awx")
        port = node.listener.port if node.listener and node.listener.enabled else None
        fields: dict[str, Any] = {"listener_port": port, "peers_from_control_nodes": node.peers_from_control_nodes,
                                  "enabled": own.enabled if own else True}
        if own is not None and own.capacity_adjustment is not None:
            fields["capacity_adjustment"] = own.capacity_adjustment
        if own is not None and own.managed_by_policy is not None:
            fields["managed_by_policy"] = own.managed_by_policy
        base = ("nodes", node.index)
        if node.peers_from_control_nodes and port is None:
            # AWX would drop the flag silently when the port is left out (recorded).
            notes.append(Note(base + ("peers_from_control_nodes",), f"{node.name}: peers_from_control_nodes "
                              "needs a listener: AWX's control nodes dial the node's listener", "error"))
        if port is not None and node.listener.protocol == "ws":
            notes.append(Note(base + ("listener", "protocol"), f"{node.name}: AWX records every listener as tcp "
                              "(protocol is read-only in its API); the control node would dial it with tcp"))
        if port is not None and node.address != node.name:
            notes.append(Note(base + ("address",), f"{node.name}: AWX dials nodes by hostname; make "
                              f"{node.name!r} resolve to {node.address} on the control node"))
        peers = []
        for i, name in enumerate(node.peers):
            target = topology.get(name)
            if target is None:
                continue
            if topology.role_of(target).controller:
                notes.append(Note(base + ("peers", i), f"{node.name}: AWX keeps no receptor address for its "
                                  f"control node {name}: this peer stays in receptor.conf only"))
            elif not (target.listener and target.listener.enabled):
                notes.append(Note(base + ("peers", i), f"{node.name}: peer {name} has no listener, so AWX "
                                  "cannot record it", "error"))
            else:
                peers.append(name)
        groups = tuple(node.instance_groups) if role.runs_work else ()
        wants.append(Want(node, "execution" if role.runs_work else "hop", fields, tuple(peers), groups))
    return wants, notes


def read(client: Any, groups: set[str]) -> Current:
    instances = {i["hostname"]: i for i in client.all("instances/")}
    addresses = client.all("receptor_addresses/")
    found = {g["name"]: g for g in client.all("instance_groups/")}
    members = {name: {i["hostname"] for i in client.all(f"instance_groups/{g['id']}/instances/")}
               for name, g in found.items() if name in groups}
    return Current(instances, addresses, found, members)


def steps(wants: list[Want], cur: Current) -> tuple[list[Step], list[tuple[Want, str, str]]]:
    """The writes, in the order they can be made, and refusals (want, field, reason)."""
    out: list[Step] = []
    refused: list[tuple[Want, str, str]] = []
    lower = {h.lower(): h for h in cur.instances}
    owned_groups = {g for w in wants for g in w.groups}
    for name in sorted(owned_groups - set(cur.groups)):
        # Policies at 0: AWX must not fill a meshctl group with instances of its own choosing.
        out.append(Step("group", name, "create instance group",
                        {"name": name, "policy_instance_percentage": 0, "policy_instance_minimum": 0}))
    for w in wants:
        inst = cur.instances.get(w.hostname)
        if inst is None:
            other = lower.get(w.hostname.lower())
            if other is not None:
                refused.append((w, "name", f"AWX has {other!r}, which differs only in case; receptor node IDs "
                                           "are case-sensitive: rename one"))
                continue
            body = {"hostname": w.hostname, "node_type": w.node_type,
                    **{k: v for k, v in w.fields.items() if v is not None}}
            out.append(Step("create", w.hostname, f"register {w.node_type} node", body))
            continue
        if inst.get("managed"):
            refused.append((w, "name", "AWX manages this instance itself (installer or operator); meshctl "
                                       "leaves it alone"))
            continue
        if inst["node_type"] != w.node_type:
            refused.append((w, "role", f"AWX records a {inst['node_type']} node and cannot change node types: "
                                       "deprovision it in AWX (meshctl remove --awx) and sync again"))
            continue
        if inst.get("node_state") == "deprovisioning":
            refused.append((w, "name", "AWX is deprovisioning it; sync again once AWX has removed it"))
            continue
        change = {k: v for k, v in w.fields.items()
                  if (v is not None or k == "listener_port") and not same(k, inst.get(k), v)}
        if change.get("listener_port") is not None and inst.get("listener_port") not in (None, 0):
            refused.append((w, "listener", f"AWX records listener port {inst['listener_port']} and cannot "
                                           "change it: deprovision and register the node again"))
            del change["listener_port"]
        if change:
            out.append(Step("update", w.hostname, ", ".join(f"{k} {inst.get(k)!r} -> {v!r}"
                                                              for k, v in change.items()), change))
    for w in wants:
        have = cur.peer_hostnames(w.hostname) if w.hostname in cur.instances else set()
        if set(w.peers) != have and not any(r[0] is w for r in refused):
            out.append(Step("peers", w.hostname, f"peers {sorted(have)} -> {sorted(w.peers)}", {"peers": w.peers}))
    for w in wants:
        if any(r[0] is w for r in refused):
            continue
        for g in w.groups:
            if w.hostname not in cur.members.get(g, set()):
                out.append(Step("associate", w.hostname, f"add to instance group {g}", group=g))
        for g in sorted(owned_groups - set(w.groups)):
            if w.hostname in cur.members.get(g, set()):
                out.append(Step("disassociate", w.hostname, f"remove from instance group {g}", group=g))
    return out, refused
