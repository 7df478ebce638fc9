"""Plan and apply: facts in, commands out, per host, in parallel.

Per host: one round trip reads the OS, one gathers every fact the operations
declared, and (only when something differs) one runs the changes as a single
script. A warm no-op provision therefore costs two round trips.

One method per mode: ``plan``, ``apply``, ``facts`` (what plans are computed from),
``verify`` (the registered checks) and ``probe`` (a script and its evaluation).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from meshctl.core import facts as F
from meshctl.core import factscript
from meshctl.core.applier import ApplyRunner, tail
from meshctl.core.applyscript import HOST_STATE_DIR, render_apply_script, wait_for_apply
from meshctl.core.errors import MeshctlError
from meshctl.core.hostcache import HostCache
from meshctl.core.ops import Change, NoChange, Operation, OperationError
from meshctl.core.planner import (
    PlanError,
    build_operations,
    detect_os,
    needed_facts,
    plan_operations,
    with_receptor_config,
)
from meshctl.core.plugins import MeshctlPlugins
from meshctl.core.results import HostResult, Reporter
from meshctl.core.settings import ENGINE_SETTINGS, EngineSettings
from meshctl.core.topology import Node, Topology
from meshctl.core.transport import RemoteError, SSHOptions, TransportPool, UnreachableError
from meshctl.core.types import NodeContext, OSRelease

__all__ = [
    "HOST_STATE_DIR", "Engine", "EngineSettings", "HostResult", "PlanError", "Reporter", "build_operations",
    "detect_os", "needed_facts", "plan_operations", "render_apply_script",
]

#: What one host's work is, given its session, node and result (one per mode).
HostWork = Callable[[Any, Node, HostResult], None]
Probe = Callable[[NodeContext], str]
Evaluate = Callable[[NodeContext, str], Any]


@dataclasses.dataclass
class _Gathered:
    release: OSRelease
    ops: list[Operation]
    manager: str
    facts: dict[str, Any]


class Engine:
    def __init__(
        self,
        topology: Topology,
        plugins: MeshctlPlugins,
        ssh: SSHOptions | None = None,
        forks: int = 20,
        options: dict[str, Any] | None = None,
        reporter: Reporter | None = None,
        debug: bool = False,
        settings: EngineSettings | None = None,
    ):
        """``options`` are plugin options (``NodeContext.options``); how the run goes
        is ``settings``. The two namespaces do not mix."""
        self.topology = topology
        self.plugins = plugins
        if topology.plugins is None:
            topology.plugins = plugins
        self.ssh = ssh or SSHOptions()
        self.forks = max(1, forks)
        self.options = _plugin_options(options or {})
        self.settings = settings or EngineSettings()
        self.reporter = reporter or Reporter()
        self.debug = debug
        self._blobs: dict[str, bytes | None] = {}  # host cache blobs read this run

    # -- pure part (tests use it with recorded facts) -------------------------
    def context(self, node: Node, release: OSRelease) -> NodeContext:
        family = detect_os(self.plugins, release)
        return NodeContext(node=node, topology=self.topology, os_release=release, os_family=family,
                           options=self.options)

    def operations(self, ctx: NodeContext) -> list[Operation]:
        return build_operations(self.plugins, ctx, self.settings)

    def plan_from_facts(self, node: Node, release: OSRelease, facts: dict[str, Any]) -> list[Change | NoChange]:
        ctx = self.context(node, release)
        return plan_operations(self.operations(ctx), facts, ctx.os_family.package_manager)

    # -- modes -------------------------------------------------------------------
    def plan(self, nodes: list[Node]) -> list[HostResult]:
        """What would change on each node; nothing is changed."""
        return self._each(nodes, self._plan_host)

    def apply(self, nodes: list[Node]) -> list[HostResult]:
        """Plan, then make each node's changes."""
        def work(session: Any, node: Node, result: HostResult) -> None:
            self._plan_host(session, node, result)
            if result.changes:
                ApplyRunner(session, node.name, result, self.reporter, self.settings.apply_timeout).run()

        return self._each(nodes, work)

    def facts(self, nodes: list[Node]) -> list[HostResult]:
        """Plan, and keep in each result the OS and facts it was planned from."""
        def work(session: Any, node: Node, result: HostResult) -> None:
            gathered = self._gather(session, node, result)
            # Kept even when planning then fails: the facts are what was asked for.
            result.recorded = {"os_release": dataclasses.asdict(gathered.release), "facts": gathered.facts}
            self._plan(gathered, result)

        return self._each(nodes, work)

    def verify(self, nodes: list[Node]) -> list[HostResult]:
        """Run the registered checks of each node's role."""
        def work(session: Any, node: Node, result: HostResult) -> None:
            ctx = self._live_context(session, node, result)
            for name, check in self.plugins.checks().items():
                if check.roles and node.role not in check.roles:
                    continue
                self.reporter.host_phase(node.name, f"check {name}")
                try:
                    res = check.run(ctx)
                    result.checks.append((name, bool(res.ok), res.detail))
                except UnreachableError:
                    raise
                except Exception as exc:  # a broken check fails itself, not the run
                    result.checks.append((name, False, f"check raised {type(exc).__name__}: {exc}"))
            _judge(result)

        return self._each(nodes, work)

    def probe(self, nodes: list[Node], script: Probe, evaluate: Evaluate) -> list[HostResult]:
        """Run ``script(ctx)`` on each node (one round trip after OS detection) and
        record ``evaluate(ctx, output)`` as checks (or ``(checks, details)``):
        preflight and similar reports."""
        def work(session: Any, node: Node, result: HostResult) -> None:
            ctx = self._live_context(session, node, result)
            _rc, out = session.run(script(ctx), timeout=float(self.settings.probe_timeout))
            checks = evaluate(ctx, out)
            if isinstance(checks, tuple):  # (checks, details for reports)
                checks, result.recorded = checks
            result.checks = checks
            _judge(result)

        return self._each(nodes, work)

    # -- per host ----------------------------------------------------------------
    def _each(self, nodes: list[Node], work: HostWork) -> list[HostResult]:
        pool = TransportPool(self.topology, self.ssh)
        try:
            with ThreadPoolExecutor(max_workers=min(self.forks, max(1, len(nodes)))) as ex:
                futures = [ex.submit(self._host, pool, n, work) for n in nodes]
                return [f.result() for f in futures]
        finally:
            pool.close()

    def _host(self, pool: TransportPool, node: Node, work: HostWork) -> HostResult:
        result = HostResult(node=node.name)
        start = time.monotonic()
        session = None
        try:
            self.reporter.host_phase(node.name, "connecting")
            session = pool.session(node)
            self.reporter.host_phase(node.name, "detecting OS")
            work(session, node, result)
        except UnreachableError as exc:
            result.status, result.cause, result.error = "unreachable", exc.cause, exc.detail
        except (MeshctlError, OperationError) as exc:
            result.status, result.error = "failed", str(exc)
        except Exception as exc:  # one host's bug must not hide the others
            result.status = "failed"
            result.error = f"internal error: {type(exc).__name__}: {exc}"
            if self.debug:
                result.error += "\n" + traceback.format_exc()
        finally:
            result.round_trips = session.round_trips if session else 0
            result.duration = time.monotonic() - start
            self.reporter.host_done(result)
        return result

    def _host_cache(self, node: Node) -> HostCache | None:
        root = self.settings.host_cache
        return HostCache(Path(root), self.topology.mesh, node.name, self._blobs) if root else None

    def _plan_host(self, session: Any, node: Node, result: HostResult) -> None:
        self._plan(self._gather(session, node, result), result)

    def _gather(self, session: Any, node: Node, result: HostResult) -> _Gathered:
        """The OS, the node's operations and the facts they need, in one shell."""
        holder: dict[str, Any] = {}
        cache = self._host_cache(node)

        def facts_script(os_out: str) -> str:
            # Which facts to gather depends on the OS: the same shell answers both.
            release = F.parse_os(os_out)
            result.os = release.pretty_name or release.id
            ctx = self.context(node, release)
            ops = self.operations(ctx)
            manager = ctx.os_family.package_manager
            fact_list = needed_facts(ops, manager)
            self.reporter.host_phase(node.name, f"gathering {len(fact_list)} facts")
            script, boundary = factscript.batch_script(fact_list, cache)
            holder.update(release=release, ops=ops, manager=manager, facts=fact_list, boundary=boundary)
            # Facts of a host whose last apply is still finishing (its meshctl was
            # killed) would be stale by the time this run applies: wait for it first.
            return wait_for_apply() + script

        _os_out, rc, out = session.run_then(F.OS_SCRIPT, facts_script, timeout=300)
        fact_list = holder["facts"]
        try:
            facts = factscript.parse_batch(fact_list, out, holder["boundary"], cache)
        except ValueError as exc:
            raise RemoteError(f"fact gathering failed (exit {rc}): {tail(out)}") from exc
        if cache is not None:
            with contextlib.suppress(OSError):  # a cache that cannot be written only costs speed
                factscript.remember(cache, fact_list, facts)
        return _Gathered(holder["release"], holder["ops"], holder["manager"], facts)

    @staticmethod
    def _plan(gathered: _Gathered, result: HostResult) -> None:
        planned = plan_operations(gathered.ops, gathered.facts, gathered.manager)
        result.changes = [p for p in planned if isinstance(p, Change)]
        result.unchanged = [p for p in planned if isinstance(p, NoChange)]
        result.status = "changed" if result.changes else "ok"

    def _live_context(self, session: Any, node: Node, result: HostResult) -> NodeContext:
        """The context checks and probes get: the OS, the receptor configuration, and
        ``run`` to run commands on the node."""
        _rc, out = session.run(F.OS_SCRIPT, become=False, timeout=60)
        release = F.parse_os(out)
        result.os = release.pretty_name or release.id

        def run(command: str) -> tuple[int, str]:
            return session.run(command, timeout=120)

        ctx = with_receptor_config(self.plugins, self.context(node, release))
        return dataclasses.replace(ctx, run=run)


def _judge(result: HostResult) -> None:
    failed = [n for n, ok, _ in result.checks if not ok]
    result.status = "failed" if failed else "ok"
    if failed:
        result.error = "failed checks: " + ", ".join(failed)


def _plugin_options(options: dict[str, Any]) -> dict[str, Any]:
    """Plugin options, refused when one is named like an engine setting: the two are
    separate namespaces (settings go in ``settings=EngineSettings(...)``)."""
    clash = sorted(set(options) & ENGINE_SETTINGS)
    if clash:
        raise ValueError(f"engine setting {clash[0]!r} passed as a plugin option: "
                         f"use settings=EngineSettings({clash[0]}=...)")
    return dict(options)
