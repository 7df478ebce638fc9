"""meshctl awx plan/sync through the AWX 24.6.1 stand-in (tests/awx_standin, proven to
replay every recorded call): registration, peers as receptor-address ids, groups,
idempotence, drift, and AWX's refusals at their mesh.yml line."""

from __future__ import annotations

import json
import threading
import time

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


def _when(awx, method: str, suffix: str, then, body=None, timeout: float = 10.0) -> threading.Thread:
    """Run ``then()`` once the stand-in has received METHOD .../SUFFIX (with ``body``):
    AWX's task runs after the API call that enqueued it, while meshctl polls."""
    seen = len(awx.calls)

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(c.method == method and c.path.endswith(suffix) and c.status < 300
                   and (body is None or c.body == body) for c in awx.calls[seen:]):
                then()
                return
            time.sleep(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.fixture
def fast_polls(monkeypatch):
    from meshctl.plugins.awx import lifecycle

    monkeypatch.setattr(lifecycle, "POLL", 0.05)


def test_health_check_reports_awx_verdict_per_node(awx, tmp_path, fast_polls):
    assert run(tmp_path, mesh(awx.url), "sync").exit_code == 0
    e1, e2 = (awx.instance(h)["id"] for h in ("exec01.example.com", "exec02.example.com"))

    def task():  # as recorded (900): no receptor socket on the control node
        awx.run_health_check("exec01.example.com", outcome="unavailable")
        awx.run_health_check("exec02.example.com", outcome="unavailable")

    t = _when(awx, "POST", f"/instances/{e2}/health_check/", task)
    r = run(tmp_path, mesh(awx.url), "health", "--timeout", "5")
    t.join(5)
    assert r.exit_code == 1
    nodes = {n["node"]: n for n in json.loads(r.stdout)["nodes"]}
    assert set(nodes) == {"exec01.example.com", "exec02.example.com"}  # hop nodes have no health check
    assert nodes["exec01.example.com"]["node_state"] == "unavailable" and nodes["exec01.example.com"]["done"]
    assert "receptor.sock" in nodes["exec01.example.com"]["errors"]
    assert [c.path for c in awx.writes() if c.path.endswith("/health_check/")] == [
        f"/api/v2/instances/{e1}/health_check/", f"/api/v2/instances/{e2}/health_check/"]


def test_health_check_ready_and_still_pending(awx, tmp_path, fast_polls):
    assert run(tmp_path, mesh(awx.url), "sync").exit_code == 0
    e1 = awx.instance("exec01.example.com")["id"]
    t = _when(awx, "POST", f"/instances/{e1}/health_check/",
              lambda: awx.run_health_check("exec01.example.com", outcome="ready"))
    r = run(tmp_path, mesh(awx.url), "health", "--timeout", "1")
    t.join(5)
    nodes = {n["node"]: n for n in json.loads(r.stdout)["nodes"]}
    assert nodes["exec01.example.com"]["ready"] is True
    assert nodes["exec02.example.com"]["done"] is False  # its task never ran: reported, not waited on forever
    assert r.exit_code == 1


def test_remove_deprovisions_and_waits_for_awx(awx, tmp_path, fast_polls):
    assert run(tmp_path, mesh(awx.url), "sync").exit_code == 0
    e2 = awx.instance("exec02.example.com")["id"]
    t = _when(awx, "PATCH", f"/instances/{e2}/", lambda: awx.run_removal("exec02.example.com"),
              body={"node_state": "deprovisioning"})
    r = run(tmp_path, mesh(awx.url), "remove", "exec02.example.com", "--timeout", "5")
    t.join(5)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"command": "awx remove", "node": "exec02.example.com", "removed": True,
                                    "left": ""}
    assert ("PATCH", f"/api/v2/instances/{e2}/", {"node_state": "deprovisioning"}) in [
        (c.method, c.path, c.body) for c in awx.calls]
    assert all(i.hostname != "exec02.example.com" for i in awx.mesh.instances.values())


def test_remove_says_what_is_left_when_awx_keeps_the_node(awx, tmp_path, fast_polls):
    assert run(tmp_path, mesh(awx.url), "sync").exit_code == 0
    r = run(tmp_path, mesh(awx.url), "remove", "exec02.example.com", "--timeout", "1")
    assert r.exit_code == 1
    assert "AWX still lists exec02.example.com as deprovisioning after 1s" in json.loads(r.stdout)["left"]


def test_status_shows_awx_view_and_what_differs(awx, tmp_path, fast_polls):
    r = run(tmp_path, mesh(awx.url), "status")
    assert r.exit_code == 1
    rows = {n["node"]: n for n in json.loads(r.stdout)["nodes"]}
    assert not any(n["registered"] for n in rows.values())
    assert run(tmp_path, mesh(awx.url), "sync").exit_code == 0
    awx.run_health_check("exec01.example.com", outcome="unavailable")
    r = run(tmp_path, mesh(awx.url), "status")
    rows = {n["node"]: n for n in json.loads(r.stdout)["nodes"]}
    assert rows["hop01.example.com"]["ok"] is True  # registered, in step; hops have no health check
    e1 = rows["exec01.example.com"]
    assert (e1["node_state"], e1["ok"], e1["differs"]) == ("unavailable", False, [])
    assert "receptor.sock" in e1["errors"]
    assert rows["exec02.example.com"]["node_state"] == "installed"  # never checked yet
    assert r.exit_code == 1
