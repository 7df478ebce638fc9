"""meshctl provision against real sshd hosts: jump hosts, idempotence, host keys,
per-host failures, sudo."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from meshctl.core import receptor as R
from meshctl.core.plugins import create_plugin_manager
from meshctl.core.topology import load_topology

pytestmark = pytest.mark.integration


def mesh_text(lab, extra_nodes: str = "", user: str = "root") -> str:
    return f"""\
mesh: itest
defaults:
  ssh: {{user: {user}, key: {lab.key}, become: true}}
  listener: {{port: 27199, protocol: tcp}}
receptor: {{start: false}}
nodes:
  - name: awx-task
    role: control
    managed: false
    address: awx.example.com
  - name: hop01
    role: hop
    address: {lab.ip('hop')}
    peers: [awx-task]
  - name: exec01
    role: execution
    address: {lab.ip('node1')}
    peers: [hop01]
  - name: hidden01
    role: execution
    address: {lab.ip('hidden', 'iso')}
    peers: [hop01]
    ssh: {{via: hop01}}
  - name: hidden02
    role: execution
    address: {lab.ip('hidden2', 'iso')}
    peers: [hidden01]
    ssh: {{via: hidden01}}
{extra_nodes}"""


@pytest.fixture(scope="module")
def mesh(minilab, tmp_path_factory):
    return minilab.write_mesh(tmp_path_factory.mktemp("mesh") / "mesh.yml", mesh_text(minilab))


@pytest.fixture(scope="module")
def provisioned(minilab, mesh):
    first = minilab.provision_json("provision", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts))
    return first


def test_first_provision_changes_every_host(provisioned):
    hosts = {h["node"]: h for h in provisioned["hosts"]}
    assert set(hosts) == {"hop01", "exec01", "hidden01", "hidden02"}
    for h in hosts.values():
        assert h["status"] == "changed", h
        assert h["applied"] and h["changed"] > 5
        assert h["round_trips"] == 3  # OS, facts, apply
        assert h["os"].startswith("Debian GNU/Linux 12")
    assert provisioned["summary"] == {"ok": 0, "changed": 4, "failed": 0, "unreachable": 0}


def test_files_users_and_unit_on_the_hosts(minilab, mesh, provisioned):
    topo = load_topology(mesh, create_plugin_manager(autoload=False))
    for short, node in (("hop", "hop01"), ("node1", "exec01"), ("hidden", "hidden01"), ("hidden2", "hidden02")):
        assert minilab.exec(short, "id", "-un", "awx").stdout.strip() == "awx"
        stat = minilab.exec(short, "stat", "-c", "%U:%G %a", R.CONF_FILE, R.TLS_DIR, R.CA_DIR, R.LOG_DIR).stdout.split("\n")
        assert stat[:4] == ["awx:awx 644", "awx:awx 750", "awx:awx 750", "awx:awx 755"]
        conf = yaml.safe_load(minilab.exec(short, "cat", R.CONF_FILE).stdout)
        sections = {next(iter(s)): s[next(iter(s))] for s in conf}
        assert sections["node"] == {"id": node}
        n = topo.node(node)
        peers = [s["tcp-peer"]["address"] for s in conf if "tcp-peer" in s]
        assert peers == [f"{topo.node(p).address}:27199" for p in n.peers]
        assert ("work-command" in sections) == (n.role == "execution")
        assert minilab.exec(short, "systemctl", "is-enabled", "receptor.service").stdout.strip() == "enabled"
        unit = minilab.exec(short, "systemctl", "cat", "receptor.service").stdout
        assert "ExecStart=/usr/bin/receptor --config /etc/receptor/receptor.conf" in unit
        assert "User=awx" in unit
        tmpfiles = minilab.exec(short, "cat", "/etc/tmpfiles.d/receptor.conf").stdout
        assert "D /var/run/receptor 0750 awx awx -" in tmpfiles
        # No temporary file of an atomic write is left behind.
        assert minilab.exec(short, "sh", "-c", "ls -a /etc/receptor | grep -c meshctl || true").stdout.strip() == "0"


def test_hidden_hosts_were_reached_through_their_jump_hosts(minilab, provisioned):
    # sshd on hidden01 saw logins from hop's iso address, hidden02 from hidden01's.
    log = minilab.exec("hidden", "journalctl", "-u", "ssh", "--no-pager").stdout
    assert re.search(rf"Accepted publickey for root from {re.escape(minilab.ip('hop', 'iso'))} ", log), log[-2000:]
    log2 = minilab.exec("hidden2", "journalctl", "-u", "ssh", "--no-pager").stdout
    assert re.search(rf"Accepted publickey for root from {re.escape(minilab.ip('hidden', 'iso'))} ", log2), log2[-2000:]


def test_second_provision_changes_nothing_in_two_round_trips(minilab, mesh, provisioned):
    again = minilab.provision_json("provision", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts))
    for h in again["hosts"]:
        assert h["status"] == "ok" and h["changed"] == 0, h
        assert h["round_trips"] == 2, h
        assert not h["applied"]
    r = minilab.meshctl("provision", "-v", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts))
    assert "4 host(s): 4 ok, 0 changed, 0 failed, 0 unreachable" in r.stdout
    assert re.search(r"hidden02\W+ok\W+\d+\W+0\W+2\W", r.stdout), r.stdout


def test_plan_shows_drift_as_a_diff_and_changes_nothing(minilab, mesh, provisioned):
    minilab.exec("node1", "sed", "-i", "s/log-level: info/log-level: debug/", R.CONF_FILE)
    minilab.exec("node1", "chmod", "0600", R.TLS_DIR)
    r = minilab.meshctl("plan", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts), "--limit", "exec01")
    assert "exec01: 2 to change" in r.stdout, r.stdout
    assert "-- log-level: debug" in r.stdout and "+- log-level: info" in r.stdout
    assert "/etc/receptor/tls/: mode 0600 -> 0750" in r.stdout
    assert "debug" in minilab.exec("node1", "cat", R.CONF_FILE).stdout  # plan changed nothing
    fixed = minilab.provision_json("provision", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts),
                                   "--limit", "exec01")
    (h,) = fixed["hosts"]
    # receptor.conf changed: with start false the service is not reloaded.
    assert {c["description"] for c in h["changes"]} == {R.CONF_FILE, R.TLS_DIR + "/"}
    assert "debug" not in minilab.exec("node1", "cat", R.CONF_FILE).stdout


def test_unknown_host_keys_are_refused_then_accepted_then_pinned(minilab, mesh, provisioned, tmp_path):
    kh = tmp_path / "kh"
    out = minilab.provision_json("plan", "-f", str(mesh), "--known-hosts", str(kh), "--limit", "hop01,exec01",
                                 check_rc=1)
    for h in out["hosts"]:
        assert h["status"] == "unreachable" and h["cause"] == "hostkey-unknown", h
        assert "--accept-new-host-keys" in h["error"] and "SHA256:" in h["error"]
    assert not kh.exists()
    ok = minilab.provision_json("plan", "-f", str(mesh), "--known-hosts", str(kh), "--accept-new-host-keys")
    assert all(h["status"] == "ok" for h in ok["hosts"]), ok
    recorded = kh.read_text()
    for ip in (minilab.ip("hop"), minilab.ip("node1"), minilab.ip("hidden", "iso"), minilab.ip("hidden2", "iso")):
        assert f"{ip} ssh-ed25519 " in recorded
    # Swap node1's recorded key for another host's: a changed key is always refused.
    other = [ln for ln in recorded.splitlines() if ln.startswith(minilab.ip("hop") + " ")][0].split(" ", 1)[1]
    kh.write_text("\n".join(f"{minilab.ip('node1')} {other}" if ln.startswith(minilab.ip("node1") + " ") else ln
                            for ln in recorded.splitlines()) + "\n")
    bad = minilab.provision_json("plan", "-f", str(mesh), "--known-hosts", str(kh), "--accept-new-host-keys",
                                 check_rc=1)
    by = {h["node"]: h for h in bad["hosts"]}
    assert by["exec01"]["cause"] == "hostkey-changed" and "CHANGED" in by["exec01"]["error"]
    assert by["hop01"]["status"] == "ok"


def test_one_failing_host_never_hides_the_others(minilab, tmp_path, provisioned):
    extra = """\
  - name: refused01
    role: execution
    address: refused01.example.com
    peers: [hop01]
    ssh: {{host: 127.0.0.1, port: 1}}
  - name: badauth01
    role: execution
    address: badauth01.example.com
    peers: [hop01]
    ssh: {{host: {}, user: nosuchuser}}
  - name: jumpfail01
    role: execution
    address: jumpfail01.example.com
    peers: [hop01]
    ssh: {{via: refused01}}
""".format(minilab.ip("node1"))
    mesh = minilab.write_mesh(tmp_path / "mesh.yml", mesh_text(minilab, extra))
    out = minilab.provision_json("provision", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts),
                                 check_rc=1)
    by = {h["node"]: h for h in out["hosts"]}
    assert by["refused01"]["status"] == "unreachable" and by["refused01"]["cause"] == "refused"
    assert by["badauth01"]["cause"] == "auth" and "nosuchuser" in by["badauth01"]["error"]
    assert by["jumpfail01"]["cause"] == "jump" and "refused01" in by["jumpfail01"]["error"]
    for good in ("hop01", "exec01", "hidden01", "hidden02"):
        assert by[good]["status"] == "ok", by[good]
    r = minilab.meshctl("provision", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts), check_rc=1)
    assert "7 host(s): 4 ok, 0 changed, 0 failed, 3 unreachable" in r.stdout
    assert "refused01 [refused]:" in r.stdout


def test_become_through_sudo(minilab, tmp_path, provisioned):
    pub = (minilab.key.parent / (minilab.key.name + ".pub")).read_text()
    script = f"""
set -e
id deploy >/dev/null 2>&1 || useradd -m -s /bin/bash deploy
id deploy2 >/dev/null 2>&1 || useradd -m -s /bin/bash deploy2
echo 'deploy2:s3cret-pass' | chpasswd
echo 'deploy ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/deploy
echo 'deploy2 ALL=(ALL) ALL' > /etc/sudoers.d/deploy2
for u in deploy deploy2; do
  install -d -m 700 -o $u -g $u /home/$u/.ssh
  printf '%s\\n' '{pub.strip()}' > /home/$u/.ssh/authorized_keys
  chown $u:$u /home/$u/.ssh/authorized_keys; chmod 600 /home/$u/.ssh/authorized_keys
done
"""
    minilab.exec("node1", "sh", "-c", script)
    mesh = minilab.write_mesh(tmp_path / "mesh.yml", mesh_text(minilab, user="deploy"))
    out = minilab.provision_json("provision", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts),
                                 "--limit", "exec01")
    assert out["hosts"][0]["status"] == "ok", out  # already provisioned as root: sudo sees the same facts
    mesh2 = minilab.write_mesh(tmp_path / "mesh2.yml", mesh_text(minilab, user="deploy2"))
    out = minilab.provision_json("provision", "-f", str(mesh2), "--known-hosts", str(minilab.known_hosts),
                                 "--limit", "exec01", check_rc=1)
    h = out["hosts"][0]
    assert h["cause"] == "become" and "--ask-become-pass" in h["error"], h
    # With the password (what -K prompts for) the same run works, and the password
    # never appears in the output.
    from meshctl.core.engine import Engine
    from meshctl.core.transport import SSHOptions

    plugins = create_plugin_manager(autoload=False)
    topo = load_topology(mesh2, plugins)
    engine = Engine(topo, plugins, ssh=SSHOptions(known_hosts=minilab.known_hosts, become_password="s3cret-pass"))
    (res,) = engine.run([topo.node("exec01")], apply=True)
    assert res.status == "ok", res.error
    assert "s3cret-pass" not in json.dumps(res.to_json())
    engine_wrong = Engine(topo, plugins, ssh=SSHOptions(known_hosts=minilab.known_hosts, become_password="nope"))
    (bad,) = engine_wrong.run([topo.node("exec01")], apply=False)
    assert bad.status == "unreachable" and bad.cause == "become", bad


def test_invalid_topology_touches_no_host(minilab, tmp_path):
    text = mesh_text(minilab).replace("peers: [hop01]\n    ssh: {via: hop01}", "peers: [hop09]\n    ssh: {via: hop01}")
    mesh = minilab.write_mesh(tmp_path / "mesh.yml", text)
    r = minilab.meshctl("provision", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts), check_rc=2)
    assert re.search(r"mesh\.yml:\d+:\d+: peer 'hop09' is not a node in this topology", r.stderr), r.stderr
    assert "nothing was changed" in r.stderr


def test_verify_passes_then_flags_exactly_the_drifted_node(minilab, mesh, provisioned):
    ok = minilab.provision_json("verify", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts))
    for h in ok["hosts"]:
        assert h["status"] == "ok", h
        assert {c["name"]: c["ok"] for c in h["checks"]} == {
            "service-user": True, "receptor-config": True, "receptor-unit": True}
    minilab.exec("hidden2", "sh", "-c", f"echo '# local edit' >> {R.CONF_FILE}")
    bad = minilab.provision_json("verify", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts), check_rc=1)
    by = {h["node"]: h for h in bad["hosts"]}
    assert [n for n, h in by.items() if h["status"] != "ok"] == ["hidden02"]
    failed = [c for c in by["hidden02"]["checks"] if not c["ok"]]
    assert [c["name"] for c in failed] == ["receptor-config"]
    assert "differs from the topology" in failed[0]["detail"]
    minilab.provision_json("provision", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts),
                           "--limit", "hidden02")
    minilab.provision_json("verify", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts))


def test_ssh_config_proxyjump_and_hostname_are_honoured(minilab, tmp_path, provisioned):
    """A user's ssh_config (HostName, User, IdentityFile, ProxyJump) is enough: the
    topology carries no ssh settings at all, and host keys are still enforced on
    the jump host and the target."""
    cfg = tmp_path / "ssh_config"
    cfg.write_text(f"""\
Host jump
  HostName {minilab.ip('hop')}
  User root
  IdentityFile {minilab.key}
Host hidden01
  HostName {minilab.ip('hidden', 'iso')}
  User root
  IdentityFile {minilab.key}
  ProxyJump jump
""")
    # hidden01 names its ssh_config alias as ssh.host; its address stays the IP peers dial.
    mesh = minilab.write_mesh(tmp_path / "mesh.yml", f"""\
mesh: itest
defaults:
  listener: {{port: 27199}}
receptor: {{start: false}}
nodes:
  - name: hop01
    role: hop
    address: {minilab.ip('hop')}
  - name: hidden01
    role: execution
    address: {minilab.ip('hidden', 'iso')}
    ssh: {{host: hidden01}}
    peers: [hop01]
""")
    out = minilab.provision_json("plan", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts),
                                 "--ssh-config", str(cfg), "--limit", "hidden01")
    assert out["hosts"][0]["status"] == "ok", out
    # Without the jump host's key the chain is refused at the jump host.
    kh = tmp_path / "kh"
    kh.write_text("".join(ln + "\n" for ln in minilab.known_hosts.read_text().splitlines()
                          if not ln.startswith(minilab.ip('hop') + " ")))
    bad = minilab.provision_json("plan", "-f", str(mesh), "--known-hosts", str(kh),
                                 "--ssh-config", str(cfg), "--limit", "hidden01", check_rc=1)
    assert bad["hosts"][0]["cause"] == "hostkey-unknown", bad
    assert minilab.ip('hop') in bad["hosts"][0]["error"]
