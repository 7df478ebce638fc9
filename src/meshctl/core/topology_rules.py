"""The core's cross-field rules of a resolved topology: names, addresses,
listeners, peers, jump hosts, and reachability of the nodes that run work."""

from __future__ import annotations

import difflib
import ipaddress
from collections import defaultdict
from typing import Any

from meshctl.core import yamlpos
from meshctl.core.errors import Diagnostic
from meshctl.core.topology_model import (
    DEFAULT_LISTENER_PORT,
    MESH_NAME_RE,
    NODE_ID_RE,
    Node,
    Topology,
    valid_address,
)


def _listener_path(loc: yamlpos.Located, node: Node) -> tuple:
    if "listener" in loc.data["nodes"][node.index]:
        return ("nodes", node.index, "listener")
    if "listener" in (loc.data.get("defaults") or {}):
        return ("defaults", "listener")
    return ("nodes", node.index, "name")


def _bindaddr_problem(value: str | None) -> str | None:
    """receptor joins bindaddr and port as "%s:%d": an IPv6 address needs brackets."""
    if value is None:
        return None
    inner = value[1:-1] if value.startswith("[") and value.endswith("]") else None
    if inner is not None:
        try:
            if isinstance(ipaddress.ip_address(inner), ipaddress.IPv6Address):
                return None
        except ValueError:
            pass
        return f"{value!r} is not a bracketed IPv6 address"
    try:
        addr = ipaddress.ip_address(value)
    except ValueError:
        return None if valid_address(value) else f"{value!r} is not an IP address or hostname"
    if isinstance(addr, ipaddress.IPv6Address):
        return f"{value!r} is a bare IPv6 address: write it as '[{value}]'"
    return None


def check_rules(topo: Topology, plugins: Any = None, known_extra: set[str] = frozenset()) -> list[Diagnostic]:
    """The core's cross-field rules. Returns diagnostics (errors and warnings)."""
    loc = topo.located
    out: list[Diagnostic] = []

    def err(path: tuple, msg: str, severity: str = "error", key: bool = False) -> None:
        out.append(loc.diag(path, msg, severity, key=key))

    if not MESH_NAME_RE.fullmatch(topo.mesh):
        err(("mesh",), f"mesh name {topo.mesh!r} must be letters, digits, '.', '_' or '-' (max 63)")

    roles = plugins.roles() if plugins is not None else None
    by_name: dict[str, Node] = {}
    for node in topo.nodes:
        base = ("nodes", node.index)
        if not NODE_ID_RE.fullmatch(node.name):
            err(base + ("name",), f"node name {node.name!r} is not a valid receptor node id "
                "(letters, digits, '.', '_', '@', '-'; no spaces; at most 64 characters)")
        elif node.name.lower() == "localhost":
            err(base + ("name",), f"node name {node.name!r} is reserved by receptor: give the node its own name "
                "(and set 'address' to reach it)")
        if node.name in by_name:
            first = by_name[node.name]
            line, _ = loc.position(("nodes", first.index, "name"))
            err(base + ("name",), f"duplicate node name {node.name!r} (first defined at line {line})")
        else:
            by_name[node.name] = node
        if roles is not None and node.role not in roles:
            close = difflib.get_close_matches(node.role, list(roles), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            err(base + ("role",), f"unknown role {node.role!r}{hint}; known roles: {', '.join(sorted(roles))}")
        if not valid_address(node.address):
            if (base + ("address",)) in loc.values:
                err(base + ("address",), f"address {node.address!r} is not a valid hostname or IP address")
            else:
                err(base + ("name",), f"node name {node.address!r} is not a valid hostname or IP address: "
                    "set 'address' to reach it")
        for j, extra in enumerate(node.names):
            if not valid_address(extra):
                err(base + ("names", j), f"{extra!r} is not a valid hostname or IP address")
        if node.ssh.host and not valid_address(node.ssh.host):
            err(base + ("ssh", "host"), f"ssh.host {node.ssh.host!r} is not a valid hostname or IP address")
        raw = loc.data["nodes"][node.index]
        if not node.managed and isinstance(raw, dict) and "ssh" in raw:
            err(base + ("ssh",), f"node {node.name!r} is unmanaged (managed: false): it must not have an ssh section", key=True)
        role = roles.get(node.role) if roles else None  # None: reported as unknown above
        if node.managed and role is not None and not role.provisionable:
            err(base + ("managed",) if "managed" in raw else base + ("role",),
                f"role {node.role!r} cannot be provisioned by meshctl: set managed: false")
        if role is not None and not role.runs_work and node.instance_groups:
            err(base + ("instance_groups",), f"a {node.role} node runs no work: it cannot be in instance groups", key=True)

    # Listeners: what receptor can bind, and unique address:port.
    seen_listen: dict[tuple[str, int], Node] = {}
    for node in topo.nodes:
        if node.listener is None:
            continue
        lpath = _listener_path(loc, node)
        problem = _bindaddr_problem(node.listener.bindaddr)
        if problem:
            err(lpath, f"{node.name}: listener bindaddr {problem}")
        if node.listener.path and node.listener.protocol != "ws":
            err(lpath, f"{node.name}: listener path is for protocol ws only")

        key = (node.address.lower(), node.listener.port or DEFAULT_LISTENER_PORT)
        if key in seen_listen:
            other = seen_listen[key]
            path = ("nodes", node.index, "listener") if "listener" in loc.data["nodes"][node.index] else ("nodes", node.index, "name")
            err(path, f"listener {key[0]}:{key[1]} of {node.name!r} is already used by {other.name!r}")
        else:
            seen_listen[key] = node

    # Peers.
    edges: set[tuple[str, str]] = set()
    for node in topo.nodes:
        seen_peers: set[str] = set()
        for j, peer in enumerate(node.peers):
            path = ("nodes", node.index, "peers", j)
            if peer == node.name:
                err(path, f"node {node.name!r} cannot peer with itself")
                continue
            if peer in seen_peers:
                err(path, f"duplicate peer {peer!r}")
                continue
            seen_peers.add(peer)
            target = by_name.get(peer)
            if target is None and peer in known_extra:
                continue
            if target is None:
                close = difflib.get_close_matches(peer, list(by_name), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                err(path, f"peer {peer!r} is not a node in this topology{hint}")
                continue
            if target.listener is None:
                err(path, f"{node.name!r} peers to {peer!r}, which has no listener "
                    f"(give {peer!r} a 'listener' or set defaults.listener)")
            edges.add((node.name, peer))
    controls_dialing = [n for n in topo.nodes if n.managed and topo.role_of(n).controller]
    for node in topo.nodes:
        if not node.peers_from_control_nodes:
            continue
        path = ("nodes", node.index, "peers_from_control_nodes")
        if node.listener is None:
            err(path, f"{node.name!r} is peered from control nodes but has no listener")
        for c in controls_dialing:
            if node.name in c.peers:
                err(path, f"{c.name!r} already lists {node.name!r} in its peers")
            elif c.name in node.peers:
                err(path, f"{node.name!r} peers to control node {c.name!r}, which also dials it "
                    "(peers_from_control_nodes): a connection goes one way only")
            else:
                edges.add((c.name, node.name))
    for a, b in sorted(edges):
        if (b, a) in edges and a < b:
            nb = by_name[b]
            j = nb.peers.index(a)
            err(("nodes", nb.index, "peers", j),
                f"{b!r} and {a!r} peer to each other: a connection goes one way only, remove one of them")

    # receptor exits at start ("Nothing to do - no backends are running") when a
    # node neither listens nor dials.
    dialers = {a for a, _ in edges}
    for node in topo.nodes:
        if node.managed and node.listener is None and not node.peers and node.name not in dialers:
            err(("nodes", node.index, "name"), f"node {node.name!r} has neither a listener nor peers: "
                "receptor would exit at start with nothing to do (add peers, or a listener)")

    # ssh.via: exists, and chains have no cycle.
    for node in topo.nodes:
        via = node.ssh.via
        if not via:
            continue
        path = ("nodes", node.index, "ssh", "via")
        if path not in loc.values:
            path = ("defaults", "ssh", "via")
        if via == node.name:
            err(path, f"node {node.name!r} cannot be its own ssh jump host")
        elif via not in by_name and via not in known_extra:
            close = difflib.get_close_matches(via, list(by_name), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            err(path, f"ssh.via {via!r} is not a node in this topology{hint}")
    for node in topo.nodes:
        seen_chain = [node.name]
        cur = node
        while cur.ssh.via and cur.ssh.via in by_name and cur.ssh.via != cur.name:
            nxt = by_name[cur.ssh.via]
            if nxt.name in seen_chain:
                if nxt.name == node.name:
                    err(("nodes", node.index, "ssh", "via"),
                        "ssh.via chain has a cycle: " + " -> ".join(seen_chain + [nxt.name]))
                break
            seen_chain.append(nxt.name)
            cur = nxt

    # Warnings: nodes that run work with no path to a controller.
    adj: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    controls = {n.name for n in topo.nodes if topo.role_of(n).controller}
    # Control nodes, managed or not (AWX renders its own), dial peers_from_control_nodes.
    for n in topo.nodes:
        if n.peers_from_control_nodes:
            for c in controls:
                adj[c].add(n.name)
                adj[n.name].add(c)
    reach: set[str] = set()
    stack = list(controls)
    while stack:
        cur_name = stack.pop()
        if cur_name in reach:
            continue
        reach.add(cur_name)
        stack.extend(adj[cur_name] - reach)
    for node in topo.nodes:
        if topo.role_of(node).runs_work and node.name not in reach:
            err(("nodes", node.index, "name"),
                f"execution node {node.name!r} has no path to any control node: it will never get work",
                severity="warning")
    return out
