"""A control node meshctl manages (role: control, managed: true), configured the way
awx-operator configures AWX's own receptor (shared/reference/receptor-runtime.md §2)."""

from __future__ import annotations

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from meshctl.core.engine import build_operations
from meshctl.core.errors import TopologyError
from meshctl.core.topology import parse_topology
from meshctl.core.types import NodeContext, OSRelease

MESH = """\
mesh: edge
defaults:
  listener: {port: 27199}
nodes:
  - name: awx01
    role: control
    managed: true
    listener: false
  - name: hop01
    role: hop
    peers_from_control_nodes: true
  - name: exec01
    role: execution
    peers: [hop01]
    peers_from_control_nodes: true
  - name: exec02
    role: execution
    peers: [hop01]
  - name: gw
    role: hop
    listener: {port: 8443, protocol: ws, path: /mesh}
    peers_from_control_nodes: true
"""


def ops_of(plugins, text, name):
    topo = parse_topology(text, "mesh.yml", plugins)
    ctx = NodeContext(node=topo.node(name), topology=topo, os_release=OSRelease("debian", "12"),
                      os_family=plugins.os_families()["debian"])
    return {o.id: o for o in build_operations(plugins, ctx)}


def conf(plugins, text=MESH, name="awx01"):
    data = yaml.safe_load(ops_of(plugins, text, name)["file:/etc/receptor/receptor.conf"].content)
    return {k: [s[k] for s in data if k in s] for k in {next(iter(s)) for s in data}}


def test_control_node_is_configured_like_awx_operators(plugins):
    c = conf(plugins)
    assert c["tls-client"][0]["name"] == "tlsclient"
    assert c["work-signing"] == [{"privatekey": "/etc/receptor/work_private_key.pem", "tokenexpiration": "1m"}]
    assert c["control-service"][0]["filename"] == "/var/run/receptor/receptor.sock"
    assert "work-command" not in c and "work-verification" not in c and "tcp-listener" not in c


def test_control_node_dials_the_nodes_peered_from_control(plugins):
    c = conf(plugins)
    assert c["tcp-peer"] == [{"address": "hop01:27199", "redial": True, "tls": "tlsclient"},
                             {"address": "exec01:27199", "redial": True, "tls": "tlsclient"}]
    assert c["ws-peer"] == [{"address": "wss://gw:8443/mesh", "redial": True, "tls": "tlsclient"}]


def test_other_nodes_keep_their_own_tls_client_name(plugins):
    assert conf(plugins, name="exec02")["tls-client"][0]["name"] == "tls_client"


def test_signing_key_is_deployed_as_a_secret_and_matches_the_nodes_verifying_key(plugins):
    ops = ops_of(plugins, MESH, "awx01")
    key = ops["file:/etc/receptor/work_private_key.pem"]
    assert (key.mode, key.owner, key.secret) == ("0600", "awx", True)
    private = serialization.load_pem_private_key(key.content, password=None)
    pub = ops_of(plugins, MESH, "exec01")["file:/etc/receptor/work_public_key.pem"].content
    assert private.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo) == pub


def test_control_node_gets_ansible_runner_and_receptorctl(plugins):
    pip = ops_of(plugins, MESH, "awx01")["pip:/opt/meshctl/venv"]
    assert {r.key for r in pip.wanted} == {"ansible-runner", "receptorctl"}


def test_control_nodes_stay_unmanaged_unless_asked(plugins):
    topo = parse_topology(MESH.replace("    managed: true\n", ""), "mesh.yml", plugins)
    assert not topo.node("awx01").managed


def errors(plugins, text):
    with pytest.raises(TopologyError) as exc:
        parse_topology(text, "mesh.yml", plugins)
    return [d.message for d in exc.value.diagnostics if d.severity == "error"]


def test_peered_from_control_needs_a_listener(plugins):
    text = MESH.replace("    role: hop\n    peers_from_control_nodes: true\n",
                        "    role: hop\n    listener: false\n    peers_from_control_nodes: true\n")
    assert any("'hop01' is peered from control nodes but has no listener" in e for e in errors(plugins, text))


def test_a_node_may_not_also_dial_the_control_node_that_dials_it(plugins):
    text = MESH.replace("    listener: false\n", "", 1).replace("    peers: [hop01]\n    peers_from_control_nodes",
                                                                "    peers: [hop01, awx01]\n    peers_from_control_nodes")
    assert any("'exec01' peers to control node 'awx01', which also dials it" in e for e in errors(plugins, text))


def _pair(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = tmp_path / "priv.pem"
    pub = tmp_path / "pub.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def test_a_managed_control_node_needs_the_private_half_of_a_given_key(plugins, tmp_path):
    priv, pub = _pair(tmp_path)
    assert any("a managed control node signs work" in e
               for e in errors(plugins, MESH + f"work_signing: {{public_key: {pub}}}\n"))
    ok = MESH + f"work_signing: {{public_key: {pub}, private_key: {priv}}}\n"
    assert ops_of(plugins, ok, "awx01")["file:/etc/receptor/work_private_key.pem"].content == priv.read_bytes()
    (tmp_path / "other").mkdir()
    other, _ = _pair(tmp_path / "other")
    bad = MESH + f"work_signing: {{public_key: {pub}, private_key: {other}}}\n"
    assert any("is not the private half of work_signing.public_key" in e for e in errors(plugins, bad))
