"""receptor.conf rendering compared structurally with the reference layout."""

from __future__ import annotations

import yaml
from seed import edge

from meshctl.core.engine import build_operations
from meshctl.core.receptor import Octal, render_config, scalar
from meshctl.core.topology import parse_topology
from meshctl.core.types import NodeContext, OSRelease

# The seed, exec01 dialing out only.
MESH = edge({"    peers: [hop01.example.com]\n": "    peers: [hop01.example.com]\n    listener: false\n"})

TLS = "/etc/receptor/tls"


def conf_of(plugins, name):
    topo = parse_topology(MESH, "mesh.yml", plugins)
    node = topo.node(name)
    fam = plugins.os_families()["debian"]
    ctx = NodeContext(node=node, topology=topo, os_release=OSRelease("debian", "12"), os_family=fam)
    ops = build_operations(plugins, ctx)
    (conf,) = [o for o in ops if o.id == "file:/etc/receptor/receptor.conf"]
    return yaml.safe_load(conf.content), conf


def test_execution_node_matches_reference_structure(plugins):
    data, op = conf_of(plugins, "exec01.example.com")
    node = "exec01.example.com"
    assert data == [
        {"node": {"id": node, "datadir": "/var/lib/receptor"}},
        {"work-verification": {"publickey": "/etc/receptor/work_public_key.pem"}},
        {"log-level": "info"},
        {"control-service": {"service": "control", "filename": "/var/run/receptor/receptor.sock",
                             "permissions": 0o660, "tls": "tls_server"}},
        {"tls-server": {"name": "tls_server", "cert": f"{TLS}/{node}.crt", "key": f"{TLS}/{node}.key",
                        "clientcas": f"{TLS}/ca/mesh-CA.crt", "requireclientcert": True, "mintls13": False}},
        {"tls-client": {"name": "tls_client", "cert": f"{TLS}/{node}.crt", "key": f"{TLS}/{node}.key",
                        "rootcas": f"{TLS}/ca/mesh-CA.crt", "insecureskipverify": False, "mintls13": False}},
        {"tcp-peer": {"address": "hop01.example.com:27199", "redial": True, "tls": "tls_client"}},
        {"work-command": {"worktype": "ansible-runner", "command": "/opt/meshctl/venv/bin/ansible-runner",
                          "params": "worker", "allowruntimeparams": True, "verifysignature": True}},
    ]
    assert (op.owner, op.group, op.mode) == ("awx", "awx", "0644")
    assert "    permissions: 0660\n" in op.content


def test_hop_node_has_listener_and_no_work(plugins):
    data, _ = conf_of(plugins, "hop01.example.com")
    kinds = [next(iter(s)) for s in data]
    assert kinds == ["node", "log-level", "control-service", "tls-server", "tls-client", "tcp-listener", "tcp-peer"]
    assert data[5] == {"tcp-listener": {"port": 27199, "tls": "tls_server"}}
    assert data[6] == {"tcp-peer": {"address": "awx.example.com:27199", "redial": True, "tls": "tls_client"}}


def test_scalars_round_trip_through_a_yaml_parser():
    values = ["plain", "yes", "No", "1.0", "0660", "has space", "[::1]:27199", "a:b", "#x", "", "~",
              True, False, 27199, Octal(0o660), None, ["a", "b"], {"k": "v"}]
    for v in values:
        parsed = yaml.safe_load(f"k: {scalar(v)}\n")["k"]
        assert parsed == (int(v) if isinstance(v, Octal) else v), (v, scalar(v))


def test_sections_are_ordered_like_awx_bundles():
    text = render_config("m", [{"work-command": {"worktype": "x"}}, {"tcp-peer": {"address": "a:1"}},
                               {"node": {"id": "n"}}, {"work-verification": {"publickey": "/k"}}])
    assert [next(iter(s)) for s in yaml.safe_load(text)] == ["node", "work-verification", "tcp-peer", "work-command"]
