"""The stand-in's state: instances, receptor addresses, links and instance groups, and
their serialised forms, each shaped the way the AWX 24.6.1 recordings show them.

Every rule here cites the recording (recorded/NNN) it comes from; where the recordings
leave a choice open, the comment says what was picked."""

from __future__ import annotations

import datetime
import threading
from dataclasses import dataclass, field

API = "/api/v2"
STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
HEALTH_SOCKET_ERROR = "Socket path does not exist: /var/run/receptor/receptor.sock"  # 900
ROLE_TEXT = {
    "admin_role": ("Can manage all aspects of the instance group", "Admin"),
    "use_role": ("Can use the instance group in a job template", "Use"),
    "read_role": ("May view settings for the instance group", "Read"),
}


class Clock:
    """AWX-format UTC timestamps. By default the wall clock; a replay sets ``pool`` (the
    instants AWX minted, sorted) and ``until`` (the end of the call being replayed), so
    each reading is the next recorded instant of that call, or ``until`` when the
    recordings never showed the value (e.g. 148's health_check_started)."""

    def __init__(self) -> None:
        self.pool: list[str] = []
        self.until: str | None = None

    def now(self) -> str:
        if self.until is None:
            return datetime.datetime.now(datetime.UTC).strftime(STAMP)
        if self.pool and self.pool[0] <= self.until:
            return self.pool.pop(0)
        return self.until


@dataclass
class Instance:
    id: int
    hostname: str
    node_type: str
    created: str
    modified: str
    node_state: str = "installed"
    managed: bool = False
    capacity: int = 100  # 013: a new node has the model default, until a PATCH recomputes it
    capacity_adjustment: str = "1.00"
    enabled: bool = True
    managed_by_policy: bool = True
    version: str = ""
    errors: str = ""
    cpu: str = "0.0"
    memory: int = 0
    cpu_capacity: int = 0
    mem_capacity: int = 0
    last_seen: str | None = None
    health_check_started: str | None = None
    last_health_check: str | None = None
    listener_port: int | None = None


@dataclass
class Address:
    id: int
    instance: int
    address: str
    port: int
    peers_from_control_nodes: bool
    protocol: str = "tcp"  # 048: protocol is read-only, always tcp through the API


@dataclass
class Group:
    id: int
    name: str
    created: str
    modified: str
    roles: tuple[int, int, int]
    is_container_group: bool = False
    deletable: bool = True  # 010/155: controlplane and default cannot be deleted
    policy_instance_percentage: int = 0
    policy_instance_minimum: int = 0
    policy_instance_list: list[str] = field(default_factory=list)
    members: set[int] = field(default_factory=set)


class Mesh:
    """AWX's database, as far as the recordings show it. Callers hold ``lock``."""

    def __init__(self, clock: Clock) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.instances: dict[int, Instance] = {}
        self.addresses: dict[int, Address] = {}  # insertion order = heap order, see touch()
        self.links: dict[int, tuple[int, int]] = {}  # link id -> (source instance, address)
        self.groups: dict[int, Group] = {}
        # Sequences never reuse a value (097 deletes address 4; 094's new one is 8).
        self.next_id = {"instance": 2, "address": 1, "link": 1, "group": 3, "role": 9}
        self._initial()

    def _initial(self) -> None:
        # As recorded before any call (007, 010): the control node registered by
        # provision_instance, not yet heartbeating, member of controlplane.
        self.instances[1] = Instance(
            1, "awx-task", "control", "2026-12-01T20:16:30.033549Z",
            "2026-12-01T20:16:30.033583Z", managed=True, capacity=0,
        )  # fmt: skip
        self.groups[1] = Group(
            1, "controlplane", "2026-12-01T20:16:30.045108Z", "2026-12-01T20:16:30.075795Z",
            (1, 2, 3), deletable=False, policy_instance_percentage=100, members={1},
        )  # fmt: skip
        self.groups[2] = Group(
            2, "default", "2026-12-01T20:16:30.084539Z", "2026-12-01T20:16:30.107994Z",
            (6, 7, 8), is_container_group=True, deletable=False, policy_instance_percentage=100,
        )  # fmt: skip

    def allocate(self, kind: str) -> int:
        value = self.next_id[kind]
        self.next_id[kind] += 1
        return value

    # -- lookups -----------------------------------------------------------------------

    def by_ref(self, ref: str) -> Instance | None:
        """An instance by id or by its named URL, the hostname (063)."""
        if ref.isdigit():
            return self.instances.get(int(ref))
        return next((i for i in self.instances.values() if i.hostname == ref), None)

    def address_of(self, inst: Instance) -> Address | None:
        return next((a for a in self.addresses.values() if a.instance == inst.id), None)

    def peers_of(self, inst: Instance) -> list[int]:
        return sorted(a for s, a in self.links.values() if s == inst.id)

    def reverse_peers_of(self, inst: Instance) -> list[int]:
        own = self.address_of(inst)
        return sorted(s for s, a in self.links.values() if own and a == own.id)

    def controls(self) -> list[Instance]:
        return [i for i in self.instances.values() if i.node_type in ("control", "hybrid")]

    # -- mutations shared by create, PATCH and the tasks --------------------------------

    def touch(self, address: Address) -> None:
        # The receptor_addresses list is unordered (NOTES); Postgres showed rows in heap
        # order, where an UPDATE moves the row to the end (099: address 2 after 7).
        self.addresses.pop(address.id)
        self.addresses[address.id] = address

    def link(self, source: int, address: int) -> None:
        if (source, address) not in self.links.values():
            self.links[self.allocate("link")] = (source, address)

    def unlink(self, keep=lambda source, address: False) -> None:
        for lid, (s, a) in list(self.links.items()):
            if not keep(s, a):
                del self.links[lid]

    def set_control_links(self, address: Address) -> None:
        # The control node dials every address with peers_from_control_nodes (057, 091, 093).
        for ctl in self.controls():
            if address.peers_from_control_nodes:
                self.link(ctl.id, address.id)
            else:
                self.unlink(lambda s, a, c=ctl.id: not (s == c and a == address.id))

    def set_peers(self, inst: Instance, wanted: list[int]) -> None:
        # PATCH peers replaces the list; links that stay keep their ids (076: link 3).
        self.unlink(lambda s, a: s != inst.id or a in wanted)
        for address in wanted:
            self.link(inst.id, address)

    def drop_address(self, address: Address) -> None:
        # 097/098: other nodes' peers to a deleted address vanish silently.
        del self.addresses[address.id]
        self.unlink(lambda s, a: a != address.id)

    def recompute_capacity(self, inst: Instance) -> None:
        # A successful PATCH recomputes capacity (076: 100 -> 0 with no cpu/memory known);
        # AWX's rule is min + (max - min) * adjustment, 0 for hop or disabled nodes. Only
        # the all-zero case is recorded.
        if inst.enabled and inst.node_type != "hop":
            low, high = sorted((inst.cpu_capacity, inst.mem_capacity))
            inst.capacity = int(low + (high - low) * float(inst.capacity_adjustment))
        else:
            inst.capacity = 0

    # -- serialisers (field order as recorded, so Content-Length matches too) ----------

    def address_json(self, a: Address) -> dict:
        return {
            "id": a.id, "url": f"{API}/receptor_addresses/{a.id}/", "address": a.address,
            "port": a.port, "protocol": a.protocol, "websocket_path": "", "is_internal": False,
            "canonical": True, "instance": a.instance,
            "peers_from_control_nodes": a.peers_from_control_nodes,
            # 049: port 0 gives no ":port", -5 gives ":-5"
            "full_address": f"{a.address}:{a.port}" if a.port else a.address,
        }  # fmt: skip

    def link_json(self, lid: int) -> dict:
        source, target = self.links[lid]
        address = self.addresses[target]
        return {
            "id": lid,
            "related": {
                "source_instance": f"{API}/instances/{source}/",
                "target_address": f"{API}/receptor_addresses/{target}/",
            },
            "source": self.instances[source].hostname,
            "target": self.instances[address.instance].hostname,
            "target_full_address": self.address_json(address)["full_address"],
            "link_state": "adding",  # 058: no dispatcher ever moved a link on
        }

    def instance_json(self, inst: Instance, view: str) -> dict:
        """``view``: "detail" (GET/PATCH one), "create" (201), "list" (/instances/) or
        "sublist" (/instance_groups/N/instances/): 013, 058, 064 and 121 differ only in
        named_url and summary_fields.links."""
        base = f"{API}/instances/{inst.id}/"
        related = {"named_url": f"{API}/instances/{inst.hostname}/"}
        if view in ("list", "sublist"):
            related = {}
        for name in ("receptor_addresses", "jobs", "peers", "instance_groups"):
            related[name] = f"{base}{name}/"
        if inst.node_type in ("execution", "hop"):
            related["install_bundle"] = f"{base}install_bundle/"
        if inst.node_type == "execution":
            related["health_check"] = f"{base}health_check/"
        summary: dict = {"user_capabilities": {"edit": False}}
        if view in ("detail", "sublist"):
            summary["links"] = [
                self.link_json(lid) for lid, (s, _) in self.links.items() if s == inst.id
            ]
        started, last = inst.health_check_started, inst.last_health_check
        address = self.address_of(inst)
        return {
            "id": inst.id, "hostname": inst.hostname, "type": "instance", "url": base,
            "related": related, "summary_fields": summary,
            "uuid": "00000000-0000-0000-0000-000000000000", "created": inst.created,
            "modified": inst.modified, "last_seen": inst.last_seen,
            "health_check_started": started,
            "health_check_pending": bool(started and (last is None or started > last)),
            "last_health_check": last, "errors": inst.errors,
            "capacity_adjustment": inst.capacity_adjustment, "version": inst.version,
            "capacity": inst.capacity, "consumed_capacity": 0,
            "percent_capacity_remaining": 100.0 if inst.capacity else 0.0,
            "jobs_running": 0, "jobs_total": 0, "cpu": inst.cpu, "memory": inst.memory,
            "cpu_capacity": inst.cpu_capacity, "mem_capacity": inst.mem_capacity,
            "enabled": inst.enabled, "managed_by_policy": inst.managed_by_policy,
            "node_type": inst.node_type, "node_state": inst.node_state,
            "managed": inst.managed, "ip_address": "", "peers": self.peers_of(inst),
            "reverse_peers": self.reverse_peers_of(inst), "listener_port": inst.listener_port,
            "peers_from_control_nodes": bool(address and address.peers_from_control_nodes),
            "protocol": address.protocol if address else "",
        }  # fmt: skip

    def health_json(self, inst: Instance) -> dict:
        return {
            "uuid": "00000000-0000-0000-0000-000000000000", "hostname": inst.hostname,
            "ip_address": "", "version": inst.version,
            "last_health_check": inst.last_health_check, "errors": inst.errors,
            "cpu": inst.cpu, "memory": inst.memory, "cpu_capacity": inst.cpu_capacity,
            "mem_capacity": inst.mem_capacity, "capacity": inst.capacity,
        }  # fmt: skip

    def counted(self, g: Group) -> list[Instance]:
        # 122: the group's "instances" counts only ready, enabled members.
        members = (self.instances[i] for i in sorted(g.members))
        return [i for i in members if i.node_state == "ready" and i.enabled]

    def group_capacity(self, g: Group) -> int:
        # 134: controlplane 241 (its ready member), default 0 (a container group).
        return 0 if g.is_container_group else sum(i.capacity for i in self.counted(g))

    def group_json(self, g: Group, detail: bool) -> dict:
        base = f"{API}/instance_groups/{g.id}/"
        related = {"named_url": f"{API}/instance_groups/{g.name}/"} if detail else {}
        for name in ("jobs", "instances", "access_list", "object_roles"):
            related[name] = f"{base}{name}/"
        roles = {
            key: {"description": text, "name": name, "id": rid}
            for (key, (text, name)), rid in zip(ROLE_TEXT.items(), g.roles, strict=True)
        }
        capacity = self.group_capacity(g)
        return {
            "id": g.id, "type": "instance_group", "url": base, "related": related,
            "name": g.name, "created": g.created, "modified": g.modified,
            "capacity": capacity, "consumed_capacity": 0,
            "percent_capacity_remaining": 100.0 if capacity else 0.0, "jobs_running": 0,
            "max_concurrent_jobs": 0, "max_forks": 0, "jobs_total": 0,
            "instances": len(self.counted(g)), "is_container_group": g.is_container_group,
            "credential": None, "policy_instance_percentage": g.policy_instance_percentage,
            "policy_instance_minimum": g.policy_instance_minimum,
            "policy_instance_list": list(g.policy_instance_list), "pod_spec_override": "",
            "summary_fields": {
                "object_roles": roles,
                "user_capabilities": {"edit": True, "delete": g.deletable},
            },
        }  # fmt: skip

    def ping_json(self) -> dict:
        # 001/012 show only the control node. Which other instances ping lists is not
        # recorded; listing every non-hop instance by hostname is AWX's ping view, unverified.
        shown = sorted(
            (i for i in self.instances.values() if i.node_type != "hop"), key=lambda i: i.hostname
        )
        return {
            "ha": False, "version": "24.6.1", "active_node": "awx-task",
            "install_uuid": "51ed8f62-de42-42ce-bfc8-4b46e54d37be",
            "instances": [
                {"node": i.hostname, "node_type": i.node_type,
                 "uuid": "00000000-0000-0000-0000-000000000000", "heartbeat": i.last_seen,
                 "capacity": i.capacity, "version": i.version}
                for i in shown
            ],
            "instance_groups": [
                {"name": g.name, "capacity": self.group_capacity(g),
                 "instances": [self.instances[m].hostname for m in sorted(g.members)]}
                for g in self.groups.values()
            ],
        }  # fmt: skip

    def mesh_json(self) -> dict:
        # 068/157: nodes by hostname in byte order ("EXEC01" < "awx-task"), links by id.
        nodes = sorted(self.instances.values(), key=lambda i: i.hostname)
        return {
            "nodes": [
                {"id": i.id, "hostname": i.hostname, "node_type": i.node_type,
                 "node_state": i.node_state, "enabled": i.enabled}
                for i in nodes
            ],
            "links": [self.link_json(lid) for lid in sorted(self.links)],
        }  # fmt: skip
