"""From a node's context to its ordered operations, and from facts to a plan: the
pure part of the engine, which tests drive with recorded facts.

Hooks receive what they need and return what they make: the receptor configuration
the plugins return is collected here and handed to the operation hooks in a new,
read-only context; no hook reads what another wrote.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from operator import itemgetter
from typing import Any

from meshctl.core import facts as F
from meshctl.core.errors import MeshctlError, PluginError
from meshctl.core.ops import (
    PHASES,
    Change,
    GuardedService,
    NoChange,
    Operation,
    OperationError,
    Service,
)
from meshctl.core.plugins import MeshctlPlugins
from meshctl.core.settings import EngineSettings
from meshctl.core.types import NodeContext, OSFamily, OSRelease, ReadOnlyError


class PlanError(MeshctlError):
    pass


#: Hooks whose answers are lists; their order is the operations' phase, then the
#: hook (node operations before registry files), then plugin registration order.
LIST_HOOKS = ("meshctl_receptor_config", "meshctl_node_operations", "meshctl_registry_files",
              "meshctl_removal_operations")
#: The phase of an operation that names none, per hook.
DEFAULT_PHASE = {"meshctl_node_operations": "main", "meshctl_registry_files": "late",
                 "meshctl_removal_operations": "main"}


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


def call_hook(plugins: MeshctlPlugins, hook: str, call: Callable[[], Any]) -> Any:
    """``call()`` a list hook; a plugin's bug (writing to its read-only context, say)
    becomes an error naming the plugin, not an internal error. A plugin's own
    MeshctlError is already worded for the user and passes as it is."""
    _refuse_call_order(plugins, hook)
    try:
        return call()
    except (MeshctlError, OperationError):
        raise
    except Exception as exc:
        name = _raiser(plugins, hook, exc)
        hint = (" (NodeContext is read-only: a hook returns what it makes instead of writing to ctx)"
                if isinstance(exc, (dataclasses.FrozenInstanceError, ReadOnlyError)) else "")
        raise PluginError(f"plugin {name!r} ({plugins.distribution_of(name)}) failed in {hook}: "
                          f"{type(exc).__name__}: {exc}{hint}") from exc


def _raiser(plugins: MeshctlPlugins, hook: str, exc: BaseException) -> str:
    """The plugin whose hook function the traceback passed through last."""
    codes = {impl.function.__code__: impl.plugin_name for impl in plugins.implementations(hook)
             if hasattr(impl.function, "__code__")}
    name = "?"
    tb = exc.__traceback__
    while tb is not None:
        name = codes.get(tb.tb_frame.f_code, name)
        tb = tb.tb_next
    return name


def _refuse_call_order(plugins: MeshctlPlugins, hook: str) -> None:
    # pluggy's call order is no order for a list: operations say their phase.
    for impl in plugins.implementations(hook):
        if impl.tryfirst or impl.trylast:
            which = "tryfirst" if impl.tryfirst else "trylast"
            raise PluginError(f"plugin {impl.plugin_name!r} ({plugins.distribution_of(impl.plugin_name)}) "
                              f"marks {hook} {which}: list hooks are ordered by each operation's phase "
                              f"({', '.join(PHASES)}), not by call order; drop {which} and set phase=")


def with_receptor_config(plugins: MeshctlPlugins, ctx: NodeContext) -> NodeContext:
    """A new context carrying the combined ``meshctl_receptor_config`` answers."""
    sections = call_hook(plugins, "meshctl_receptor_config", lambda: plugins.receptor_config(ctx))
    return dataclasses.replace(ctx, receptor_config=sections)


_RANK = {phase: i for i, phase in enumerate(PHASES)}
#: What build_operations reads of the settings when a caller passes none.
_NO_SETTINGS = EngineSettings(host_cache=None)


def order_operations(answers: Iterable[tuple[str, list[Operation]]]) -> list[Operation]:
    """Sorted stably by phase; within a phase by hook, then as the hooks listed them
    (plugins in registration order)."""
    keyed = []
    for hook, ops in answers:
        # An operation naming no phase takes its hook's default; a Service, the services
        # phase (in removal: first, so units stop before their files go).
        default, service = _RANK[DEFAULT_PHASE[hook]], _RANK["first" if hook == "meshctl_removal_operations"
                                                            else "services"]
        for op in ops:
            if op.phase is None:
                keyed.append((service if isinstance(op, Service) else default, op))
            elif op.phase in _RANK:
                keyed.append((_RANK[op.phase], op))
            else:
                raise PlanError(f"operation {op} has phase {op.phase!r}; phases are: {', '.join(PHASES)}")
    keyed.sort(key=itemgetter(0))
    return [op for _, op in keyed]


def build_operations(plugins: MeshctlPlugins, ctx: NodeContext,
                     settings: EngineSettings | None = None) -> list[Operation]:
    """The node's operations in the order they plan and run."""
    # Not EngineSettings(): its host_cache default reads the environment, per node.
    settings = settings or _NO_SETTINGS
    ctx = with_receptor_config(plugins, ctx)
    if settings.remove:
        hook = "meshctl_removal_operations"
        answers = [(hook, call_hook(plugins, hook, lambda: plugins.removal_operations(ctx, settings.purge_user)))]
    else:
        answers = [(hook, call_hook(plugins, hook, lambda h=hook: _list_hook(plugins, h, ctx)))
                   for hook in ("meshctl_node_operations", "meshctl_registry_files")]
    ops = order_operations(answers)
    if settings.op_filter is not None:
        ops = [o for o in ops if settings.op_filter(o)]
    seen: dict[str, Operation] = {}
    for op in ops:
        if op.id in seen:
            raise PlanError(f"two operations share the id {op.id!r} ({seen[op.id]} and {op})")
        seen[op.id] = op
    return ops


def _list_hook(plugins: MeshctlPlugins, hook: str, ctx: NodeContext) -> list[Operation]:
    return plugins.node_operations(ctx) if hook == "meshctl_node_operations" else plugins.registry_files(ctx)


def needed_facts(ops: Iterable[Operation], manager: str) -> list[F.Fact]:
    return F.unique(f for op in ops for f in op.facts(manager))


def plan_operations(ops: list[Operation], facts: dict[str, Any], manager: str) -> list[Change | NoChange]:
    """Pure planning: each operation against the facts, in order, with triggers."""
    guarded = {o.id for o in ops if isinstance(o, GuardedService)}
    if guarded:
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
