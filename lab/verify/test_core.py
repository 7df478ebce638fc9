"""What the core provisions on every mesh node: the service user, receptor's
directories, limits and tmpfiles entries, receptor.conf and the systemd unit."""

from __future__ import annotations

import yaml

CONF = "/etc/receptor/receptor.conf"


def test_service_user_and_group(host):
    awx = host.user("awx")
    assert awx.exists and awx.group == "awx" and awx.home == "/home/awx"
    assert host.group("awx").exists
    assert host.file("/home/awx").is_directory


def test_directories_modes_and_owners(host):
    for path, mode in (("/etc/receptor", 0o755), ("/etc/receptor/tls", 0o750),
                       ("/etc/receptor/tls/ca", 0o750), ("/var/log/receptor", 0o755),
                       ("/var/run/receptor", 0o750)):
        d = host.file(path)
        assert d.is_directory, path
        assert (d.user, d.group, d.mode) == ("awx", "awx", mode), path


def test_receptor_conf_describes_this_node(host, node, mesh):
    f = host.file(CONF)
    assert (f.user, f.group, f.mode) == ("awx", "awx", 0o644)
    conf = yaml.safe_load(f.content_string)
    sections = [next(iter(s)) for s in conf]
    assert conf[0] == {"node": {"id": node["name"], "datadir": "/var/lib/receptor"}}
    by_name = {n["name"]: n for n in mesh["nodes"]}
    dials = list(node.get("peers", []))
    if node["role"] == "control":
        dials += [n["name"] for n in mesh["nodes"] if n.get("peers_from_control_nodes") and n["name"] not in dials]
    peers = [s["tcp-peer"]["address"] for s in conf if "tcp-peer" in s]
    assert peers == [f"{by_name[p]['address']}:27199" for p in dials]
    tls = next(s["tls-server"] for s in conf if "tls-server" in s)
    assert tls["cert"] == f"/etc/receptor/tls/{node['name']}.crt"
    assert tls["clientcas"] == "/etc/receptor/tls/ca/mesh-CA.crt" and tls["requireclientcert"] is True
    assert ("work-command" in sections) == (node["role"] == "execution")
    assert ("tcp-listener" in sections) == (node.get("listener") is not False)


def test_work_units_have_a_private_data_directory(host):
    d = host.file("/var/lib/receptor")
    assert d.is_directory and (d.user, d.group, d.mode) == ("awx", "awx", 0o700)


def test_log_rotation_is_configured(host):
    assert host.file("/etc/logrotate.d/receptor").contains("^    copytruncate$")


def test_unit_installed_and_enabled(host):
    unit = host.file("/usr/lib/systemd/system/receptor.service")
    assert unit.contains("^ExecStart=/usr/bin/receptor --config /etc/receptor/receptor.conf$")
    assert unit.contains("^User=awx$")
    assert host.service("receptor").is_enabled
    # As systemd loaded it: work units outlive restarts, a stray HUP restarts receptor.
    shown = host.check_output("systemctl show -p KillMode -p RestartForceExitStatus receptor.service")
    assert "KillMode=process" in shown and "RestartForceExitStatus=HUP" in shown


def test_limits_and_tmpfiles(host):
    assert host.file("/etc/security/limits.d/receptor.conf").contains("^awx hard nofile 8192$")
    assert host.file("/etc/tmpfiles.d/receptor.conf").contains("^D /var/run/receptor 0750 awx awx -$")


def test_no_temporary_files_left(host):
    out = host.check_output("find /etc/receptor /etc/tmpfiles.d /etc/security/limits.d /usr/lib/systemd/system "
                            "-name '.meshctl.*' -print")
    assert out == ""
