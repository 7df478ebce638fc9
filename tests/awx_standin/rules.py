"""What each write does to the stand-in's state, with the validations and error bodies
AWX 24.6.1 gave for them (recorded/NNN cited beside each rule). Every function returns
(status, body); a request the recordings do not cover raises NoRecording (501)."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .model import HEALTH_SOCKET_ERROR, Address, Group, Instance, Mesh

NOT_FOUND = {"detail": "No Instance matches the given query."}  # 067, 105, 112
WRITABLE = (
    "hostname", "capacity_adjustment", "enabled", "managed_by_policy", "node_type",
    "node_state", "peers", "listener_port", "peers_from_control_nodes",
)  # fmt: skip  # 006/066 OPTIONS; DRF ignores every other key (048: "protocol")
NODE_TYPES = ("control", "execution", "hybrid", "hop")
NODE_STATES = (
    "provisioning", "provision-fail", "installed", "ready", "unavailable", "deprovisioning",
    "deprovision-fail",
)  # fmt: skip
NO_PFCN = "Cannot enable peers_from_control_nodes if listener_port is not set."  # 041, 096


class NoRecording(Exception):
    """A request whose AWX answer no recording shows."""


def _integer(value):
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise NoRecording(f"listener_port of type {type(value).__name__}")
    if isinstance(value, str):
        if not re.fullmatch(r"-?\d+", value.strip()):
            return None  # 038
        value = int(value)
    return value


def _check_fields(mesh: Mesh, data: dict, inst: Instance | None) -> tuple[dict, dict]:
    """Field-level validation: (clean values, {field: [message]})."""
    clean: dict = {}
    errors: dict = {}
    for key in WRITABLE:
        if key not in data:
            continue
        value = data[key]
        problem = None
        if key == "hostname":
            problem = _check_hostname(mesh, value, inst)
        elif key == "node_type":
            if value not in NODE_TYPES:
                problem = f'"{value}" is not a valid choice.'  # 021
            elif inst is None and value not in ("execution", "hop"):
                problem = "Can only create execution or hop nodes."  # 019, 020
            elif inst is not None and value != inst.node_type:
                problem = "Cannot change node type."  # 083
        elif key == "node_state":
            if value not in NODE_STATES:
                problem = f'"{value}" is not a valid choice.'
            elif inst is None and value != "installed":
                problem = "Can only create instances in the 'installed' state."  # 042
            elif inst is not None and value != "deprovisioning":
                problem = "Can only change instances to the 'deprovisioning' state."  # 086, 146
            elif inst is not None and inst.managed:
                problem = "Cannot deprovision managed nodes."  # 142
        elif key == "listener_port":
            value = None if value is None else _integer(value)
            was = inst.listener_port if inst else None
            if value is None and data[key] is not None:
                problem = "A valid integer is required."  # 038
            elif inst is not None and inst.managed and value != was:
                problem = "Cannot change listener port for managed nodes."  # 074
            elif None not in (was, value) and value != was:
                problem = (
                    "Cannot change listener port."  # 084; null -> int (094), int -> null (097)
                )
        elif key == "peers":
            value, problem = _check_peers(mesh, value, inst)
        elif key == "peers_from_control_nodes":
            if not isinstance(value, bool):
                raise NoRecording("peers_from_control_nodes that is not a JSON boolean")
            current = bool(inst and (a := mesh.address_of(inst)) and a.peers_from_control_nodes)
            if inst is not None and inst.managed and value != current:
                problem = "Cannot change peers_from_control_nodes for managed nodes."  # 075
        elif key in ("enabled", "managed_by_policy"):
            if not isinstance(value, bool):
                raise NoRecording(f"{key} that is not a JSON boolean")
        elif key == "capacity_adjustment":
            value = _adjustment(value)
        if problem:
            errors[key] = [problem]
        else:
            clean[key] = value
    return clean, errors


def _check_hostname(mesh: Mesh, value, inst: Instance | None) -> str | None:
    if not isinstance(value, str) or not value or len(value) > 250:
        raise NoRecording("a hostname that is empty, too long or not a string")
    if inst is not None:
        return None if value == inst.hostname else "Cannot change hostname."  # 082
    if re.search(r"\s", value):
        return "whitespaces in hostnames are illegal"  # 029
    if ":" in value:
        return f"illegal characters detected in hostname={value}. Please verify."  # 046
    if not re.fullmatch(r"[A-Za-z0-9.-]+", value):
        raise NoRecording("a hostname with characters other than letters, digits, '.', '-' or ':'")
    if any(i.hostname == value for i in mesh.instances.values()):
        return "This field must be unique."  # 018; case-sensitive (047)
    if value in ("localhost", "127.0.0.1"):
        return "hostname cannot be localhost or 127.0.0.1"  # 027, 028
    return None


def _check_peers(mesh: Mesh, value, inst: Instance | None):
    if not isinstance(value, list):
        raise NoRecording("peers that is not a JSON list")
    for item in value:
        if isinstance(item, str):
            return (
                value,
                f"Incorrect type. Expected pk value, received {type(item).__name__}.",
            )  # 045
        if not isinstance(item, int) or isinstance(item, bool):
            raise NoRecording("a peer id that is neither an integer nor a string")
        if item not in mesh.addresses:
            return value, f'Invalid pk "{item}" - object does not exist.'  # 043
    if len(set(value)) != len(value):
        return value, "Cannot peer to the same instance more than once."  # 044
    if inst is not None and inst.managed:
        return value, "Setting peers manually for managed nodes is not allowed."  # 073
    own = inst and mesh.address_of(inst)
    for item in value:
        if own and item == own.id:
            return value, "Instance cannot peer to its own address."  # 069
        target = mesh.instances[mesh.addresses[item].instance]
        if own and target.id in mesh.reverse_peers_of(inst):
            return value, f"Instance {target.hostname} is already peered to this instance."  # 070
    return value, None


def _adjustment(value) -> str:
    try:
        number = Decimal(str(value)) if isinstance(value, int | float | str) else None
    except InvalidOperation:
        number = None
    if number is None or isinstance(value, bool) or not 0 <= number < 10:
        raise NoRecording("a capacity_adjustment other than a number from 0 to 9.99")
    return f"{number:.2f}"  # 089: 0.5 -> "0.50"


def _apply(mesh: Mesh, inst: Instance, clean: dict) -> None:
    address = mesh.address_of(inst)
    for key in ("enabled", "managed_by_policy", "capacity_adjustment", "node_state"):
        if key in clean:
            setattr(inst, key, clean[key])
    if "listener_port" in clean:
        port = clean["listener_port"]
        if port is None and address:
            mesh.drop_address(address)
            address = None
        elif port is not None and not address:
            # 094: the new address starts without peers_from_control_nodes
            address = Address(mesh.allocate("address"), inst.id, inst.hostname, port, False)
            mesh.addresses[address.id] = address
        inst.listener_port = port
    if address and ("listener_port" in clean or "peers_from_control_nodes" in clean):
        address.peers_from_control_nodes = clean.get(
            "peers_from_control_nodes", address.peers_from_control_nodes
        )
        mesh.touch(address)
        mesh.set_control_links(address)
    if "peers" in clean:
        mesh.set_peers(inst, clean["peers"])


def _pfcn_without_port(mesh: Mesh, clean: dict, inst: Instance | None) -> bool:
    # 040: at create, an omitted port skips the check (the flag is dropped); 041: an
    # explicit null fails it; 096: a PATCH checks against the node's current port.
    if "listener_port" in clean:
        port = clean["listener_port"]
    elif inst is None:
        return False
    else:
        port = inst.listener_port
    address = inst and mesh.address_of(inst)
    pfcn = clean.get("peers_from_control_nodes", bool(address and address.peers_from_control_nodes))
    return port is None and pfcn


def create_instance(mesh: Mesh, data: dict) -> tuple[int, dict, str | None]:
    clean, errors = _check_fields(mesh, data, None)
    if "hostname" not in data:
        errors = {"hostname": ["This field is required."], **errors}  # 030, 035
    if errors:
        return 400, errors, None
    if _pfcn_without_port(mesh, clean, None):
        return 400, {"__all__": [NO_PFCN]}, None
    now = mesh.clock.now()
    inst = Instance(
        mesh.allocate("instance"), clean["hostname"], clean.get("node_type", "execution"),
        now, mesh.clock.now(),
    )  # fmt: skip  # 013: created and modified are two readings, microseconds apart
    mesh.instances[inst.id] = inst
    port = clean.get("listener_port")
    if port is not None:
        pfcn = clean.get("peers_from_control_nodes", False)
        address = Address(mesh.allocate("address"), inst.id, inst.hostname, port, pfcn)
        mesh.addresses[address.id] = address
        mesh.set_control_links(address)
        inst.listener_port = port
    for key in ("enabled", "managed_by_policy", "capacity_adjustment"):
        if key in clean:
            setattr(inst, key, clean[key])
    mesh.set_peers(inst, clean.get("peers", []))
    return 201, mesh.instance_json(inst, "create"), f"/api/v2/instances/{inst.id}/"


def patch_instance(mesh: Mesh, inst: Instance, data: dict) -> tuple[int, dict]:
    clean, errors = _check_fields(mesh, data, inst)
    if errors:
        return 400, errors
    if _pfcn_without_port(mesh, clean, inst):
        return 400, {"__all__": [NO_PFCN]}
    _apply(mesh, inst, clean)
    inst.modified = mesh.clock.now()
    mesh.recompute_capacity(inst)
    return 200, mesh.instance_json(inst, "detail")


def health_check(mesh: Mesh, inst: Instance) -> tuple[int, dict]:
    # 108/110/111/148; hop and control nodes are outside the view's queryset (112, 113).
    if inst.node_type != "execution":
        return 404, NOT_FOUND
    if mesh.instance_json(inst, "list")["health_check_pending"]:
        return 200, {"msg": f"Health check was already in progress for {inst.hostname}."}
    inst.health_check_started = mesh.clock.now()  # 109: modified is left alone
    return 200, {"msg": f"Health check is running for {inst.hostname}."}


def membership(mesh: Mesh, group: Group, inst_ref, disassociate: bool) -> tuple[int, dict | None]:
    """POST .../instances/ {"id": N} (and "disassociate": true), 119-139."""
    inst = mesh.instances.get(inst_ref) if isinstance(inst_ref, int) else None
    if inst is None:
        return 400, {"detail": "Instance matching query does not exist."}  # 126
    if inst.node_type == "hop":
        return 400, {
            "msg": f"Cannot change instance group membership of hop node : {inst.hostname}."
        }
    if inst.node_type == "control":
        return 400, {
            "msg": f"Cannot change instance group membership of control-only node: {inst.hostname}."
        }
    # 122/135: policy_instance_list follows; 120/129: repeating either is a no-op, 204.
    if disassociate:
        group.members.discard(inst.id)
        if inst.hostname in group.policy_instance_list:
            group.policy_instance_list.remove(inst.hostname)
    else:
        group.members.add(inst.id)
        if inst.hostname not in group.policy_instance_list:
            group.policy_instance_list.append(inst.hostname)
    mesh.groups[group.id] = mesh.groups.pop(group.id)  # an UPDATE: heap order, as touch()
    return 204, None


def create_group(mesh: Mesh, data: dict) -> tuple[int, dict, str | None]:
    known = {"name", "policy_instance_percentage", "policy_instance_minimum"}  # 117
    if set(data) - known or not isinstance(data.get("name"), str) or not data["name"]:
        raise NoRecording("an instance group body other than name and the policy numbers")
    if any(g.name == data["name"] for g in mesh.groups.values()):
        return 400, {"name": ["Instance group with this Name already exists."]}, None  # 118
    now = mesh.clock.now()
    roles = tuple(mesh.allocate("role") for _ in range(3))  # 117: roles 9, 10, 11
    group = Group(mesh.allocate("group"), data["name"], now, mesh.clock.now(), roles)
    for key in ("policy_instance_percentage", "policy_instance_minimum"):
        value = data.get(key, 0)  # omitted: the model's default, 0
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise NoRecording(f"{key}={value!r}")
        setattr(group, key, value)
    mesh.groups[group.id] = group
    return 201, mesh.group_json(group, detail=True), f"/api/v2/instance_groups/{group.id}/"


def delete_group(mesh: Mesh, group: Group) -> tuple[int, dict | None]:
    if not group.deletable:
        return 403, {"detail": "You do not have permission to perform this action."}  # 155
    del mesh.groups[group.id]  # 153/154
    return 204, None


def run_health_task(mesh: Mesh, inst: Instance, outcome: str, facts: dict) -> None:
    """execution_node_health_check (900): its recorded no-mesh outcome, or "ready"."""
    if inst.node_type != "execution":
        raise ValueError(
            f"{inst.hostname} is a {inst.node_type} node; AWX health-checks execution nodes"
        )
    if inst.node_state == "deprovisioning":
        return  # 900: the task returns without a change
    now = mesh.clock.now()
    inst.last_health_check = now
    if outcome == "unavailable":  # 114/116
        inst.errors, inst.version, inst.node_state = (
            HEALTH_SOCKET_ERROR,
            "ansible-runner-???",
            "unavailable",
        )
        inst.capacity = inst.memory = inst.cpu_capacity = inst.mem_capacity = 0
        inst.cpu = "0.0"
    elif outcome == "ready":  # not recorded for execution nodes: see awx_standin.run_health_check
        inst.errors, inst.node_state, inst.last_seen = "", "ready", now
        for key, value in facts.items():
            setattr(inst, key, value)
        mesh.recompute_capacity(inst)
    else:
        raise ValueError(f"outcome must be 'unavailable' or 'ready', not {outcome!r}")


def run_removal(mesh: Mesh, inst: Instance) -> None:
    """remove_deprovisioned_node (902): deletes the instance, its address and links."""
    if inst.node_state != "deprovisioning":
        raise ValueError(
            f"{inst.hostname} is {inst.node_state}; AWX removes only deprovisioning nodes"
        )
    address = mesh.address_of(inst)
    if address:
        mesh.drop_address(address)
    mesh.unlink(lambda s, a: s != inst.id)
    for group in mesh.groups.values():
        group.members.discard(inst.id)
    del mesh.instances[inst.id]


def run_heartbeat(mesh: Mesh) -> None:
    """The control node's local_health_check (NOTES "Setup"): 012 and 058's values."""
    ctl = mesh.instances[1]
    now = mesh.clock.now()
    ctl.node_state, ctl.capacity, ctl.version = "ready", 241, "24.6.1"
    ctl.cpu, ctl.memory, ctl.cpu_capacity, ctl.mem_capacity = "2.0", 25275990016, 8, 241
    ctl.last_seen = ctl.last_health_check = now
