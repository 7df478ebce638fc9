"""Faults on real hosts (issue 12): meshctl SIGKILLed during a first provision, a host's
network cut mid-apply, a host's disk full mid-apply. One failing host must not stop the
others, no managed file may be left half-written, and a rerun must converge.

fault1 is provisioned under kills, then serves as the healthy "other" host of the
network and disk tests; fault2 has its network cut, fault3 its disk filled."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

pytestmark = pytest.mark.integration

# Where the apply script writes managed files (each through a .meshctl.* temporary file).
MANAGED_DIRS = ("/etc/receptor", "/opt/meshctl", "/usr/lib/systemd/system", "/etc/tmpfiles.d",
                "/etc/security/limits.d", "/etc/logrotate.d")
# A run's saved copies; a finished or failed run removes its directory.
ROLLBACK = "/var/lib/meshctl/rollback"
DEAD_PEER_TIMEOUT = 10.0  # lowered from 60 s so the cut is noticed quickly

# provision with SSHOptions.dead_peer_timeout lowered (no CLI option for it yet); the CLI
# builds its SSHOptions from meshctl.core.transport when it runs.
def _mesh(lab, path, *hosts: str):
    nodes = "".join(f"""\
  - name: {h}
    role: hop
    address: {lab.ip(h)}
    listener: {{port: 27199}}
""" for h in hosts)
    return lab.write_mesh(path, f"""\
mesh: faults
defaults:
  ssh: {{user: root, key: {lab.key}, become: true}}
receptor: {{start: false, install: none}}
python: {{wheelhouse: {lab.wheels}}}
work_signing: {{generate: true}}
nodes:
{nodes}""")


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    # Nothing of these runs lands in the user's home.
    return {"MESHCTL_STATE_DIR": str(d / "state"), "MESHCTL_CACHE_DIR": str(d / "cache"), "root": d}


def _env(dirs) -> dict[str, str]:
    return {**os.environ, "MESHCTL_DISABLE_PLUGIN_AUTOLOAD": "1", "PYTHONUNBUFFERED": "1",
            "MESHCTL_STATE_DIR": dirs["MESHCTL_STATE_DIR"], "MESHCTL_CACHE_DIR": dirs["MESHCTL_CACHE_DIR"]}


def _provision(lab, dirs, mesh, *extra: str, rc: int = 0) -> dict:
    r = subprocess.run([sys.executable, "-m", "meshctl", "provision", "-f", str(mesh), "--known-hosts",
                        str(lab.known_hosts), "-o", "json", *extra], capture_output=True, text=True,
                       timeout=300, env=_env(dirs))
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == rc, f"exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout)


def _plan(lab, dirs, mesh) -> str:
    r = subprocess.run([sys.executable, "-m", "meshctl", "plan", "-f", str(mesh), "--known-hosts",
                        str(lab.known_hosts)], capture_output=True, text=True, timeout=120, env=_env(dirs))
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    return r.stdout


def _podman(lab, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["podman", *args], env={**os.environ, **lab.env}, capture_output=True, text=True,
                       timeout=120)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {r.stderr}{r.stdout}")
    return r


def _temp_files(lab, host: str, *extra_dirs: str) -> list[str]:
    dirs = " ".join((*MANAGED_DIRS, *extra_dirs))
    out = lab.exec(host, "sh", "-c", f"find {dirs} -name '.meshctl.*' 2>/dev/null; true").stdout
    return out.split()


def _rollback_dirs(lab, host: str) -> list[str]:
    return lab.exec(host, "sh", "-c", f"ls -A {ROLLBACK} 2>/dev/null; true").stdout.split()


def _scripts(lab, host: str) -> list[str]:
    """meshctl's scripts running on the host (each is an ``sh -s`` fed by sshd)."""
    out = lab.exec(host, "ps", "-eo", "pid=,etimes=,args=").stdout
    return [line.strip() for line in out.splitlines() if line.split(None, 2)[2:] == ["sh -s"]]


def _wait_scripts_gone(lab, host: str, limit: float = 120.0) -> float:
    """Wait (bounded) until no meshctl script runs on the host; returns the seconds waited."""
    start = time.monotonic()
    for _ in range(int(limit / 0.5) + 1):
        if not _scripts(lab, host):
            return time.monotonic() - start
        if time.monotonic() - start > limit:
            break
        time.sleep(0.5)
    raise AssertionError(f"{host}: a meshctl script still runs after {limit:.0f}s: {_scripts(lab, host)}")


def _kill_when(lab, dirs, mesh, pattern: str, delay: float, limit: float = 180.0) -> dict:
    """Run provision -v and SIGKILL it ``delay`` seconds after a progress line containing
    ``pattern`` appears: the kill lands in a known phase, whatever the machine's speed."""
    p = subprocess.Popen([sys.executable, "-m", "meshctl", "provision", "-v", "-f", str(mesh), "--known-hosts",
                          str(lab.known_hosts)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         env=_env(dirs))
    watchdog = threading.Timer(limit, p.kill)  # bounds the read loop below if meshctl hangs
    watchdog.start()
    lines: list[str] = []
    killed = False
    try:
        for line in p.stdout:
            lines.append(line.rstrip())
            if pattern in line:
                time.sleep(delay)
                os.kill(p.pid, signal.SIGKILL)
                killed = True
                break
        p.wait(timeout=30)
    finally:
        watchdog.cancel()
        p.stdout.close()
    return {"killed": killed and p.returncode == -signal.SIGKILL, "lines": lines}


# -- SIGKILL during a first provision ------------------------------------------------

KILLS = [
    # (name, progress line that starts the countdown, delay): the facts round trip is
    # answered in ~50 ms, so the kill follows its line at once.
    ("facts", "gathering", 0.0),
    ("apt", "packages openssl", 1.0),  # apt-get update + install take seconds
    ("venv", "virtualenv /opt/meshctl/venv", 1.5),  # python -m venv with ensurepip
]


@pytest.fixture(scope="module")
def killed(minilab, dirs):
    """fault1 provisioned from fresh through three SIGKILLed runs, then to completion."""
    mesh = _mesh(minilab, dirs["root"] / "kill.yml", "fault1")
    runs = []
    for n, (name, pattern, delay) in enumerate(KILLS):
        run = _kill_when(minilab, dirs, mesh, pattern, delay)
        run["name"] = name
        run["scripts_after_kill"] = _scripts(minilab, "fault1")
        # The host side finishes its step before it notices the client is gone. The last
        # kill's rerun starts at once: it must wait on the host's apply lock, not race it.
        last = n == len(KILLS) - 1
        run["waited"] = 0.0 if last else _wait_scripts_gone(minilab, "fault1")
        run["temp_files"] = _temp_files(minilab, "fault1")
        run["rollback"] = _rollback_dirs(minilab, "fault1")
        print(f"kill {name}: last line {run['lines'][-1]!r}; scripts after kill {run['scripts_after_kill']}; "
              f"waited {run['waited']:.1f}s; rollback dirs {run['rollback']}")
        runs.append(run)
    final = _provision(minilab, dirs, mesh)
    again = _provision(minilab, dirs, mesh)
    return {"mesh": mesh, "runs": runs, "final": final, "again": again,
            "temp_files": _temp_files(minilab, "fault1"), "rollback": _rollback_dirs(minilab, "fault1"),
            "stage": minilab.exec("fault1", "sh", "-c", "ls -d /tmp/meshctl-stage-* 2>/dev/null; true").stdout.split()}


def test_each_kill_landed_in_its_phase(killed):
    facts, apt, venv = killed["runs"]
    assert all(r["killed"] for r in killed["runs"]), [r["lines"][-3:] for r in killed["runs"]]
    assert "gathering" in facts["lines"][-1] and not any("applying" in line for line in facts["lines"])
    assert "packages openssl" in apt["lines"][-1], apt["lines"]
    assert "virtualenv" in venv["lines"][-1], venv["lines"]


def test_no_half_written_file_after_any_kill(killed):
    # The last kill's script was still running when looked at (its rerun waits for it):
    # the check after convergence covers it.
    for run in killed["runs"][:-1]:
        assert run["temp_files"] == [], (run["name"], run["temp_files"])
    assert killed["temp_files"] == []


def test_run_after_the_kills_converges_and_the_next_changes_nothing(minilab, dirs, killed):
    (h,) = killed["final"]["hosts"]
    assert h["status"] == "changed" and h["applied"], h
    assert killed["final"]["summary"]["failed"] == killed["final"]["summary"]["unreachable"] == 0
    (h2,) = killed["again"]["hosts"]
    assert h2["status"] == "ok" and h2["changed"] == 0 and not h2["applied"], h2
    assert killed["again"]["summary"] == {"ok": 1, "changed": 0, "failed": 0, "unreachable": 0}
    assert "fault1: in sync" in _plan(minilab, dirs, killed["mesh"])


def test_a_rerun_started_while_the_killed_script_finishes_waits_for_it(killed):
    # The killed run's script was still running when the rerun started (the race the
    # host's apply lock exists for), and the rerun converged instead of failing on it.
    venv = killed["runs"][-1]
    assert venv["scripts_after_kill"], "the kill left no script running: this test proves nothing"
    (h,) = killed["final"]["hosts"]
    assert h["status"] == "changed" and not h.get("error"), h


def test_no_rollback_or_staging_directory_is_left(killed):
    assert (killed["rollback"], killed["stage"]) == ([], [])


# -- a host's network cut mid-apply ---------------------------------------------------

def _network(lab, host: str) -> tuple[str, str]:
    nets = json.loads(_podman(lab, "inspect", "--format", "{{json .NetworkSettings.Networks}}",
                              lab.names[host]).stdout)
    (net, info), = nets.items()
    return net, info["IPAddress"]


def test_network_cut_fails_that_host_in_bounded_time_and_a_rerun_converges(minilab, dirs, killed):
    mesh = _mesh(minilab, dirs["root"] / "cut.yml", "fault2", "fault1")
    net, ip = _network(minilab, "fault2")
    assert ip == minilab.ip("fault2")
    p = subprocess.Popen([sys.executable, "-m", "meshctl", "provision", "--dead-peer-timeout", str(DEAD_PEER_TIMEOUT),
                          "-f", str(mesh),
                          "--known-hosts", str(minilab.known_hosts), "-o", "json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(dirs))
    cut_at = None
    try:
        # /opt/meshctl is made after the packages step: the apply is under way.
        for _ in range(600):
            if p.poll() is not None or minilab.exec("fault2", "test", "-d", "/opt/meshctl", check=False).returncode == 0:
                break
            time.sleep(0.2)
        assert p.poll() is None, "provision ended before the apply on fault2 started"
        _podman(minilab, "network", "disconnect", net, minilab.names["fault2"])
        cut_at = time.monotonic()
        out, err = p.communicate(timeout=120)
        took = time.monotonic() - cut_at
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)
        if cut_at is not None:
            _podman(minilab, "network", "connect", "--ip", ip, net, minilab.names["fault2"])
    assert "Traceback" not in err, err
    assert p.returncode == 1, f"{out}\n{err}"
    hosts = {h["node"]: h for h in json.loads(out)["hosts"]}
    assert hosts["fault2"]["status"] == "unreachable" and hosts["fault2"]["cause"] == "timeout", hosts["fault2"]
    assert "connection lost mid-command: no answer" in hosts["fault2"]["error"]
    assert hosts["fault1"]["status"] in ("ok", "changed") and not hosts["fault1"]["error"], hosts["fault1"]
    # Keepalive interval (5 s here) plus the timeout, plus slack for a loaded machine.
    assert took < DEAD_PEER_TIMEOUT + 30, took
    print(f"network cut: fault2 reported unreachable {took:.1f}s after the cut")

    # The script on fault2 went on without its client; let it end before the rerun.
    _wait_scripts_gone(minilab, "fault2")
    assert _temp_files(minilab, "fault2") == []
    rerun = _provision(minilab, dirs, mesh)
    assert rerun["summary"]["failed"] == rerun["summary"]["unreachable"] == 0, rerun
    noop = _provision(minilab, dirs, mesh)
    assert noop["summary"] == {"ok": 2, "changed": 0, "failed": 0, "unreachable": 0}, noop


# -- a host's disk full mid-apply ------------------------------------------------------

def test_full_disk_fails_that_host_with_its_cause_and_a_rerun_converges(minilab, dirs, killed):
    mesh = _mesh(minilab, dirs["root"] / "disk.yml", "fault3", "fault1")
    wheels = "/opt/meshctl/wheels"
    # A tiny tmpfs over the wheelhouse: a few wheels fit, then a write runs out of space
    # (the venv, made earlier in /opt/meshctl, stays on the container's own disk).
    _podman(minilab, "exec", "--privileged", minilab.names["fault3"], "sh", "-c",
            f"mkdir -p {wheels} && mount -t tmpfs -o size=256k tmpfs {wheels}")
    try:
        first = _provision(minilab, dirs, mesh, rc=1)
        hosts = {h["node"]: h for h in first["hosts"]}
        assert hosts["fault3"]["status"] == "failed", hosts["fault3"]
        assert "No space left on device" in hosts["fault3"]["error"], hosts["fault3"]["error"]
        assert hosts["fault3"]["failed_step"].startswith(wheels + "/"), hosts["fault3"]
        assert hosts["fault1"]["status"] in ("ok", "changed") and not hosts["fault1"]["error"], hosts["fault1"]
        # The failed write's temporary file is gone, and so is the run's rollback directory.
        assert _temp_files(minilab, "fault3") == []
        assert _rollback_dirs(minilab, "fault3") == []
    finally:
        _podman(minilab, "exec", "--privileged", minilab.names["fault3"], "umount", wheels, check=False)
    assert minilab.exec("fault3", "sh", "-c", f"mountpoint -q {wheels}", check=False).returncode != 0
    rerun = _provision(minilab, dirs, mesh)
    assert {h["node"]: h["status"] for h in rerun["hosts"]} == {"fault3": "changed", "fault1": "ok"}, rerun
    noop = _provision(minilab, dirs, mesh)
    assert noop["summary"] == {"ok": 2, "changed": 0, "failed": 0, "unreachable": 0}, noop
    assert "fault3: in sync" in _plan(minilab, dirs, mesh)
