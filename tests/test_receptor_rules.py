"""What receptor accepts, refuses and reloads, encoded in what meshctl renders and
validates (shared/reference/receptor-runtime.md, findings A, B, C, F, G, H, I, J)."""

from __future__ import annotations

import subprocess

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from seed import edge

from meshctl.core.engine import build_operations, plan_operations
from meshctl.core.errors import TopologyError
from meshctl.core.ops import Change
from meshctl.core.receptor import reload_command, render_config, restart_needed, scalar
from meshctl.core.topology import parse_topology
from meshctl.core.types import NodeContext, OSRelease
from meshctl.plugins.cert_backends import work_key_problem

# The seed with hop01 a ws listener on a privileged port under a path, and exec01
# dialing out only.
BASE = edge({"    listener: {port: 27199}\n": "    listener: {port: 443, protocol: ws, path: /mesh}\n",
             "    peers: [hop01.example.com]\n": "    peers: [hop01.example.com]\n    listener: false\n"})


def ops_of(plugins, text, name):
    topo = parse_topology(text, "mesh.yml", plugins)
    ctx = NodeContext(node=topo.node(name), topology=topo, os_release=OSRelease("debian", "12"),
                      os_family=plugins.os_families()["debian"])
    return {o.id: o for o in build_operations(plugins, ctx)}


def conf(plugins, text, name):
    return yaml.safe_load(ops_of(plugins, text, name)["file:/etc/receptor/receptor.conf"].content)


def section(data, kind):
    return [s[kind] for s in data if kind in s]


def errors(plugins, text):
    with pytest.raises(TopologyError) as exc:
        parse_topology(text, "mesh.yml", plugins)
    return [str(d) for d in exc.value.diagnostics if d.severity == "error"]


# -- A: websocket peers ------------------------------------------------------------

def test_ws_peer_speaks_wss_with_the_listener_path(plugins):
    data = conf(plugins, BASE, "exec01.example.com")
    assert section(data, "ws-peer") == [{"address": "wss://hop01.example.com:443/mesh", "redial": True,
                                         "tls": "tls_client"}]


def test_ws_listener_serves_its_path(plugins):
    data = conf(plugins, BASE, "hop01.example.com")
    assert section(data, "ws-listener") == [{"port": 443, "tls": "tls_server", "path": "/mesh"}]


def test_path_is_for_ws_listeners_only(plugins):
    bad = BASE.replace("listener: {port: 27199, protocol: tcp}", "listener: {port: 27199, protocol: tcp, path: /x}")
    assert any("listener path is for protocol ws only" in e for e in errors(plugins, bad))


def test_a_port_below_1024_gets_the_bind_capability_and_others_do_not(plugins):
    hop = ops_of(plugins, BASE, "hop01.example.com")["file:receptor-unit"].content
    exe = ops_of(plugins, BASE, "exec01.example.com")["file:receptor-unit"].content
    assert "AmbientCapabilities=CAP_NET_BIND_SERVICE\n" in hop
    assert "AmbientCapabilities" not in exe


# -- B: signatures -----------------------------------------------------------------

def test_execution_nodes_verify_signatures_by_default(plugins):
    data = conf(plugins, BASE, "exec01.example.com")
    assert section(data, "work-verification") == [{"publickey": "/etc/receptor/work_public_key.pem"}]
    (work,) = section(data, "work-command")
    assert work["verifysignature"] is True
    ops = ops_of(plugins, BASE, "exec01.example.com")
    key = ops["file:/etc/receptor/work_public_key.pem"].content
    assert work_key_problem(key) is None


def test_verify_false_turns_verification_off_with_a_warning(plugins):
    text = BASE + "work_signing: {verify: false}\n"
    topo = parse_topology(text, "mesh.yml", plugins)
    assert any("unsigned work" in d.message for d in topo.warnings)
    data = conf(plugins, text, "exec01.example.com")
    assert section(data, "work-verification") == []
    assert section(data, "work-command")[0]["verifysignature"] is False


def test_verify_false_takes_no_key(plugins):
    text = BASE + "work_signing: {verify: false, generate: true}\n"
    assert any("verify: false takes no key" in e for e in errors(plugins, text))


# -- F: the work public key, read the way receptor reads it --------------------------

def _rsa():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_pkix_rsa_key_from_openssl_is_accepted(tmp_path):
    # A second implementation makes the key AWX's operator makes: genrsa + rsa -pubout.
    key = tmp_path / "k.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "rsa", "-in", str(key), "-pubout"], check=True, capture_output=True).stdout
    assert work_key_problem(pub) is None


@pytest.mark.parametrize("make,words", [
    (lambda: _rsa().public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1),
     "'RSA PUBLIC KEY' PEM block"),
    (lambda: ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), "not an RSA key"),
    (lambda: _rsa().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo) + b"\n", "after the key"),
    (lambda: b"hello", "not a PEM public key"),
])
def test_keys_receptor_would_refuse_at_job_time(make, words):
    problem = work_key_problem(make())
    assert problem is not None and words in problem


def test_validate_names_a_bad_work_key_file(plugins, tmp_path):
    pub = _rsa().public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    (tmp_path / "awx.pem").write_bytes(pub)
    text = BASE + f"work_signing: {{public_key: {tmp_path / 'awx.pem'}}}\n"
    (err,) = errors(plugins, text)
    assert err.startswith("mesh.yml:") and "awx.pem" in err and "RSA PUBLIC KEY" in err


# -- G: what receptor refuses at start ------------------------------------------------

@pytest.mark.parametrize("value", ["0x1f", "0b101", "0o17", "1_000", "1e3", "017", "+1", ".5", "2001-12-14"])
def test_numeric_looking_values_are_quoted(value):
    out = scalar(value)
    assert out.startswith('"') and yaml.safe_load(f"k: {out}")["k"] == value


def test_numeric_looking_node_id_comes_out_quoted(plugins):
    text = BASE.replace("exec01.example.com", "'0x1f'").replace("    peers: [hop01.example.com]\n",
                                                              "    address: e.example.com\n"
                                                              "    peers: [hop01.example.com]\n")
    raw = ops_of(plugins, text, "0x1f")["file:/etc/receptor/receptor.conf"].content
    assert '    id: "0x1f"\n' in raw


def test_localhost_is_reserved(plugins):
    text = BASE.replace("name: exec01.example.com", "name: localhost\n    address: e.example.com")
    assert any("'localhost' is reserved by receptor" in e for e in errors(plugins, text))


def test_a_node_that_neither_listens_nor_dials_is_refused(plugins):
    text = BASE.replace("    peers: [hop01.example.com]\n", "")
    (err,) = errors(plugins, text)
    assert "exec01.example.com" in err and "neither a listener nor peers" in err


def test_an_unmanaged_node_may_be_isolated_in_the_topology(plugins):
    parse_topology(BASE + "  - {name: other, role: control, managed: false}\n", "mesh.yml", plugins)


@pytest.mark.parametrize("bindaddr,ok", [("0.0.0.0", True), ("[::]", True), ("[2001:db8::1]", True),
                                         ("::", False), ("2001:db8::1", False), ("[10.0.0.1]", False),
                                         ("bad host", False)])
def test_bindaddr(plugins, bindaddr, ok):
    text = BASE.replace("listener: {port: 27199, protocol: tcp}",
                        f"listener: {{port: 27199, protocol: tcp, bindaddr: '{bindaddr}'}}")
    if ok:
        parse_topology(text, "mesh.yml", plugins)
    else:
        assert any("bindaddr" in e for e in errors(plugins, text))


# -- C: reload only what reload applies ----------------------------------------------

CONF = render_config("m", [{"node": {"id": "n"}}, {"log-level": "info"},
                           {"tcp-peer": {"address": "a:1", "redial": True, "tls": "c"}}])


@pytest.mark.parametrize("new,restart", [
    ([{"node": {"id": "n"}}, {"log-level": "info"}, {"tcp-peer": {"address": "b:1", "redial": True, "tls": "c"}}],
     False),
    ([{"node": {"id": "n"}}, {"log-level": "info"}, {"tcp-listener": {"port": 1}}], False),
    ([{"node": {"id": "n"}}, {"log-level": "debug"}, {"tcp-peer": {"address": "a:1", "redial": True, "tls": "c"}}],
     True),
    ([{"node": {"id": "n"}}, {"log-level": "info"}, {"tcp-peer": {"address": "a:1", "redial": True, "tls": "c"}},
      {"work-command": {"worktype": "w"}}], True),
])
def test_restart_only_when_more_than_backends_change(new, restart):
    assert restart_needed(CONF, render_config("m", new)) is restart


def test_unreadable_old_config_means_restart():
    assert restart_needed(None, CONF) and restart_needed("- [unclosed", CONF)


@pytest.mark.parametrize("rc,restarted,status", [(0, False, 0), (3, True, 0), (4, False, 4)])
def test_reload_exit_3_restarts_instead_of_failing(tmp_path, rc, restarted, status):
    # The generated shell, with receptorctl and systemctl stand-ins that record calls.
    log = tmp_path / "log"
    for name, body in (("receptorctl", f"echo reload >> {log}; exit {rc}"), ("systemctl", f'echo "$@" >> {log}')):
        (tmp_path / name).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / name).chmod(0o755)
    cmd = reload_command(str(tmp_path / "receptorctl"))
    r = subprocess.run(["sh", "-c", cmd], env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert r.returncode == status
    assert ("restart receptor.service" in log.read_text()) is restarted


def test_config_change_of_log_level_restarts_and_of_peers_reloads(plugins):
    ops = ops_of(plugins, BASE, "exec01.example.com")
    conf_op = ops["file:/etc/receptor/receptor.conf"]
    svc = ops["service:receptor.service"]
    new = conf_op.content

    def plan(old: str):
        import base64
        import hashlib

        facts = {"file:/etc/receptor/receptor.conf": {
            "kind": "file", "sha256": hashlib.sha256(old.encode()).hexdigest(), "mode": "644",
            "owner": "awx", "group": "awx", "content_b64": base64.b64encode(old.encode()).decode()},
            "service:receptor.service": {"enabled": "enabled", "active": "active"}}
        out = plan_operations([conf_op, svc], facts, "apt")
        return [c for c in out if isinstance(c, Change)]

    conf_change, svc_change = plan(new.replace("hop01.example.com:443", "hop02.example.com:443"))
    assert "reload" in conf_change.summary and svc_change.summary.startswith("reload")
    conf_change, svc_change = plan(new.replace("log-level: info", "log-level: debug"))
    assert "restart" in conf_change.summary and svc_change.summary.startswith("restart")


# -- H, I, J: the unit and the data directory ----------------------------------------

def test_unit_keeps_work_running_across_restarts_and_survives_hup(plugins):
    unit = ops_of(plugins, BASE, "exec01.example.com")["file:receptor-unit"].content
    assert "\nKillMode=process\n" in unit
    assert "\nRestartForceExitStatus=SIGHUP\n" in unit


def test_work_units_live_in_a_private_data_directory(plugins):
    ops = ops_of(plugins, BASE, "exec01.example.com")
    assert section(conf(plugins, BASE, "exec01.example.com"), "node") == [
        {"id": "exec01.example.com", "datadir": "/var/lib/receptor"}]
    d = ops["dir:/var/lib/receptor"]
    assert (d.mode, d.owner) == ("0700", "awx")
    custom = BASE + "receptor: {datadir: /srv/receptor}\n"
    assert section(conf(plugins, custom, "exec01.example.com"), "node")[0]["datadir"] == "/srv/receptor"


def test_log_is_rotated_by_copy_and_truncate(plugins):
    rot = ops_of(plugins, BASE, "exec01.example.com")["file:/etc/logrotate.d/receptor"].content
    assert rot.startswith("# Managed by meshctl.\n/var/log/receptor/receptor.log {")
    assert "    copytruncate\n" in rot


@pytest.mark.parametrize("field,value", [("name", "exec01.example.com\\n"), ("address", "e.example.com\\n")])
def test_a_trailing_newline_is_not_a_valid_name_or_address(plugins, field, value):
    # The patterns used to end in "$", which matches before a final newline.
    text = BASE.replace("  - name: exec01.example.com\n",
                        f'  - name: {"exec01.example.com" if field == "address" else chr(34) + value + chr(34)}\n'
                        + (f'    address: "{value}"\n' if field == "address" else ""))
    assert any("is not a valid" in e for e in errors(plugins, text))


def test_csr_script_refuses_a_node_id_with_a_trailing_newline():
    # The id ends up in openssl's -subj inside a shell script run on the node.
    from meshctl.core import pki as C

    with pytest.raises(ValueError):
        C.node_csr_script("/k", "rsa2048", "exec01\n", ["exec01"], "awx", "awx")


@pytest.mark.parametrize("key", ["home", "datadir"])
def test_receptor_paths_are_plain_absolute_paths(plugins, key):
    # They reach unit files, tmpfiles entries and shell commands.
    text = BASE + f'receptor: {{{key}: "/home/awx\\nD /etc 0777 root root -"}}\n'
    assert any(f"receptor.{key}" in e for e in errors(plugins, text))
