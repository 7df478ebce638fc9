"""The public surface for plugins: import what a plugin needs from here.

Everything a plugin needs to register roles, OS families, certificate backends,
topology sections, checks and commands, and to describe what a node should look
like as operations over facts. Names not exported here are internal and may change.
"""

from __future__ import annotations

from meshctl.core import receptor
from meshctl.core.cli import (
    RunOptions,
    State,
    file_option,
    load_topology_file,
    make_engine,
    output_option,
    run_options,
    select_nodes,
)
from meshctl.core.command import CommandRun, mesh_command
from meshctl.core.errors import MeshctlError, PluginError, UsageError, shorten
from meshctl.core.facts import (
    Fact,
    command_fact,
    decode_content,
    exists_fact,
    file_fact,
    glob_fact,
    group_fact,
    package_fact,
    service_fact,
    service_state_fact,
    user_fact,
)
from meshctl.core.files import SECRET_LIMIT, read_bytes, read_text, secret_file_problem
from meshctl.core.hookspecs import hookimpl
from meshctl.core.ops import (
    Absent,
    Change,
    Cmd,
    Command,
    Directory,
    File,
    Group,
    GuardedService,
    NoChange,
    Operation,
    OperationError,
    Packages,
    PlanResult,
    Service,
    Upload,
    User,
    attr_fixes,
    backup_commands,
)

# Certificates: what a backend needs to put the Receptor NodeID right (docs/certificate-backends.md).
from meshctl.core.pki import (
    KEY_TYPES,
    NODEID_OID,
    check_csr,
    generate_key,
    inspect_cert,
    key_to_pem,
    load_certs,
    load_csr,
    load_private_key,
    node_general_names,
    public_key_pem,
    sign_node_cert,
)
from meshctl.core.pki.checks import issued_cert_problems
from meshctl.core.receptor import ReceptorSection, receptor_settings
from meshctl.core.settings import EngineSettings
from meshctl.core.topology import (
    DEFAULT_LISTENER_PORT,
    MESH_NAME_RE,
    NODE_ID_RE,
    USER_GRAMMAR,
    Node,
    StrictModel,
    Topology,
    base_dir,
    resolve_path,
    state_dir,
    valid_address,
    valid_user,
)
from meshctl.core.types import (
    BackendContext,
    CertBackend,
    CertificateBackend,
    Check,
    CheckResult,
    Importer,
    NodeContext,
    NodeTool,
    OSFamily,
    OSRelease,
    RegistryCredentials,
    Role,
    TopologySection,
)
from meshctl.core.writers import toml_comment, toml_table, yaml_scalar

__all__ = [
    "KEY_TYPES", "NODEID_OID", "check_csr", "generate_key", "inspect_cert", "issued_cert_problems", "key_to_pem",
    "load_certs", "load_csr", "load_private_key", "node_general_names", "public_key_pem", "sign_node_cert",
    "CommandRun", "EngineSettings", "mesh_command",
    "Absent", "BackendContext", "CertBackend", "CertificateBackend", "Change", "Check", "CheckResult", "Cmd", "Command", "Directory", "Fact", "File",
    "Group", "GuardedService", "MeshctlError", "Node", "NoChange", "NodeContext", "OSFamily", "OSRelease",
    "Operation", "OperationError", "Packages", "PlanResult", "PluginError", "RegistryCredentials", "Role",
    "RunOptions", "Service", "State", "StrictModel", "Topology", "TopologySection", "Upload", "UsageError", "User",
    "attr_fixes", "backup_commands", "command_fact", "decode_content", "exists_fact", "file_fact", "file_option",
    "glob_fact", "group_fact", "hookimpl", "load_topology_file", "make_engine", "output_option", "package_fact",
    "ReceptorSection", "base_dir", "receptor", "receptor_settings", "resolve_path", "run_options", "select_nodes", "service_fact", "service_state_fact", "user_fact",
    "NodeTool", "SECRET_LIMIT", "read_bytes", "read_text", "secret_file_problem", "state_dir", "toml_comment",
    "toml_table", "valid_address",
    "DEFAULT_LISTENER_PORT", "Importer", "MESH_NAME_RE", "NODE_ID_RE", "shorten", "USER_GRAMMAR", "valid_user", "yaml_scalar",
]
