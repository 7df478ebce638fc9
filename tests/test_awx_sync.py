"""meshctl awx plan/sync through the AWX 24.6.1 stand-in (tests/awx_standin, proven to
replay every recorded call): registration, peers as receptor-address ids, groups,
idempotence, drift, and AWX's refusals at their mesh.yml line."""

from __future__ import annotations

import json

import pytest
from awx_standin import PASSWORD, RECORDINGS, USER, awx_standin
from click.testing import CliRunner

from meshctl.core.cli import build_cli
from meshctl.testing import plugin_manager

pytestmark = pytest.mark.skipif(not RECORDINGS.is_dir(), reason=f"AWX recordings not found at {RECORDINGS}")


def mesh(url: str, extra: str = "") -> str:
    return f"""\
mesh: edge
awx: {{url: "{url}", username: {USER}, password_env: AWX_PASSWORD}}
nodes:
  - {{name: awx-task, role: control, managed: false, address: awx-task}}
  - {{name: hop01.example.com, role: hop, address: hop01.example.com, listener: {{port: 27199}},
     peers_from_control_nodes: true}}
  - {{name: exec01.example.com, role: execution, address: exec01.example.com, listener: {{port: 27199}},
     peers_from_control_nodes: true, instance_groups: [edge]}}
  - {{name: exec02.example.com, role: execution, address: exec02.example.com, listener: false,
     peers: [hop01.example.com], instance_groups: [edge]}}
{extra}"""


@pytest.fixture
def awx(monkeypatch):
    monkeypatch.setenv("AWX_PASSWORD", PASSWORD)
    with awx_standin() as server:
        yield server


def run(tmp_path, text: str, *args: str):
    path = tmp_path / "mesh.yml"
    path.write_text(text)
    return CliRunner().invoke(build_cli(plugin_manager()), ["awx", *args, "-f", str(path), "-o", "json"])


def test_sync_registers_peers_and_groups_then_changes_nothing(awx, tmp_path):
    r = run(tmp_path, mesh(awx.url), "sync")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["refused"] == []
    hop, e1, e2 = (awx.instance(h) for h in ("hop01.example.com", "exec01.example.com", "exec02.example.com"))
    assert (hop["node_type"], hop["listener_port"], hop["peers_from_control_nodes"]) == ("hop", 27199, True)
    assert (e1["node_type"], e1["listener_port"], e1["peers_from_control_nodes"]) == ("execution", 27199, True)
    assert (e2["listener_port"], e2["peers_from_control_nodes"]) == (None, False)
    # peers are receptor-address ids: exec02's one peer is hop01's canonical address.
    assert len(e2["peers"]) == 1 and e2["peers"] == [a.id for a in awx.mesh.addresses.values()
                                                     if a.instance == hop["id"]]
    # What AWX would now write into its control node's receptor.conf: a tcp-peer per
    # node flagged peers_from_control_nodes.
    peers = [s["tcp-peer"]["address"] for s in awx.receptor_config() if "tcp-peer" in s]
    assert sorted(peers) == ["exec01.example.com:27199", "hop01.example.com:27199"]
    writes = len(awx.writes())
    r = run(tmp_path, mesh(awx.url), "sync")
    assert r.exit_code == 0 and json.loads(r.stdout)["done"] == []
    assert len(awx.writes()) == writes, "a second sync wrote to AWX"
    r = run(tmp_path, mesh(awx.url), "plan")
    assert json.loads(r.stdout)["steps"] == []


def test_group_membership_is_kept_in_step_both_ways(awx, tmp_path):
    assert run(tmp_path, mesh(awx.url), "sync").exit_code == 0
    (edge,) = [g for g in awx.mesh.groups.values() if g.name == "edge"]

    def members():
        return sorted(awx.mesh.instances[i].hostname for i in edge.members)

    before = members()
    text = mesh(awx.url).replace("peers: [hop01.example.com], instance_groups: [edge]}",
                                 "peers: [hop01.example.com]}")
    r = run(tmp_path, text, "plan")
    assert [(s["kind"], s["target"]) for s in json.loads(r.stdout)["steps"]] == [("disassociate", "exec02.example.com")]
    assert run(tmp_path, text, "sync").exit_code == 0
    assert before == ["exec01.example.com", "exec02.example.com"] and members() == ["exec01.example.com"]


def test_drift_made_in_awx_is_planned_and_undone(awx, tmp_path):
    assert run(tmp_path, mesh(awx.url), "sync").exit_code == 0
    e2 = awx.instance("exec02.example.com")["id"]
    with awx.mesh.lock:  # someone emptied exec02's peers in the UI
        awx.mesh.links = {k: v for k, v in awx.mesh.links.items() if v[0] != e2}
    r = run(tmp_path, mesh(awx.url), "plan")
    steps = json.loads(r.stdout)["steps"]
    assert [(s["kind"], s["target"]) for s in steps] == [("peers", "exec02.example.com")]
    assert run(tmp_path, mesh(awx.url), "sync").exit_code == 0
    assert len(awx.instance("exec02.example.com")["peers"]) == 1


def test_what_awx_refuses_is_reported_at_the_mesh_yml_line(awx, tmp_path):
    assert run(tmp_path, mesh(awx.url), "sync").exit_code == 0
    text = mesh(awx.url).replace("name: exec01.example.com, role: execution, address: exec01.example.com, "
                                 "listener: {port: 27199}",
                                 "name: exec01.example.com, role: execution, address: exec01.example.com, "
                                 "listener: {port: 27200}")
    r = run(tmp_path, text, "plan")
    assert r.exit_code == 1
    (problem,) = json.loads(r.stdout)["refused"]
    assert problem.startswith(f"{tmp_path / 'mesh.yml'}:7:88: exec01.example.com: AWX records listener port 27199")


def test_bad_credentials_are_one_line_without_the_password(monkeypatch, tmp_path):
    monkeypatch.setenv("AWX_PASSWORD", "wrong-" + PASSWORD)
    with awx_standin() as awx:
        r = run(tmp_path, mesh(awx.url), "plan")
    assert r.exit_code != 0
    assert "401" in str(r.exception) and "Authentication credentials were not provided" in str(r.exception)
    assert PASSWORD not in r.output + str(r.exception)
