"""``meshctl status --awx`` and ``meshctl remove --awx``: AWX's record beside meshctl's
own view, where they disagree, and AWX letting go of a node before its host is cleaned.
AWX is the 24.6.1 stand-in (tests/awx_standin); the hosts are unreachable loopback
ports (status) or a plan/apply stub that only records the order (remove)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from awx_standin import PASSWORD, RECORDINGS, awx_standin
from click.testing import CliRunner
from test_awx_sync import _when, mesh

from meshctl.core.cli import build_cli
from meshctl.core.errors import MeshctlError
from meshctl.core.ops import Absent, Change
from meshctl.core.results import HostResult
from meshctl.plugins.awx.status import disagreements, record
from meshctl.testing import parse, plugin_manager

needs_recordings = pytest.mark.skipif(not RECORDINGS.is_dir(), reason=f"AWX recordings not found at {RECORDINGS}")
HOSTS = ("hop01.example.com", "exec01.example.com", "exec02.example.com")


# -- where the views disagree: a pure function over (meshctl's row, AWX's record) -----

def awx_ready(**over):
    inst = {"node_state": "ready", "capacity": 57, "version": "ansible-runner-2.4.0", "enabled": True,
            "last_health_check": "2026-12-01T20:30:00Z", "errors": ""}
    return record({**inst, **over}, "execution", [])


HEALTHY = {"node": "exec01.example.com", "healthy": True, "ssh": "ok"}
UNREACHABLE = {"node": "exec01.example.com", "healthy": False, "ssh": "unreachable"}
UNHEALTHY = {"node": "exec01.example.com", "healthy": False, "ssh": "ok"}


def test_both_views_healthy_agree():
    assert disagreements(HEALTHY, awx_ready()) == []


def test_a_node_awx_does_not_know_is_one_disagreement():
    assert disagreements(HEALTHY, record({}, "execution", ["register execution node"])) == [
        "not registered in AWX (meshctl awx sync registers it)"]


def test_awx_not_ready_while_meshctl_says_healthy():
    got = disagreements(HEALTHY, awx_ready(node_state="unavailable", errors="Receptor error: no socket"))
    assert got == ["AWX says unavailable: Receptor error: no socket, meshctl says healthy"]
    # Registered but never health-checked: AWX still says installed.
    assert disagreements(HEALTHY, awx_ready(node_state="installed", last_health_check=None)) == [
        "AWX says installed, meshctl says healthy"]


def test_awx_ready_while_meshctl_says_unreachable_or_unhealthy():
    assert disagreements(UNREACHABLE, awx_ready()) == ["AWX says ready, meshctl says unreachable"]
    assert disagreements(UNHEALTHY, awx_ready()) == ["AWX says ready, meshctl says unhealthy"]


def test_both_views_unhealthy_agree():
    # AWX cannot reach it either: nothing disagrees (status exits 1 for the unhealthy node).
    assert disagreements(UNREACHABLE, awx_ready(node_state="unavailable", version="ansible-runner-???",
                                                capacity=0, errors="no socket")) == []


def test_awx_differing_from_mesh_yml_is_a_disagreement():
    row = record(awx_ready(), "execution", ["peers [] -> ['hop01.example.com']", "add to instance group edge"])
    assert disagreements(HEALTHY, row) == ["AWX differs from mesh.yml: peers [] -> ['hop01.example.com']",
                                           "AWX differs from mesh.yml: add to instance group edge"]


def test_version_or_capacity_missing_after_a_health_check():
    assert disagreements(HEALTHY, awx_ready(version="", capacity=0)) == [
        "AWX's health check (2026-12-01T20:30:00Z) left no version and no capacity"]
    assert disagreements(HEALTHY, awx_ready(version="ansible-runner-???")) == [
        "AWX's health check (2026-12-01T20:30:00Z) left no version"]
    # A node disabled in AWX has no capacity on purpose; before any check nothing is missing.
    assert disagreements(HEALTHY, awx_ready(capacity=0, enabled=False)) == []
    assert disagreements(None, awx_ready(version="", last_health_check=None)) == []


def test_hop_nodes_have_no_capacity_and_no_health_check():
    hop = record({"node_state": "installed", "capacity": 0, "version": ""}, "hop", [])
    assert hop["capacity"] is None and hop["ok"] is True
    assert disagreements(UNREACHABLE, hop) == []


# -- through the CLI and the AWX stand-in ---------------------------------------------

def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unreachable(text: str) -> str:
    """Every managed node's SSH at a closed loopback port: meshctl's view is "unreachable"."""
    port = closed_port()
    return text.replace("address: hop01.example.com,", f"address: hop01.example.com, ssh: {{host: 127.0.0.1, port: {port}}},") \
        .replace("address: exec01.example.com,", f"address: exec01.example.com, ssh: {{host: 127.0.0.1, port: {port}}},") \
        .replace("address: exec02.example.com,", f"address: exec02.example.com, ssh: {{host: 127.0.0.1, port: {port}}},")


@pytest.fixture
def awx(monkeypatch):
    if not RECORDINGS.is_dir():
        pytest.skip(f"AWX recordings not found at {RECORDINGS}")
    monkeypatch.setenv("AWX_PASSWORD", PASSWORD)
    with awx_standin() as server:
        yield server


@pytest.fixture
def fast_polls(monkeypatch):
    from meshctl.plugins.awx import lifecycle

    monkeypatch.setattr(lifecycle, "POLL", 0.05)


def meshctl(tmp_path, text: str, *args: str):
    path = tmp_path / "mesh.yml"
    path.write_text(text)
    return CliRunner().invoke(build_cli(plugin_manager()), [*args, "-f", str(path)])


def sync_and_check(awx, tmp_path, text: str, **facts) -> None:
    assert meshctl(tmp_path, text, "awx", "sync").exit_code == 0
    for host in HOSTS[1:]:
        awx.run_health_check(host, outcome="ready", **facts)


def _status_view(text: str, rows: list[dict], **opts):
    """The awx plugin's view through the plugin manager, for meshctl rows given here:
    the part of ``status --awx`` that needs no SSH."""
    plugins = plugin_manager()
    topo = parse(text, plugins)
    (view,) = plugins.status_views(topo, topo.managed_nodes, rows, {"awx": True, **opts})
    return view


def rows_all(healthy=True, ssh="ok"):
    return [{"node": h, "healthy": healthy, "ssh": ssh} for h in HOSTS]


@needs_recordings
def test_the_agreeing_mesh(awx, tmp_path):
    text = mesh(awx.url)
    sync_and_check(awx, tmp_path, text, version="ansible-runner-2.4.0")
    view = _status_view(text, rows_all())
    assert dict(view.disagree) == {}
    e1 = view.nodes["exec01.example.com"]
    assert (e1["registered"], e1["node_state"], e1["version"], e1["errors"]) == (
        True, "ready", "ansible-runner-2.4.0", "")
    assert e1["capacity"] > 0 and view.nodes["hop01.example.com"]["capacity"] is None
    # The control node is AWX's own: shown, never a disagreement.
    assert view.nodes["awx-task"]["node_type"] == "control" and view.nodes["awx-task"]["node_state"] == "ready"


@needs_recordings
def test_each_disagreement_through_the_standin(awx, tmp_path):
    text = mesh(awx.url)
    view = _status_view(text, rows_all())
    assert all(d == ["not registered in AWX (meshctl awx sync registers it)"] for d in view.disagree.values())
    assert set(view.disagree) == set(HOSTS)

    assert meshctl(tmp_path, text, "awx", "sync").exit_code == 0
    awx.run_health_check("exec01.example.com", outcome="unavailable")
    awx.run_health_check("exec02.example.com", outcome="ready", version="", cpu_capacity=0, mem_capacity=0)
    view = _status_view(text, rows_all())
    assert view.disagree["exec01.example.com"][0].startswith("AWX says unavailable: ")
    assert view.disagree["exec01.example.com"][1].endswith("left no version and no capacity")
    assert view.disagree["exec02.example.com"] == [
        f"AWX's health check ({awx.instance('exec02.example.com')['last_health_check']}) left no version "
        "and no capacity"]
    assert "hop01.example.com" not in view.disagree

    awx.run_health_check("exec02.example.com", outcome="ready")
    view = _status_view(text, rows_all(healthy=False, ssh="unreachable"))
    assert view.disagree["exec02.example.com"] == ["AWX says ready, meshctl says unreachable"]

    e2 = awx.instance("exec02.example.com")["id"]
    with awx.mesh.lock:  # someone emptied exec02's peers in AWX's UI
        awx.mesh.links = {k: v for k, v in awx.mesh.links.items() if v[0] != e2}
    view = _status_view(text, rows_all())
    assert view.disagree["exec02.example.com"] == [
        "AWX differs from mesh.yml: peers [] -> ['hop01.example.com']"]


@needs_recordings
def test_status_without_awx_asks_awx_nothing(awx, tmp_path):
    r = meshctl(tmp_path, unreachable(mesh(awx.url)), "status", "-o", "json", "--timeout", "5")
    assert r.exit_code == 1
    assert awx.calls == []
    out = json.loads(r.stdout)
    assert all("awx" not in n and "disagree" not in n for n in out["nodes"])


@needs_recordings
def test_status_awx_in_one_table_and_json(awx, tmp_path):
    text = unreachable(mesh(awx.url))
    sync_and_check(awx, tmp_path, text)
    r = meshctl(tmp_path, text, "status", "--awx", "-o", "json", "--timeout", "5")
    assert r.exit_code == 1
    nodes = {n["node"]: n for n in json.loads(r.stdout)["nodes"]}
    assert set(nodes) == {*HOSTS, "awx-task"}
    assert nodes["exec01.example.com"]["ssh"] == "unreachable"
    assert nodes["exec01.example.com"]["awx"]["node_state"] == "ready"
    assert nodes["exec01.example.com"]["disagree"] == ["AWX says ready, meshctl says unreachable"]
    assert nodes["hop01.example.com"]["disagree"] == [] and nodes["hop01.example.com"]["awx"]["capacity"] is None
    assert nodes["awx-task"]["healthy"] is None and nodes["awx-task"]["disagree"] == []
    r = meshctl(tmp_path, text, "status", "--awx", "--timeout", "5")
    assert r.exit_code == 1
    header = next(line for line in r.stdout.splitlines() if "node" in line and "health" in line)
    for col in ("receptor", "in awx", "awx state", "capacity", "awx version", "awx errors", "disagree"):
        assert col in header
    assert "AWX says ready," in r.stdout and "awx-task" in r.stdout and "not managed" in r.stdout


def test_status_awx_when_awx_cannot_be_reached(tmp_path, monkeypatch):
    monkeypatch.setenv("AWX_PASSWORD", PASSWORD)
    text = unreachable(mesh(f"http://127.0.0.1:{closed_port()}"))
    r = meshctl(tmp_path, text, "status", "--awx", "--timeout", "5")
    assert r.exit_code != 0
    assert isinstance(r.exception, MeshctlError) and "cannot be reached" in str(r.exception)
    assert "exec01.example.com" in r.stdout and "awx state" not in r.stdout  # meshctl's own table, first
    # The real entry point: one error line on stderr, no traceback.
    proc = subprocess.run([sys.executable, "-m", "meshctl", "status", "--awx", "-f", str(tmp_path / "mesh.yml"),
                           "--timeout", "5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: AWX at http://127.0.0.1:")
    assert "Traceback" not in proc.stderr


# -- remove --awx: AWX first, the host only once AWX let go ---------------------------

@pytest.fixture
def hosts(monkeypatch):
    """Engine.plan/apply of remove replaced by a recorder (no SSH here): what was called,
    in order, and whether AWX still listed the node at that moment."""
    from meshctl.core.engine import Engine

    calls: list[tuple[str, str, bool]] = []
    state = {}

    def listed(name):
        awx = state.get("awx")
        return awx is not None and any(i.hostname == name for i in awx.mesh.instances.values())

    def plan(self, nodes):
        calls.extend(("plan", n.name, listed(n.name)) for n in nodes)
        return [HostResult(n.name, changes=[Change(Absent(path="/etc/receptor/receptor.conf"), "remove", [])])
                for n in nodes]

    def apply(self, nodes):
        calls.extend(("apply", n.name, listed(n.name)) for n in nodes)
        return [HostResult(n.name, status="changed", applied=True) for n in nodes]

    monkeypatch.setattr(Engine, "plan", plan)
    monkeypatch.setattr(Engine, "apply", apply)
    return calls, state


@needs_recordings
def test_remove_awx_deprovisions_then_cleans_the_host(awx, tmp_path, fast_polls, hosts):
    calls, state = hosts
    state["awx"] = awx
    text = mesh(awx.url)
    assert meshctl(tmp_path, text, "awx", "sync").exit_code == 0
    e2 = awx.instance("exec02.example.com")["id"]
    t = _when(awx, "PATCH", f"/instances/{e2}/", lambda: awx.run_removal("exec02.example.com"),
              body={"node_state": "deprovisioning"})
    r = meshctl(tmp_path, text, "remove", "exec02.example.com", "--awx", "--awx-timeout", "5", "--yes")
    t.join(5)
    assert r.exit_code == 0, r.output
    assert "awx: exec02.example.com deprovisioned and removed from AWX" in r.stderr
    assert calls == [("plan", "exec02.example.com", True), ("apply", "exec02.example.com", False)]
    assert ("PATCH", f"/api/v2/instances/{e2}/", {"node_state": "deprovisioning"}) in [
        (c.method, c.path, c.body) for c in awx.calls]
    # Again: AWX has no record left, so only the host is looked at (and cleaned by the stub).
    before = len(awx.writes())
    r = meshctl(tmp_path, text, "remove", "exec02.example.com", "--awx", "--yes")
    assert r.exit_code == 0 and "not registered in AWX: nothing to deprovision" in r.stderr
    assert len(awx.writes()) == before


@needs_recordings
def test_remove_awx_timing_out_leaves_the_host_untouched(awx, tmp_path, fast_polls, hosts):
    calls, state = hosts
    state["awx"] = awx
    text = mesh(awx.url).replace("awx: {url:", "awx: {deprovision_timeout: 1, url:")
    assert meshctl(tmp_path, text, "awx", "sync").exit_code == 0
    r = meshctl(tmp_path, text, "remove", "exec02.example.com", "--awx", "--yes", "-o", "json")
    assert r.exit_code == 1
    assert "AWX still lists exec02.example.com as deprovisioning after 1s" in r.stderr
    assert "no host was changed" in r.stderr
    assert calls == [("plan", "exec02.example.com", True)]  # no apply: AWX may still run jobs there
    out = json.loads(r.stdout)
    assert out["removed"] is False and out["before"][0]["ok"] is False
    assert awx.instance("exec02.example.com")["node_state"] == "deprovisioning"


@needs_recordings
def test_remove_without_awx_asks_awx_nothing(awx, tmp_path, hosts):
    calls, _ = hosts
    r = meshctl(tmp_path, mesh(awx.url), "remove", "exec02.example.com", "--yes")
    assert r.exit_code == 0, r.output
    assert awx.calls == [] and [c[0] for c in calls] == ["plan", "apply"]


@needs_recordings
def test_awx_timeout_without_awx_is_refused_before_any_host(awx, tmp_path, hosts):
    calls, _ = hosts
    r = meshctl(tmp_path, mesh(awx.url), "remove", "exec02.example.com", "--awx-timeout", "5", "--yes")
    assert r.exit_code == 1 and "--awx-timeout is for --awx" in r.stderr
    assert awx.calls == [] and [c[0] for c in calls] == ["plan"]  # previewed, never applied


def test_remove_awx_when_awx_cannot_be_reached(tmp_path, monkeypatch, hosts):
    calls, _ = hosts
    monkeypatch.setenv("AWX_PASSWORD", PASSWORD)
    r = meshctl(tmp_path, mesh(f"http://127.0.0.1:{closed_port()}"), "remove", "exec02.example.com", "--awx",
                "--yes")
    assert r.exit_code != 0 and "cannot be reached" in str(r.exception)
    assert [c[0] for c in calls] == ["plan"]


def test_status_and_remove_take_awx_options():
    cli = build_cli(plugin_manager())
    assert {"awx"} <= {p.name for p in cli.commands["status"].params}
    assert {"awx", "awx_timeout"} <= {p.name for p in cli.commands["remove"].params}
    # Blocking base_node (no status/remove) does not break the awx plugin's options.
    cli = build_cli(plugin_manager(block=("base_node",)))
    assert "status" not in cli.commands

