"""The engine's walls: hooks get a read-only context and return what they make,
list hooks are ordered by phase, drift categories come from the operations, and
plugin options cannot take an engine setting's name."""

from __future__ import annotations

import types

import click
import pytest

from meshctl.core.engine import Engine, EngineSettings
from meshctl.core.errors import PluginError
from meshctl.core.hookspecs import hookimpl
from meshctl.core.ops import Command, File, Operation
from meshctl.core.planner import build_operations
from meshctl.core.results import drift
from meshctl.core.settings import ENGINE_SETTINGS
from meshctl.testing import (
    SEED_NODE,
    SEED_TEXT,
    changes,
    parse,
    plan_from_facts,
    plugin_manager,
    recorded_facts,
)


def _plugin(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(mod, hook, fn)
    return mod


def _ctx(plugins):
    topo = parse(SEED_TEXT, plugins)
    engine = Engine(topo, plugins)
    return engine, engine.context(topo.node(SEED_NODE), recorded_facts("debian12-fresh").os_release)


def test_a_plugin_writing_to_its_context_fails_naming_the_plugin():
    def meshctl_node_operations(ctx):
        ctx.receptor_config.append({"work-command": {}})  # a tuple now: no append

    def meshctl_receptor_config(ctx):
        ctx.options["x"] = 1

    for hook, fn in (("meshctl_node_operations", meshctl_node_operations),
                     ("meshctl_receptor_config", meshctl_receptor_config)):
        plugins = plugin_manager(_plugin("meddler", **{hook: hookimpl(fn)}))
        _, ctx = _ctx(plugins)
        with pytest.raises(PluginError, match=rf"plugin 'meddler' \(in-process\) failed in {hook}"):
            build_operations(plugins, ctx)


def test_assigning_a_context_field_is_refused():
    plugins = plugin_manager(_plugin("meddler", meshctl_node_operations=hookimpl(
        lambda ctx: setattr(ctx, "receptor_config", []))))
    _, ctx = _ctx(plugins)
    with pytest.raises(PluginError, match="plugin 'meddler'.*NodeContext is read-only"):
        build_operations(plugins, ctx)


def test_operations_see_the_receptor_config_the_core_collected():
    seen = []
    plugins = plugin_manager(_plugin(
        "reader",
        meshctl_receptor_config=hookimpl(lambda ctx: [{"work-command": {"worktype": "x", "command": "/bin/true"}}]),
        meshctl_node_operations=hookimpl(lambda ctx: seen.append(ctx.receptor_config)),
    ))
    _, ctx = _ctx(plugins)
    build_operations(plugins, ctx)
    assert ctx.receptor_config == ()  # the context given was not changed
    assert any(s.get("work-command", {}).get("worktype") == "x" for s in seen[0])


def test_phases_order_operations_whatever_the_registration_order():
    def ops(ctx):
        return [Command(id="cmd:last", command="true", creates="/x", phase="last"),
                File(path="/etc/z"),
                Command(id="cmd:first", command="true", creates="/y", phase="first")]

    plugins = plugin_manager(_plugin("late_comer", meshctl_node_operations=hookimpl(ops)))
    _, ctx = _ctx(plugins)
    ids = [o.id for o in build_operations(plugins, ctx)]
    assert ids[0] == "cmd:first" and ids[-1] == "cmd:last"
    assert ids.index("file:/etc/z") < ids.index("service:receptor.service")  # services after files


def test_call_order_hints_on_a_list_hook_are_refused():
    plugins = plugin_manager(_plugin("pushy", meshctl_node_operations=hookimpl(tryfirst=True)(lambda ctx: [])))
    _, ctx = _ctx(plugins)
    with pytest.raises(PluginError, match="plugin 'pushy'.*tryfirst.*phase"):
        build_operations(plugins, ctx)


def test_drift_categories_come_from_what_the_operations_declare():
    class Motd(File):
        default_category = "motd"

    plugins = plugin_manager(_plugin("motd", meshctl_node_operations=hookimpl(
        lambda ctx: [Motd(path="/etc/motd.d/x", content="hi\n"),
                     File(path="/etc/motd.d/y", content="yo\n", category="banner")])))
    topo = parse(SEED_TEXT, plugins)
    planned = changes(plan_from_facts(topo, SEED_NODE, plugins=plugins))
    kinds = drift(planned)
    assert {"motd", "banner", "receptor.conf", "certificates", "packages"} <= set(kinds)
    assert drift([c for c in planned if type(c.op) is Operation]) == []


@pytest.mark.parametrize("name", sorted(ENGINE_SETTINGS))
def test_a_plugin_option_cannot_take_an_engine_settings_name(name):
    plugins = plugin_manager(_plugin("clash", meshctl_cli_options=hookimpl(
        lambda register: register("plan", click.Option([f"--{name.replace('_', '-')}"])))))
    with pytest.raises(PluginError, match=f"plugin 'clash'.*{name!r}"):
        plugins.cli_options()


def test_engine_settings_never_reach_plugins():
    seen = []
    plugins = plugin_manager(_plugin("spy", meshctl_node_operations=hookimpl(
        lambda ctx: seen.append(dict(ctx.options)))))
    topo = parse(SEED_TEXT, plugins)
    engine = Engine(topo, plugins, options={"motd_suffix": "x"},
                    settings=EngineSettings(apply_timeout=5, op_filter=lambda op: True))
    engine.operations(engine.context(topo.node(SEED_NODE), recorded_facts("debian12-fresh").os_release))
    assert seen == [{"motd_suffix": "x"}]
    assert engine.settings.apply_timeout == 5 and engine.settings.op_filter is not None
    with pytest.raises(ValueError, match="engine setting 'op_filter' passed as a plugin option"):
        Engine(topo, plugins, options={"op_filter": lambda op: True})


def test_removal_stops_services_first_and_purges_last():
    plugins = plugin_manager()
    topo = parse(SEED_TEXT, plugins)
    engine = Engine(topo, plugins, settings=EngineSettings(remove=True, purge_user=True))
    ops = engine.operations(engine.context(topo.node(SEED_NODE), recorded_facts("debian12-fresh").os_release))
    ids = [o.id for o in ops]
    assert ids.index("service:receptor.service") < ids.index("absent:/etc/receptor")
    assert ids[-3:] == ["purge:linger", "purge:user", "purge:group"]
