"""The hooks a run calls: per node (receptor.conf sections, operations, removal,
registry files, secrets to redact, registry credentials) and for the CLI
(options on plan/provision, whole commands)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from meshctl.core.hookmarkers import hookspec

if TYPE_CHECKING:
    import click

    from meshctl.core.ops import Operation
    from meshctl.core.results import StatusView
    from meshctl.core.topology import Topology
    from meshctl.core.types import (
        CheckResult,
        NodeContext,
        RegistryCredentials,
    )


@hookspec
def meshctl_receptor_config(ctx: NodeContext) -> Iterable[dict[str, Any]] | None:
    """Return receptor.conf sections for a node.

    Each item is one entry of the list in receptor's v1 configuration format, such as
    ``{"work-command": {...}}``; meshctl orders the sections as AWX's install bundle
    does and renders the file with its one YAML writer. The core calls this hook
    first and hands the combined answers to the operation hooks as
    ``ctx.receptor_config``; no hook sees another's answer before that.

    Example::

        @hookimpl
        def meshctl_receptor_config(ctx):
            if not ctx.topology.role_of(ctx.node).runs_work:
                return None
            return [{"work-command": {"worktype": "uptime", "command": "/usr/bin/uptime",
                                      "allowruntimeparams": False}}]

    Since meshctl 0.1.
    """


@hookspec
def meshctl_node_operations(ctx: NodeContext) -> Iterable[Operation] | None:
    """Return the operations one node needs: OS steps, role steps, your files.

    Called once per provisioned node after OS detection, with a read-only
    ``NodeContext``: ``ctx.node``, ``ctx.topology``, ``ctx.os_release``,
    ``ctx.os_family``, ``ctx.options`` (plugin CLI options) and
    ``ctx.receptor_config`` (every plugin's :func:`meshctl_receptor_config`). Return
    ``None`` or an empty list when the node does not concern you; ask
    ``ctx.topology.role_of(ctx.node)`` and ``ctx.os_family``, not names. Operations
    must be idempotent: the core gathers their facts and runs only what differs.

    Order is explicit: each operation has a ``phase``, one of ``first``, ``main``,
    ``late``, ``services``, ``last`` (``PHASES``). The core sorts a node's operations
    by phase, then by hook (node operations before registry files), then as plugins
    returned them in registration order (built-ins first). An operation that names no
    phase is in ``main``; a ``Service`` is in ``services``, after every file it may
    react to. ``tryfirst``/``trylast`` on this hook are refused: they would say
    nothing about order. Writing to ``ctx`` fails, naming your plugin: return what you
    make.

    Example::

        from meshctl.plugin import Command, Packages, hookimpl


        @hookimpl
        def meshctl_node_operations(ctx):
            if not ctx.topology.role_of(ctx.node).runs_work:
                return None
            name = "nfs-common" if ctx.os_family.package_manager == "apt" else "nfs-utils"
            return [Packages(names=[name]),
                    Command(command="systemctl restart nfs-client.target", only_when_notified=True,
                            phase="last")]

    Since meshctl 0.1.
    """


@hookspec
def meshctl_removal_operations(ctx: NodeContext, purge_user: bool) -> Iterable[Operation] | None:
    """Return the operations that undo what your plugin laid down on a node.

    ``meshctl remove NODE`` runs them after showing them as a plan. Use ``Absent`` for
    files and directories, ``Service(state="stopped", enabled=False)`` for units, and
    guarded ``Command``s for the rest, so a second ``remove`` reports no change.
    Remove only what meshctl created. ``purge_user`` is true with ``--purge-user``:
    only then remove the service user and its data. Phases order them as in
    :func:`meshctl_node_operations`, except that a ``Service`` defaults to ``first``
    here: units stop before their files go.

    Example::

        from meshctl.plugin import Absent, hookimpl


        @hookimpl
        def meshctl_removal_operations(ctx, purge_user):
            return [Absent(path="/etc/motd.d/meshctl")]

    Since meshctl 0.1.
    """


@hookspec
def meshctl_registry_files(ctx: NodeContext) -> Iterable[Operation] | None:
    """Return the operations that write container registry files on a node.

    ``auth.json``, CA files under ``/etc/containers/certs.d/``, ``registries.conf.d``
    drop-ins. They default to the ``late`` phase, after the node's other operations.
    Files that carry a secret must be marked ``secret=True``: plans mask them and their
    content travels on stdin, never on a command line.

    Example::

        from meshctl.plugin import File, hookimpl


        @hookimpl
        def meshctl_registry_files(ctx):
            if not ctx.topology.role_of(ctx.node).runs_work:
                return None
            return [File(path="/etc/containers/registries.conf.d/50-mirror.conf",
                         content='[[registry]]\\nlocation = "quay.io"\\n'
                                 '[[registry.mirror]]\\nlocation = "mirror.example.com"\\n',
                         category="registries")]

    Since meshctl 0.1.
    """


@hookspec
def meshctl_known_secrets(topology: Topology, node: Any) -> list[str] | None:
    """Secret strings of a node's configuration that output about it must never contain.

    ``meshctl diagnose`` redacts every one of them before it writes its archive. The
    built-in registry plugin answers with the node's registry passwords and their
    auth.json form; a plugin that brings its own secrets (a token, a key passphrase)
    lists them here, so core needs to know nothing about them. Return a list, or
    ``None``.

    Example::

        import os


        @hookimpl
        def meshctl_known_secrets(topology, node):
            return [os.environ.get("MESH_VAULT_TOKEN", "")]

    Since meshctl 0.1.
    """


@hookspec(firstresult=True)
def meshctl_registry_credentials(
    registry: Any, node: Any, topology: Topology
) -> RegistryCredentials | None:
    """Supply the credentials of a container registry for a node.

    ``registry`` is the registry's entry in mesh.yml, ``node`` the node being
    provisioned, ``topology`` the mesh (a relative path in mesh.yml is relative to
    ``topology.file``); leave out the arguments you do not use. Return
    ``RegistryCredentials(username, password)``, or ``None`` to let the next plugin
    answer. Implementations are asked newest registration first, so a third-party
    plugin is asked before the built-in one, which reads mesh.yml. Use it to read
    passwords from a secret store. ``RegistryCredentials`` keeps the password out of
    its ``repr``; never log or print it.

    Example::

        import os

        from meshctl.plugin import RegistryCredentials, hookimpl


        @hookimpl
        def meshctl_registry_credentials(registry, node):
            token = os.environ.get("MESH_REGISTRY_TOKEN")
            if not token:
                return None  # let another plugin (or the built-in) answer
            return RegistryCredentials(username="robot$mesh", password=token)

    Since meshctl 0.1.
    """


@hookspec(firstresult=True)
def meshctl_install_bundle(topology: Topology, node_id: str) -> bytes | None:
    """Download a fresh install bundle for a node from the controller that runs the mesh.

    Return the bundle as AWX serves it (``GET /api/v2/instances/<id>/install_bundle/``:
    a gzip tar holding the node's certificate and key, the mesh CA and the work
    public key), or ``None`` when this plugin does not know the node's controller.
    The ``awx-api`` certificate backend asks this hook when a node needs a
    certificate; AWX mints a new key on every download, so the backend asks once per
    certificate it needs. Raise ``MeshctlError`` with what to do when the controller
    refuses (no such instance, no permission). The built-in ``awx`` plugin answers
    from the ``awx:`` section of mesh.yml.

    Example::

        from meshctl.plugin import hookimpl


        @hookimpl
        def meshctl_install_bundle(topology, node_id):
            section = topology.sections.get("my_controller")
            if section is None:
                return None
            return download(section.url, node_id)  # your client

    Since meshctl 0.1.
    """


@hookspec
def meshctl_before_provision(topology: Topology, options: Mapping[str, Any]) -> Iterable[CheckResult] | None:
    """Act before ``meshctl provision`` touches any host.

    ``options`` are the values of plugin CLI options. A plugin that registers the
    nodes with their controller first (as AWX's own flow does: add the instance,
    then install it) does it here, so a certificate backend can fetch the node's
    certificate from that controller during the run. Return ``CheckResult(ok,
    detail)`` items: meshctl prints every detail on stderr, and any that is not ok
    stops the command (exit 1) before a host is touched. Not called by ``plan``.

    Example::

        from meshctl.plugin import CheckResult, hookimpl


        @hookimpl
        def meshctl_before_provision(topology, options):
            if not options.get("inventory_url"):
                return None
            return [CheckResult(True, f"inventory: {len(topology.managed_nodes)} node(s) announced")]

    Since meshctl 0.1.
    """


@hookspec
def meshctl_cli_options(register: Callable[[str, click.Option], None]) -> None:
    """Add options to meshctl's own commands: ``register("provision", click.Option([...]))``.

    The parsed value reaches every plugin as ``ctx.options[name]``, where ``name`` is
    the option's click name (``--motd-suffix`` becomes ``motd_suffix``). Only ``plan``,
    ``provision``, ``status`` and ``remove`` accept plugin options (the last two hand
    them to :func:`meshctl_status_view` and :func:`meshctl_before_remove`, and to a
    ``mesh_command`` as ``cmd.options``). Plugin options and the engine's own
    settings (``EngineSettings``: timeouts, host cache, removal) are separate
    namespaces: an option named like a setting, or added to another command, is a
    plugin error naming your plugin. Create one ``click.Option`` per command.

    Example::

        import click

        from meshctl.plugin import hookimpl


        @hookimpl
        def meshctl_cli_options(register):
            for command in ("plan", "provision"):
                register(command, click.Option(["--proxy-url"], default=None,
                                               help="Override proxy.url for this run."))

    Since meshctl 0.1.
    """


@hookspec
def meshctl_register_commands(cli: click.Group) -> None:
    """Add sub-commands to the ``meshctl`` click group.

    Make them with ``mesh_command(cli, name)``: the function receives a
    ``CommandRun`` first and gets the options of the built-in commands (``-f``,
    ``--limit``, ``--forks``, the SSH options, ``-K``, ``--dead-peer-timeout``,
    ``-o text|json``); ``cmd.topology`` is the loaded mesh.yml, ``cmd.nodes()`` the
    managed nodes ``--limit`` selects, ``cmd.engine()`` reaches them. Plain
    ``@cli.command()`` works too, without those options. A command named like one
    meshctl has, an option named like one ``mesh_command`` adds, or an exception while
    adding commands is a plugin error naming your plugin. Raise ``MeshctlError`` (or
    ``UsageError``) for errors the user can act on: meshctl prints them as one line,
    without a traceback.

    Example::

        import click

        from meshctl.plugin import hookimpl, mesh_command


        @hookimpl
        def meshctl_register_commands(cli):
            @mesh_command(cli, "motd")
            @click.option("--width", type=int, default=80)
            def motd(cmd, width):
                # Prints the message of the day of each selected node.
                section = cmd.topology.sections.get("motd")
                for node in cmd.nodes():
                    click.echo(f"{node.name}: {(section.text if section else '(no motd)')[:width]}")

    Since meshctl 0.1.
    """


@hookspec
def meshctl_after_provision(topology: Topology, results: list[Any], options: Mapping[str, Any]) -> Iterable[CheckResult] | None:
    """Act once ``meshctl provision`` has applied every selected host without failure.

    ``results`` are the per-host results (``node``, ``status``, ``changed``...),
    ``options`` the values of plugin CLI options (see :func:`meshctl_cli_options`):
    a plugin that adds ``--awx`` to provision reads ``options["awx"]`` here, so one
    command provisions the hosts and then registers them elsewhere. Return
    ``CheckResult(ok, detail)`` items: meshctl prints every detail on stderr and exits
    1 when any is not ok. Not called by ``plan``, nor when a host failed. An exception
    is a plugin error naming your plugin.

    Example::

        from meshctl.plugin import CheckResult, hookimpl


        @hookimpl
        def meshctl_after_provision(topology, results, options):
            if not options.get("notify_url"):
                return None
            changed = [r.node for r in results if r.changed]
            return [CheckResult(True, f"notified: {', '.join(changed) or 'nothing changed'}")]

    Since meshctl 0.1.
    """


@hookspec
def meshctl_status_view(topology: Topology, nodes: list[Any], rows: list[Mapping[str, Any]],
                        options: Mapping[str, Any]) -> StatusView | None:
    """Show another system's view of the nodes beside meshctl's, in one ``meshctl status``.

    Called once ``status`` has probed the selected ``nodes``; ``rows`` are its per-node
    findings as its JSON output shows them (``node``, ``healthy``, ``ssh``,
    ``receptor_state``, ``checks``...; copies: changing them changes nothing),
    ``options`` the values of plugin CLI options (see :func:`meshctl_cli_options`): a
    plugin that adds ``--awx`` to status answers only when ``options["awx"]`` is set,
    so plain ``status`` asks nobody else. Return a ``StatusView``: its columns join the
    table, each node's JSON row gains ``row[view.name]`` and a ``disagree`` list, and
    status exits 1 when any node disagrees. Views appear in plugin registration order
    (built-ins first). A ``MeshctlError`` (the other system cannot be reached) is shown
    as one line after meshctl's own table, and status exits non-zero; any other
    exception is a plugin error naming your plugin.

    Example::

        from meshctl.plugin import StatusView, hookimpl


        @hookimpl
        def meshctl_status_view(rows, options):
            if not options.get("inventory"):
                return None
            known = {"exec01.example.com"}  # what the inventory lists
            return StatusView("inventory", [("in inventory", "listed")],
                              {r["node"]: {"listed": r["node"] in known} for r in rows},
                              {r["node"]: ["not in the inventory"] for r in rows if r["node"] not in known})

    Since meshctl 0.1.
    """


@hookspec
def meshctl_before_remove(topology: Topology, nodes: list[Any], options: Mapping[str, Any]) -> Iterable[CheckResult] | None:
    """Act before ``meshctl remove`` cleans the hosts, and stop it when that failed.

    ``nodes`` are the nodes about to be removed, after the preview showed what goes
    and the user confirmed; ``options`` the values of plugin CLI options (see
    :func:`meshctl_cli_options`): a plugin that adds ``--awx`` to remove deprovisions
    the nodes elsewhere first. Return ``CheckResult(ok, detail)`` items: meshctl
    prints every detail on stderr, and when any is not ok it leaves every host as it
    is and exits 1 (the other system may still use them). Plugins are called in
    registration order (built-ins first); a not-ok result does not stop the later
    plugins. An exception is a plugin error naming your plugin (a ``MeshctlError`` is
    shown as one line); either way no host is touched.

    Example::

        from meshctl.plugin import CheckResult, hookimpl


        @hookimpl
        def meshctl_before_remove(nodes, options):
            if not options.get("drain"):
                return None
            busy = [n.name for n in nodes if n.name.startswith("busy")]
            return [CheckResult(not busy, f"drain: {', '.join(busy) or 'nothing'} still running jobs")]

    Since meshctl 0.1.
    """
