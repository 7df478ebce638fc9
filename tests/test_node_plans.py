"""Whole-node plans from facts recorded on a real lab host (lab/record_facts.py)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from meshctl.core.engine import Engine
from meshctl.core.ops import Change, NoChange
from meshctl.core.topology import load_topology
from meshctl.core.types import OSRelease

DATA = Path(__file__).parent / "data" / "facts"
NODE = "exec01.example.com"


def load(name: str):
    rec = json.loads((DATA / name).read_text())
    return OSRelease(**{**rec["os_release"], "id_like": tuple(rec["os_release"]["id_like"])}), rec["facts"]


@pytest.fixture
def engine(plugins):
    topo = load_topology(DATA / "mesh.yml", plugins)
    return Engine(topo, plugins), topo.node(NODE)


def test_fresh_host_plan_matches_expected(engine):
    eng, node = engine
    release, facts = load("debian12-fresh.json")
    planned = eng.plan_from_facts(node, release, facts)
    expected = yaml.safe_load((DATA / "debian12-fresh.expected.yml").read_text())
    got = [{"op": p.op.id, "summary": p.summary} | ({"commands": [c.line for c in p.commands]}
           if expected_commands(expected, p.op.id) else {}) for p in planned if isinstance(p, Change)]
    assert got == expected


def expected_commands(expected, op_id):
    return any(e["op"] == op_id and "commands" in e for e in expected)


def test_provisioned_host_plans_no_change(engine):
    eng, node = engine
    release, facts = load("debian12-provisioned.json")
    planned = eng.plan_from_facts(node, release, facts)
    assert all(isinstance(p, NoChange) for p in planned), [str(p.op) for p in planned if isinstance(p, Change)]


def test_drifted_config_is_the_only_change(engine):
    eng, node = engine
    release, facts = load("debian12-provisioned.json")
    facts = copy.deepcopy(facts)
    facts["file:/etc/receptor/receptor.conf"]["sha256"] = "0" * 64
    facts["file:/etc/receptor/tls"]["mode"] = "700"
    changed = [(str(p.op), p.summary) for p in eng.plan_from_facts(node, release, facts) if isinstance(p, Change)]
    assert changed == [("/etc/receptor/tls/", "mode 0700 -> 0750"), ("/etc/receptor/receptor.conf", "update content")]


def test_unsupported_os_names_it_and_the_plugins(engine):
    from meshctl.core.engine import PlanError

    eng, node = engine
    _, facts = load("debian12-fresh.json")
    with pytest.raises(PlanError) as info:
        eng.plan_from_facts(node, OSRelease("arch", "", (), "Arch Linux"), facts)
    msg = str(info.value)
    assert "unsupported OS 'Arch Linux'" in msg and "debian (Debian 12, 13; Ubuntu 22.04, 24.04)" in msg
    assert "rhel (RHEL, CentOS Stream, Rocky, AlmaLinux, Oracle Linux 8-10; Fedora)" in msg
