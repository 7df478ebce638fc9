"""``meshctl preflight``, ``remove``, ``status`` and ``diagnose``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from meshctl.plugin import CommandRun, EngineSettings, mesh_command


def register(cli: click.Group) -> None:
    @mesh_command(cli, "preflight")
    def preflight(cmd: CommandRun) -> None:
        """Make receptor's start-up checks now, on each node: receptor.conf sections and
        keys, NodeID in certificates, key/certificate pairs, chains, file access for the
        service user, listener ports, peer name resolution, clock skew."""
        from meshctl.plugin import print_checks, print_json, summary_counts
        from meshctl.plugins.base_node import preflight as P
        from meshctl.plugins.base_node import settings

        topo = cmd.topology

        def script(nctx: Any) -> str:
            return P.script(settings(nctx).user, P.peer_hosts(topo, nctx.node))

        def evaluate(nctx: Any, out: str) -> list[tuple[str, bool, str]]:
            return P.evaluate(P.parse(out), nctx.node.name, received_at=time.time(),
                              need_binary=settings(nctx).start)

        results = cmd.engine().probe(cmd.nodes(), script, evaluate)
        if cmd.output == "json":
            print_json({"command": "preflight", "mesh": topo.mesh, "summary": summary_counts(results),
                        "hosts": [r.to_json() for r in results]})
        else:
            print_checks(cmd.state.out, results, title="preflight")
        if any(r.status != "ok" for r in results):
            cmd.exit(1)


def register_remove(cli: click.Group) -> None:
    @mesh_command(cli, "remove")
    @click.argument("nodes", nargs=-1, required=True)
    @click.option("--purge-user", is_flag=True, help="Also remove the service user (awx) and its data.")
    @click.option("--yes", "-y", is_flag=True, help="Remove without asking (required when not on a terminal).")
    def remove(cmd: CommandRun, nodes: tuple[str, ...], purge_user: bool, yes: bool) -> None:
        """Take NODE(s) out of service cleanly: stop and disable receptor, remove its unit,
        configuration, certificates, work key, logs, virtualenv, registry files and the
        firewall rule meshctl opened. Shows what it will remove first; a plugin's option
        (--awx) first takes the nodes out of another system, and the hosts stay as they
        are when that fails."""
        import sys

        from meshctl.plugin import UsageError, print_json, print_plan, print_summary, summary_counts

        state, output = cmd.state, cmd.output
        targets = cmd.nodes(",".join(n for v in nodes for n in v.split(",") if n))
        engine = cmd.engine(EngineSettings(remove=True, purge_user=purge_user))
        preview = engine.plan(targets)
        bad = [r for r in preview if r.status in ("failed", "unreachable")]
        if output == "text":
            print_plan(state.out, preview, detailed=False)
        if bad:
            if output == "json":
                print_json({"command": "remove", "summary": summary_counts(preview),
                            "hosts": [r.to_json() for r in preview]})
            else:
                print_summary(state.out, preview, verbose=state.verbose > 0, title="remove (preview)")
            cmd.exit(1)
        clean = not any(r.changes for r in preview)
        # A plugin option (--awx) acts elsewhere first, even when the hosts are clean already.
        given = [f"--{n.replace('_', '-')}" for n in cmd.options_given()]
        if not yes and (given or not clean):
            if not sys.stdin.isatty():
                raise UsageError("remove changes hosts: add --yes to go ahead without a terminal")
            also = f" (with {' '.join(given)})" if given else ""
            click.confirm(f"Remove meshctl's files from {', '.join(n.name for n in targets)}{also}?", abort=True)
        before = cmd.plugins.before_remove(cmd.topology, targets, cmd.options)
        for item in before:
            state.err.print(("" if item.ok else "error: ") + item.detail, markup=False)
        if clean or any(not item.ok for item in before):
            stopped = any(not item.ok for item in before)
            if output == "json":
                report = {"command": "remove", "summary": summary_counts(preview),
                          "hosts": [r.to_json() for r in preview]}
                if before:
                    report.update(removed=not stopped, before=[{"ok": i.ok, "detail": i.detail} for i in before])
                print_json(report)
            if stopped:
                state.err.print("no host was changed", markup=False)
                cmd.exit(1)
            if output == "text":
                state.out.print("nothing to remove" + (" on the hosts" if before else ""))
            return
        results = engine.apply(targets)
        if output == "json":
            print_json({"command": "remove", "summary": summary_counts(results),
                        "hosts": [r.to_json() for r in results]})
        else:
            print_summary(state.out, results, verbose=state.verbose > 0, title="remove")
        if any(r.status in ("failed", "unreachable") for r in results):
            cmd.exit(1)


def register_status(cli: click.Group) -> None:
    @mesh_command(cli, "status")
    @click.option("--timeout", type=click.IntRange(5, 600), default=60, show_default=True,
                  help="Seconds to wait for one node: a slow node does not stall the report.")
    @click.option("--warn-days", type=click.IntRange(0, 36500), default=30, show_default=True)
    def status(cmd: CommandRun, timeout: int, warn_days: int) -> None:
        """Health of every node: SSH, receptor and since when, listener, certificate days
        left, receptor and ansible-runner versions (skew flagged), worker-info, and the
        mesh as receptor sees it; with a plugin's option (--awx), another system's view
        beside it. Exit 1 when any node is unhealthy or the views disagree."""
        from meshctl.plugin import MeshctlError, summary_counts
        from meshctl.plugins.base_node import settings
        from meshctl.plugins.base_node import status as S

        topo = cmd.topology
        nodes = cmd.nodes()
        engine = cmd.engine(EngineSettings(probe_timeout=timeout))
        # Bound the connection as well as the command (a node's own connect_timeout wins).
        engine.ssh.connect_timeout = float(min(timeout, 30))

        def script(nctx: Any) -> str:
            port = nctx.node.listener.port if nctx.node.listener else None
            return S.script(nctx.node.name, settings(nctx).user, topo.role_of(nctx.node).runs_work, port,
                            topo.tool("ansible-runner"), topo.tool("receptorctl"))

        def evaluate(nctx: Any, out: str) -> Any:
            return S.evaluate(S.parse(out), node=nctx.node, start=settings(nctx).start, warn_days=warn_days)

        results = engine.probe(nodes, script, evaluate)
        rows = []
        for r in results:
            row = dict(r.recorded or {"node": r.node})
            row["healthy"] = r.status == "ok"
            row["ssh"] = "unreachable" if r.status == "unreachable" else "ok"
            row["checks"] = [{"name": n, "ok": ok, "detail": d} for n, ok, d in r.checks]
            if r.error and r.status == "unreachable":
                row["error"] = f"{r.cause}: {r.error}"
            rows.append(row)
        skew = S.skew(rows)
        try:
            views = cmd.plugins.status_views(topo, nodes, rows, cmd.options)
        except MeshctlError:
            _show_status(cmd, rows, [], skew, summary_counts(results))  # meshctl's own view, then the one-line error
            raise
        if views:
            rows = S.with_views(rows, views)
        _show_status(cmd, rows, views, skew, summary_counts(results))
        if any(r["healthy"] is False or r.get("disagree") for r in rows):
            cmd.exit(1)


def _show_status(cmd: CommandRun, rows: list[dict[str, Any]], views: list[Any], skew: list[str], summary: Any) -> None:
    from rich.markup import escape
    from rich.table import Table

    from meshctl.plugin import print_json

    if cmd.output == "json":
        print_json({"command": "status", "mesh": cmd.topology.mesh, "summary": summary, "skew": skew,
                    "nodes": rows})
        return
    t = Table(title="status", title_justify="left", header_style="bold")
    extra = [(v.name, heading, key) for v in views for heading, key in v.columns]
    for col in ("node", "health", "ssh", "receptor", "cert days", "receptor ver", "runner ver", "detail",
                *(heading for _, heading, _ in extra), *(["disagree"] if views else [])):
        t.add_column(col)
    for row in rows:
        bad = [c for c in row.get("checks", []) if not c["ok"]]
        health = {True: "[green]healthy[/]", False: "[bold red]UNHEALTHY[/]", None: "not managed"}[row["healthy"]]
        detail = "; ".join(f"{c['name']}: {c['detail']}" for c in bad) or row.get("error", "")
        cells = [_cell((row.get(name) or {}).get(key)) for name, _, key in extra]
        if views:
            cells.append("; ".join(row.get("disagree", [])))
        # Versions and states are what the host (or another system) said: never markup.
        t.add_row(escape(row["node"]), health, escape(row.get("ssh", "-")),
                  escape(str(row.get("receptor_state", "-"))),
                  escape(str(row.get("cert_days_left", "-"))), escape(str(row.get("receptor_version") or "-")),
                  escape(str(row.get("runner_version") or "-")), escape(detail), *(escape(c) for c in cells))
    cmd.state.out.print(t)
    for line in skew:
        cmd.state.out.print(f"[yellow]{escape(line)}[/]")


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "-" if value is None or value == "" else str(value)


def register_diagnose(cli: click.Group) -> None:
    @mesh_command(cli, "diagnose", output=False)
    @click.argument("node_name", metavar="NODE")
    @click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Archive path [default: ./meshctl-diagnose-NODE-<time>.tar.gz].")
    def diagnose(cmd: CommandRun, node_name: str, out: Path | None) -> None:
        """Collect one tar.gz to debug NODE: receptor.conf, unit status, the last 500 lines of
        receptor.log and of the journal, certificate summaries (never keys), podman info as
        the service user, worker-info, and the work units' status and stdout under
        receptor's data directory (the real error behind "exit status 1"). Secrets are redacted."""
        from meshctl.plugin import atomic_write
        from meshctl.plugins.base_node import diagnose as D
        from meshctl.plugins.base_node import settings

        state, topo = cmd.state, cmd.topology
        (node,) = cmd.nodes(node_name)
        engine = cmd.engine(EngineSettings(probe_timeout=180), forks=1)
        collected: dict[str, str] = {}

        def script(nctx: Any) -> str:
            s = settings(nctx)
            return D.script(node.name, s.user, topo.role_of(node).runs_work, s.datadir,
                            topo.tool("ansible-runner"), topo.tool("receptorctl"))

        def evaluate(nctx: Any, output: str) -> list[tuple[str, bool, str]]:
            collected.update(D.split(output))
            return [("collected", bool(collected), f"{len(collected)} files")]

        (res,) = engine.probe([node], script, evaluate)
        if res.status == "unreachable" or not collected:
            from meshctl.plugin import MeshctlError

            raise MeshctlError(f"{node.name}: {res.cause or 'failed'}: {res.error or 'nothing collected'}")
        data, redactions = D.archive(node.name, collected, D.known_secrets(state.plugins, topo, node))
        path = out or Path(f"meshctl-diagnose-{node.name}-{time.strftime('%Y%m%dT%H%M%S')}.tar.gz")
        # Whole or not at all: a full disk must not leave half an archive (0600: logs).
        atomic_write(path, data, mode=0o600)
        state.out.print(f"{path}: {len(collected)} files from {node.name}, {redactions} redaction(s)",
                        markup=False)
