"""``meshctl preflight``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from meshctl.core import cli as corecli


def register(cli: click.Group) -> None:
    @cli.command("preflight")
    @corecli._file_option
    @corecli._run_options
    @corecli._output_option
    @click.pass_context
    def preflight(ctx: click.Context, file: Path, limit, forks, accept_new_host_keys, known_hosts, ssh_config,
                  ask_become_pass, verbose, output) -> None:
        """Make receptor's start-up checks now, on each node: receptor.conf sections and
        keys, NodeID in certificates, key/certificate pairs, chains, file access for the
        service user, listener ports, peer name resolution, clock skew."""
        from meshctl.core.output import PlainReporter, print_checks, print_json, summary_counts
        from meshctl.plugins.base_node import preflight as P
        from meshctl.plugins.base_node import settings

        state = ctx.obj
        state.verbose += verbose
        topo = corecli._load(state, file)
        nodes = corecli._select(topo, limit)
        engine = corecli._engine(state, topo, forks, accept_new_host_keys, known_hosts, ssh_config,
                                 ask_become_pass, PlainReporter(verbose=state.verbose > 0), {})

        def script(nctx: Any) -> str:
            return P.script(settings(nctx).user, P.peer_hosts(topo, nctx.node))

        def evaluate(nctx: Any, out: str) -> list[tuple[str, bool, str]]:
            return P.evaluate(P.parse(out), nctx.node.name, received_at=time.time(),
                              need_binary=settings(nctx).start)

        results = engine.probe(nodes, script, evaluate)
        if output == "json":
            print_json({"command": "preflight", "mesh": topo.mesh, "summary": summary_counts(results),
                        "hosts": [r.to_json() for r in results]})
        else:
            print_checks(state.out, results, title="preflight")
        if any(r.status != "ok" for r in results):
            ctx.exit(1)
