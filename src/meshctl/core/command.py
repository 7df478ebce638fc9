"""``mesh_command``: a plugin command with the options and host selection of the
built-in ones, so a third party's command is not second class."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import click

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
from meshctl.core.errors import PluginError
from meshctl.core.settings import EngineSettings

#: Parameter names the decorator adds; a command's own option may not reuse one.
RESERVED = frozenset({"file", "output", *RunOptions.__dataclass_fields__})


@dataclass
class CommandRun:
    """What a :func:`mesh_command` function receives first.

    ``topology`` is loaded on first use (its warnings printed to stderr, its errors
    shown as FILE:LINE:COL like every command's); ``nodes()`` are the managed nodes
    ``--limit`` selects; ``engine()`` reaches them with ``--forks``, the SSH options
    and ``-K``; ``output`` is ``"text"`` or ``"json"``; ``options`` are the values of
    the options plugins added to this command (``meshctl_cli_options``), by name."""

    state: State
    context: click.Context
    file: Path
    run: RunOptions | None
    output: str
    _topology: Any = field(default=None, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)

    def options_given(self) -> list[str]:
        """Plugin options set on the command line (not left at their default)."""
        from click.core import ParameterSource

        return [n for n in self.options
                if self.context.get_parameter_source(n) not in (None, ParameterSource.DEFAULT)]

    @property
    def plugins(self) -> Any:
        return self.state.plugins

    @property
    def topology(self) -> Any:
        if self._topology is None:
            self._topology = load_topology_file(self.state, self.file)
        return self._topology

    def nodes(self, names: str | None = None) -> list[Any]:
        """Managed nodes: ``names`` (comma separated) if given, else ``--limit``'s."""
        limit = names if names is not None else (self.run.limit if self.run else None)
        return select_nodes(self.topology, limit)

    def engine(self, settings: EngineSettings | None = None, *, options: dict[str, Any] | None = None,
               reporter: Any = None, forks: int | None = None) -> Any:
        """``settings`` are the engine's (timeouts, removal); ``options`` reach plugins
        as ``NodeContext.options`` (default: this command's plugin options); ``forks``
        overrides ``--forks``."""
        if self.run is None:
            raise PluginError("engine() needs a command made with mesh_command(..., reaches_nodes=True)")
        if reporter is None:
            from meshctl.core.output import PlainReporter

            reporter = PlainReporter(verbose=self.state.verbose > 0)
        opts = dict(self.options) if options is None else options
        return make_engine(self.state, self.topology, self.run, reporter, opts, forks=forks,
                           settings=settings)

    def echo_json(self, value: Any) -> None:
        click.echo(json.dumps(value, indent=2, sort_keys=True, default=str))

    def exit(self, code: int) -> None:
        self.context.exit(code)


def mesh_command(group: click.Group, name: str | None = None, *, reaches_nodes: bool = True,
                 output: bool = True, **command_kwargs: Any) -> Callable[[Callable[..., Any]], click.Command]:
    """Make ``f(cmd: CommandRun, **own_params)`` a sub-command of ``group`` with
    ``-f/--file``; with ``reaches_nodes`` also ``--limit``, ``--forks``,
    ``--accept-new-host-keys``, ``--known-hosts``, ``--ssh-config``, ``-K`` and
    ``--dead-peer-timeout``; with ``output`` also ``-o text|json``. Put your own
    ``@click.option``/``@click.argument`` decorators below it.

    Example::

        @hookimpl
        def meshctl_register_commands(cli):
            @mesh_command(cli, "uptime")
            def uptime(cmd):
                results = cmd.engine().probe(cmd.nodes(), lambda ctx: "uptime", evaluate)
    """

    def decorate(f: Callable[..., Any]) -> click.Command:
        own = {p.name for p in getattr(f, "__click_params__", [])}
        clash = sorted(own & RESERVED)
        if clash:
            raise PluginError(f"command {name or f.__name__!r}: parameter {clash[0]!r} is one of the options "
                              f"mesh_command adds ({', '.join(sorted(RESERVED))}); rename it")

        @functools.wraps(f)
        def callback(*args: Any, **kwargs: Any) -> Any:
            ctx = click.get_current_context()
            run = kwargs.pop("run", None)
            fmt = kwargs.pop("output", "text")
            file = kwargs.pop("file")
            # What is left beyond f's own parameters: options plugins added to this command.
            plugin_opts = {k: kwargs.pop(k) for k in list(kwargs) if k not in own}
            cmd = CommandRun(ctx.obj, ctx, file, run, fmt, options=MappingProxyType(plugin_opts))
            return f(cmd, *args, **kwargs)

        wrapped: Callable[..., Any] = callback
        if output:
            wrapped = output_option(wrapped)
        if reaches_nodes:
            wrapped = run_options(wrapped)
        return group.command(name, **command_kwargs)(file_option(wrapped))

    return decorate
