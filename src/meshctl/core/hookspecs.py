"""Every hook meshctl calls, gathered: the plugin manager adds its specs from here.

Implement hooks in a module or class decorated with :data:`hookimpl` and expose it
through the ``meshctl`` entry-point group (see ``docs/plugins.md``). Hooks are
called with keyword arguments; an implementation may accept any subset of them.
Registration hooks receive a ``register`` callback: call it once per thing you
provide. The core rejects duplicate names and names both plugins in the error.
"""

from meshctl.core import hookspecs_declare, hookspecs_run
from meshctl.core.hookmarkers import PROJECT, hookimpl, hookspec
from meshctl.core.hookspecs_declare import (
    meshctl_register_cert_backends,
    meshctl_register_checks,
    meshctl_register_importers,
    meshctl_register_node_tools,
    meshctl_register_os_families,
    meshctl_register_roles,
    meshctl_register_topology_sections,
    meshctl_validate_topology,
)
from meshctl.core.hookspecs_run import (
    meshctl_after_provision,
    meshctl_before_provision,
    meshctl_before_remove,
    meshctl_cli_options,
    meshctl_install_bundle,
    meshctl_known_secrets,
    meshctl_node_operations,
    meshctl_receptor_config,
    meshctl_register_commands,
    meshctl_registry_credentials,
    meshctl_registry_files,
    meshctl_removal_operations,
    meshctl_status_view,
)

#: The spec modules in reference order (docs/plugins.md lists them so).
SPEC_MODULES = (hookspecs_declare, hookspecs_run)

__all__ = ["PROJECT", "SPEC_MODULES", "hookimpl", "hookspec",
           "meshctl_register_topology_sections",
           "meshctl_validate_topology",
           "meshctl_register_roles",
           "meshctl_register_node_tools",
           "meshctl_register_os_families",
           "meshctl_register_cert_backends",
           "meshctl_register_checks",
           "meshctl_register_importers",
           "meshctl_receptor_config",
           "meshctl_node_operations",
           "meshctl_removal_operations",
           "meshctl_registry_files",
           "meshctl_known_secrets",
           "meshctl_registry_credentials",
           "meshctl_install_bundle",
           "meshctl_before_provision",
           "meshctl_cli_options",
           "meshctl_register_commands",
           "meshctl_after_provision",
           "meshctl_status_view",
           "meshctl_before_remove",
]
