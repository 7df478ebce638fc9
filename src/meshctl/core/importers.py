"""Import topologies written for other tools into mesh.yml text.

Only the AAP installer's INI inventory is supported for now. The INI reader is our own
(no ansible dependency) and follows Ansible's INI inventory rules closely enough for
installer inventories: ``[group]``, ``[group:vars]``, ``[group:children]``, host
lines ``name key=value key2="quoted value"``, host ranges ``exec[01:03].example.com``,
``#``/``;`` comment lines and hosts listed in several groups. Every error names the
inventory line (``FILE:LINE: message``).
"""

from __future__ import annotations

import ast
import itertools
import math
import re
import shlex
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from meshctl.core.errors import TopologyError, UsageError
from meshctl.core.errors import shorten as _q
from meshctl.core.files import INVENTORY_LIMIT, read_text
from meshctl.core.topology import (
    _MESH_NAME_RE,
    _NODE_ID_RE,
    DEFAULT_LISTENER_PORT,
    USER_GRAMMAR,
    valid_address,
    valid_user,
)

CONTROLLER_GROUP = "automationcontroller"
EXECUTION_GROUP = "execution_nodes"
INSTANCE_GROUP_PREFIX = "instance_group_"
MESH_NAME_VAR = "meshctl_mesh_name"

# node_type values allowed in each installer group; the first one is the default.
NODE_TYPES: dict[str, tuple[str, ...]] = {
    CONTROLLER_GROUP: ("control", "hybrid"),
    EXECUTION_GROUP: ("execution", "hop"),
}

# Ansible accepts several spellings for connection variables; the first wins.
SSH_VARS: dict[str, tuple[str, ...]] = {
    "user": ("ansible_user", "ansible_ssh_user"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "key": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
    "become": ("ansible_become",),
}
HOST_VARS = ("ansible_host", "ansible_ssh_host")
JUMP_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
# The containerized installer spells node_type/peers as receptor_type/receptor_peers.
NODE_TYPE_VARS = ("node_type", "receptor_type")
PEERS_VARS = ("peers", "receptor_peers")

# Installer receptor settings meshctl has no equivalent for: named in a comment so
# the user knows they were read and not silently lost.
IGNORED_RECEPTOR_VARS = (
    "receptor_datadir",
    "receptor_tls",
    "receptor_disable_signing",
    "receptor_firewall_zone",
)

_SECTION_RE = re.compile(r"^\[([^\]\s:]+)(?::([^\]\s]+))?\]\s*(?:[#;].*)?$")
_GROUP_NAME_RE = re.compile(r"^[^\s\[\]:=]+$")
# No "[" inside a range: each one starts at most one attempt, so search is linear.
_RANGE_RE = re.compile(r"\[([^\[\]:]*):([^\[\]:]*)(?::([^\[\]:]*))?\]")
# An unquoted value ends at an inline comment: whitespace then "#" or ";".
_INLINE_COMMENT_RE = re.compile(r"(?<=\s)[#;]")
#: Hosts one inventory may define (ranges included): far more than any mesh.
MAX_HOSTS = 10_000
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_FLOW_WIDTH = 88


@dataclass
class _Var:
    value: Any  # str, or a list for receptor_peers='["a", "b"]'
    line: int


@dataclass
class _Group:
    name: str
    line: int
    hosts: dict[str, int] = field(default_factory=dict)  # host -> line listed
    children: dict[str, int] = field(default_factory=dict)  # group -> line listed
    vars: dict[str, _Var] = field(default_factory=dict)


@dataclass
class _Host:
    name: str
    line: int  # first line mentioning it
    vars: dict[str, _Var] = field(default_factory=dict)


@dataclass
class _Inventory:
    file: str
    groups: dict[str, _Group] = field(default_factory=dict)
    hosts: dict[str, _Host] = field(default_factory=dict)  # in first-seen order

    def group(self, name: str, line: int) -> _Group:
        if name not in self.groups:
            self.groups[name] = _Group(name, line)
        return self.groups[name]

    def error(self, line: int, message: str) -> UsageError:
        return UsageError(f"{self.file}:{line}: {message}")


# ---------------------------------------------------------------------------
# INI reading


def _value(raw: str) -> Any:
    """A variable value the way Ansible's INI plugin reads it: Python literals
    (quoted strings, lists) are evaluated, anything else stays text."""
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return raw
    if isinstance(value, str | list):
        return value
    return raw  # keep numbers/bools as written; we convert where a type is needed


def _range_items(start: str, end: str, step_text: str | None, pattern: str, file: str,
                 line: int) -> range | list[str] | None:
    if step_text is not None and not (step_text.isascii() and step_text.isdigit() and len(step_text) <= 6):
        raise UsageError(f"{file}:{line}: bad host range step {_q(step_text)} in {_q(pattern)}")
    step = int(step_text) if step_text else 1
    if step < 1:
        raise UsageError(f"{file}:{line}: host range step must be at least 1 in {_q(pattern)}")
    # ASCII only: "²".isdigit() is true but int("²") fails.
    if (start.isascii() and end.isascii() and start.isdigit() and end.isdigit()
            and len(start) <= 18 and len(end) <= 18):
        return range(int(start), int(end) + 1, step)
    if len(start) == 1 and len(end) == 1 and start.isascii() and end.isascii() \
            and start.isalpha() and end.isalpha():
        return [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    return None


def _expand_ranges(pattern: str, file: str, line: int) -> list[str]:
    """``exec[01:03].x`` -> exec01.x, exec02.x, exec03.x (Ansible host ranges). The
    expansion is counted before it is built: at most :data:`MAX_HOSTS` names."""
    parts: list[list[str] | range] = []
    widths: list[int] = []
    pos = 0
    for match in _RANGE_RE.finditer(pattern):
        start, end, step_text = match.group(1), match.group(2), match.group(3)
        items = _range_items(start, end, step_text, pattern, file, line)
        if items is None:
            raise UsageError(f"{file}:{line}: bad host range [{_q(start)[1:-1]}:{_q(end)[1:-1]}] "
                             f"in {_q(pattern)}")
        if not items:
            raise UsageError(f"{file}:{line}: empty host range in {_q(pattern)}")
        parts += [[pattern[pos:match.start()]], items]
        widths += [0, len(start) if isinstance(items, range) and start.startswith("0") else 0]
        pos = match.end()
    if not parts:
        return [pattern]
    parts.append([pattern[pos:]])
    widths.append(0)
    if math.prod(len(p) for p in parts) > MAX_HOSTS:
        raise UsageError(f"{file}:{line}: host range {_q(pattern)} expands to more than "
                         f"{MAX_HOSTS} hosts")
    texts = [[str(i).zfill(w) if isinstance(i, int) else i for i in p] for p, w in zip(parts, widths, strict=True)]
    return ["".join(combo) for combo in itertools.product(*texts)]


def _parse_ini(text: str, file: str) -> _Inventory:
    inv = _Inventory(file)
    inv.group("all", 0)
    group, kind = inv.group("ungrouped", 0), "hosts"
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            match = _SECTION_RE.match(line)
            if match is None:
                raise inv.error(lineno, f"cannot parse section header {_q(line)}")
            suffix = match.group(2)
            if suffix is not None and suffix not in ("vars", "children"):
                raise inv.error(lineno, f"unknown section type ':{suffix}' (expected :vars or :children)")
            kind = suffix or "hosts"
            group = inv.group(match.group(1), lineno)
            continue
        if kind == "vars":
            _parse_var_line(inv, group, line, lineno)
        elif kind == "children":
            name = line.split("#", 1)[0].split(";", 1)[0].strip()
            if not _GROUP_NAME_RE.match(name):
                raise inv.error(lineno, f"expected a group name in [{group.name}:children], got {_q(line)}")
            inv.group(name, lineno)
            group.children.setdefault(name, lineno)
        else:
            _parse_host_line(inv, group, line, lineno)
    return inv


def _parse_var_line(inv: _Inventory, group: _Group, line: str, lineno: int) -> None:
    key, sep, rest = line.partition("=")
    key, rest = key.strip(), rest.strip()
    if not sep or not key or " " in key:
        raise inv.error(lineno, f"expected key=value in [{group.name}:vars], got {_q(line)}")
    if rest[:1] not in ("'", '"', "["):
        # An unquoted value ends at an inline comment (" # ..."); a search, not a
        # split on r"\s+[#;]", which backtracks quadratically over long blanks.
        comment = _INLINE_COMMENT_RE.search(rest)
        if comment is not None:
            rest = rest[: comment.start()].rstrip()
    group.vars[key] = _Var(_value(rest), lineno)


def _parse_host_line(inv: _Inventory, group: _Group, line: str, lineno: int) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise inv.error(lineno, f"cannot parse host line: {exc}") from None
    if not tokens:
        return
    pattern, assignments = tokens[0], tokens[1:]
    host_vars: dict[str, _Var] = {}
    # "host:2222" sets the SSH port; more than one colon is an IPv6 address.
    name, sep, port = pattern.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        pattern = name
        host_vars["ansible_port"] = _Var(port, lineno)
    for token in assignments:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise inv.error(lineno, f"expected key=value after host {_q(pattern)}, got {_q(token)}")
        host_vars[key] = _Var(_value(value), lineno)
    for host_name in _expand_ranges(pattern, inv.file, lineno):
        host = inv.hosts.get(host_name)
        if host is None:
            if len(inv.hosts) >= MAX_HOSTS:
                raise inv.error(lineno, f"the inventory has more than {MAX_HOSTS} hosts")
            host = inv.hosts[host_name] = _Host(host_name, lineno)
        host.vars.update(host_vars)
        group.hosts.setdefault(host_name, lineno)


# ---------------------------------------------------------------------------
# Group arithmetic


class _Resolver:
    """Group membership, expansion and variable precedence, Ansible style:
    all:vars < parent groups < child groups (same depth: by name) < host vars."""

    def __init__(self, inv: _Inventory):
        self.inv = inv
        self.parents: dict[str, set[str]] = {name: set() for name in inv.groups}
        for g in inv.groups.values():
            for child in g.children:
                self.parents[child].add(g.name)
        self.depth: dict[str, int] = {}
        for name in inv.groups:
            self._depth(name, [])
        # Memoized: peers and instance groups ask again for the same hosts and groups.
        self._groups_of: dict[str, set[str]] = {}
        self._hosts_of: dict[str, list[str]] = {}
        self._host_vars: dict[str, dict[str, _Var]] = {}

    def _depth(self, name: str, stack: list[str]) -> int:
        if name in self.depth:
            return self.depth[name]
        if name in stack:
            cycle = " -> ".join([*stack[stack.index(name):], name])
            # stack[-1] is a child of ``name``: report the line listing it.
            line = self.inv.groups[name].children.get(stack[-1], 0)
            raise self.inv.error(line, f"group children form a cycle: {cycle}")
        parents = self.parents[name] - {"all"}
        if name == "all":
            d = 0
        else:
            d = 1 + max((self._depth(p, [*stack, name]) for p in parents), default=0)
        self.depth[name] = d
        return d

    def groups_of(self, host: str) -> set[str]:
        if host not in self._groups_of:
            self._groups_of[host] = self._find_groups(host)
        return self._groups_of[host]

    def _find_groups(self, host: str) -> set[str]:
        found = {"all"}
        todo = [g.name for g in self.inv.groups.values() if host in g.hosts]
        while todo:
            name = todo.pop()
            if name not in found:
                found.add(name)
                todo.extend(self.parents[name])
        return found

    def hosts_of(self, group: str) -> list[str]:
        """Hosts in ``group`` and its children, recursively, in inventory order."""
        if group not in self._hosts_of:
            self._hosts_of[group] = self._find_hosts(group)
        return self._hosts_of[group]

    def _find_hosts(self, group: str) -> list[str]:
        if group == "all":
            return list(self.inv.hosts)
        members: set[str] = set()
        seen: set[str] = set()
        todo = [group]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            g = self.inv.groups[name]
            members.update(g.hosts)
            todo.extend(g.children)
        return [h for h in self.inv.hosts if h in members]

    def host_vars(self, host: str) -> dict[str, _Var]:
        if host not in self._host_vars:
            self._host_vars[host] = self._merge_vars(host)
        return self._host_vars[host]

    def _merge_vars(self, host: str) -> dict[str, _Var]:
        merged: dict[str, _Var] = {}
        for name in sorted(self.groups_of(host), key=lambda n: (self.depth[n], n)):
            merged.update(self.inv.groups[name].vars)
        merged.update(self.inv.hosts[host].vars)
        return merged


def _first(values: dict[str, _Var], names: tuple[str, ...]) -> _Var | None:
    for name in names:
        if name in values:
            return values[name]
    return None


def _text(var: _Var | None) -> str | None:
    if var is None:
        return None
    return var.value.strip() if isinstance(var.value, str) else str(var.value)


# ---------------------------------------------------------------------------
# Mapping


@dataclass
class _MeshNode:
    name: str
    role: str
    line: int = 0  # the inventory line that first lists the host
    address: str | None = None
    ssh: dict[str, Any] = field(default_factory=dict)
    listener: dict[str, Any] = field(default_factory=dict)
    peers: list[str] = field(default_factory=list)
    instance_groups: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    @property
    def managed(self) -> bool:
        return self.role in ("execution", "hop")


def _port(inv: _Inventory, var: _Var, what: str) -> int:
    text = _text(var) or ""
    # ASCII digits only: int() also reads "２７１９９" and fails on "²".
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 65535):
        raise inv.error(var.line, f"{what} must be a port number (1-65535), got {_q(text)}")
    return int(text)


def _address(inv: _Inventory, values: dict[str, _Var], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` set, checked: peers dial it and ssh connects to it."""
    for name in names:
        if name in values:
            text = _text(values[name])
            if not text or not valid_address(text):
                raise inv.error(values[name].line, f"{name} {_q(text)} is not a hostname or IP address")
            return text
    return None


def _bool(inv: _Inventory, var: _Var, what: str) -> bool:
    text = (_text(var) or "").lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise inv.error(var.line, f"{what} must be true or false, got {_q(text)}")


def _ssh_values(inv: _Inventory, values: dict[str, _Var]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, names in SSH_VARS.items():
        var = _first(values, names)
        if var is None:
            continue
        if key == "port":
            out[key] = _port(inv, var, names[0])
        elif key == "become":
            out[key] = _bool(inv, var, names[0])
        elif key == "user":
            user = _text(var) or ""
            if not valid_user(user):
                name = next(n for n in names if n in values)
                raise inv.error(var.line, f"{name} {_q(user)} is not a user name ({USER_GRAMMAR})")
            out[key] = user
        else:
            out[key] = _text(var)
    return out


def _listener_values(inv: _Inventory, values: dict[str, _Var]) -> dict[str, Any]:
    out: dict[str, Any] = {"port": DEFAULT_LISTENER_PORT, "protocol": "tcp"}
    if (var := values.get("receptor_listener_port")) is not None:
        out["port"] = _port(inv, var, "receptor_listener_port")
    if (var := values.get("receptor_listener_protocol")) is not None:
        proto = (_text(var) or "").lower()
        if proto not in ("tcp", "ws"):
            raise inv.error(var.line, f"receptor_listener_protocol {_q(proto)} is not supported "
                            "(meshctl supports tcp and ws)")
        out["protocol"] = proto
    return out


def _jump_spec(args: list[str]) -> str | None:
    """The value of ``-J SPEC``, ``-JSPEC``, ``-o ProxyJump=SPEC`` or ``-oProxyJump SPEC``."""
    for i, arg in enumerate(args):
        following = args[i + 1] if i + 1 < len(args) else ""
        if arg.startswith("-J"):
            return arg[2:] or following or None
        if arg.startswith("-o"):
            option = arg[2:] or following
            key, _, value = option.replace(" ", "=", 1).partition("=")
            if key.strip().lower() == "proxyjump" and value.strip():
                return value.strip()
    return None


def _jump_host(values: dict[str, _Var]) -> tuple[str, _Var] | None:
    """The first jump host named in ``ansible_ssh_common_args``/``_extra_args``, as a
    bare host name (the ``user@`` and ``:port`` are the jump node's own ssh settings)."""
    for name in JUMP_VARS:
        var = values.get(name)
        if var is None or not isinstance(var.value, str):
            continue
        try:
            spec = _jump_spec(shlex.split(var.value))
        except ValueError:  # unbalanced quotes: ssh would fail too, nothing to import
            continue
        if spec is None:
            continue
        host = spec.split(",", 1)[0].rpartition("@")[2]
        if host.startswith("["):  # [v6addr]:port
            host = host[1:].partition("]")[0]
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        return host, var
    return None


def _peer_names(var: _Var) -> list[str]:
    if isinstance(var.value, list):
        return [str(v).strip() for v in var.value if str(v).strip()]
    return [p.strip() for p in str(var.value).split(",") if p.strip()]


def _sanitize_mesh_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem)
    name = re.sub(r"^[^A-Za-z0-9]+", "", name)[:63].rstrip("-.")
    return name or "mesh"


@dataclass
class Converted:
    """mesh.yml text and, per line of it, the inventory line it came from (0: none)."""

    text: str
    file: str
    lines: list[int]

    def check(self, plugins: Any = None) -> None:
        """Validate the text as a topology; an error names the inventory's own line
        (``FILE:LINE: message``), not a line of the converted text."""
        from meshctl.core.topology import parse_topology

        try:
            parse_topology(self.text, self.file, plugins)
        except TopologyError as exc:
            errors = [d for d in exc.diagnostics if d.severity == "error"]
            first = errors[0]
            line = self.lines[first.line - 1] if 0 < first.line <= len(self.lines) else 0
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            where = f"{self.file}:{line}" if line else self.file
            raise UsageError(f"{where}: {first.message}{more}") from None


def aap_inventory_to_yaml(path: str | Path) -> str:
    """:func:`aap_inventory_convert`'s text."""
    return aap_inventory_convert(path).text


def aap_inventory_convert(path: str | Path) -> Converted:
    """Convert an AAP installer INI inventory into mesh.yml text.

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
    inv = _parse_ini(text, file)
    res = _Resolver(inv)
    nodes, default_ssh = _build_nodes(inv, res)
    if not nodes:
        raise UsageError(f"{file}: no mesh nodes: no host is in [{CONTROLLER_GROUP}] "
                         f"or [{EXECUTION_GROUP}]")
    text, lines = _emit(inv, nodes, default_ssh, p.stem)
    return Converted(text, file, lines)


def _node_role(inv: _Inventory, res: _Resolver, host: _Host) -> str | None:
    groups = res.groups_of(host.name)
    installer = [g for g in NODE_TYPES if g in groups]
    if not installer:
        return None
    if len(installer) > 1:
        raise inv.error(host.line, f"host {_q(host.name)} is in both [{CONTROLLER_GROUP}] and "
                        f"[{EXECUTION_GROUP}]; a node has one type")
    allowed = NODE_TYPES[installer[0]]
    var = _first(res.host_vars(host.name), NODE_TYPE_VARS)
    if var is None:
        return allowed[0]
    node_type = (_text(var) or "").lower()
    if node_type not in allowed:
        raise inv.error(var.line, f"unknown node_type {_q(node_type)} for host {_q(host.name)} "
                        f"in [{installer[0]}] (expected {' or '.join(allowed)})")
    return node_type


def _build_nodes(inv: _Inventory, res: _Resolver) -> tuple[list[_MeshNode], dict[str, Any]]:
    """The mesh nodes in inventory order, and the ``defaults.ssh`` to emit."""
    all_vars = inv.groups["all"].vars
    default_listener = _listener_values(inv, all_vars)
    nodes: dict[str, _MeshNode] = {}
    ssh_of: dict[str, dict[str, Any]] = {}
    for host in inv.hosts.values():
        role = _node_role(inv, res, host)
        if role is None:
            continue
        if not _NODE_ID_RE.fullmatch(host.name):
            raise inv.error(host.line, f"host name {_q(host.name)} is not a valid receptor node id "
                            "(letters, digits, '.', '_', '@', '-')")
        values = res.host_vars(host.name)
        node = nodes[host.name] = _MeshNode(host.name, role, host.line)
        ansible_host = _address(inv, values, HOST_VARS)
        address = _address(inv, values, ("routable_hostname",)) or ansible_host or host.name
        if address != host.name:
            node.address = address
        listener = _listener_values(inv, values)
        node.listener = {k: v for k, v in listener.items() if default_listener.get(k) != v}
        if node.managed:
            ssh_of[host.name] = _ssh_values(inv, values)
            if ansible_host and ansible_host != address:
                node.ssh["host"] = ansible_host
    default_ssh = _common_ssh(_ssh_values(inv, all_vars), list(ssh_of.values()))
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


def _add_peers(inv: _Inventory, res: _Resolver, nodes: dict[str, _MeshNode]) -> None:
    edges: set[tuple[str, str]] = set()
    for node in nodes.values():
        var = _first(res.host_vars(node.name), PEERS_VARS)
        if var is None:
            continue
        listed = set(node.peers)
        for name in _peer_names(var):
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


def _add_jump_hosts(inv: _Inventory, res: _Resolver, nodes: dict[str, _MeshNode]) -> None:
    known: dict[str, str] = {}
    for node in nodes.values():
        ansible_host = _text(_first(res.host_vars(node.name), HOST_VARS))
        for alias in (node.name, node.address, ansible_host):
            if alias:
                known.setdefault(alias, node.name)
    for node in nodes.values():
        if not node.managed:
            continue
        found = _jump_host(res.host_vars(node.name))
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


def _add_instance_groups(inv: _Inventory, res: _Resolver, nodes: dict[str, _MeshNode]) -> None:
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


# ---------------------------------------------------------------------------
# YAML output (hand-formatted: block style, comments, stable key order)


_PLAIN_RE = re.compile(r"^[A-Za-z0-9_./~][A-Za-z0-9_./~@-]*$")
_RESOLVER = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


@lru_cache(maxsize=8192)
def _scalar(value: str | int | bool) -> str:
    # Most values are host names: plain when YAML would read them back as the same
    # string (not "yes", "null", "1e3"...). safe_dump is slow (ms) for 5,000 nodes.
    if (isinstance(value, str) and _PLAIN_RE.match(value)
            and _RESOLVER.resolve(yaml.ScalarNode, value, (True, False)) == _STR_TAG):
        return value
    # Otherwise PyYAML decides the quoting ("yes", "27199" as text, "a: b"...).
    dumped = yaml.safe_dump(value, default_flow_style=True, width=10**9)
    return dumped.removesuffix("\n...\n").removesuffix("\n")


def _flow_list(items: list[str]) -> str:
    return "[" + ", ".join(_scalar(i) for i in items) + "]"


def _list_lines(key: str, items: list[str], indent: str) -> list[str]:
    flow = f"{indent}{key}: {_flow_list(items)}"
    if len(flow) <= _FLOW_WIDTH:
        return [flow]
    return [f"{indent}{key}:"] + [f"{indent}  - {_scalar(i)}" for i in items]


def _map_lines(key: str, values: dict[str, Any], indent: str) -> list[str]:
    return [f"{indent}{key}:"] + [f"{indent}  {k}: {_scalar(v)}" for k, v in values.items()]


def _comment_lines(text: str, indent: str = "") -> list[str]:
    words, lines, cur = text.split(), [], ""
    for word in words:
        if cur and len(indent) + len(cur) + len(word) + 3 > _FLOW_WIDTH:
            lines.append(cur)
            cur = word
        else:
            cur = f"{cur} {word}" if cur else word
    lines.append(cur)
    return [f"{indent}# {line}" for line in lines]


def _emit(inv: _Inventory, nodes: list[_MeshNode], default_ssh: dict[str, Any],
          stem: str) -> tuple[str, list[int]]:
    all_vars = inv.groups["all"].vars
    mesh_var = all_vars.get(MESH_NAME_VAR)
    if mesh_var is not None:
        mesh = _text(mesh_var) or ""
        if not _MESH_NAME_RE.fullmatch(mesh):
            raise inv.error(mesh_var.line, f"{MESH_NAME_VAR} {_q(mesh)} must be letters, digits, "
                            "'.', '_' or '-' (max 63)")
    else:
        mesh = _sanitize_mesh_name(stem)

    # Not wrapped: a path cut in two is hard to copy. A newline would end the comment.
    source = inv.file.replace("\r", "\\r").replace("\n", "\\n")
    out = [f"# Generated by meshctl from the AAP installer inventory {source}"]
    src: list[int] = []  # src[i]: the inventory line out[i] came from

    def mark(line: int) -> None:
        src.extend([line] * (len(out) - len(src)))

    skipped = [h for h in inv.hosts if h not in {n.name for n in nodes}]
    if skipped:
        out += _comment_lines(f"Not mesh nodes (not in [{CONTROLLER_GROUP}] or "
                              f"[{EXECUTION_GROUP}]): {', '.join(skipped)}.")
    ignored = sorted({k for g in inv.groups.values() for k in g.vars if k in IGNORED_RECEPTOR_VARS}
                     | {k for h in inv.hosts.values() for k in h.vars if k in IGNORED_RECEPTOR_VARS})
    if ignored:
        out += _comment_lines(f"Installer settings with no mesh.yml equivalent, not imported: "
                              f"{', '.join(ignored)}.")
    mark(0)
    out.append(f"mesh: {_scalar(mesh)}")
    mark(mesh_var.line if mesh_var is not None else 0)

    out.append("defaults:")
    if default_ssh:
        out += _map_lines("ssh", default_ssh, "  ")
    out += _map_lines("listener", _listener_values(inv, all_vars), "  ")

    receptor: dict[str, Any] = {}
    if (var := all_vars.get("receptor_log_level")) is not None:
        level = (_text(var) or "").lower()
        if level not in ("error", "warning", "info", "debug"):
            raise inv.error(var.line, f"receptor_log_level {_q(level)} must be error, warning, "
                            "info or debug")
        receptor["log_level"] = level
    if (var := all_vars.get("receptor_mintls13")) is not None:
        receptor["mintls13"] = _bool(inv, var, "receptor_mintls13")
    if receptor:
        out += _map_lines("receptor", receptor, "")

    mark(0)
    out.append("nodes:")
    mark(0)
    for node in nodes:
        out.append(f"  - name: {_scalar(node.name)}")
        ind = "    "
        out.append(f"{ind}role: {node.role}")
        if not node.managed:
            out.append(f"{ind}managed: false")
        if node.address:
            out.append(f"{ind}address: {_scalar(node.address)}")
        if node.listener:
            out += _map_lines("listener", node.listener, ind)
        if node.peers:
            out += _list_lines("peers", node.peers, ind)
        for comment in node.comments:
            out += _comment_lines(comment, ind)
        if node.ssh:
            out += _map_lines("ssh", node.ssh, ind)
        if node.instance_groups:
            out += _list_lines("instance_groups", node.instance_groups, ind)
        mark(node.line)
    return "\n".join(out) + "\n", src


__all__ = ["Converted", "aap_inventory_convert", "aap_inventory_to_yaml"]
