"""``status --awx`` and ``remove --awx`` end to end: the mini lab's real hosts as meshctl
probes them, beside the AWX 24.6.1 stand-in's records (AWX itself cannot run here)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from meshctl.core import receptor as R

from .test_provision import mesh_text

pytestmark = pytest.mark.integration
EXECUTION = ["exec01", "hidden01", "hidden02"]


@pytest.fixture(scope="module")
def awx_mesh(minilab, tmp_path_factory):
    from awx_standin import PASSWORD, RECORDINGS, USER, awx_standin

    if not RECORDINGS.is_dir():
        pytest.skip(f"AWX recordings not found at {RECORDINGS}")
    with awx_standin() as awx:
        text = mesh_text(minilab) + (f'awx: {{url: "{awx.url}", username: {USER}, password_env: ITEST_AWX_PASSWORD, '
                                     'deprovision_timeout: 2}\n')
        path = minilab.write_mesh(tmp_path_factory.mktemp("awx") / "mesh.yml", text)
        env = {"ITEST_AWX_PASSWORD": PASSWORD}
        minilab.meshctl("provision", "-f", str(path), "--known-hosts", str(minilab.known_hosts), env=env)
        minilab.meshctl("awx", "sync", "-f", str(path), env=env)
        for host in EXECUTION:
            awx.run_health_check(host, outcome="ready", version="ansible-runner-2.4.0")
        yield awx, path, env


def test_status_awx_shows_both_views_in_one_table(minilab, awx_mesh):
    awx, path, env = awx_mesh
    r = minilab.meshctl("status", "--awx", "-f", str(path), "--known-hosts", str(minilab.known_hosts), "-o", "json",
                        check_rc=None, env=env)
    nodes = {n["node"]: n for n in json.loads(r.stdout)["nodes"]}
    assert set(nodes) == {"hop01", *EXECUTION, "awx-task"}
    for host in EXECUTION:
        row = nodes[host]
        assert row["awx"]["registered"] and row["awx"]["node_state"] == "ready"
        # Where meshctl finds the host healthy, the two views agree.
        assert row["disagree"] == ([] if row["healthy"] else ["AWX says ready, meshctl says unhealthy"]), row
    assert nodes["hop01"]["awx"]["capacity"] is None and nodes["awx-task"]["healthy"] is None
    assert r.returncode == (0 if all(nodes[h]["healthy"] for h in ("hop01", *EXECUTION)) else 1), r.stderr
    text = minilab.meshctl("status", "--awx", "-f", str(path), "--known-hosts", str(minilab.known_hosts),
                           check_rc=None, env=env).stdout
    assert "awx state" in text and "disagree" in text


def test_status_without_awx_asks_awx_nothing(minilab, awx_mesh):
    awx, path, env = awx_mesh
    before = len(awx.calls)
    r = minilab.meshctl("status", "-f", str(path), "--known-hosts", str(minilab.known_hosts), "-o", "json",
                        check_rc=None, env=env)
    assert len(awx.calls) == before
    assert all("awx" not in n for n in json.loads(r.stdout)["nodes"])


def test_remove_awx_timing_out_leaves_the_host_as_it_is(minilab, awx_mesh):
    awx, path, env = awx_mesh
    # AWX's removal task never runs: the 2 s wait runs out and the host keeps its files.
    r = minilab.meshctl("remove", "hidden01", "--awx", "--yes", "-f", str(path), "--known-hosts",
                        str(minilab.known_hosts), check_rc=1, env=env)
    assert "AWX still lists hidden01 as deprovisioning" in r.stderr and "no host was changed" in r.stderr
    assert minilab.exec("hidden", "test", "-f", R.CONF_FILE, check=False).returncode == 0


def test_remove_awx_cleans_the_host_once_awx_let_go(minilab, awx_mesh):
    awx, path, env = awx_mesh

    def removal():  # AWX's removal task runs once the node is deprovisioning
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if awx.instance("hidden02")["node_state"] == "deprovisioning":
                awx.run_removal("hidden02")
                return
            time.sleep(0.05)

    assert awx.instance("hidden02")["node_state"] == "ready"

    t = threading.Thread(target=removal, daemon=True)
    t.start()
    r = minilab.meshctl("remove", "hidden02", "--awx", "--awx-timeout", "30", "--yes", "-f", str(path),
                        "--known-hosts", str(minilab.known_hosts), env=env)
    t.join(60)
    assert "hidden02 deprovisioned and removed from AWX" in r.stderr
    assert minilab.exec("hidden2", "test", "-f", R.CONF_FILE, check=False).returncode != 0
    # Put it back for the other tests of the session.
    minilab.meshctl("provision", "-f", str(path), "--known-hosts", str(minilab.known_hosts), "--limit", "hidden02",
                    env=env)
