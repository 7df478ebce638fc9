"""The plugin manager factory and the typed facade core code uses.

Nothing is loaded at import time: call :func:`create_plugin_manager` to get a fresh
manager (each test gets its own).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import os
import warnings as _warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from meshctl import __version__
from meshctl.core import hookspecs
from meshctl.core import settings as _settings
from meshctl.core.errors import MeshctlError, PluginError
from meshctl.core.types import (
    CertBackend,
    Check,
    Importer,
    NodeContext,
    NodeTool,
    OSFamily,
    Role,
    TopologySection,
)

ENTRY_POINT_GROUP = "meshctl"
# Names a plugin option may not take: the engine's settings (a namespace of their own,
# refused so that no option reads as one), and options built-in commands pass to plugins.
ENGINE_SETTINGS = _settings.ENGINE_SETTINGS | {"cert_force", "cert_renew_within", "plugins"}
DISABLE_AUTOLOAD_ENV = "MESHCTL_DISABLE_PLUGIN_AUTOLOAD"
TRACE_ENV = "MESHCTL_TRACE_HOOKS"

CORE_PLUGIN = "core"  # sections core provides (meshctl.core.sections)
# Built-in plugins are plain modules registered exactly like third-party ones.
BUILTIN_PLUGINS: tuple[str, ...] = (
    "meshctl.plugins.os_debian",
    "meshctl.plugins.os_rhel",
    "meshctl.plugins.base_node",
    "meshctl.plugins.python_env",
    "meshctl.plugins.execution_node",
    "meshctl.plugins.hop_node",
    "meshctl.plugins.cert_backends",
    "meshctl.plugins.registry_auth",
    "meshctl.plugins.import_aap",
    "meshctl.plugins.awx",
)


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    hooks: list[str] = field(default_factory=list)
    builtin: bool = False


@dataclass
class _Owned:
    """A named registration and who made it, for duplicate messages."""

    item: Any
    plugin: str
    distribution: str


class MeshctlPlugins:
    """Typed facade over the pluggy manager: core code calls these methods, never
    ``pm.hook.*`` directly, and named registrations are collected once."""

    def __init__(self, pm: pluggy.PluginManager, dists: dict[str, tuple[str, str]]):
        self.pm = pm
        self._dists = dists
        self.load_warnings: list[str] = []
        self._cache: dict[str, dict[str, _Owned]] = {}

    # -- introspection -------------------------------------------------------
    def plugin_name(self, plugin: object) -> str:
        return self.pm.get_name(plugin) or repr(plugin)

    def distribution_of(self, plugin_name: str) -> str:
        dist, version = self._dists.get(plugin_name, ("?", "?"))
        return f"{dist} {version}".strip()

    def list_plugins(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in self.pm.list_name_plugin():
            if plugin is None:  # blocked
                continue
            dist, version = self._dists.get(name, ("?", "?"))
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            infos.append(
                PluginInfo(name, dist, version, hooks, builtin=name in _builtin_names())
            )
        return infos

    # -- named registrations -------------------------------------------------
    def _collect(self, hook_name: str, kind: str) -> dict[str, _Owned]:
        if hook_name in self._cache:
            return self._cache[hook_name]
        found: dict[str, _Owned] = {}
        caller = getattr(self.pm.hook, hook_name)
        for impl in caller.get_hookimpls():  # registration order: built-ins first
            if impl.hookwrapper or impl.wrapper:
                continue  # wrappers observe calls; they have nothing to register
            plugin_name = impl.plugin_name

            def register(item: Any, _plugin: str = plugin_name) -> None:
                # Topology sections are unique per scope: "certificates" may exist both
                # as a mesh section and as a per-node override.
                name = f"{item.scope}:{item.name}" if isinstance(item, TopologySection) else item.name
                if name in found:
                    prev = found[name]
                    raise PluginError(
                        f"{kind} {name!r} is registered twice: by plugin {prev.plugin!r} "
                        f"({prev.distribution}) and by plugin {_plugin!r} "
                        f"({self.distribution_of(_plugin)})"
                    )
                found[name] = _Owned(item, _plugin, self.distribution_of(_plugin))

            kwargs = {"register": register} if "register" in impl.argnames else {}
            try:
                impl.function(**kwargs)
            except PluginError:
                raise
            except Exception as exc:  # a broken plugin must not look like a core bug
                raise PluginError(
                    f"plugin {plugin_name!r} ({self.distribution_of(plugin_name)}) failed "
                    f"in {hook_name}: {exc}"
                ) from exc
        self._cache[hook_name] = found
        return found

    def roles(self) -> dict[str, Role]:
        return {k: v.item for k, v in self._collect("meshctl_register_roles", "role").items()}

    def os_families(self) -> dict[str, OSFamily]:
        return {
            k: v.item
            for k, v in self._collect("meshctl_register_os_families", "OS family").items()
        }

    def cert_backends(self) -> dict[str, CertBackend]:
        return {
            k: v.item
            for k, v in self._collect(
                "meshctl_register_cert_backends", "certificate backend"
            ).items()
        }

    def topology_sections(self) -> dict[str, TopologySection]:
        return {
            k: v.item
            for k, v in self._collect(
                "meshctl_register_topology_sections", "topology section"
            ).items()
        }

    def checks(self) -> dict[str, Check]:
        return {k: v.item for k, v in self._collect("meshctl_register_checks", "check").items()}

    def node_tools(self) -> dict[str, NodeTool]:
        return {k: v.item for k, v in self._collect("meshctl_register_node_tools", "node tool").items()}

    def importers(self) -> dict[str, Importer]:
        return {k: v.item for k, v in self._collect("meshctl_register_importers", "import format").items()}

    def owner(self, hook_name: str, name: str) -> str:
        owned = self._cache.get(hook_name, {}).get(name)
        return owned.plugin if owned else "?"

    # -- per-node hooks ------------------------------------------------------
    def validate_topology(self, topology: Any, report: Any) -> None:
        self.pm.hook.meshctl_validate_topology(topology=topology, report=report)

    def receptor_config(self, ctx: NodeContext) -> list[dict[str, Any]]:
        from meshctl.core.receptor import finalize_sections

        return finalize_sections(_flatten(reversed(self.pm.hook.meshctl_receptor_config(ctx=ctx))))

    def node_operations(self, ctx: NodeContext) -> list[Any]:
        return _flatten(reversed(self.pm.hook.meshctl_node_operations(ctx=ctx)))

    def registry_files(self, ctx: NodeContext) -> list[Any]:
        return _flatten(reversed(self.pm.hook.meshctl_registry_files(ctx=ctx)))

    def implementations(self, hook_name: str) -> list[Any]:
        """The pluggy HookImpls of a hook (wrappers aside), to name whose answer failed."""
        return [i for i in getattr(self.pm.hook, hook_name).get_hookimpls() if not (i.hookwrapper or i.wrapper)]

    def removal_operations(self, ctx: NodeContext, purge_user: bool) -> list[Any]:
        return _flatten(reversed(self.pm.hook.meshctl_removal_operations(ctx=ctx, purge_user=purge_user)))

    def registry_credentials(self, registry: Any, node: Any, topology: Any) -> Any:
        return self.pm.hook.meshctl_registry_credentials(registry=registry, node=node, topology=topology)

    def cli_options(self) -> list[tuple[str, Any]]:
        """Plugin CLI options. Their values reach plugins through the same mapping as
        the engine's own settings, so a name the engine uses is refused, naming the plugin."""
        opts: list[tuple[str, Any]] = []
        for impl in self.pm.hook.meshctl_cli_options.get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                continue

            def register(cmd: str, opt: Any, _plugin: str = impl.plugin_name) -> None:
                if getattr(opt, "name", None) in ENGINE_SETTINGS:
                    raise PluginError(f"plugin {_plugin!r} ({self.distribution_of(_plugin)}) registers the option "
                                      f"{opt.name!r} for {cmd!r}, a name meshctl uses for its own settings "
                                      f"({', '.join(sorted(ENGINE_SETTINGS))}): rename it")
                opts.append((cmd, opt))

            impl.function(register=register)
        return opts

    def before_provision(self, topology: Any, options: Any) -> list[Any]:
        return _flatten(self._each_impl("meshctl_before_provision", "before provisioning", topology=topology,
                                        options=options))

    def install_bundle(self, topology: Any, node_id: str) -> bytes | None:
        """The first answer of ``meshctl_install_bundle``, newest registration first (pluggy's order)."""
        for impl in reversed(self.implementations("meshctl_install_bundle")):
            got = self._call_impl(impl, "fetching an install bundle", topology=topology, node_id=node_id)
            if got is not None:
                if not isinstance(got, bytes):
                    raise PluginError(f"plugin {impl.plugin_name!r} ({self.distribution_of(impl.plugin_name)}) "
                                      f"answered meshctl_install_bundle with {type(got).__name__}, not bytes")
                return got
        return None

    def _each_impl(self, hook: str, doing: str, **kwargs: Any) -> list[Any]:
        """Every implementation's answer in registration order (built-ins first)."""
        # pluggy lists them oldest first (and calls them newest first)
        return [self._call_impl(impl, doing, **kwargs) for impl in self.implementations(hook)]

    def _call_impl(self, impl: Any, doing: str, **kwargs: Any) -> Any:
        """One implementation, called with the arguments it asks for; an exception other
        than MeshctlError becomes a PluginError naming the plugin."""
        try:
            return impl.function(**{k: v for k, v in kwargs.items() if k in impl.argnames})
        except MeshctlError:
            raise
        except Exception as exc:
            where = f"plugin {impl.plugin_name!r} ({self.distribution_of(impl.plugin_name)})"
            raise PluginError(f"{where} failed {doing}: {type(exc).__name__}: {exc}") from exc

    def after_provision(self, topology: Any, results: list[Any], options: Any) -> list[Any]:
        return _flatten(self._each_impl("meshctl_after_provision", "after provisioning", topology=topology,
                                        results=results, options=options))

    def status_views(self, topology: Any, nodes: list[Any], rows: list[dict[str, Any]], options: Any) -> list[Any]:
        import copy

        views = self._each_impl("meshctl_status_view", "in meshctl_status_view", topology=topology,
                                nodes=list(nodes), rows=copy.deepcopy(rows), options=options)
        return [v for v in views if v is not None]

    def before_remove(self, topology: Any, nodes: list[Any], options: Any) -> list[Any]:
        return _flatten(self._each_impl("meshctl_before_remove", "before removal", topology=topology,
                                        nodes=list(nodes), options=options))

    def register_commands(self, cli: Any) -> None:
        for impl in self.pm.hook.meshctl_register_commands.get_hookimpls():
            where = f"plugin {impl.plugin_name!r} ({self.distribution_of(impl.plugin_name)})"
            before = dict(cli.commands)
            try:
                impl.function(cli=cli)
                replaced = sorted(n for n, c in before.items() if cli.commands.get(n) is not c)
                if replaced:
                    raise PluginError(f"adds command {replaced[0]!r}, which meshctl already has")
            except PluginError as exc:
                raise PluginError(f"{where}: {exc}") from exc
            except Exception as exc:
                raise PluginError(f"{where} failed to add its commands: {type(exc).__name__}: {exc}") from exc


def _flatten(results: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for r in results:
        if r:
            out.extend(r)
    return out


def _builtin_names() -> set[str]:
    return {m.rsplit(".", 1)[-1] for m in BUILTIN_PLUGINS} | {CORE_PLUGIN}


def parse_plugin_args(values: Iterable[str]) -> tuple[list[str], set[str]]:
    """Split ``-p`` values into modules to load and names to block (``no:NAME``)."""
    load, block = [], set()
    for value in values:
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            if part.startswith("no:"):
                block.add(part[3:])
            else:
                load.append(part)
    return load, block


class _PluginManager(pluggy.PluginManager):
    """Also treats undecorated ``meshctl_*`` functions as hook implementations, so
    a misspelled hook name is rejected by ``check_pending`` instead of silently ignored."""

    def parse_hookimpl_opts(self, plugin: object, name: str):  # type: ignore[override]
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("meshctl_"):
            method = getattr(plugin, name, None)
            if callable(method) and not isinstance(method, type):
                return {}
        return opts


def create_plugin_manager(
    *,
    load: Iterable[str] = (),
    block: Iterable[str] = (),
    autoload: bool | None = None,
    builtins: bool = True,
    extra: Iterable[tuple[str, object]] = (),
) -> MeshctlPlugins:
    """Build a fresh plugin manager.

    ``block`` names plugins (built-in short names or entry-point names) not to load.
    ``autoload`` defaults to on unless ``MESHCTL_DISABLE_PLUGIN_AUTOLOAD`` is set.
    ``load`` imports extra plugin modules by dotted path (``-p package.module``).
    ``extra`` registers already-built plugin objects (tests).
    """
    pm = _PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    blocked = set(block)
    dists: dict[str, tuple[str, str]] = {}
    warnings: list[str] = []

    def _register(obj: object, name: str, dist: tuple[str, str]) -> None:
        if name in blocked:
            return
        if pm.get_plugin(name) is not None:
            raise PluginError(
                f"two plugins are named {name!r}: {dists[name][0]} and {dist[0]}"
            )
        if pm.is_registered(obj):  # e.g. -p naming a module its entry point already loaded
            return
        try:
            # A deprecated hook (hookspec warn_on_impl) warns at registration: shown
            # like a load warning, naming the plugin that still implements it.
            with _warnings.catch_warnings(record=True) as caught:
                _warnings.simplefilter("always")
                pm.register(obj, name=name)
            warnings.extend(f"plugin {name!r} ({' '.join(dist).strip()}): {w.message}" for w in caught)
        except (pluggy.PluginValidationError, ValueError) as exc:
            where = " ".join(dist).strip()
            detail = " ".join(str(exc).split())
            raise PluginError(f"plugin {name!r} ({where}) is invalid: {detail}") from exc
        dists[name] = dist

    for name in blocked:
        pm.set_blocked(name)

    if builtins:
        # Core's own sections first: they stay when a built-in plugin is blocked.
        _register(importlib.import_module("meshctl.core.sections"), CORE_PLUGIN, ("meshctl", __version__))
        for modname in BUILTIN_PLUGINS:
            short = modname.rsplit(".", 1)[-1]
            if short in blocked:
                continue
            _register(importlib.import_module(modname), short, ("meshctl", __version__))

    if autoload is None:
        autoload = os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in ("", "0", "false", "no")
    if autoload:
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if ep.name in blocked:
                continue
            dist = (ep.dist.name, ep.dist.version) if ep.dist else ("?", "?")
            try:
                obj = ep.load()
            except Exception as exc:
                # A broken third-party plugin is reported, not fatal (conda's habit).
                warnings.append(
                    f"plugin {ep.name!r} from {dist[0]} {dist[1]} failed to load: {exc}"
                )
                continue
            _register(obj, ep.name, dist)

    for modname in load:
        try:
            obj: object = importlib.import_module(modname)
        except ImportError as exc:
            raise PluginError(f"cannot load plugin module {modname!r}: {exc}") from exc
        _register(obj, modname, _dist_of_module(obj))

    for name, obj in extra:
        _register(obj, name, ("in-process", ""))

    _reject_unknown_hooks(pm, dists)

    if os.environ.get(TRACE_ENV):
        pm.trace.root.setwriter(lambda msg: os.write(2, msg.encode()))
        pm.enable_tracing()

    facade = MeshctlPlugins(pm, dists)
    facade.load_warnings = warnings
    return facade


def _reject_unknown_hooks(pm: pluggy.PluginManager, dists: dict[str, tuple[str, str]]) -> None:
    import difflib

    known = [n for n in dir(hookspecs) if n.startswith("meshctl_")]
    problems = []
    for name in dir(pm.hook):
        caller = getattr(pm.hook, name)
        if name.startswith("_") or not isinstance(caller, pluggy.HookCaller) or caller.spec is not None:
            continue
        for impl in caller.get_hookimpls():
            if impl.optionalhook:
                continue
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            dist = " ".join(dists.get(impl.plugin_name, ("?", ""))).strip()
            problems.append(f"plugin {impl.plugin_name!r} ({dist}) implements unknown hook {name!r}{hint}")
    if problems:
        raise PluginError("; ".join(problems))


def _dist_of_module(module: ModuleType | object) -> tuple[str, str]:
    top = getattr(module, "__name__", "").split(".", 1)[0]
    for dist_name in md.packages_distributions().get(top, []):
        try:
            return dist_name, md.version(dist_name)
        except md.PackageNotFoundError:
            continue
    return ("(local module)", "")
