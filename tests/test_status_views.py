"""The hooks behind ``status --awx`` and ``remove --awx`` (meshctl_status_view,
meshctl_before_remove), with fake plugins: order, copies, errors naming the plugin,
and how a view joins meshctl's own status rows."""

from __future__ import annotations

import types

import pytest

from meshctl.core.errors import MeshctlError, PluginError
from meshctl.core.hookspecs import hookimpl
from meshctl.core.results import StatusView
from meshctl.plugins.base_node.status import with_views
from meshctl.testing import plugin_manager


def test_views_join_meshctl_rows_and_unmanaged_nodes_get_their_own():
    rows = [{"node": "exec01.example.com", "healthy": True}]
    view = StatusView("awx", [("awx state", "node_state")],
                      {"exec01.example.com": {"node_state": "ready"}, "awx-task": {"node_state": "ready"}},
                      {"exec01.example.com": ["something"]})
    joined = with_views(rows, [view])
    assert joined == [{"node": "exec01.example.com", "healthy": True, "awx": {"node_state": "ready"},
                       "disagree": ["something"]},
                      {"node": "awx-task", "healthy": None, "managed": False, "awx": {"node_state": "ready"},
                       "disagree": []}]
    assert rows == [{"node": "exec01.example.com", "healthy": True}]  # not changed in place


# -- the hooks' plumbing, with fake plugins -------------------------------------------

def _plugin(name: str, **hooks) -> types.ModuleType:
    mod = types.ModuleType(name)
    for hook, fn in hooks.items():
        setattr(mod, hook, hookimpl(fn))
    return mod


def test_status_views_come_in_registration_order_with_rows_copied():
    def first(rows, options):
        rows[0]["healthy"] = "changed"  # a copy: meshctl's own row stays
        return StatusView("first", [], {}) if options.get("on") else None

    plugins = plugin_manager(_plugin("one", meshctl_status_view=first),
                             _plugin("two", meshctl_status_view=lambda nodes: StatusView("second", [], {})))
    rows = [{"node": "n", "healthy": True}]
    assert [v.name for v in plugins.status_views(None, [], rows, {"on": True})] == ["first", "second"]
    assert [v.name for v in plugins.status_views(None, [], rows, {})] == ["second"]
    assert rows == [{"node": "n", "healthy": True}]


def test_a_broken_view_is_a_plugin_error_and_meshctl_error_passes():
    def broken():
        raise KeyError("oops")

    with pytest.raises(PluginError, match=r"plugin 'broken' \(in-process\) failed in meshctl_status_view: KeyError"):
        plugin_manager(_plugin("broken", meshctl_status_view=broken)).status_views(None, [], [], {})

    def away():
        raise MeshctlError("AWX at http://x cannot be reached: refused")

    with pytest.raises(MeshctlError, match="cannot be reached") as exc:
        plugin_manager(_plugin("away", meshctl_status_view=away)).status_views(None, [], [], {})
    assert not isinstance(exc.value, PluginError)


def test_before_remove_results_in_registration_order():
    from meshctl.core.types import CheckResult

    plugins = plugin_manager(
        _plugin("one", meshctl_before_remove=lambda nodes: [CheckResult(False, f"one: {nodes}")]),
        _plugin("two", meshctl_before_remove=lambda options: [CheckResult(True, f"two: {dict(options)}")]))
    got = plugins.before_remove(None, ["n"], {"x": 1})
    assert [(c.ok, c.detail) for c in got] == [(False, "one: ['n']"), (True, "two: {'x': 1}")]
