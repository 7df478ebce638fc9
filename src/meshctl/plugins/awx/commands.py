"""The ``awx`` commands: what they ask AWX and print."""

from __future__ import annotations

from typing import Any

import click

from meshctl.plugin import (
    CommandRun,
    UsageError,
    mesh_command,
    print_json,
)
from meshctl.plugins.awx.client import client_for
from meshctl.plugins.awx.lifecycle import deprovision, health_check
from meshctl.plugins.awx.plan import wanted
from meshctl.plugins.awx.sync import survey, sync, sync_summary


def _report(cmd: CommandRun, title: str, key: str, steps_: list, problems: list[str], summary: str) -> None:
    """What awx plan and awx sync print: the steps, the refusals, a summary line."""
    if cmd.output == "json":
        print_json({"command": title, key: [s if isinstance(s, dict) else str(s) for s in steps_],
                    "refused": problems})
    else:
        for s in steps_:
            cmd.state.out.print(f"  {s}", markup=False)
        for p in problems:
            cmd.state.err.print(p, markup=False)
        cmd.state.out.print(summary)
    if problems:
        cmd.exit(1)


def register(cli: Any) -> None:
    @cli.group("awx")
    def awx() -> None:
        """Keep AWX's instances, peers and instance groups in step with mesh.yml."""

    @mesh_command(awx, "plan", reaches_nodes=False)
    def plan(cmd: CommandRun) -> None:
        """Show what AWX records differently from mesh.yml, and what sync would write."""
        found = survey(client_for(cmd.topology), cmd.topology)
        if cmd.output == "json":
            listed: list = [{"kind": s.kind, "target": s.target, "detail": s.detail} for s in found.todo]
        else:
            listed = found.todo
        _report(cmd, "awx plan", "steps", listed, found.problems(cmd.topology),
                f"awx: {len(found.todo)} change(s)" if found.todo else "awx: in sync with mesh.yml")

    @mesh_command(awx, "sync", reaches_nodes=False)
    def sync_cmd(cmd: CommandRun) -> None:
        """Register, update, peer and group the mesh's nodes in AWX; read AWX back to check."""
        client = client_for(cmd.topology)
        found = survey(client, cmd.topology)
        done = sync(client, cmd.topology, found)
        _report(cmd, "awx sync", "done", done, found.problems(cmd.topology),
                sync_summary(done))

    @mesh_command(awx, "health", reaches_nodes=False)
    @click.option("--timeout", type=click.FloatRange(1, 3600), default=None,
                  help="Seconds to wait for AWX's verdicts [default: awx.health_check_timeout].")
    def health(cmd: CommandRun, timeout: float | None) -> None:
        """Ask AWX to health-check every execution node and report its verdict
        (node_state, capacity, version, errors). Exit 1 unless every node is ready."""
        topo = cmd.topology
        client = client_for(topo)
        hosts = [w.hostname for w in wanted(topo)[0] if w.node_type == "execution"]
        results = health_check(client, hosts, timeout or topo.sections["awx"].health_check_timeout)
        if cmd.output == "json":
            print_json({"command": "awx health", "nodes": [h.to_json() for h in results]})
        else:
            for h in results:
                cmd.state.out.print(f"  {h.summary()}", markup=False)
        if not all(h.ready for h in results):
            cmd.exit(1)

    @mesh_command(awx, "remove", reaches_nodes=False)
    @click.argument("node_name", metavar="NODE")
    @click.option("--timeout", type=click.FloatRange(1, 3600), default=None,
                  help="Seconds to wait for AWX to let go of the node (it waits for running jobs) "
                       "[default: awx.deprovision_timeout, 600].")
    def remove(cmd: CommandRun, node_name: str, timeout: float | None) -> None:
        """Deprovision NODE in AWX and wait until AWX has deleted it; then run
        meshctl remove NODE to clean the host."""
        if cmd.topology.get(node_name) is None:
            raise UsageError(f"{cmd.file}: no node {node_name!r}")
        left = deprovision(client_for(cmd.topology), node_name,
                           timeout or cmd.topology.sections["awx"].deprovision_timeout)
        if cmd.output == "json":
            print_json({"command": "awx remove", "node": node_name, "removed": not left, "left": left})
        elif left:
            cmd.state.err.print(left, markup=False)
        else:
            cmd.state.out.print(f"awx: {node_name} deprovisioned and removed; next: meshctl remove {node_name}",
                                markup=False)
        if left:
            cmd.exit(1)

    @mesh_command(awx, "status", reaches_nodes=False)
    def status(cmd: CommandRun) -> None:
        """AWX's view of every node beside mesh.yml's: registered or not, node_state,
        capacity, version, last health check and errors, and what differs (the writes
        awx sync would make). Exit 1 when a node is missing, differs or is not ready."""
        from meshctl.plugins.awx.status import awx_rows

        found = survey(client_for(cmd.topology), cmd.topology)
        rows = [{"node": host, **row} for host, row in awx_rows(found).items()]
        if cmd.output == "json":
            print_json({"command": "awx status", "nodes": rows})
        else:
            for row in rows:
                state = row["node_state"] if row["registered"] else "not registered"
                line = f"  {row['node']} ({row['node_type']}): {state}"
                if row["registered"]:
                    line += f", capacity {row['capacity']}, {row['version'] or 'no version'}"
                line += "".join(f"; {text}" for text in [row["errors"], *row["differs"]] if text)
                cmd.state.out.print(line, markup=False)
        if not all(row["ok"] for row in rows):
            cmd.exit(1)
