"""The public surface for plugins: import what a plugin needs from here.

Everything a plugin needs to register roles, OS families, certificate backends,
topology sections, checks, import formats and commands, and to describe what a
node should look like as operations over facts. Three modules are public as
namespaces too: ``facts`` (fact constructors), ``receptor`` (receptor.conf
paths and settings) and ``pki`` (certificates). Names not reachable from here
(and ``meshctl.testing``) are internal and may change in any release; the
built-in plugins and both examples import nothing else, and tests/test_walls.py
holds them to it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshctl.core import facts, pki, receptor
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
from meshctl.core.files import (
    SECRET_LIMIT,
    atomic_write,
    read_bytes,
    read_text,
    secret_file_problem,
    shown,
)
from meshctl.core.hookspecs import hookimpl
from meshctl.core.hostcache import cache_root
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
from meshctl.core.oskit import (
    FirewallRule,
    FirewallSection,
    Notice,
    firewall_settings,
    parse_kv,
    runs_work,
    state_fact,
)
from meshctl.core.pki import (
    KEY_TYPES,
    NODEID_OID,
    check_csr,
    generate_key,
    inspect_cert,
    key_to_pem,
    load_cert,
    load_certs,
    load_csr,
    load_private_key,
    node_general_names,
    public_key_pem,
    sign_node_cert,
    spki_der,
    work_signing_keypair,
)
from meshctl.core.pki.checks import issued_cert_problems
from meshctl.core.pki.keys import utc
from meshctl.core.receptor import Octal, ReceptorSection, receptor_settings
from meshctl.core.results import StatusView
from meshctl.core.secrets import read_secret, report_secret_sources
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
    backend_problems,
)
from meshctl.core.writers import toml_comment, toml_table, yaml_scalar

if TYPE_CHECKING:
    from meshctl.core.cli import RunOptions
    from meshctl.core.command import CommandRun, mesh_command
    from meshctl.core.output import (
        print_checks,
        print_json,
        print_plan,
        print_summary,
        summary_counts,
    )

# The command and output helpers bring click and rich: loaded on first use, so
# planning (and a plugin module that imports only operations) stays light.
_LAZY = {
    "RunOptions": "meshctl.core.cli",
    "CommandRun": "meshctl.core.command",
    "mesh_command": "meshctl.core.command",
    "print_checks": "meshctl.core.output",
    "print_json": "meshctl.core.output",
    "print_plan": "meshctl.core.output",
    "print_summary": "meshctl.core.output",
    "summary_counts": "meshctl.core.output",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'meshctl.plugin' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Absent",
    "atomic_write",
    "attr_fixes",
    "backend_problems",
    "BackendContext",
    "cache_root",
    "backup_commands",
    "base_dir",
    "CertBackend",
    "CertificateBackend",
    "Change",
    "Check",
    "check_csr",
    "CheckResult",
    "Cmd",
    "Command",
    "command_fact",
    "CommandRun",
    "decode_content",
    "DEFAULT_LISTENER_PORT",
    "Directory",
    "EngineSettings",
    "exists_fact",
    "Fact",
    "facts",
    "File",
    "file_fact",
    "firewall_settings",
    "FirewallRule",
    "FirewallSection",
    "generate_key",
    "glob_fact",
    "Group",
    "group_fact",
    "GuardedService",
    "hookimpl",
    "Importer",
    "inspect_cert",
    "issued_cert_problems",
    "key_to_pem",
    "KEY_TYPES",
    "load_cert",
    "load_certs",
    "load_csr",
    "load_private_key",
    "mesh_command",
    "MESH_NAME_RE",
    "MeshctlError",
    "NoChange",
    "Node",
    "node_general_names",
    "NODE_ID_RE",
    "NodeContext",
    "NODEID_OID",
    "NodeTool",
    "Notice",
    "Octal",
    "Operation",
    "OperationError",
    "OSFamily",
    "OSRelease",
    "package_fact",
    "Packages",
    "parse_kv",
    "pki",
    "PlanResult",
    "PluginError",
    "print_checks",
    "print_json",
    "print_plan",
    "print_summary",
    "public_key_pem",
    "read_bytes",
    "read_text",
    "receptor",
    "read_secret",
    "receptor_settings",
    "report_secret_sources",
    "ReceptorSection",
    "RegistryCredentials",
    "resolve_path",
    "Role",
    "RunOptions",
    "runs_work",
    "secret_file_problem",
    "SECRET_LIMIT",
    "Service",
    "service_fact",
    "service_state_fact",
    "shorten",
    "shown",
    "StatusView",
    "sign_node_cert",
    "spki_der",
    "state_dir",
    "state_fact",
    "StrictModel",
    "summary_counts",
    "toml_comment",
    "toml_table",
    "Topology",
    "TopologySection",
    "Upload",
    "UsageError",
    "User",
    "user_fact",
    "USER_GRAMMAR",
    "utc",
    "valid_address",
    "valid_user",
    "work_signing_keypair",
    "yaml_scalar",
]
