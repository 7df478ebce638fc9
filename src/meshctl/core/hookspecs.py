"""Every hook meshctl calls. This module is the plugin author's reference.

Implement hooks in a module or class decorated with :data:`hookimpl` and expose it
through the ``meshctl`` entry-point group (see ``docs/plugins.md``). Hooks are
called with keyword arguments; an implementation may accept any subset of them.
Registration hooks receive a ``register`` callback: call it once per thing you
provide. The core rejects duplicate names and names both plugins in the error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    import click

    from meshctl.core.ops import Operation
    from meshctl.core.topology import Topology
    from meshctl.core.types import (
        CertBackend,
        Check,
        Importer,
        NodeContext,
        NodeTool,
        OSFamily,
        RegistryCredentials,
        Role,
        TopologySection,
    )

PROJECT = "meshctl"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def meshctl_register_topology_sections(register: Callable[[TopologySection], None]) -> None:
    """Contribute validated sections to mesh.yml.

    Call ``register(TopologySection(name, model, scope))`` for each section. ``model``
    is a pydantic model (use ``model_config = ConfigDict(extra="forbid")`` so typos are
    reported). ``scope="mesh"`` adds a top-level key; ``scope="node"`` adds a key to
    every node entry and to ``defaults``. Validation errors in your section are
    reported with file:line:col like the core's own.
    """


@hookspec
def meshctl_validate_topology(topology: Topology, report: Callable[..., None]) -> None:
    """Check cross-field rules of a parsed topology that a model cannot express.

    Call ``report(path, message, severity="error")`` for each problem, where
    ``path`` is a tuple locating the offending value in the file, e.g.
    ``("nodes", 2, "peers", 0)``. All reports are shown together; any error makes
    validation fail before a host is touched.
    """


@hookspec
def meshctl_register_roles(register: Callable[[Role], None]) -> None:
    """Declare node roles (``role:`` in mesh.yml), e.g. ``execution`` or ``hop``.

    A role's provisioning steps come from :func:`meshctl_node_operations` and its
    receptor configuration from :func:`meshctl_receptor_config`.
    """


@hookspec
def meshctl_register_os_families(register: Callable[[OSFamily], None]) -> None:
    """Declare an OS family: its detection function and package manager.

    OS detection: the core reads ``/etc/os-release`` on the host and asks each
    registered family's ``detect(os_release)``; exactly one must accept, else the
    host fails with an error naming its OS and the families that exist.
    """


@hookspec
def meshctl_node_operations(ctx: NodeContext) -> Iterable[Operation] | None:
    """Return the operations one node needs (OS provisioning steps, role steps...).

    Called once per provisioned node after OS detection; every plugin contributes
    and the lists are concatenated in plugin registration order (built-in plugins
    first), except that service operations run last, after every file they may
    react to. OS plugins check ``ctx.os_family.name``; role plugins check
    ``ctx.node.role``. Return ``None`` or an empty list when not concerned.
    Operations must be idempotent: the core gathers their facts and only runs
    what differs.
    """


@hookspec
def meshctl_removal_operations(ctx: NodeContext, purge_user: bool) -> Iterable[Operation] | None:
    """Return the operations that undo what this plugin laid down on a node, for
    ``meshctl remove NODE``. They must be idempotent (removing what is already gone
    is "no change") and remove only what meshctl created. ``purge_user`` asks to
    remove the service user and its data as well. Stopping services comes first:
    the core runs service operations before the others here.
    """


@hookspec
def meshctl_receptor_config(ctx: NodeContext) -> Iterable[dict[str, Any]] | None:
    """Return receptor.conf sections this plugin adds for a node.

    Each item is one list entry of receptor's v1 configuration format, e.g.
    ``{"work-command": {...}}``. Called before :func:`meshctl_node_operations`;
    the combined list is available to operations as ``ctx.receptor_config``.
    """
@hookspec
def meshctl_register_node_tools(register: Callable[[NodeTool], None]) -> None:
    """Declare programs your plugin installs on nodes that other plugins run by path.

    Call ``register(NodeTool(name, path, directory))`` once per program. Other
    plugins ask ``topology.tool(name)`` and so never import yours; without a plugin
    that registers it the answer is the bare name, found on the node's PATH.
    ``directory`` is the tree your plugin lays down for it (OS plugins restore its
    SELinux labels). The built-in python_env registers ``receptorctl``,
    ``ansible-runner`` and ``python`` from meshctl's virtualenv. Tool names are
    named registrations: two plugins cannot register one name.

    Example::

        @hookimpl
        def meshctl_register_node_tools(register):
            register(NodeTool("nodectl", "/opt/acme/bin/nodectl", "/opt/acme",
                              description="Acme's node agent CLI"))

    Since meshctl 0.1.
    """




@hookspec
def meshctl_register_cert_backends(register: Callable[[CertBackend], None]) -> None:
    """Declare certificate backends, chosen by ``certificates.backend`` in mesh.yml.

    ``CertBackend(name, factory, options_model)``: the factory builds the backend
    from its validated options. Two plugins registering one name is an error.
    """


@hookspec
def meshctl_known_secrets(topology: Topology, node: Any) -> list[str] | None:
    """Secret strings of this node's configuration (a registry password, its
    auth.json form) that output about the node must never contain: ``diagnose``
    redacts every one of them. Return a list, or ``None``.

    Example::

        @hookimpl
        def meshctl_known_secrets(topology, node):
            return [my_token(topology)]
    """


@hookspec(firstresult=True)
def meshctl_registry_credentials(
    registry: Any, node: Any, topology: Topology
) -> RegistryCredentials | None:
    """Supply credentials for a container registry (first answer wins).

    ``registry`` is the mesh.yml registry entry, ``node`` the node being
    provisioned, ``topology`` the mesh (relative paths in it are relative to
    ``topology.file``). Implementations may leave out arguments they do not use. Return
    :class:`~meshctl.core.types.RegistryCredentials`, or ``None`` to let the next
    plugin answer. Use this to read passwords from a secret store. This hook is
    ``firstresult``: exactly one plugin answers for a given registry.
    """


@hookspec
def meshctl_registry_files(ctx: NodeContext) -> Iterable[Operation] | None:
    """Return operations that write registry files on a node (auth.json,
    certs.d CA files, registries.conf.d drop-ins). Secrets go in file operations
    marked ``secret=True`` so plans mask them."""


@hookspec
def meshctl_register_checks(register: Callable[[Check], None]) -> None:
    """Declare verification checks run by ``meshctl verify`` against live nodes."""


@hookspec
def meshctl_register_importers(register: Callable[[Importer], None]) -> None:
    """Add a format to ``meshctl import``: ``register(Importer(name, convert=...))``.

    ``convert(source)`` reads the file the user named and returns mesh.yml text, or
    ``(text, lines)`` where ``lines[i]`` is the source line that text line ``i + 1``
    came from (0: none). meshctl adds ``meshctl import NAME SOURCE [--out FILE]``,
    validates the text with the loaded plugins before printing or writing anything,
    and names the source's own line in an error when ``lines`` says it. Raise
    ``UsageError("FILE:LINE: message")`` for a problem in the source. A format that
    needs its own arguments or output registers ``command=`` (a click command)
    instead. ``meshctl import --help`` lists every format with its plugin; format
    names are named registrations: two plugins cannot register one name. Write
    values with ``yaml_scalar``, never by hand: the source is outside input.

    Example::

        from meshctl.plugin import Importer, UsageError, read_text, yaml_scalar


        def convert(source):
            hosts = read_text(source, "host list", 1 << 20).split()
            if not hosts:
                raise UsageError(f"{source}: no host names")
            lines = ["mesh: hosts", "nodes:"]
            for host in hosts:
                lines += [f"  - name: {yaml_scalar(host)}", "    role: execution",
                          "    listener: {port: 27199}"]
            return "\\n".join(lines) + "\\n"


        @hookimpl
        def meshctl_register_importers(register):
            register(Importer("host-list", convert=convert, description="One host name a line."))

    Since meshctl 0.1.
    """


@hookspec
def meshctl_cli_options(register: Callable[[str, click.Option], None]) -> None:
    """Add options to meshctl commands: ``register("provision", click.Option([...]))``.

    The parsed values reach plugins through ``NodeContext.options`` under the
    option's ``name``.
    """


@hookspec
def meshctl_register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``meshctl`` click group."""
