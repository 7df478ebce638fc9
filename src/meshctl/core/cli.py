"""The ``meshctl`` command line."""

from __future__ import annotations

import functools
import getpass
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from meshctl import __version__
from meshctl.core.errors import MeshctlError, PluginError, TopologyError, UsageError, shorten
from meshctl.core.files import atomic_write
from meshctl.core.importing import ImportGroup
from meshctl.core.plugins import MeshctlPlugins, create_plugin_manager, parse_plugin_args

EXIT_INTERNAL = 70
PLUGIN_OPTION_COMMANDS = ("plan", "provision", "status", "remove")


class State:
    def __init__(self, plugins: MeshctlPlugins, verbose: int, debug: bool):
        self.plugins = plugins
        self.verbose = verbose
        self.debug = debug
        self.err = _console(stderr=True)
        self.out = _console(stderr=False)


def _console(stderr: bool) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Off a terminal rich would wrap at 80 columns; logs and pipes want whole lines.
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, highlight=False, width=width, soft_wrap=not stream.isatty())


def file_option(f: Callable) -> Callable:
    return click.option(
        "-f", "--file", "file", default="mesh.yml", show_default=True,
        type=click.Path(dir_okay=False, path_type=Path), help="Topology file.",
    )(f)


def output_option(f: Callable) -> Callable:
    return click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text",
                        show_default=True, help="Output format.")(f)


@dataclass(frozen=True)
class RunOptions:
    """The options every command that reaches nodes takes (``run_options``)."""

    limit: str | None
    forks: int
    accept_new_host_keys: bool
    known_hosts: Path | None
    ssh_config: Path | None
    ask_become_pass: bool
    verbose: int
    dead_peer_timeout: float


def run_options(f: Callable) -> Callable:
    """Adds the run options and hands them to ``f`` as one ``run: RunOptions``
    (``-v`` here adds to the global verbosity)."""

    @functools.wraps(f)
    def with_run(*args: Any, **kwargs: Any) -> Any:
        run = RunOptions(**{name: kwargs.pop(name) for name in RunOptions.__dataclass_fields__})
        click.get_current_context().obj.verbose += run.verbose
        return f(*args, run=run, **kwargs)

    opts = [
        click.option("--limit", "-l", default=None, help="Only these nodes (comma separated)."),
        click.option("--forks", default=20, show_default=True, type=click.IntRange(1, 500),
                     help="Hosts handled in parallel."),
        click.option("--accept-new-host-keys", is_flag=True,
                     help="Record unknown SSH host keys in meshctl's known_hosts (a changed key is always refused)."),
        click.option("--known-hosts", type=click.Path(dir_okay=False, path_type=Path), default=None,
                     help="meshctl's known_hosts file [default: ~/.local/share/meshctl/known_hosts]."),
        click.option("--ssh-config", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     default=None, help="OpenSSH client config to read instead of ~/.ssh/config."),
        click.option("--ask-become-pass", "-K", is_flag=True, help="Prompt for the sudo password."),
        click.option("--dead-peer-timeout", default=60.0, show_default=True, type=click.FloatRange(5, 3600),
                     metavar="SECONDS", help="A host whose connection goes silent this long counts as lost."),
        click.option("-v", "--verbose", "verbose", count=True, expose_value=True,
                     help="More output (round trips, timings, steps)."),
    ]
    for opt in reversed(opts):
        with_run = opt(with_run)
    return with_run


def load_topology_file(state: State, file: Path):
    from meshctl.core.topology import load_topology

    topo = load_topology(file, state.plugins)
    for w in topo.warnings:
        state.err.print(str(w), markup=False)
    return topo


def select_nodes(topo, limit: str | None):
    nodes = topo.managed_nodes
    if not limit:
        return nodes
    wanted = [x.strip() for x in limit.split(",") if x.strip()]
    unknown = [w for w in wanted if topo.get(w) is None]
    if unknown:
        raise UsageError(f"--limit: unknown node(s): {', '.join(unknown)}")
    unmanaged = [w for w in wanted if not topo.node(w).managed]
    if unmanaged:
        raise UsageError(f"--limit: node(s) not managed by meshctl: {', '.join(unmanaged)}")
    return [n for n in nodes if n.name in wanted]


def make_engine(state: State, topo, run: RunOptions, reporter, options, forks: int | None = None,
                settings=None):
    """The engine for a command; ``forks`` overrides ``--forks`` (one node at a time).
    ``options`` are plugin options; the engine's own are ``settings`` (EngineSettings)."""
    from meshctl.core.engine import Engine
    from meshctl.core.transport import SSHOptions

    ssh = SSHOptions(accept_new_host_keys=run.accept_new_host_keys, ssh_config=run.ssh_config,
                     dead_peer_timeout=run.dead_peer_timeout)
    if run.known_hosts is not None:
        ssh.known_hosts = run.known_hosts
    if run.ask_become_pass:
        ssh.become_password = getpass.getpass("BECOME password: ")
    return Engine(topo, state.plugins, ssh=ssh, forks=forks or run.forks, options=options, reporter=reporter,
                  debug=state.debug, settings=settings)


def _execute(state: State, ctx: click.Context, apply: bool, file: Path, run: RunOptions, output: str,
             detailed: bool = False) -> None:
    from meshctl.core.output import (
        PlainReporter,
        RichReporter,
        print_json,
        print_plan,
        print_summary,
    )

    topo = load_topology_file(state, file)
    nodes = select_nodes(topo, run.limit)
    if not nodes:
        raise UsageError("no managed nodes to work on")
    options = dict(ctx.meta.get("plugin_options", {}))
    tty = state.err.is_terminal and output == "text"
    reporter = RichReporter([n.name for n in nodes], state.err) if tty else PlainReporter(verbose=state.verbose > 0)
    engine = make_engine(state, topo, run, reporter, options)
    if apply:
        _report_checks(state, ctx, state.plugins.before_provision(topo, options))
    if tty:
        with reporter:
            results = engine.apply(nodes) if apply else engine.plan(nodes)
    else:
        results = engine.apply(nodes) if apply else engine.plan(nodes)
    bad = [r for r in results if r.status in ("failed", "unreachable")]
    if output == "json":
        from meshctl.core.output import summary_counts

        print_json({"command": "provision" if apply else "plan", "mesh": topo.mesh,
                    "summary": summary_counts(results), "hosts": [r.to_json() for r in results]})
    else:
        if not apply:
            print_plan(state.out, results, detailed)
        print_summary(state.out, results, verbose=state.verbose > 0,
                      title="provision" if apply else "plan")
    if bad:
        ctx.exit(1)
    if apply:
        _report_checks(state, ctx, state.plugins.after_provision(topo, results, options))


def _report_checks(state: State, ctx: click.Context, checks: list[Any]) -> None:
    """A plugin's CheckResults around provisioning: every detail on stderr; exit 1 on any failure."""
    for item in checks:
        state.err.print(("" if item.ok else "error: ") + item.detail, markup=False)
    if any(not item.ok for item in checks):
        ctx.exit(1)


def build_cli(plugins: MeshctlPlugins) -> click.Group:
    @click.group(context_settings={"help_option_names": ["-h", "--help"]})
    @click.option("-p", "--plugins", "plugin_args", multiple=True, metavar="NAME",
                  help="Load plugin module NAME, or block one with no:NAME (repeatable).")
    @click.option("-v", "--verbose", count=True, help="More output (round trips, steps).")
    @click.option("--debug", is_flag=True, help="Show tracebacks for internal errors.")
    @click.version_option(__version__, "--version", prog_name="meshctl")
    @click.pass_context
    def cli(ctx: click.Context, plugin_args, verbose: int, debug: bool) -> None:
        """Provision and operate Receptor mesh execution and hop nodes."""
        ctx.obj = State(plugins, verbose, debug)
        for w in plugins.load_warnings:
            ctx.obj.err.print(f"warning: {w}", markup=False)

    @cli.command()
    @file_option
    @click.pass_obj
    def validate(state: State, file: Path) -> None:
        """Check a topology file; report every problem as FILE:LINE:COL."""
        topo = load_topology_file(state, file)
        managed = len(topo.managed_nodes)
        state.out.print(f"{file}: valid ({len(topo.nodes)} nodes, {managed} managed)", markup=False)

    @cli.command()
    @file_option
    @run_options
    @output_option
    @click.option("--detailed", is_flag=True, help="Show full content of new files and unchanged items.")
    @click.pass_context
    def plan(ctx: click.Context, file, run: RunOptions, output, detailed, **plugin_opts) -> None:
        """Show what provision would change on each node (reads facts, changes nothing)."""
        ctx.meta["plugin_options"] = plugin_opts
        _execute(ctx.obj, ctx, False, file, run, output, detailed)

    @cli.command()
    @file_option
    @run_options
    @output_option
    @click.pass_context
    def provision(ctx: click.Context, file, run: RunOptions, output, **plugin_opts) -> None:
        """Apply the topology: make every managed node match it."""
        ctx.meta["plugin_options"] = plugin_opts
        _execute(ctx.obj, ctx, True, file, run, output)

    @cli.command()
    @file_option
    @run_options
    @click.pass_context
    def facts(ctx: click.Context, file, run: RunOptions) -> None:
        """Print, as JSON, the OS and facts meshctl reads from each node (what plans
        are computed from). Secret files are compared by hash only."""
        from meshctl.core.output import PlainReporter, print_json

        state: State = ctx.obj
        topo = load_topology_file(state, file)
        nodes = select_nodes(topo, run.limit)
        engine = make_engine(state, topo, run, PlainReporter(verbose=state.verbose > 0), {})
        results = engine.facts(nodes)
        print_json({r.node: r.recorded if r.recorded is not None else {"error": r.error, "cause": r.cause}
                    for r in results})
        if any(r.recorded is None for r in results):
            ctx.exit(1)

    @cli.command()
    @file_option
    @run_options
    @output_option
    @click.pass_context
    def verify(ctx: click.Context, file, run: RunOptions, output) -> None:
        """Run the registered checks on each node; exit 1 when any check fails."""
        from meshctl.core.output import PlainReporter, print_checks, print_json, summary_counts

        state: State = ctx.obj
        topo = load_topology_file(state, file)
        nodes = select_nodes(topo, run.limit)
        engine = make_engine(state, topo, run, PlainReporter(verbose=state.verbose > 0), {})
        results = engine.verify(nodes)
        if output == "json":
            print_json({"command": "verify", "mesh": topo.mesh, "summary": summary_counts(results),
                        "hosts": [r.to_json() for r in results]})
        else:
            print_checks(state.out, results)
        if any(r.status != "ok" for r in results):
            ctx.exit(1)

    @cli.command("plugins")
    @output_option
    @click.pass_obj
    def plugins_cmd(state: State, output: str) -> None:
        """List loaded plugins, their distribution and the hooks they implement."""
        infos = state.plugins.list_plugins()
        if output == "json":
            from meshctl.core.output import print_json

            print_json([i.__dict__ for i in infos])
            return
        from rich.table import Table

        t = Table(header_style="bold")
        for col in ("plugin", "distribution", "version", "hooks"):
            t.add_column(col)
        for i in infos:
            name = i.name + (" (built-in)" if i.builtin else "")
            t.add_row(name, i.distribution, i.version, "\n".join(i.hooks) or "-")
        state.out.print(t)

    @cli.command()
    @file_option
    @click.option("--format", "fmt", type=click.Choice(["dot", "mermaid", "svg"]), default="dot",
                  show_default=True)
    @click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Write to this file instead of stdout.")
    @click.pass_obj
    def graph(state: State, file: Path, fmt: str, out: Path | None) -> None:
        """Draw the topology: roles as shapes, peers as arrows, listener ports."""
        from meshctl.core import graph as g

        topo = load_topology_file(state, file)
        if fmt == "svg":
            data = g.render_svg(topo)
        else:
            text = g.render_dot(topo) if fmt == "dot" else g.render_mermaid(topo)
            data = text.encode()
        if out is not None:
            atomic_write(out, data)
        else:
            sys.stdout.buffer.write(data)

    # Formats come from plugins (meshctl_register_importers).
    cli.add_command(ImportGroup(plugins))

    @cli.command()
    def version() -> None:
        """Print meshctl's version."""
        click.echo(f"meshctl {__version__}")

    # Plugin-provided commands, then plugin options, only on commands that hand them
    # to plugins (NodeContext.options, CommandRun.options).
    plugins.register_commands(cli)
    for command_name, option in plugins.cli_options():
        if command_name not in PLUGIN_OPTION_COMMANDS:
            raise PluginError(
                f"a plugin adds option {option.name!r} to command {command_name!r}; plugin options "
                f"are supported on: {', '.join(PLUGIN_OPTION_COMMANDS)}"
            )
        command = cli.commands.get(command_name)  # status and remove come from base_node, which may be blocked
        if command is not None and option.name in {p.name for p in command.params}:
            raise PluginError(f"a plugin adds option {option.name!r} to command {command_name!r}, which has "
                              "an option of that name")
        if command is not None:
            command.params.append(option)
    return cli


def _prescan_plugins(argv: list[str]) -> list[str]:
    """``-p`` must be known before the command tree exists (plugins add commands)."""
    values = []
    it = iter(argv)
    for arg in it:
        if arg in ("-p", "--plugins"):
            values.append(next(it, ""))
        elif arg.startswith("--plugins="):
            values.append(arg.split("=", 1)[1])
        elif arg.startswith("-p") and len(arg) > 2 and not arg.startswith("--"):
            values.append(arg[2:])
        elif not arg.startswith("-"):
            break  # the sub-command: global options end here
    return values


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("MESHCTL_DEBUG"))
    err = _console(stderr=True)
    try:
        load, block = parse_plugin_args(_prescan_plugins(argv))
        plugins = create_plugin_manager(load=load, block=block)
        cli = build_cli(plugins)
        rc = cli.main(args=argv, prog_name="meshctl", standalone_mode=False)
        sys.exit(rc if isinstance(rc, int) else 0)
    except TopologyError as exc:
        err.print(exc.render(), markup=False)
        errors = sum(1 for d in exc.diagnostics if d.severity == "error")
        err.print(f"{errors} error(s); nothing was changed", markup=False)
        sys.exit(exc.exit_code)
    except MeshctlError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        err.print("aborted", markup=False)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:  # this machine's files (a full disk...): the cause, not a traceback
        if debug:
            raise
        where = f"{shorten(exc.filename)}: " if exc.filename else ""
        err.print(f"error: {where}{exc.strerror or exc}", markup=False)
        sys.exit(1)
    except Exception as exc:
        if debug:
            raise
        err.print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for a traceback)",
                  markup=False)
        sys.exit(EXIT_INTERNAL)


