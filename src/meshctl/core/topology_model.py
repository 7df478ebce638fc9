"""The mesh.yml models and the resolved topology (nodes with defaults applied).

Parsing lives in :mod:`meshctl.core.topology_load`, the cross-field rules in
:mod:`meshctl.core.topology_rules`; :mod:`meshctl.core.topology` gathers them.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from meshctl.core import yamlpos
from meshctl.core.errors import Diagnostic, shorten
from meshctl.core.types import Role

Port = Annotated[int, Field(ge=1, le=65535)]

# The node id is the certificate's CN, which X.509 caps at 64 characters.
# Used with fullmatch: "$" alone would let a trailing newline through.
NODE_ID_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._@-]{0,63})")
_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
MESH_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


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
    _roles: dict[str, Role] | None = field(default=None, repr=False)

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

    def role(self, name: str) -> Role:
        """The registered :class:`Role` called ``name`` (see :func:`role_named`)."""
        if self._roles is None:
            self._roles = self.plugins.roles() if self.plugins is not None else {}
        return self._roles.get(name) or unregistered_role(name)

    def role_of(self, node: Node) -> Role:
        """The :class:`Role` of ``node``: ask its attributes, never its name."""
        return self.role(node.role)

    def tool(self, name: str) -> str:
        """Where a plugin installed program ``name`` on the nodes (a :class:`NodeTool`);
        the bare name, for the node's PATH, when no plugin registers it."""
        tools = self.plugins.node_tools() if self.plugins is not None else {}
        return tools[name].path if name in tools else name

    def tool_directories(self) -> list[str]:
        """The trees registered node tools live in, in registration order, once each."""
        tools = self.plugins.node_tools() if self.plugins is not None else {}
        return list(dict.fromkeys(t.directory for t in tools.values() if t.directory))

    def inbound_peers(self, node: Node) -> list[Node]:
        return [n for n in self.nodes if node.name in n.peers
                or (node.peers_from_control_nodes and n.managed and self.role_of(n).controller)]

    def dials(self, node: Node) -> list[Node]:
        """The nodes ``node`` connects to: its peers and, for a controller, every
        node flagged ``peers_from_control_nodes`` (as AWX's control plane does)."""
        out = [self._by_name[p] for p in node.peers if p in self._by_name]
        if self.role_of(node).controller:
            out += [n for n in self.nodes if n.peers_from_control_nodes and n.name not in node.peers]
        return out


def unregistered_role(name: str) -> Role:
    """What a role no plugin registered counts as (no plugin manager, or a name
    validation refuses anyway): provisionable, running no work."""
    return Role(name, runs_work=False, provisionable=True)


def role_named(plugins: Any, name: str) -> Role:
    """The Role ``name`` from ``plugins`` (a plugin manager, or None)."""
    roles = plugins.roles() if plugins is not None else {}
    return roles.get(name) or unregistered_role(name)


def base_dir(topo: Topology) -> Path:
    """Relative paths in mesh.yml are relative to the file itself."""
    return Path(topo.file).resolve().parent


def resolve_path(topo: Topology, value: str) -> Path:
    """A path from mesh.yml: ``~`` expanded, relative to the topology file."""
    p = Path(os.path.expanduser(value))
    return p if p.is_absolute() else base_dir(topo) / p


STATE_ENV = "MESHCTL_STATE_DIR"


def state_dir(topo: Topology) -> Path:
    """Where plugins keep this mesh's state on the controller (a CA, generated keys):
    ``$MESHCTL_STATE_DIR/<mesh>``, else ``$XDG_DATA_HOME/meshctl/<mesh>``, else
    ``~/.local/share/meshctl/<mesh>``. Plugins share it: name files so that they
    cannot collide with another plugin's."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV]) / topo.mesh
    data = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
    return Path(data) / "meshctl" / topo.mesh


@functools.lru_cache(maxsize=4096)
def valid_address(value: str) -> bool:
    """A hostname (RFC 1123), an IPv4 or an IPv6 address."""
    # Cached: a big mesh asks about the same few peer and jump-host names per node.
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


