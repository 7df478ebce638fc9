"""Operation planning from recorded facts (data files: facts in, commands out)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import yaml

from meshctl.core import ops as O
from meshctl.core.applyscript import render_apply_script
from meshctl.core.planner import plan_operations

DATA = Path(__file__).parent / "data" / "ops"
TYPES = {c.__name__: c for c in (O.File, O.Directory, O.Absent, O.Packages, O.Group, O.User, O.Service, O.Command)}


@pytest.fixture(autouse=True)
def _host_state_dir(tmp_path, monkeypatch):
    """Scripts run here must not touch this machine's /var/lib/meshctl."""
    from meshctl.core import applyscript

    monkeypatch.setattr(applyscript, "HOST_STATE_DIR", str(tmp_path / "hoststate"))


def load_cases():
    for path in sorted(DATA.glob("*.yml")):
        for case in yaml.safe_load(path.read_text()):
            yield pytest.param(case, id=f"{path.stem}: {case['name']}")


def render(cmd: O.Cmd) -> str:
    if cmd.stdin is None:
        return cmd.line
    return f"{cmd.line} <<< {cmd.stdin.replace(chr(10), '')}"


@pytest.mark.parametrize("case", list(load_cases()))
def test_operation_plan(case):
    spec = dict(case["op"])
    op = TYPES[spec.pop("type")](**spec)
    facts = case.get("facts") or {}
    if case.get("fix_sha256"):
        # The recorded fact holds the hash of the desired content (computed here
        # so the data file stays readable).
        key = f"file:{op.path}"
        facts[key]["sha256"] = hashlib.sha256(op.data).hexdigest()
    expect = case["expect"]
    manager = case.get("manager", "apt")
    if "error" in expect:
        with pytest.raises(O.OperationError, match=expect["error"]):
            op.plan(facts, set(case.get("changed", [])), manager)
        return
    # Every fact the plan reads must be one the operation declared.
    declared = {f.key for f in op.facts(manager)}
    assert set(facts) <= declared | set(), (set(facts), declared)
    result = op.plan(facts, set(case.get("changed", [])), manager)
    if "nochange" in expect:
        assert isinstance(result, O.NoChange), result
        assert result.reason == expect["nochange"]
        return
    assert isinstance(result, O.Change), result
    if "summary" in expect:
        assert result.summary == expect["summary"]
    if "commands" in expect:
        assert [render(c) for c in result.commands] == expect["commands"]
    if "diff" in expect:
        assert result.diff == expect["diff"]
    for fragment in expect.get("diff_contains", []):
        assert fragment in (result.diff or ""), result.diff


def test_notify_and_reload_triggers_flow_through_a_plan():
    conf = O.File(path="/etc/receptor/receptor.conf", content="new\n", reload=["service:receptor.service"])
    cert = O.File(path="/etc/receptor/tls/n.crt", content="cert\n", notify=["service:receptor.service"])
    svc = O.Service(unit="receptor.service")
    running = {"service:receptor.service": {"enabled": "enabled", "active": "active"}}
    same = {"kind": "file", "mode": "644", "owner": "root", "group": "root"}

    def facts(conf_same: bool, cert_same: bool):
        f = dict(running)
        f["file:/etc/receptor/receptor.conf"] = dict(same, sha256=hashlib.sha256(b"new\n").hexdigest() if conf_same else "x")
        f["file:/etc/receptor/tls/n.crt"] = dict(same, sha256=hashlib.sha256(b"cert\n").hexdigest() if cert_same else "x")
        return f

    def service_summary(f):
        result = plan_operations([conf, cert, svc], f, "apt")[-1]
        return result.summary if isinstance(result, O.Change) else "no change"

    assert service_summary(facts(True, True)) == "no change"
    assert service_summary(facts(False, True)) == "reload"
    assert service_summary(facts(True, False)) == "restart"
    assert service_summary(facts(False, False)) == "restart"


def test_command_requires_a_guard():
    with pytest.raises(ValueError, match="needs a guard"):
        O.Command(command="rm -rf /tmp/x")


def test_apply_script_never_lets_a_command_read_the_script(tmp_path):
    """Run a rendered script locally with sh: a command that reads stdin must not
    swallow later steps, a failure stops the run and names its step, and the
    temporary file of a half-done write is removed."""
    import subprocess

    target = tmp_path / "out.txt"
    first = O.File(path=str(target), content="hello\n", owner=_me(), group=_mygroup())
    eater = O.Command(command="cat > /dev/null", creates="/nonexistent-x")
    marker = O.Command(command=f"touch {tmp_path}/after", creates="/nonexistent-y")
    changes = [O.Change(first, "create", first.write_commands()),
               O.Change(eater, "run", eater.__class__.plan(eater, {"exists:/nonexistent-x": {"rc": 1}}, set(), "apt").commands),
               O.Change(marker, "run", [O.Cmd(marker.command)])]
    script = render_apply_script(changes, "@@b")
    out = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stdout + out.stderr
    assert target.read_text() == "hello\n"
    assert (tmp_path / "after").exists()
    assert "@@b done" in out.stdout

    bad = O.Command(command="false", creates="/nonexistent-z")
    script = render_apply_script([O.Change(bad, "run", [O.Cmd("false")]), O.Change(marker, "run", [O.Cmd("touch never")])], "@@b")
    out = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert "@@b fail 0 1" in out.stdout and out.returncode == 1
    assert not (tmp_path / "never").exists()

    # A write that fails after mktemp leaves no temporary file behind.
    (tmp_path / "d").mkdir()
    broken = O.File(path=str(tmp_path / "d" / "f"), content="x", owner="no-such-user-xyz")
    script = render_apply_script([O.Change(broken, "create", broken.write_commands())], "@@b")
    out = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=30)
    assert "@@b fail 0" in out.stdout
    assert list((tmp_path / "d").iterdir()) == []


def _me() -> str:
    import os
    import pwd

    return pwd.getpwuid(os.getuid()).pw_name


def _mygroup() -> str:
    import grp
    import os

    return grp.getgrgid(os.getgid()).gr_name


def test_apply_waits_for_another_runs_lock_and_removes_dead_runs_rollback_dirs(tmp_path):
    """A killed run's script may still be finishing its step: a rerun waits for it."""
    import subprocess
    import time

    from meshctl.core import applyscript

    state = Path(applyscript.HOST_STATE_DIR)
    (state / "rollback" / "deadrun").mkdir(parents=True)
    marker = O.Command(command=f"touch {tmp_path}/ran", creates="/nonexistent-y")
    script = render_apply_script([O.Change(marker, "run", [O.Cmd(marker.command)])], "@@b", run_id="mine")
    holder = subprocess.Popen(["flock", str(state / "apply.lock"), "sleep", "1.5"])
    try:
        time.sleep(0.3)
        start = time.monotonic()
        out = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=30)
        waited = time.monotonic() - start
    finally:
        holder.wait(timeout=10)
    assert out.returncode == 0 and "@@b done" in out.stdout, out.stdout + out.stderr
    assert waited >= 1.0 and (tmp_path / "ran").exists()
    assert list((state / "rollback").iterdir()) == []


def test_a_script_whose_reader_is_gone_still_restores_and_cleans_up(tmp_path):
    """When meshctl dies, sshd signals nothing: the script sees SIGPIPE at its next
    write, and must still run its cleanup (restore the files, remove its directories)."""
    import subprocess

    from meshctl.core import applyscript

    target = tmp_path / "f"
    target.write_text("old\n")
    first = O.File(path=str(target), content="new\n", owner=_me(), group=_mygroup(), backup=True)
    slow = O.Command(command="sleep 1; echo after", creates="/nonexistent-y")
    script = render_apply_script([O.Change(first, "update", first.write_commands()),
                                  O.Change(slow, "run", [O.Cmd(slow.command)])], "@@b", run_id="gone")
    reader = subprocess.Popen(["sh", "-s"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    reader.stdin.write(script.encode())
    reader.stdin.close()
    assert reader.stdout.readline().startswith(b"@@b step 0")
    reader.stdout.close()  # meshctl is gone
    assert reader.wait(timeout=30) != 0
    assert target.read_text() == "old\n"
    assert not (Path(applyscript.HOST_STATE_DIR) / "rollback" / "gone").exists()
