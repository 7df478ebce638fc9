"""AAP installer inventory -> mesh nodes: roles, addresses, ssh settings, peers, jump
hosts and instance groups. ``meshctl import`` then validates the whole converted
file and reports a problem at the inventory line it came from."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from meshctl.plugin import NODE_ID_RE, UsageError, read_text
from meshctl.plugin import shorten as _q
from meshctl.plugins.import_aap.emit import CONTROLLER_GROUP, EXECUTION_GROUP, MeshNode, emit
from meshctl.plugins.import_aap.ini import Host, Inventory, Resolver, first_of, parse_ini, text_of
from meshctl.plugins.import_aap.values import (
    HOST_VARS,
    SSH_VARS,
    address_value,
    jump_host,
    listener_values,
    peer_names,
    ssh_values,
)

INSTANCE_GROUP_PREFIX = "instance_group_"
#: Far above any installer inventory, far below exhausting memory.
INVENTORY_LIMIT = 8 << 20
# node_type values allowed in each installer group; the first one is the default.
NODE_TYPES: dict[str, tuple[str, ...]] = {
    CONTROLLER_GROUP: ("control", "hybrid"),
    EXECUTION_GROUP: ("execution", "hop"),
}
# The containerized installer spells node_type/peers as receptor_type/receptor_peers.
NODE_TYPE_VARS = ("node_type", "receptor_type")
PEERS_VARS = ("peers", "receptor_peers")


def aap_inventory_to_yaml(path: str | Path) -> str:
    """:func:`aap_inventory_convert`'s text."""
    return aap_inventory_convert(path)[0]


def aap_inventory_convert(path: str | Path) -> tuple[str, list[int]]:
    """Convert an AAP installer INI inventory into mesh.yml text and, per line of it,
    the inventory line it came from (0: none); ``meshctl import`` validates the text.

    Mapping (AAP -> mesh.yml):

    * Hosts in ``[automationcontroller]`` (directly or through ``:children``) become
      ``control`` nodes, or ``hybrid`` with ``node_type=hybrid``; hosts in
      ``[execution_nodes]`` become ``execution`` nodes, or ``hop`` with
      ``node_type=hop``. Control and hybrid nodes are ``managed: false`` (the installer
      or AWX configures them). Other hosts (database, hub...) are not mesh nodes.
      ``receptor_type`` is read as ``node_type`` (containerized installer).
    * ``peers=`` / ``receptor_peers=`` (host or group variable, comma separated or a
      list) names hosts or groups; a group means all its hosts, children included.
      Each becomes an outbound connection from the host; the host itself is dropped.
      When two nodes name each other, the first direction in inventory order is kept
      (mesh.yml connections go one way) and a comment records the dropped one.
    * Address: the installer makes peers dial ``routable_hostname``, else
      ``ansible_host``, else the inventory name; meshctl's ``address`` is what peers
      dial, so it takes the same value, for every role. That keeps an unmanaged
      controller reachable at its ``ansible_host``, and a managed node reached at an
      IP by the installer is reached there by its peers too. A managed node whose
      ``ansible_host`` differs from its address (``routable_hostname`` set) gets
      ``ssh: {host: <ansible_host>}``: that is where the installer connected to it.
    * ``ansible_user``, ``ansible_port`` (or ``host:port``),
      ``ansible_ssh_private_key_file`` and ``ansible_become`` become ``ssh`` settings
      (``defaults.ssh``: ``[all:vars]`` plus what every managed node shares; per node
      where they differ). A ``ProxyJump``/``-J`` in ``ansible_ssh_common_args`` or
      ``ansible_ssh_extra_args`` naming another node becomes ``ssh.via``; a jump host
      outside the mesh is named in a comment. Unmanaged nodes never get ``ssh``.
    * Every node listens (installer default) on ``receptor_listener_port`` (27199)
      with ``receptor_listener_protocol`` (tcp); ``defaults.listener`` comes from
      ``[all:vars]``, nodes that differ get their own ``listener``.
    * ``[instance_group_<name>]`` gives ``instance_groups: [<name>]`` to its execution
      and hybrid hosts; a control or hop host there is an error (they run no jobs).
    * ``receptor_log_level`` and ``receptor_mintls13`` in ``[all:vars]`` fill the
      ``receptor:`` section. The mesh name is ``meshctl_mesh_name`` from
      ``[all:vars]``, else the file name without extension (sanitized).

    Raises :class:`UsageError` (``FILE:LINE: message``) for unreadable files,
    unparsable lines, unknown node types and peers naming unknown hosts or groups.
    """
    p = Path(path)
    file = str(path)
    text = read_text(path, "inventory file", INVENTORY_LIMIT, missing="no such inventory file")
    inv = parse_ini(text, file)
    res = Resolver(inv)
    nodes, default_ssh = _build_nodes(inv, res)
    if not nodes:
        raise UsageError(f"{file}: no mesh nodes: no host is in [{CONTROLLER_GROUP}] "
                         f"or [{EXECUTION_GROUP}]")
    return emit(inv, nodes, default_ssh, p.stem)


def _node_role(inv: Inventory, res: Resolver, host: Host) -> str | None:
    groups = res.groups_of(host.name)
    installer = [g for g in NODE_TYPES if g in groups]
    if not installer:
        return None
    if len(installer) > 1:
        raise inv.error(host.line, f"host {_q(host.name)} is in both [{CONTROLLER_GROUP}] and "
                        f"[{EXECUTION_GROUP}]; a node has one type")
    allowed = NODE_TYPES[installer[0]]
    var = first_of(res.host_vars(host.name), NODE_TYPE_VARS)
    if var is None:
        return allowed[0]
    node_type = (text_of(var) or "").lower()
    if node_type not in allowed:
        raise inv.error(var.line, f"unknown node_type {_q(node_type)} for host {_q(host.name)} "
                        f"in [{installer[0]}] (expected {' or '.join(allowed)})")
    return node_type


def _build_nodes(inv: Inventory, res: Resolver) -> tuple[list[MeshNode], dict[str, Any]]:
    """The mesh nodes in inventory order, and the ``defaults.ssh`` to emit."""
    all_vars = inv.groups["all"].vars
    default_listener = listener_values(inv, all_vars)
    nodes: dict[str, MeshNode] = {}
    ssh_of: dict[str, dict[str, Any]] = {}
    for host in inv.hosts.values():
        role = _node_role(inv, res, host)
        if role is None:
            continue
        if not NODE_ID_RE.fullmatch(host.name):
            raise inv.error(host.line, f"host name {_q(host.name)} is not a valid receptor node id "
                            "(letters, digits, '.', '_', '@', '-')")
        values = res.host_vars(host.name)
        node = nodes[host.name] = MeshNode(host.name, role, host.line)
        ansible_host = address_value(inv, values, HOST_VARS)
        address = address_value(inv, values, ("routable_hostname",)) or ansible_host or host.name
        if address != host.name:
            node.address = address
        listener = listener_values(inv, values)
        node.listener = {k: v for k, v in listener.items() if default_listener.get(k) != v}
        if node.managed:
            ssh_of[host.name] = ssh_values(inv, values)
            if ansible_host and ansible_host != address:
                node.ssh["host"] = ansible_host
    default_ssh = _common_ssh(ssh_values(inv, all_vars), list(ssh_of.values()))
    for name, ssh in ssh_of.items():
        nodes[name].ssh.update({k: v for k, v in ssh.items() if default_ssh.get(k) != v})
    _add_peers(inv, res, nodes)
    _add_jump_hosts(inv, res, nodes)
    _add_instance_groups(inv, res, nodes)
    return list(nodes.values()), default_ssh


def _common_ssh(all_vars_ssh: dict[str, Any], managed: list[dict[str, Any]]) -> dict[str, Any]:
    """``[all:vars]`` settings plus those every managed node shares (often set on
    ``[execution_nodes:vars]``): written once under ``defaults.ssh`` instead of on
    every node. Only managed nodes use SSH, so this changes nothing for the others."""
    out = dict(all_vars_ssh)
    if managed:
        for key, value in managed[0].items():
            if all(m.get(key) == value for m in managed):
                out[key] = value
    return {k: out[k] for k in SSH_VARS if k in out}


def _add_peers(inv: Inventory, res: Resolver, nodes: dict[str, MeshNode]) -> None:
    edges: set[tuple[str, str]] = set()
    for node in nodes.values():
        var = first_of(res.host_vars(node.name), PEERS_VARS)
        if var is None:
            continue
        listed = set(node.peers)
        for name in peer_names(var):
            # A group wins over a host of the same name, as in the installer.
            if name in inv.groups:
                targets = [h for h in res.hosts_of(name) if h in nodes]
            elif name in nodes:
                targets = [name]
            elif name in inv.hosts:
                raise inv.error(var.line, f"peers of {_q(node.name)} names {_q(name)}, which is not "
                                f"in [{CONTROLLER_GROUP}] or [{EXECUTION_GROUP}]")
            else:
                raise inv.error(var.line, f"peers of {_q(node.name)} names {_q(name)}, "
                                "which is neither a host nor a group of this inventory")
            for target in targets:
                if target == node.name or target in listed:
                    continue
                if (target, node.name) in edges:
                    node.comments.append(
                        f"peer {target} dropped: {target} already peers to {node.name} "
                        "(a connection goes one way)")
                    continue
                edges.add((node.name, target))
                listed.add(target)
                node.peers.append(target)


def _add_jump_hosts(inv: Inventory, res: Resolver, nodes: dict[str, MeshNode]) -> None:
    known: dict[str, str] = {}
    for node in nodes.values():
        ansible_host = text_of(first_of(res.host_vars(node.name), HOST_VARS))
        for alias in (node.name, node.address, ansible_host):
            if alias:
                known.setdefault(alias, node.name)
    for node in nodes.values():
        if not node.managed:
            continue
        found = jump_host(res.host_vars(node.name))
        if found is None:
            continue
        jump, var = found
        via = known.get(jump)
        if via is None or via == node.name:
            node.comments.append(
                f"ssh jump host {jump} (line {var.line}) is not a mesh node: not imported; "
                "configure it in ~/.ssh/config")
        else:
            node.ssh["via"] = via


def _add_instance_groups(inv: Inventory, res: Resolver, nodes: dict[str, MeshNode]) -> None:
    for group in inv.groups.values():
        if not group.name.startswith(INSTANCE_GROUP_PREFIX):
            continue
        ig = group.name[len(INSTANCE_GROUP_PREFIX):]
        if not ig:
            continue
        for host in res.hosts_of(group.name):
            node = nodes.get(host)
            if node is None:
                continue
            if node.role not in ("execution", "hybrid"):
                line = group.hosts.get(host, group.line)
                raise inv.error(line, f"{node.role} node {_q(host)} is in [{group.name}], but only "
                                "execution and hybrid nodes run jobs in instance groups")
            if ig not in node.instance_groups:
                node.instance_groups.append(ig)
