"""The mesh.yml model, its validation rules and the resolved topology.

Validation happens before any host is touched and reports every problem at once,
each located as FILE:LINE:COL. Plugins add their own sections (validated by their
pydantic models) and their own cross-field rules.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import types
import typing
from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from meshctl.core import yamlpos
from meshctl.core.errors import Diagnostic, TopologyError, shorten
from meshctl.core.files import TOPOLOGY_LIMIT, read_text

Port = Annotated[int, Field(ge=1, le=65535)]

# The node id is the certificate's CN, which X.509 caps at 64 characters.
# Used with fullmatch: "$" alone would let a trailing newline through.
_NODE_ID_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._@-]{0,63})")
_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_MESH_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class SSHSettings(StrictModel):
    """How meshctl reaches a node over SSH. Unset fields fall back to ``defaults.ssh``,
    then to ``~/.ssh/config``, then to OpenSSH's defaults."""

    host: str | None = None
    user: str | None = None
    port: Port | None = None
    key: str | None = None
    become: bool | None = None
    via: str | None = None
    connect_timeout: Annotated[float, Field(gt=0, le=600)] | None = None

    @field_validator("user")
    @classmethod
    def _user(cls, value: str | None) -> str | None:
        if value is not None and not valid_user(value):
            raise ValueError(f"{shorten(value)} is not a user name ({USER_GRAMMAR})")
        return value


# POSIX portable user names (letters, digits, '.', '_', '-', not starting with '-'),
# 32 at most as useradd allows, plus "@realm" for directory (SSSD) users.
_USER_RE = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}(?:@[A-Za-z0-9][A-Za-z0-9.-]{0,252})?")
USER_GRAMMAR = "letters, digits, '.', '_', '-', not starting with '-', at most 32; optionally @REALM"


def valid_user(value: str) -> bool:
    """A POSIX user name (fullmatch: "$" would accept a trailing newline)."""
    return _USER_RE.fullmatch(value) is not None


class Listener(StrictModel):
    """A receptor listener. ``listener: false`` on a node turns it off."""

    enabled: bool = True
    port: Port | None = None
    protocol: Literal["tcp", "ws"] | None = None
    bindaddr: str | None = None
    #: ws only: the HTTP path the websocket listener serves (AWX's websocket_path)
    path: str | None = Field(default=None, pattern=r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")


def _listener_before(value: Any) -> Any:
    if value is False:
        return {"enabled": False}
    return value


class DefaultsBase(StrictModel):
    ssh: SSHSettings = Field(default_factory=SSHSettings)
    listener: Listener | None = None

    _listener_false = field_validator("listener", mode="before")(_listener_before)


class NodeBase(StrictModel):
    name: str
    role: str
    managed: bool | None = None
    address: str | None = None
    listener: Listener | None = None
    peers: list[str] = Field(default_factory=list)
    ssh: SSHSettings | None = None
    names: list[str] = Field(default_factory=list)
    instance_groups: list[str] = Field(default_factory=list)
    #: AWX's peers_from_control_nodes: control nodes dial this node's listener
    peers_from_control_nodes: bool = False

    _listener_false = field_validator("listener", mode="before")(_listener_before)


class MeshBase(StrictModel):
    mesh: str
    defaults: DefaultsBase = Field(default_factory=DefaultsBase)
    nodes: list[NodeBase]


DEFAULT_LISTENER_PORT = 27199


@dataclass
class Node:
    """A node with defaults applied. ``index`` is its position under ``nodes:``."""

    name: str
    role: str
    managed: bool
    address: str
    listener: Listener | None
    peers: list[str]
    ssh: SSHSettings
    names: list[str]
    instance_groups: list[str]
    index: int
    sections: dict[str, Any] = field(default_factory=dict)
    peers_from_control_nodes: bool = False

    @property
    def listener_port(self) -> int | None:
        return self.listener.port if self.listener else None

    @property
    def ssh_host(self) -> str:
        return self.ssh.host or self.address


@dataclass
class Topology:
    mesh: str
    nodes: list[Node]
    file: str
    located: yamlpos.Located
    sections: dict[str, Any] = field(default_factory=dict)
    defaults: DefaultsBase = field(default_factory=DefaultsBase)
    warnings: list[Diagnostic] = field(default_factory=list)
    #: The plugin manager the topology was validated with (plugins read registrations).
    plugins: Any = field(default=None, repr=False)
    _by_name: dict[str, Node] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._by_name = {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node:
        return self._by_name[name]

    def get(self, name: str) -> Node | None:
        return self._by_name.get(name)

    @property
    def managed_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.managed]

    def via_chain(self, node: Node) -> list[Node]:
        """Jump hosts to reach ``node``, outermost first."""
        chain: list[Node] = []
        seen = {node.name}
        cur = node
        while cur.ssh.via:
            nxt = self._by_name[cur.ssh.via]
            if nxt.name in seen:  # validation forbids cycles; guard anyway
                break
            seen.add(nxt.name)
            chain.append(nxt)
            cur = nxt
        return list(reversed(chain))

    def inbound_peers(self, node: Node) -> list[Node]:
        return [n for n in self.nodes if node.name in n.peers
                or (node.peers_from_control_nodes and n.role == "control" and n.managed)]

    def dials(self, node: Node) -> list[Node]:
        """The nodes ``node`` connects to: its peers and, for a control node, every
        node flagged ``peers_from_control_nodes`` (as AWX's control plane does)."""
        out = [self._by_name[p] for p in node.peers if p in self._by_name]
        if node.role == "control":
            out += [n for n in self.nodes if n.peers_from_control_nodes and n.name not in node.peers]
        return out


def base_dir(topo: Topology) -> Path:
    """Relative paths in mesh.yml are relative to the file itself."""
    return Path(topo.file).resolve().parent


def resolve_path(topo: Topology, value: str) -> Path:
    """A path from mesh.yml: ``~`` expanded, relative to the topology file."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base_dir(topo) / p


# ---------------------------------------------------------------------------
# Model assembly (plugins contribute sections)


@lru_cache(maxsize=32)
def _models(mesh_sections: tuple[tuple[str, type], ...], node_sections: tuple[tuple[str, type], ...]):
    node_fields = {name: (model | None, None) for name, model in node_sections}
    node_model = create_model("Node", __base__=NodeBase, **node_fields)
    defaults_model = create_model("Defaults", __base__=DefaultsBase, **node_fields)
    mesh_fields: dict[str, Any] = {name: (model | None, None) for name, model in mesh_sections}
    mesh_fields["defaults"] = (defaults_model, Field(default_factory=defaults_model))
    mesh_fields["nodes"] = (list[node_model], ...)
    root = create_model("Mesh", __base__=MeshBase, **mesh_fields)
    return root, node_model, defaults_model


def _section_models(plugins: Any) -> tuple[tuple, tuple]:
    if plugins is None:
        return (), ()
    secs = plugins.topology_sections()
    mesh = tuple(sorted((s.name, s.model) for s in secs.values() if s.scope == "mesh"))
    node = tuple(sorted((s.name, s.model) for s in secs.values() if s.scope == "node"))
    return mesh, node


def _unwrap(annotation: Any) -> Any:
    """Strip Optional/list/Annotated down to a model class (or None)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            if arg is not type(None):
                found = _unwrap(arg)
                if found is not None:
                    return found
        return None
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        return _unwrap(args[0]) if args else None
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _model_at(root: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] | None = root
    for seg in path:
        if model is None:
            return None
        if isinstance(seg, int):
            continue
        info = model.model_fields.get(seg)
        if info is None:
            return None
        model = _unwrap(info.annotation)
    return model


def format_path(path: Iterable[Hashable]) -> str:
    out = ""
    for seg in path:
        if isinstance(seg, int):
            out += f"[{seg}]"
        else:
            out += f".{seg}" if out else str(seg)
    return out


def _pydantic_diags(exc: ValidationError, root: type[BaseModel], loc: yamlpos.Located,
                    prefix: tuple = ()) -> list[Diagnostic]:
    diags = []
    for err in exc.errors(include_url=False):
        path = prefix + tuple(err["loc"])
        where = format_path(path)
        if err["type"] == "extra_forbidden":
            key = path[-1]
            parent = _model_at(root, path[:-1])
            message = f"unknown key {key!r}"
            if where.rpartition(".")[0]:
                message += f" in {format_path(path[:-1])}"
            if parent is not None:
                close = difflib.get_close_matches(str(key), list(parent.model_fields), n=1, cutoff=0.6)
                if close:
                    message += f" (did you mean {close[0]!r}?)"
                else:
                    message += f"; allowed: {', '.join(parent.model_fields)}"
            diags.append(loc.diag(path, message, key=True))
        elif err["type"] == "missing":
            diags.append(loc.diag(path[:-1], f"{format_path(path[:-1]) or 'top level'}: required key {path[-1]!r} is missing"))
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"].startswith("literal_error"):
                msg = msg.replace("Input should be", "must be")
            diags.append(loc.diag(path, f"{where}: {msg}"))
    return diags


# ---------------------------------------------------------------------------
# Loading


def load_topology(path: str | Path, plugins: Any = None) -> Topology:
    """Read, parse and validate a topology file. Raises :class:`TopologyError` with
    every problem found, or :class:`UsageError` when the file cannot be read."""
    text = read_text(path, "topology file", TOPOLOGY_LIMIT, missing="no such topology file (use -f FILE)")
    return parse_topology(text, str(path), plugins)


def parse_topology(text: str, file: str = "mesh.yml", plugins: Any = None) -> Topology:
    loc, diags = yamlpos.load(text, file)
    if loc is None:
        raise TopologyError(diags)
    if not isinstance(loc.data, dict):
        kind = "empty" if loc.data is None else f"a {type(loc.data).__name__}"
        raise TopologyError(
            diags + [loc.diag((), f"the topology must be a mapping with 'mesh' and 'nodes'; got {kind}")]
        )
    mesh_secs, node_secs = _section_models(plugins)
    root, node_model, _defaults_model = _models(mesh_secs, node_secs)
    data = loc.data
    raw_nodes = data.get("nodes")
    # Validate each node on its own so one bad node does not hide the rules that
    # can still be checked on the others: every error is reported in one run.
    shell = dict(data, nodes=[]) if "nodes" in data else dict(data)
    try:
        model = root.model_validate(shell)
    except ValidationError as exc:
        diags += _pydantic_diags(exc, root, loc)
        model = None
    good: dict[int, Any] = {}
    broken: set[int] = set()
    if isinstance(raw_nodes, list):
        for i, raw in enumerate(raw_nodes):
            try:
                good[i] = node_model.model_validate(raw)
            except ValidationError as exc:
                broken.add(i)
                diags += _pydantic_diags(exc, root, loc, prefix=("nodes", i))
    elif "nodes" in data:
        diags.append(loc.diag(("nodes",), "nodes: must be a list of node entries"))
    if isinstance(raw_nodes, list) and not raw_nodes:
        diags.append(loc.diag(("nodes",), "nodes: the topology has no nodes"))
    if model is None:
        raise TopologyError(diags)
    model.nodes = [good[i] for i in sorted(good)]
    topo = _resolve(model, loc, [n for n, _ in mesh_secs], [n for n, _ in node_secs], plugins,
                    indexes=sorted(good))
    # Names of nodes that failed schema validation still count as existing, so
    # their peers are not reported as unknown a second time.
    known_extra = {
        raw_nodes[i]["name"] for i in broken
        if isinstance(raw_nodes[i], dict) and isinstance(raw_nodes[i].get("name"), str)
    }
    problems = diags + check_rules(topo, plugins, known_extra=known_extra)
    if plugins is not None and not diags:
        def report(path: tuple, message: str, severity: str = "error") -> None:
            problems.append(loc.diag(tuple(path), message, severity))

        plugins.validate_topology(topo, report)
    errors = [d for d in problems if d.severity == "error"]
    if errors:
        raise TopologyError(problems)
    topo.warnings = sorted(problems)
    return topo


def _resolve(model: MeshBase, loc: yamlpos.Located, mesh_secs: list[str], node_secs: list[str], plugins: Any,
             indexes: list[int] | None = None) -> Topology:
    roles = plugins.roles() if plugins is not None else {}
    d = model.defaults
    nodes: list[Node] = []
    for pos, n in enumerate(model.nodes):
        i = indexes[pos] if indexes is not None else pos
        ssh_values = d.ssh.model_dump(exclude_none=True)
        if n.ssh is not None:
            ssh_values.update(n.ssh.model_dump(exclude_none=True))
        listener = _merge_listener(d.listener, n.listener)
        role = roles.get(n.role)
        default = role.provisionable if role and role.managed_by_default is None else (
            role.managed_by_default if role else True)
        managed = n.managed if n.managed is not None else default
        node_sections = {}
        for name in node_secs:
            value = getattr(n, name, None)
            node_sections[name] = value if value is not None else getattr(d, name, None)
        nodes.append(
            Node(
                name=n.name,
                role=n.role,
                managed=managed,
                address=n.address or n.name,
                listener=listener,
                peers=list(n.peers),
                ssh=SSHSettings(**ssh_values),
                names=list(n.names),
                instance_groups=list(n.instance_groups),
                index=i,
                sections=node_sections,
                peers_from_control_nodes=n.peers_from_control_nodes,
            )
        )
    sections = {name: getattr(model, name, None) for name in mesh_secs}
    return Topology(mesh=model.mesh, nodes=nodes, file=loc.file, located=loc, sections=sections, defaults=d,
                    plugins=plugins)


def _merge_listener(default: Listener | None, own: Listener | None) -> Listener | None:
    if own is not None and not own.enabled:
        return None
    if own is None and default is None:
        return None
    values = {"port": DEFAULT_LISTENER_PORT, "protocol": "tcp"}
    for src in (default, own):
        if src is not None:
            if not src.enabled and src is default:
                if own is None:
                    return None
                continue
            values.update(src.model_dump(exclude_none=True, exclude={"enabled"}))
    return Listener(**values)


# ---------------------------------------------------------------------------
# Rules


def valid_address(value: str) -> bool:
    """A hostname (RFC 1123), an IPv4 or an IPv6 address."""
    try:
        # A %scope (fe80::1%eth0) names an interface of this machine: it cannot be a
        # certificate name (SAN) and means nothing on another host.
        ipaddress.ip_address(value)
        return "%" not in value
    except ValueError:
        pass
    if len(value) > 253 or not value:
        return False
    labels = value.rstrip(".").split(".")
    if all(label.isdigit() for label in labels):
        return False  # "300.1.2.3" is a bad IP, not a hostname
    return all(_LABEL_RE.fullmatch(label) for label in labels)


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

    if not _MESH_NAME_RE.fullmatch(topo.mesh):
        err(("mesh",), f"mesh name {topo.mesh!r} must be letters, digits, '.', '_' or '-' (max 63)")

    roles = plugins.roles() if plugins is not None else None
    by_name: dict[str, Node] = {}
    for node in topo.nodes:
        base = ("nodes", node.index)
        if not _NODE_ID_RE.fullmatch(node.name):
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
        role = roles.get(node.role) if roles else None
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
    controls_dialing = [n for n in topo.nodes if n.role == "control" and n.managed]
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

    # Warnings: execution nodes with no path to a control node.
    adj: dict[str, set[str]] = defaultdict(set)
    for a, b in edges:
        adj[a].add(b)
        adj[b].add(a)
    controls = {n.name for n in topo.nodes if n.role in ("control", "hybrid")}
    reach: set[str] = set()
    stack = list(controls)
    while stack:
        cur_name = stack.pop()
        if cur_name in reach:
            continue
        reach.add(cur_name)
        stack.extend(adj[cur_name] - reach)
    for node in topo.nodes:
        runs_work = roles[node.role].runs_work if roles and node.role in roles else node.role == "execution"
        if runs_work and node.name not in reach:
            err(("nodes", node.index, "name"),
                f"execution node {node.name!r} has no path to any control node: it will never get work",
                severity="warning")
    return out


__all__ = [
    "Listener",
    "Node",
    "SSHSettings",
    "Topology",
    "TopologyError",
    "load_topology",
    "parse_topology",
    "valid_address",
]
