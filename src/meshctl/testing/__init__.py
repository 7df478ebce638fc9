"""Test helpers for plugin authors, and a pytest plugin that serves them as fixtures.

Installing meshctl registers this module with pytest (entry point ``pytest11``), so a
plugin's own test suite gets, with no conftest:

- ``meshctl_plugins``: a fresh plugin manager (built-ins, no entry-point autoload);
  ``meshctl_plugins_with(my_plugin)`` builds one with your plugin registered too.
- ``meshctl_topology(text)``: a parsed mesh.yml, its relative paths resolved next to
  the recorded facts' own CA (so certificate operations plan without a CA of yours).
- ``meshctl_recorded_facts(name)``: what a real Debian 12 lab host answered
  (``debian12-fresh``: before provisioning; ``debian12-provisioned``: after).
- ``meshctl_plan(topology, node)``: the plan of one node from recorded facts, no host.
- ``meshctl_state_dir``: CAs and host caches go to a temporary directory, not ``~``.

The same helpers are plain functions (``plugin_manager``, ``parse``,
``recorded_facts``, ``plan_from_facts``) for use outside pytest, and
``meshctl.testing.backends`` checks a certificate backend against what receptor needs.

Example::

    def test_motd_file(meshctl_plugins_with, meshctl_topology, meshctl_plan):
        plugins = meshctl_plugins_with(my_plugin)
        topo = meshctl_topology(SEED_TEXT + "motd: {text: hi}\\n", plugins)
        plan = meshctl_plan(topo, "exec01.example.com", plugins=plugins)
        assert "/etc/motd.d/meshctl" in [str(p.op) for p in changes(plan)]
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from meshctl.core.engine import Engine, needed_facts
from meshctl.core.ops import Change, NoChange
from meshctl.core.plugins import MeshctlPlugins, create_plugin_manager
from meshctl.core.topology import Topology, parse_topology
from meshctl.core.types import OSRelease

#: Facts a real lab host answered, with the topology and test-only CA they were
#: gathered with (lab/record_facts.py re-records them).
RECORDINGS = Path(__file__).resolve().parent / "data" / "facts"
#: The topology of the recordings: awx-task (control, unmanaged), hop01, exec01.
SEED_TOPOLOGY = RECORDINGS / "mesh.yml"
SEED_TEXT = SEED_TOPOLOGY.read_text()
#: The node the recordings were made on.
SEED_NODE = "exec01.example.com"

__all__ = [
    "RECORDINGS", "SEED_NODE", "SEED_TEXT", "SEED_TOPOLOGY", "Recording", "changes", "parse",
    "plan_from_facts", "plugin_manager", "recorded_facts",
]


def plugin_manager(*plugins: object, block: tuple[str, ...] = (), builtins: bool = True) -> MeshctlPlugins:
    """A fresh manager: the built-ins (unless ``builtins=False``), then ``plugins``
    registered as a third party's would be, under their module or class name."""
    extra = [(getattr(p, "__name__", type(p).__name__).rsplit(".", 1)[-1], p) for p in plugins]
    return create_plugin_manager(autoload=False, block=block, builtins=builtins, extra=extra)


def parse(text: str, plugins: MeshctlPlugins, file: str | Path = SEED_TOPOLOGY) -> Topology:
    """Parse mesh.yml text; relative paths in it resolve next to ``file``."""
    return parse_topology(text, str(file), plugins)


@dataclass(frozen=True)
class Recording:
    """One host's recorded answer: its OS and every fact the built-ins asked for."""

    name: str
    os_release: OSRelease
    facts: dict[str, Any]


def recorded_facts(name: str) -> Recording:
    path = RECORDINGS / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in RECORDINGS.glob("*.json")))
        raise ValueError(f"no recorded facts named {name!r}; there are: {known}")
    rec = json.loads(path.read_text())
    release = OSRelease(**{**rec["os_release"], "id_like": tuple(rec["os_release"]["id_like"])})
    return Recording(name, release, rec["facts"])


def plan_from_facts(topology: Topology, node: str, recording: Recording | str = "debian12-fresh", *,
                    plugins: MeshctlPlugins | None = None, options: dict[str, Any] | None = None,
                    facts: dict[str, Any] | None = None) -> list[Change | NoChange]:
    """The plan of ``node`` against a recording, as ``meshctl plan`` would make it.
    ``facts`` overrides or adds facts (those of your own operations, say). A file the
    recording never asked about is absent; any other fact it lacks is an error naming
    it, since guessing a package or service state would make the plan a fiction."""
    rec = recorded_facts(recording) if isinstance(recording, str) else recording
    manager = plugins or topology.plugins
    if manager is None:
        raise ValueError("plan_from_facts needs the plugin manager the topology was parsed with")
    engine = Engine(topology, manager, options=options)
    target = topology.node(node)
    known = {**rec.facts, **(facts or {})}
    ctx = engine.context(target, rec.os_release)
    wanted = needed_facts(engine.operations(ctx), ctx.os_family.package_manager)
    missing = [f.key for f in wanted if f.key not in known]
    unknown = [k for k in missing if not k.startswith("file:")]
    if unknown:
        raise ValueError(f"recording {rec.name!r} has no answer for {', '.join(unknown)}: pass them as facts=")
    known.update({k: {"kind": "absent"} for k in missing})
    return engine.plan_from_facts(target, rec.os_release, known)


def changes(planned: list[Change | NoChange]) -> list[Change]:
    return [p for p in planned if isinstance(p, Change)]


# -- pytest fixtures ---------------------------------------------------------------------


@contextlib.contextmanager
def private_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """MESHCTL_STATE_DIR and MESHCTL_CACHE_DIR in temporary directories, restored after."""
    path = tmp_path_factory.mktemp("meshctl-state")
    keys = ("MESHCTL_STATE_DIR", "MESHCTL_CACHE_DIR")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["MESHCTL_STATE_DIR"] = str(path)
    os.environ["MESHCTL_CACHE_DIR"] = str(tmp_path_factory.mktemp("meshctl-cache"))
    try:
        yield path
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture
def meshctl_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Mesh CAs, generated keys and host caches in a temporary directory."""
    with private_state(tmp_path_factory) as path:
        yield path


@pytest.fixture
def meshctl_plugins() -> MeshctlPlugins:
    return plugin_manager()


@pytest.fixture
def meshctl_plugins_with() -> Callable[..., MeshctlPlugins]:
    return plugin_manager


@pytest.fixture
def meshctl_topology(meshctl_state_dir: Path, meshctl_plugins: MeshctlPlugins) -> Callable[..., Topology]:
    def make(text: str = SEED_TEXT, plugins: MeshctlPlugins | None = None,
             file: str | Path = SEED_TOPOLOGY) -> Topology:
        return parse(text, plugins or meshctl_plugins, file)

    return make


@pytest.fixture
def meshctl_recorded_facts() -> Callable[[str], Recording]:
    return recorded_facts


@pytest.fixture
def meshctl_plan(meshctl_state_dir: Path) -> Callable[..., list[Change | NoChange]]:
    return plan_from_facts
