"""``meshctl import``: one sub-command per format plugins register
(``meshctl_register_importers``); core names no format."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from meshctl.core.errors import MeshctlError, PluginError, TopologyError, UsageError
from meshctl.core.files import atomic_write
from meshctl.core.types import Importer

HOOK = "meshctl_register_importers"


class ImportGroup(click.Group):
    """The ``import`` group; its help lists each format with the plugin that adds it."""

    def __init__(self, plugins: Any):
        super().__init__("import", help="Convert other formats into mesh.yml.")
        self.plugins = plugins
        self.owners: dict[str, str] | None = None
        self.helps: dict[str, str] = {}

    def _load(self) -> dict[str, str]:
        # On first use: a plugin's bad registration fails ``meshctl import``, not every command.
        if self.owners is None:
            self.owners = {}
            for name, importer in self.plugins.importers().items():
                owner = self.plugins.owner(HOOK, name)
                if (importer.convert is None) == (importer.command is None):
                    raise PluginError(f"plugin {owner!r} ({self.plugins.distribution_of(owner)}) registers the "
                                      f"import format {name!r} with {'both' if importer.convert else 'neither'} "
                                      "of convert and command: give exactly one")
                command = importer.command or _convert_command(importer, owner)
                self.add_command(command, name)
                self.owners[name] = owner
                self.helps[name] = importer.description or command.get_short_help_str(200)
        return self.owners

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load()
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        owners = self._load()
        rows = [(name, f"{self.helps[name]} [plugin {owners[name]}]") for name in self.list_commands(ctx)]
        with formatter.section("Formats"):
            if rows:
                formatter.write_dl(rows)
            else:
                formatter.write_text("none: no loaded plugin adds an import format")


def _convert_command(importer: Importer, owner: str) -> click.Command:
    @click.command(help=importer.description or f"Convert {importer.name} into mesh.yml.")
    @click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Write mesh.yml here instead of stdout.")
    @click.pass_obj
    def convert(state: Any, source: Path, out: Path | None) -> None:
        try:
            result = importer.convert(source)  # type: ignore[misc]
        except (MeshctlError, OSError):
            raise
        except Exception as exc:  # a plugin's bug must not read as meshctl's
            raise PluginError(f"plugin {owner!r} failed to convert {source}: {type(exc).__name__}: {exc}") from exc
        text, lines = (result, ()) if isinstance(result, str) else result
        check_converted(state.plugins, text, str(source), lines)  # never emit an invalid file
        if out is not None:
            atomic_write(out, text)
            state.err.print(f"wrote {out}", markup=False)
        else:
            click.echo(text, nl=False)

    return convert


def check_converted(plugins: Any, text: str, source: str, lines: Sequence[int] = ()) -> None:
    """Validate converted mesh.yml text; an error names the source's own line when
    ``lines`` (the source line of each text line, 0: none) says it, else the line of
    the converted text."""
    from meshctl.core.topology import parse_topology

    try:
        parse_topology(text, source, plugins)
    except TopologyError as exc:
        errors = [d for d in exc.diagnostics if d.severity == "error"]
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        if lines:
            line = lines[first.line - 1] if 0 < first.line <= len(lines) else 0
            where = f"{source}:{line}" if line else source
        else:
            where = f"{source}: converted mesh.yml line {first.line}"
        raise UsageError(f"{where}: {first.message}{more}") from None
