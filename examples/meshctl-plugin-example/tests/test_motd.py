"""The example plugin's own tests, written as a third party would: only meshctl.plugin
and meshctl.testing's fixtures, plans from facts a real host recorded, no host."""

from __future__ import annotations

import hashlib

import meshctl_plugin_example as motd
import pytest

from meshctl.plugin import Change, MeshctlError
from meshctl.testing import SEED_NODE, SEED_TEXT, changes

WITH_MOTD = SEED_TEXT + "motd:\n  text: |\n    Authorised use only.\n"


@pytest.fixture
def plugins(meshctl_plugins_with):
    return meshctl_plugins_with(motd)


def test_fresh_host_gets_the_motd_file(plugins, meshctl_topology, meshctl_plan):
    topo = meshctl_topology(WITH_MOTD, plugins)
    planned = {str(p.op): p for p in changes(meshctl_plan(topo, SEED_NODE, plugins=plugins))}
    assert "/etc/motd.d/meshctl" in planned
    text = planned["/etc/motd.d/meshctl"].op.content
    assert text.startswith("Authorised use only.\n\n")
    assert f"{SEED_NODE}: receptor execution node of mesh recorded" in text


def test_cli_option_reaches_the_file(plugins, meshctl_topology, meshctl_plan):
    topo = meshctl_topology(WITH_MOTD, plugins)
    planned = meshctl_plan(topo, SEED_NODE, plugins=plugins, options={"motd_suffix": "CHG-1"})
    (op,) = [p.op for p in changes(planned) if str(p.op) == "/etc/motd.d/meshctl"]
    assert op.content.endswith("managed by meshctl.\nCHG-1\n")


def test_no_section_no_operations(plugins, meshctl_topology, meshctl_plan):
    plain = {str(p.op) for p in meshctl_plan(meshctl_topology(SEED_TEXT, plugins), SEED_NODE, plugins=plugins)}
    assert not any(path.startswith("/etc/motd.d") for path in plain)


def test_file_already_right_is_no_change(plugins, meshctl_topology, meshctl_plan):
    topo = meshctl_topology(WITH_MOTD, plugins)
    first = {str(p.op): p for p in changes(meshctl_plan(topo, SEED_NODE, plugins=plugins))}
    content = first["/etc/motd.d/meshctl"].op.content
    # The facts a host with the file in place would answer: the planner sees no drift.
    present = {
        "file:/etc/motd.d": {"kind": "dir", "mode": "755", "owner": "root", "group": "root"},
        "file:/etc/motd.d/meshctl": {"kind": "file", "mode": "644", "owner": "root", "group": "root",
                                     "sha256": hashlib.sha256(content.encode()).hexdigest()},
    }
    planned = meshctl_plan(topo, SEED_NODE, "debian12-provisioned", plugins=plugins, facts=present)
    motd_plans = [p for p in planned if str(p.op).startswith("/etc/motd.d")]
    assert motd_plans and not any(isinstance(p, Change) for p in motd_plans), motd_plans


def test_a_too_long_text_is_refused_at_its_line(plugins, meshctl_topology):
    with pytest.raises(MeshctlError) as err:
        meshctl_topology(SEED_TEXT + "motd:\n  text: " + "x" * 1001 + "\n", plugins)
    line = len(SEED_TEXT.splitlines()) + 2
    assert f"mesh.yml:{line}:9: motd.text is 1001 characters long" in err.value.render()
