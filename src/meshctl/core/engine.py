"""Plan and apply: facts in, commands out, per host, in parallel.

Per host: one round trip reads the OS, one gathers every fact the operations
declared, and (only when something differs) one runs the changes as a single
script. A warm no-op provision therefore costs two round trips.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import time
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from meshctl.core import facts as F
from meshctl.core.errors import MeshctlError
from meshctl.core.hostcache import HostCache, cache_root
from meshctl.core.ops import (
    Change,
    Cmd,
    GuardedService,
    NoChange,
    Operation,
    OperationError,
    Service,
)
from meshctl.core.plugins import MeshctlPlugins
from meshctl.core.results import HostResult, Reporter
from meshctl.core.topology import Node, Topology
from meshctl.core.transport import RemoteError, SSHOptions, TransportPool, UnreachableError
from meshctl.core.types import NodeContext, OSFamily, OSRelease


class PlanError(MeshctlError):
    pass


def detect_os(plugins: MeshctlPlugins, release: OSRelease) -> OSFamily:
    families = plugins.os_families()
    matches = [f for f in families.values() if f.detect(release)]
    if len(matches) == 1:
        return matches[0]
    what = release.pretty_name or f"{release.id} {release.version_id}".strip() or "unknown OS"
    if not matches:
        known = "; ".join(f"{f.name} ({f.supported or f.description})" for f in families.values())
        raise PlanError(f"unsupported OS {what!r} (ID={release.id}, VERSION_ID={release.version_id}); "
                        f"OS plugins available: {known or 'none'}")
    raise PlanError(f"OS {what!r} is claimed by several OS plugins: {', '.join(f.name for f in matches)}")


def build_operations(plugins: MeshctlPlugins, ctx: NodeContext) -> list[Operation]:
    ctx.receptor_config = plugins.receptor_config(ctx)
    removal = ctx.options.get("remove")
    if removal is not None:
        ops = plugins.removal_operations(ctx, bool(removal.get("purge_user")))
        # Stop services before their files go; the user goes last, after everything
        # it owned.
        services = [o for o in ops if isinstance(o, Service)]
        last = [o for o in ops if o.id.startswith("purge:")]
        ops = services + [o for o in ops if o not in services and o not in last] + last
    else:
        ops = plugins.node_operations(ctx)
        # Services react to the files before them, whichever plugin wrote those files.
        ops = [o for o in ops if not isinstance(o, Service)] + [o for o in ops if isinstance(o, Service)]
    keep = ctx.options.get("op_filter")
    if keep is not None:
        ops = [o for o in ops if keep(o)]
    seen: dict[str, Operation] = {}
    for op in ops:
        if op.id in seen:
            raise PlanError(f"two operations share the id {op.id!r} ({seen[op.id]} and {op})")
        seen[op.id] = op
    return ops


def needed_facts(ops: Iterable[Operation], manager: str) -> list[F.Fact]:
    return F.unique(f for op in ops for f in op.facts(manager))


def plan_operations(ops: list[Operation], facts: dict[str, Any], manager: str) -> list[Change | NoChange]:
    """Pure planning: each operation against the facts, in order, with triggers."""
    guarded = {o.id for o in ops if isinstance(o, GuardedService)}
    for op in ops:
        if guarded.intersection(op.notify) or guarded.intersection(op.reload):
            op.backup = True
    changed: set[str] = set()
    out: list[Change | NoChange] = []
    for op in ops:
        result = op.plan(facts, changed, manager)
        out.append(result)
        if isinstance(result, Change):
            changed.add(op.id)
            for target in op.notify:
                changed.update((target, target + "#restart"))
            how = "#restart" if result.escalate else "#reload"
            for target in op.reload:
                changed.update((target, target + how))
    return out


_ROLLBACK = r"""
_bk() {
  mkdir -p "$_rb" && chmod 700 "$_rb" || return 1
  if [ -f "$_rb/.paths" ] && grep -qxF "$1" "$_rb/.paths"; then return 0; fi
  n=$(cat "$_rb/.paths" 2>/dev/null | wc -l)
  if [ -e "$1" ]; then cp -p "$1" "$_rb/$n" || return 1; fi
  printf '%s
' "$1" >> "$_rb/.paths"
}
_restore() {
  [ -f "$_rb/.paths" ] || return 0
  n=0
  while IFS= read -r p; do
    if [ -e "$_rb/$n" ]; then cp -p "$_rb/$n" "$p"; else rm -f "$p"; fi
    n=$((n+1))
  done < "$_rb/.paths"
  echo "meshctl: restored $n file(s) changed by this run"
  if [ -n "$_svc" ]; then systemctl daemon-reload; systemctl restart "$_svc" && echo "meshctl: restarted $_svc with them"; fi
}
_finish() {
  _rc=$?
  if [ -n "$_tmp" ]; then rm -f "$_tmp"; fi
  if [ -n "$_stage" ]; then rm -rf "$_stage"; fi
  if [ "$_rc" -ne 0 ]; then _restore; rm -rf "$_rb"; elif [ "$_final" = 1 ]; then rm -rf "$_rb"; fi
}
"""


# One apply at a time per host: a killed run's script may still be finishing its step
# (apt holding its lock, say), and a rerun must wait for it, not race it. Rollback
# directories of other runs are from runs that died: their files were restored or the
# next plan redoes them.
HOST_STATE_DIR = "/var/lib/meshctl"  # on nodes: rollback copies and the apply lock
_LOCK = (
    "if mkdir -p STATE 2>/dev/null && [ -w STATE ]; then "
    "exec 9>>STATE/apply.lock; "
    "if command -v flock >/dev/null 2>&1 && ! flock -w 300 9; then "
    "echo 'meshctl: another meshctl run has held STATE/apply.lock for 300s'; _fail STEP 75; fi; "
    'for d in STATE/rollback/*; do if [ -d "$d" ] && [ "$d" != "$_rb" ]; then rm -rf "$d"; fi; done; '
    "fi"
)


_WAIT_FOR_APPLY = ("if [ -w STATE/apply.lock ] && command -v flock >/dev/null 2>&1; then "
                   "flock -w 300 STATE/apply.lock true; fi\n")


def render_apply_script(changes: list[Change] | list[tuple[int, list[Cmd]]], boundary: str,
                        stage: str | None = None, run_id: str = "0", final: bool = True) -> str:
    """One POSIX sh script for the given steps (changes, or (index, commands) pairs).
    Every command's stdin is /dev/null or its own heredoc, so nothing reads the rest of
    the script; a failing command stops the run and reports its step; a trap removes
    a half-written temporary file."""
    steps = [(i, c.commands) if isinstance(c, Change) else c for i, c in enumerate(changes)]
    lines = [
        "set -u",
        "_tmp=",
        "_svc=",
        f"_stage={shlex.quote(stage) if stage else ''}",
        # Saved copies of files this run changes; kept across the round trips of one
        # run, restored if any step fails (a half-applied change is rolled back).
        f"_rb={HOST_STATE_DIR}/rollback/{run_id}",
        f"_final={1 if final else 0}",
        _ROLLBACK,
        "trap _finish EXIT",
        # sshd signals nothing when meshctl dies: the script learns it from a write to the
        # closed pipe (SIGPIPE), and must still run _finish (restore, remove its directories).
        "_gone() { trap '' PIPE HUP INT TERM; exec >/dev/null 2>&1; exit 1; }",
        "trap _gone PIPE HUP INT TERM",
        f"_fail() {{ printf '\\n%s fail %s %s\\n' '{boundary}' \"$1\" \"$2\"; exit 1; }}",
    ]
    for n, (i, commands) in enumerate(steps):
        lines.append(f"printf '%s step {i}\\n' '{boundary}'")
        if n == 0:
            lines.append(_LOCK.replace("STEP", str(i)).replace("STATE", HOST_STATE_DIR))
        for cmd in commands:
            lines.extend(_render_cmd(cmd, i, boundary))
    lines.append(f"printf '%s done\\n' '{boundary}'")
    return "\n".join(lines) + "\n"


def _render_cmd(cmd: Cmd, step: int, boundary: str) -> list[str]:
    if cmd.stdin is None:
        if cmd.line.startswith("_tmp="):  # assignments must run in this shell
            return [f"{cmd.line} || _fail {step} $?"]
        body = cmd.line.rstrip().rstrip(";")
        if "\n" in body:  # a multi-line script: its own lines, then the closing brace
            return ["{", body, f"}} </dev/null 2>&1 || _fail {step} $?"]
        return [f"{{ {body} ; }} </dev/null 2>&1 || _fail {step} $?"]
    delim = f"MESHCTL_{boundary[-16:].upper()}_EOF"
    body = cmd.stdin if cmd.stdin.endswith("\n") else cmd.stdin + "\n"
    return [f"{{ {cmd.line} ; }} 2>&1 <<'{delim}' || _fail {step} $?", body.rstrip("\n"), delim]


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
    ):
        self.topology = topology
        self.plugins = plugins
        if topology.plugins is None:
            topology.plugins = plugins
        self.ssh = ssh or SSHOptions()
        self.forks = max(1, forks)
        self.options = options or {}
        self.reporter = reporter or Reporter()
        self.debug = debug
        self._blobs: dict[str, bytes | None] = {}  # host cache blobs read this run

    # -- pure part (tests use it with recorded facts) -------------------------
    def context(self, node: Node, release: OSRelease) -> NodeContext:
        family = detect_os(self.plugins, release)
        return NodeContext(node=node, topology=self.topology, os_release=release, os_family=family, options=self.options)

    def plan_from_facts(self, node: Node, release: OSRelease, facts: dict[str, Any]) -> list[Change | NoChange]:
        ctx = self.context(node, release)
        ops = build_operations(self.plugins, ctx)
        return plan_operations(ops, facts, ctx.os_family.package_manager)

    # -- live part -------------------------------------------------------------
    def _host_cache(self, node: Node) -> HostCache | None:
        root = self.options.get("host_cache", cache_root())
        return HostCache(Path(root), self.topology.mesh, node.name, self._blobs) if root else None

    def probe(self, nodes: list[Node], script: Callable[[NodeContext], str],
              evaluate: Callable[[NodeContext, str], list[tuple[str, bool, str]]]) -> list[HostResult]:
        """Run ``script(ctx)`` on each node (one round trip after OS detection) and
        record ``evaluate(ctx, output)`` as checks: preflight and similar reports."""
        self._probe = (script, evaluate)
        try:
            return self.run(nodes, apply=False, verify=True)
        finally:
            self._probe = None

    def run(self, nodes: list[Node], apply: bool, record: bool = False, verify: bool = False) -> list[HostResult]:
        """Plan (and with ``apply`` make) every node's changes, in parallel. With
        ``record`` each result also carries the OS and facts it was planned from; with
        ``verify`` the registered checks run instead of planning."""
        pool = TransportPool(self.topology, self.ssh)
        try:
            with ThreadPoolExecutor(max_workers=min(self.forks, max(1, len(nodes)))) as ex:
                futures = [ex.submit(self._host, pool, n, apply, record, verify) for n in nodes]
                return [f.result() for f in futures]
        finally:
            pool.close()

    def _host(self, pool: TransportPool, node: Node, apply: bool, record: bool = False,
              verify: bool = False) -> HostResult:
        result = HostResult(node=node.name)
        start = time.monotonic()
        session = None
        try:
            self.reporter.host_phase(node.name, "connecting")
            session = pool.session(node)
            self.reporter.host_phase(node.name, "detecting OS")
            if verify:
                _rc, out = session.run(F.OS_SCRIPT, become=False, timeout=60)
                release = F.parse_os(out)
                result.os = release.pretty_name or release.id
                self._verify(session, self.context(node, release), result)
                return result
            planned_for: dict[str, Any] = {}
            cache = self._host_cache(node)

            def facts_script(os_out: str) -> str:
                # Which facts to gather depends on the OS: the same shell answers both.
                release = F.parse_os(os_out)
                result.os = release.pretty_name or release.id
                ctx = self.context(node, release)
                ops = build_operations(self.plugins, ctx)
                manager = ctx.os_family.package_manager
                fact_list = needed_facts(ops, manager)
                self.reporter.host_phase(node.name, f"gathering {len(fact_list)} facts")
                script, boundary = F.batch_script(fact_list, cache)
                planned_for.update(release=release, ops=ops, manager=manager, facts=fact_list, boundary=boundary)
                # Facts of a host whose last apply is still finishing (its meshctl was
                # killed) would be stale by the time this run applies: wait for it first.
                return _WAIT_FOR_APPLY.replace("STATE", HOST_STATE_DIR) + script

            _os_out, rc, out = session.run_then(F.OS_SCRIPT, facts_script, timeout=300)
            release, ops, manager = planned_for["release"], planned_for["ops"], planned_for["manager"]
            fact_list, boundary = planned_for["facts"], planned_for["boundary"]
            try:
                facts = F.parse_batch(fact_list, out, boundary, cache)
            except ValueError as exc:
                raise RemoteError(f"fact gathering failed (exit {rc}): {_tail(out)}") from exc
            if cache is not None:
                with contextlib.suppress(OSError):  # a cache that cannot be written only costs speed
                    F.remember(cache, fact_list, facts)
            if record:
                result.recorded = {"os_release": dataclasses.asdict(release), "facts": facts}
            planned = plan_operations(ops, facts, manager)
            result.changes = [p for p in planned if isinstance(p, Change)]
            result.unchanged = [p for p in planned if isinstance(p, NoChange)]
            result.status = "changed" if result.changes else "ok"
            if apply and result.changes:
                self._apply(session, node, result)
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

    def _verify(self, session: Any, ctx: NodeContext, result: HostResult) -> None:
        def run(command: str) -> tuple[int, str]:
            return session.run(command, timeout=120)

        ctx.run = run
        ctx.receptor_config = self.plugins.receptor_config(ctx)
        probe = getattr(self, "_probe", None)
        if probe is not None:
            script, evaluate = probe
            _rc, out = session.run(script(ctx), timeout=float(self.options.get("probe_timeout", 300)))
            checks = evaluate(ctx, out)
            if isinstance(checks, tuple):  # (checks, details for reports)
                checks, result.recorded = checks
            result.checks = checks
            failed = [n for n, ok, _ in result.checks if not ok]
            result.status = "failed" if failed else "ok"
            if failed:
                result.error = "failed checks: " + ", ".join(failed)
            return
        for name, check in self.plugins.checks().items():
            if check.roles and ctx.node.role not in check.roles:
                continue
            self.reporter.host_phase(ctx.node.name, f"check {name}")
            try:
                res = check.run(ctx)
                result.checks.append((name, bool(res.ok), res.detail))
            except UnreachableError:
                raise
            except Exception as exc:  # a broken check fails itself, not the run
                result.checks.append((name, False, f"check raised {type(exc).__name__}: {exc}"))
        failed = [n for n, ok, _ in result.checks if not ok]
        result.status = "failed" if failed else "ok"
        if failed:
            result.error = "failed checks: " + ", ".join(failed)

    def _apply(self, session: Any, node: Node, result: HostResult) -> None:
        """Run the changes. Usually one round trip; a change with an ``exchange``
        ends its round trip, and the commands built from its output start the next."""
        changes = result.changes
        total = len(changes)
        self.reporter.host_phase(node.name, f"applying {total} change(s)")
        result.applied = True
        import secrets as _secrets

        run_id = _secrets.token_hex(8)
        pos = 0
        carry: tuple[int, list[Cmd]] | None = None
        ran = False  # a round trip ran: its rollback directory is on the host
        current = 0
        try:
            while pos < total or carry is not None:
                steps: list[tuple[int, list[Cmd]]] = [carry] if carry is not None else []
                carry = None
                exchange_at = None
                while pos < total:
                    current = pos
                    steps.append((pos, changes[pos].commands))
                    pos += 1
                    if changes[pos - 1].exchange is not None:
                        exchange_at = pos - 1
                        break
                per_step = self._run_steps(session, node, steps, total, result, run_id, final=exchange_at is None)
                ran = True
                if per_step is None:
                    return
                if exchange_at is not None:
                    current = exchange_at
                    change = changes[exchange_at]
                    carry = (exchange_at, change.exchange("\n".join(per_step.get(exchange_at, []))))
        except UnreachableError:
            raise
        except Exception as exc:  # plugin code (a backend's sign_csr, a lazy download) failed mid-apply
            if not ran:
                raise
            detail = str(exc) if isinstance(exc, (MeshctlError, OperationError)) else f"{type(exc).__name__}: {exc}"
            self._failed(result, current, f"step {current + 1}/{total} '{changes[current].op}': {detail}")
            self._rollback(session, run_id, result)

    def _failed(self, result: HostResult, idx: int, error: str) -> None:
        result.status = "failed"
        result.failed_step = str(result.changes[idx].op)
        result.changes = result.changes[:idx]
        result.error = error

    def _rollback(self, session: Any, run_id: str, result: HostResult) -> None:
        """Undo the earlier round trips of a run that cannot go on."""
        script = render_apply_script([], "@@meshctl-rollback", None, run_id, final=False) + "exit 1\n"
        rc, out = session.run(script, timeout=300)
        note = "\n".join(line for line in out.splitlines() if line.startswith("meshctl:"))
        if note:
            result.error = f"{result.error}\n{note}"

    def _run_steps(self, session: Any, node: Node, steps: list[tuple[int, list[Cmd]]], total: int,
                   result: HostResult, run_id: str = "0", final: bool = True) -> dict[int, list[str]] | None:
        """One round trip; returns each step's output, or None after recording a failure."""
        import secrets as _secrets

        boundary = "@@meshctl-" + _secrets.token_hex(8)
        changes = result.changes
        uploads = [u for i, _ in steps for u in changes[i].uploads]
        stage = None
        if uploads:
            self.reporter.host_phase(node.name, f"uploading {len(uploads)} file(s)")
            stage = session.upload(uploads)
        script = render_apply_script(steps, boundary, stage, run_id, final)
        per_step: dict[int, list[str]] = {}
        state: dict[str, Any] = {"step": -1, "failed": None, "done": False}

        def on_line(line: str) -> None:
            if line.startswith(boundary + " "):
                tag = line[len(boundary) + 1 :].split()
                if tag[0] == "step":
                    state["step"] = int(tag[1])
                    self.reporter.step(node.name, state["step"] + 1, total, str(changes[state["step"]].op))
                elif tag[0] == "fail":
                    state["failed"] = (int(tag[1]), tag[2] if len(tag) > 2 else "?")
                elif tag[0] == "done":
                    state["done"] = True
                return
            per_step.setdefault(state["step"], []).append(line)

        rc, _out = session.run(script, on_line=on_line, timeout=float(self.options.get("apply_timeout", 3600)))
        if state["failed"] is not None:
            idx, code = state["failed"]
            change = changes[idx]
            out = "\n".join(per_step.get(idx, [])[-25:]).strip()
            self._failed(result, idx, f"step {idx + 1}/{total} '{change.op}' ({change.summary}) failed with exit "
                         f"{code}" + (f":\n{out}" if out else ""))
            return None
        if not state["done"]:
            result.status = "failed"
            result.error = f"apply script ended early (exit {rc}): " + _tail("\n".join(per_step.get(state["step"], [])))
            return None
        return per_step


def _tail(text: str, n: int = 10) -> str:
    return "\n".join(text.strip().splitlines()[-n:])


