"""Every operation type applied to a real host through the engine, then planned
again to prove idempotence (the second plan is all "no change")."""

from __future__ import annotations

import types

import pytest

from meshctl.core import ops as O
from meshctl.core.engine import Engine, EngineSettings
from meshctl.core.hookspecs import hookimpl
from meshctl.core.plugins import create_plugin_manager
from meshctl.core.topology import parse_topology
from meshctl.core.transport import SSHOptions

pytestmark = pytest.mark.integration

UNIT = """[Unit]
Description=meshctl test service
[Service]
ExecStart=/bin/sleep infinity
Environment=GEN=%s
[Install]
WantedBy=multi-user.target
"""


def plugin(generation: int, secret: str):
    """An in-process plugin whose operations cover every operation type."""
    mod = types.ModuleType("opsplugin")

    @hookimpl
    def meshctl_node_operations(ctx):
        if ctx.node.name != "ops01":
            return None
        return [
            O.Packages(names=["tree"]),
            O.Group(name="meshtest"),
            O.User(name="meshtest", group="meshtest", home="/home/meshtest"),
            O.Directory(path="/srv/meshtest", mode="0750", owner="meshtest", group="meshtest"),
            O.File(path="/srv/meshtest/plain.txt", content=f"generation {generation}\n", mode="0640",
                   owner="meshtest", group="meshtest"),
            O.File(path="/srv/meshtest/secret.key", content=secret, mode="0600", secret=True),
            O.Absent(path="/srv/meshtest/old.txt"),
            O.File(id="file:unit", path="/etc/systemd/system/meshtest.service", content=UNIT % generation,
                   notify=["service:meshtest.service"]),
            O.Service(unit="meshtest.service", unit_file_op="file:unit"),
            O.Command(command="touch /srv/meshtest/created-once", creates="/srv/meshtest/created-once"),
            O.Command(command="echo ran >> /srv/meshtest/guarded.log", unless="test -s /srv/meshtest/guarded.log"),
        ]

    mod.meshctl_node_operations = meshctl_node_operations
    return mod


def engine_for(minilab, generation: int, secret: str = "SUPER-SECRET-KEY-MATERIAL\n"):
    plugins = create_plugin_manager(autoload=False, block={"base_node", "cert_backends"}, extra=[("opsplugin", plugin(generation, secret))])
    text = f"""\
mesh: ops
defaults:
  ssh: {{user: root, key: {minilab.key}}}
nodes:
  - name: ops01
    role: execution
    address: {minilab.ip('ops')}
    listener: {{port: 27199}}
"""
    topo = parse_topology(text, "mesh.yml", plugins)
    # Only this test plugin's operations: the OS plugins' packages are not under test here.
    only = EngineSettings(op_filter=lambda op: op.id in OWN_IDS)
    return Engine(topo, plugins, ssh=SSHOptions(known_hosts=minilab.known_hosts), settings=only), topo.node("ops01")


OWN_IDS = {
    "packages:tree", "group:meshtest", "user:meshtest", "dir:/srv/meshtest", "file:/srv/meshtest/plain.txt",
    "file:/srv/meshtest/secret.key", "absent:/srv/meshtest/old.txt", "file:unit", "service:meshtest.service",
    "cmd:touch /srv/meshtest/created-once", "cmd:echo ran >> /srv/meshtest/guarded.log",
}


def test_every_operation_type_applies_and_then_holds(minilab):
    minilab.exec("ops", "sh", "-c", "mkdir -p /srv/meshtest && echo stale > /srv/meshtest/old.txt")
    engine, node = engine_for(minilab, 1)
    (first,) = engine.apply([node])
    assert first.status == "changed", first.error
    assert len(first.changes) == 11, [str(c.op) for c in first.changes]
    assert "SUPER-SECRET" not in str(first.to_json())

    assert minilab.exec("ops", "dpkg-query", "-W", "-f=${Status}", "tree").stdout == "install ok installed"
    assert minilab.exec("ops", "id", "-gn", "meshtest").stdout.strip() == "meshtest"
    st = minilab.exec("ops", "stat", "-c", "%U:%G %a", "/srv/meshtest", "/srv/meshtest/plain.txt",
                      "/srv/meshtest/secret.key").stdout.split("\n")
    assert st[:3] == ["meshtest:meshtest 750", "meshtest:meshtest 640", "root:root 600"]
    assert minilab.exec("ops", "cat", "/srv/meshtest/secret.key").stdout == "SUPER-SECRET-KEY-MATERIAL\n"
    assert minilab.exec("ops", "test", "!", "-e", "/srv/meshtest/old.txt", check=False).returncode == 0
    assert minilab.exec("ops", "systemctl", "is-active", "meshtest.service").stdout.strip() == "active"
    assert minilab.exec("ops", "systemctl", "is-enabled", "meshtest.service").stdout.strip() == "enabled"
    assert minilab.exec("ops", "cat", "/srv/meshtest/guarded.log").stdout == "ran\n"
    pid1 = minilab.exec("ops", "systemctl", "show", "-p", "MainPID", "--value", "meshtest.service").stdout.strip()

    (second,) = engine.apply([node])
    assert second.status == "ok" and second.changes == [], [str(c.op) for c in second.changes]
    assert second.round_trips == 2
    assert minilab.exec("ops", "cat", "/srv/meshtest/guarded.log").stdout == "ran\n"

    # A new unit file: daemon-reload and restart (a new main PID); new content: rewritten.
    engine2, _ = engine_for(minilab, 2)
    (third,) = engine2.apply([node])
    summaries = {str(c.op): c.summary for c in third.changes}
    assert summaries == {
        "/srv/meshtest/plain.txt": "update content",
        "/etc/systemd/system/meshtest.service": "update content",
        "service meshtest.service": "daemon-reload, restart",
    }
    pid2 = minilab.exec("ops", "systemctl", "show", "-p", "MainPID", "--value", "meshtest.service").stdout.strip()
    assert pid2 != pid1 and pid2 != "0"
    assert "GEN=2" in minilab.exec("ops", "systemctl", "show", "-p", "Environment", "--value", "meshtest.service").stdout


def test_a_failing_step_stops_the_host_and_leaves_no_half_written_file(minilab):
    mod = types.ModuleType("failplugin")

    @hookimpl
    def meshctl_node_operations(ctx):
        return [
            O.Directory(path="/srv/failtest"),
            O.File(path="/srv/failtest/a", content="a\n"),
            O.File(path="/srv/failtest/b", content="b\n", owner="no-such-owner"),
            O.File(path="/srv/failtest/c", content="c\n"),
        ]

    mod.meshctl_node_operations = meshctl_node_operations
    plugins = create_plugin_manager(autoload=False, block={"base_node", "cert_backends"}, extra=[("failplugin", mod)])
    text = f"mesh: ops\nnodes:\n  - name: ops01\n    role: execution\n    address: {minilab.ip('ops')}\n" \
           "    listener: {port: 27199}\n" \
           f"    ssh: {{user: root, key: {minilab.key}}}\n"
    topo = parse_topology(text, "mesh.yml", plugins)
    own = {"dir:/srv/failtest", "file:/srv/failtest/a", "file:/srv/failtest/b", "file:/srv/failtest/c"}
    engine = Engine(topo, plugins, ssh=SSHOptions(known_hosts=minilab.known_hosts),
                    settings=EngineSettings(op_filter=lambda op: op.id in own))
    (res,) = engine.apply([topo.node("ops01")])
    assert res.status == "failed"
    assert res.failed_step == "/srv/failtest/b"
    assert "step 3/4 '/srv/failtest/b' (create) failed" in res.error and "no-such-owner" in res.error
    assert [str(c.op) for c in res.changes] == ["/srv/failtest/", "/srv/failtest/a"]
    # a was written, b never appeared (not even as a temporary file), c was not attempted.
    listing = minilab.exec("ops", "ls", "-A", "/srv/failtest").stdout.split()
    assert listing == ["a"]


def test_planning_error_touches_nothing(minilab):
    engine, node = engine_for(minilab, 3)
    minilab.exec("ops", "sh", "-c", "rm -rf /srv/meshtest && touch /srv/meshtest")
    (res,) = engine.apply([node])
    assert res.status == "failed"
    assert "/srv/meshtest exists but is a file, not a directory" in res.error
    assert not res.applied
    assert minilab.exec("ops", "test", "-f", "/srv/meshtest").returncode == 0
    minilab.exec("ops", "rm", "-f", "/srv/meshtest")


def _engine_with(minilab, name: str, ops_factory):
    mod = types.ModuleType(name)

    @hookimpl
    def meshctl_node_operations(ctx):
        return ops_factory()

    mod.meshctl_node_operations = meshctl_node_operations
    plugins = create_plugin_manager(autoload=False, block={"base_node", "cert_backends"}, extra=[(name, mod)])
    text = f"mesh: ops\nnodes:\n  - name: ops01\n    role: execution\n    address: {minilab.ip('ops')}\n" \
           "    listener: {port: 27199}\n" \
           f"    ssh: {{user: root, key: {minilab.key}}}\n"
    topo = parse_topology(text, "mesh.yml", plugins)
    ids = {op.id for op in ops_factory()}
    return (Engine(topo, plugins, ssh=SSHOptions(known_hosts=minilab.known_hosts),
                   settings=EngineSettings(op_filter=lambda op: op.id in ids)), topo.node("ops01"))


def test_upload_of_a_large_file_by_sftp(minilab, tmp_path):
    import hashlib
    import os

    blob = tmp_path / "blob.bin"
    blob.write_bytes(os.urandom(3 * 1024 * 1024))
    want = hashlib.sha256(blob.read_bytes()).hexdigest()
    engine, node = _engine_with(minilab, "uploadplugin", lambda: [
        O.Directory(path="/srv/uploadtest"),
        O.Upload(path="/srv/uploadtest/blob.bin", source=str(blob), mode="0750"),
    ])
    (first,) = engine.apply([node])
    assert first.status == "changed", first.error
    assert first.round_trips == 4  # OS, facts, SFTP upload, apply
    out = minilab.exec("ops", "sh", "-c", "sha256sum /srv/uploadtest/blob.bin; stat -c %a /srv/uploadtest/blob.bin; "
                       "ls -d /tmp/meshctl-stage-* 2>/dev/null | wc -l").stdout.split()
    assert out[0] == want and out[2] == "750" and out[3] == "0"  # staging directory removed
    (second,) = engine.apply([node])
    assert second.status == "ok" and second.round_trips == 2
    minilab.exec("ops", "rm", "-rf", "/srv/uploadtest")


GOOD_UNIT = """[Unit]
Description=meshctl guarded-restart test service
[Service]
ExecStart=/bin/sh -c 'grep -qx good /etc/guardtest.conf && exec sleep infinity'
Restart=on-failure
RestartSec=1
[Install]
WantedBy=multi-user.target
"""


def test_guarded_service_rolls_back_a_config_its_service_refuses(minilab):
    """A unit that only stays up with a valid config stands in for receptor: a bad
    config must be rolled back, the service restarted with the old one, and the
    failure reported with the service's log."""
    def ops(conf: str, preflight=None):
        return lambda: [
            O.File(id="file:guardtest-unit", path="/etc/systemd/system/guardtest.service", content=GOOD_UNIT,
                   notify=["service:guardtest.service"]),
            O.File(path="/etc/guardtest.conf", content=conf, notify=["service:guardtest.service"]),
            O.GuardedService(unit="guardtest.service", unit_file_op="file:guardtest-unit", wait=10, settle=3,
                             preflight_script="cat /etc/guardtest.conf" if preflight else None,
                             preflight=preflight),
        ]

    engine, node = _engine_with(minilab, "guardplugin", ops("good\n"))
    (first,) = engine.apply([node])
    assert first.status == "changed", first.error
    assert minilab.exec("ops", "systemctl", "is-active", "guardtest.service").stdout.strip() == "active"
    pid = minilab.exec("ops", "systemctl", "show", "-p", "MainPID", "--value", "guardtest.service").stdout.strip()

    bad, _ = _engine_with(minilab, "guardplugin", ops("bad\n"))
    (res,) = bad.apply([node])
    assert res.status == "failed"
    assert "guardtest.service did not stay active" in res.error, res.error
    assert "meshctl: restored 1 file(s) changed by this run" in res.error
    assert minilab.exec("ops", "cat", "/etc/guardtest.conf").stdout == "good\n"
    assert minilab.exec("ops", "systemctl", "is-active", "guardtest.service").stdout.strip() == "active"
    assert minilab.exec("ops", "sh", "-c", "ls /var/lib/meshctl/rollback 2>/dev/null | wc -l").stdout.strip() == "0"

    # With a preflight that refuses the new file, the service is never restarted.
    refuse, _ = _engine_with(minilab, "guardplugin",
                             ops("bad\n", preflight=lambda out: [] if out.strip() == "good" else ["config says bad"]))
    (res,) = refuse.apply([node])
    assert res.status == "failed" and "preflight refused the new configuration" in res.error, res.error
    assert "config says bad" in res.error and "meshctl: restored 1 file(s)" in res.error
    assert minilab.exec("ops", "cat", "/etc/guardtest.conf").stdout == "good\n"
    pid_after = minilab.exec("ops", "systemctl", "show", "-p", "MainPID", "--value",
                             "guardtest.service").stdout.strip()
    assert pid_after != "0"
    del pid
    minilab.exec("ops", "sh", "-c", "systemctl disable --now guardtest.service; rm -f /etc/guardtest.conf "
                 "/etc/systemd/system/guardtest.service; systemctl daemon-reload")


def test_an_error_on_this_machine_while_planning_is_no_unreachable_host(minilab):
    """Planning happens while the host's shell waits between the OS probe and the
    facts: a plugin's OSError here (an unreadable local file) is a failure of the
    run, not an SSH problem of the host."""
    mod = types.ModuleType("localerror")

    @hookimpl
    def meshctl_node_operations(ctx):
        raise PermissionError(13, "Permission denied", "/etc/meshctl/ca.key")

    mod.meshctl_node_operations = meshctl_node_operations
    plugins = create_plugin_manager(autoload=False, block={"base_node", "cert_backends"}, extra=[("localerror", mod)])
    text = f"mesh: ops\nnodes:\n  - name: ops01\n    role: execution\n    address: {minilab.ip('ops')}\n" \
           "    listener: {port: 27199}\n" \
           f"    ssh: {{user: root, key: {minilab.key}}}\n"
    topo = parse_topology(text, "mesh.yml", plugins)
    engine = Engine(topo, plugins, ssh=SSHOptions(known_hosts=minilab.known_hosts))
    (res,) = engine.plan([topo.node("ops01")])
    assert res.status == "failed" and res.cause != "ssh", (res.status, res.cause, res.error)
    assert "Permission denied" in res.error and "/etc/meshctl/ca.key" in res.error


class _SignFails(O.Operation):
    """Like a certificate made on the node: a command, then plugin code on its output
    (here raising what an HTTP client of a remote CA would)."""

    def __post_init__(self) -> None:
        self.id = "xfail:sign"
        self.description = "sign a CSR"

    def facts(self, manager):
        return []

    def plan(self, facts, changed, manager):
        def exchange(output):
            raise ConnectionError("HTTP 503 from the signing service")

        return O.Change(self, "sign", [O.Cmd("echo csr")], exchange=exchange)


def test_plugin_exception_mid_apply_rolls_back_and_leaves_no_rollback_directory(minilab):
    minilab.exec("ops", "sh", "-c", "mkdir -p /srv/xfail && echo old > /srv/xfail/a && rm -rf /var/lib/meshctl/rollback")
    engine, node = _engine_with(minilab, "xfailplugin", lambda: [
        O.File(path="/srv/xfail/a", content="new\n", backup=True),
        _SignFails(),
    ])
    (res,) = engine.apply([node])
    assert res.status == "failed"
    assert "step 2/2" in res.error and "ConnectionError: HTTP 503 from the signing service" in res.error
    assert "meshctl: restored 1 file(s) changed by this run" in res.error
    out = minilab.exec("ops", "sh", "-c", "cat /srv/xfail/a; ls -A /var/lib/meshctl/rollback 2>/dev/null | wc -l")
    assert out.stdout.split() == ["old", "0"]
    minilab.exec("ops", "rm", "-rf", "/srv/xfail")
