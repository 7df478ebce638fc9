"""meshctl-plugin-example: a message of the day on every provisioned node.

mesh.yml gains a top-level ``motd:`` section::

    motd:
      text: |
        Authorised use only. Questions: #automation.

Every managed node then gets ``/etc/motd.d/meshctl`` (shown at login by pam_motd
on Debian 12+, Ubuntu and RHEL 8+): the text, then a line naming the node, its
role and its mesh. ``meshctl plan|provision --motd-suffix TEXT`` appends one more
line, e.g. a change ticket.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from pydantic import BaseModel, ConfigDict

from meshctl.plugin import (
    Directory,
    File,
    NodeContext,
    Operation,
    Topology,
    TopologySection,
    hookimpl,
)

MOTD_DIR = "/etc/motd.d"
MOTD_FILE = f"{MOTD_DIR}/meshctl"
MAX_LENGTH = 1000  # characters: a login banner, not a document
MAX_WIDTH = 80  # columns of a classic terminal


class MotdSection(BaseModel):
    """``motd:`` in mesh.yml."""

    # extra="forbid": a typo such as ``txt:`` is an error located at file:line:col,
    # not a silently ignored key.
    model_config = ConfigDict(extra="forbid")

    text: str


@hookimpl
def meshctl_register_topology_sections(register: Callable[[TopologySection], None]) -> None:
    register(
        TopologySection(
            "motd", MotdSection, scope="mesh", description="message of the day on managed nodes"
        )
    )


@hookimpl
def meshctl_validate_topology(topology: Topology, report: Callable[..., None]) -> None:
    # A limit the model could express too; checked here to show report() and its
    # severities (an error stops the run, a warning is only printed).
    motd = topology.sections.get("motd")
    if motd is None:
        return
    if len(motd.text) > MAX_LENGTH:
        report(
            ("motd", "text"),
            f"motd.text is {len(motd.text)} characters long; the limit is {MAX_LENGTH}",
        )
    for number, line in enumerate(motd.text.splitlines(), start=1):
        if len(line) > MAX_WIDTH:
            report(
                ("motd", "text"),
                f"motd.text line {number} is wider than {MAX_WIDTH} columns",
                severity="warning",
            )
            break


def render_motd(ctx: NodeContext, text: str) -> str:
    node = ctx.node
    lines = [
        text.rstrip("\n"),
        "",
        f"{node.name}: receptor {node.role} node of mesh {ctx.topology.mesh}, managed by meshctl.",
    ]
    suffix = ctx.options.get("motd_suffix")
    if suffix:
        lines.append(suffix)
    return "\n".join(lines) + "\n"


@hookimpl
def meshctl_node_operations(ctx: NodeContext) -> list[Operation] | None:
    motd = ctx.section("motd")
    if motd is None or not ctx.node.managed:
        return None  # not configured, or not a node meshctl provisions
    # Declarative and idempotent: the core reads the file's facts and writes it
    # only when content, mode or owner differ.
    return [
        Directory(path=MOTD_DIR, mode="0755"),  # minimal images may lack it
        File(path=MOTD_FILE, content=render_motd(ctx, motd.text), mode="0644"),
    ]


@hookimpl
def meshctl_cli_options(register: Callable[[str, click.Option], None]) -> None:
    for command in ("plan", "provision"):
        # A fresh Option per command: click parameters belong to one command.
        register(
            command,
            click.Option(
                ["--motd-suffix"],
                default="",
                metavar="TEXT",
                help="Extra last line of the message of the day.",
            ),
        )
