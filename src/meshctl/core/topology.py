"""The mesh.yml model, its validation rules and the resolved topology.

Validation happens before any host is touched and reports every problem at once,
each located as FILE:LINE:COL. Plugins add their own sections (validated by their
pydantic models) and their own cross-field rules.

This module gathers the public names of :mod:`~meshctl.core.topology_model` (models,
``Node``, ``Topology``, paths), :mod:`~meshctl.core.topology_load` (parsing) and
:mod:`~meshctl.core.topology_rules` (the core's rules): import them from here.
"""

from __future__ import annotations

from meshctl.core.errors import TopologyError
from meshctl.core.topology_load import format_path, load_topology, parse_topology
from meshctl.core.topology_model import (
    DEFAULT_LISTENER_PORT,
    MESH_NAME_RE,
    NODE_ID_RE,
    STATE_ENV,
    USER_GRAMMAR,
    DefaultsBase,
    Listener,
    MeshBase,
    Node,
    NodeBase,
    Port,
    SSHSettings,
    StrictModel,
    Topology,
    base_dir,
    resolve_path,
    role_named,
    state_dir,
    unregistered_role,
    valid_address,
    valid_user,
)
from meshctl.core.topology_rules import check_rules

__all__ = [
    "DEFAULT_LISTENER_PORT",
    "MESH_NAME_RE",
    "NODE_ID_RE",
    "STATE_ENV",
    "USER_GRAMMAR",
    "DefaultsBase",
    "Listener",
    "MeshBase",
    "Node",
    "NodeBase",
    "Port",
    "SSHSettings",
    "StrictModel",
    "Topology",
    "TopologyError",
    "base_dir",
    "check_rules",
    "format_path",
    "load_topology",
    "parse_topology",
    "resolve_path",
    "role_named",
    "state_dir",
    "unregistered_role",
    "valid_address",
    "valid_user",
]
