"""The hook-versioning policy's mechanics: a deprecated hook (pluggy's warn_on_impl)
is still called, and meshctl says which plugin still implements it."""

from __future__ import annotations

import types

from meshctl.core import hookspecs
from meshctl.core.hookspecs import hookimpl, hookspec
from meshctl.testing import plugin_manager


def test_implementing_a_deprecated_hook_warns_naming_the_plugin(monkeypatch):
    @hookspec(warn_on_impl=DeprecationWarning("meshctl_old_thing is deprecated since 0.2: use meshctl_new_thing"))
    def meshctl_old_thing() -> list[str] | None:
        """Old."""

    monkeypatch.setattr(hookspecs, "meshctl_old_thing", meshctl_old_thing, raising=False)
    old = types.ModuleType("oldie")
    old.meshctl_old_thing = hookimpl(lambda: ["still here"])
    plugins = plugin_manager(old)
    assert plugins.load_warnings == [
        "plugin 'oldie' (in-process): meshctl_old_thing is deprecated since 0.2: use meshctl_new_thing"]
    assert plugins.pm.hook.meshctl_old_thing() == [["still here"]]


def test_current_hooks_warn_nobody():
    assert plugin_manager().load_warnings == []
