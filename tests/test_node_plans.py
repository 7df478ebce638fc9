"""Whole-node plans from facts recorded on a real lab host (lab/record_facts.py)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from meshctl.core.engine import Engine
from meshctl.core.ops import Change, NoChange
from meshctl.core.topology import load_topology
from meshctl.core.types import OSRelease
from meshctl.testing import RECORDINGS, recorded_facts

DATA = RECORDINGS
EXPECTED = Path(__file__).parent / "data" / "plans"
NODE = "exec01.example.com"


def load(name: str):
    rec = recorded_facts(name.removesuffix(".json"))
    return rec.os_release, rec.facts


@pytest.fixture
def engine(plugins):
    topo = load_topology(DATA / "mesh.yml", plugins)
    return Engine(topo, plugins), topo.node(NODE)


def test_fresh_host_plan_matches_expected(engine):
    eng, node = engine
    release, facts = load("debian12-fresh.json")
    planned = eng.plan_from_facts(node, release, facts)
    expected = yaml.safe_load((EXPECTED / "debian12-fresh.expected.yml").read_text())
    got = [{"op": p.op.id, "summary": p.summary} | ({"commands": [c.line for c in p.commands]}
           if expected_commands(expected, p.op.id) else {}) for p in planned if isinstance(p, Change)]
    assert got == expected


def expected_commands(expected, op_id):
    return any(e["op"] == op_id and "commands" in e for e in expected)


def test_provisioned_host_plans_no_change(engine):
    eng, node = engine
    release, facts = load("debian12-provisioned.json")
    planned = eng.plan_from_facts(node, release, facts)
    assert all(isinstance(p, NoChange) for p in planned), [str(p.op) for p in planned if isinstance(p, Change)]


def test_drifted_config_is_the_only_change(engine):
    eng, node = engine
    release, facts = load("debian12-provisioned.json")
    facts = copy.deepcopy(facts)
    facts["file:/etc/receptor/receptor.conf"]["sha256"] = "0" * 64
    facts["file:/etc/receptor/tls"]["mode"] = "700"
    changed = [(str(p.op), p.summary) for p in eng.plan_from_facts(node, release, facts) if isinstance(p, Change)]
    assert changed == [("/etc/receptor/tls/", "mode 0700 -> 0750"), ("/etc/receptor/receptor.conf", "update content (reload: only peers or listeners changed)")]


def test_unsupported_os_names_it_and_the_plugins(engine):
    from meshctl.core.engine import PlanError

    eng, node = engine
    _, facts = load("debian12-fresh.json")
    with pytest.raises(PlanError) as info:
        eng.plan_from_facts(node, OSRelease("arch", "", (), "Arch Linux"), facts)
    msg = str(info.value)
    assert "unsupported OS 'Arch Linux'" in msg and "debian (Debian 12, 13; Ubuntu 22.04, 24.04)" in msg
    assert "rhel (RHEL, CentOS Stream, Rocky, AlmaLinux, Oracle Linux 8-10; Fedora)" in msg


def _with_cert(facts, cert, key=None):
    import base64
    import hashlib

    from cryptography.hazmat.primitives import serialization

    from meshctl.core import pki as C

    facts = copy.deepcopy(facts)
    pem = cert.public_bytes(serialization.Encoding.PEM)
    f = facts[f"file:/etc/receptor/tls/{NODE}.crt"]
    f.update(sha256=hashlib.sha256(pem).hexdigest(), content_b64=base64.b64encode(pem).decode(), size=len(pem))
    if key is not None:
        facts[f"pubkey:/etc/receptor/tls/{NODE}.key"] = {"state": "present", "pem": C.public_key_pem(key).decode()}
    return facts


def _cert_change(eng, node, release, facts):
    out = [p for p in eng.plan_from_facts(node, release, facts) if p.op.id.startswith("cert:")]
    assert len(out) == 1
    return out[0]


@pytest.mark.parametrize("case,expect", [
    ("expiring", "expires in 9.0 days"),
    ("other-ca", "does not chain"),
    ("wrong-names", "subjectAltName lacks DNS:exec01.example.com"),
    ("other-key", "key"),
])
def test_certificate_reissue_reasons(engine, case, expect):
    import datetime as dt

    from meshctl.core import pki as C

    eng, node = engine
    release, facts = load("debian12-provisioned.json")
    ca_key = C.load_private_key((DATA / "ca" / "ca.key").read_bytes())
    ca = C.load_cert((DATA / "ca" / "ca.crt").read_bytes())
    key = C.generate_key("rsa2048")
    names = [node.address]
    if case == "expiring":
        now = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
        cert = C.sign_node_cert(ca_key, ca, key.public_key(), NODE, names, 10, now=now)
    elif case == "other-ca":
        k2, ca2 = C.create_ca("other Receptor Root CA", "ecdsa-p256")
        cert = C.sign_node_cert(k2, ca2, key.public_key(), NODE, names, 3650)
    elif case == "wrong-names":
        cert = C.sign_node_cert(ca_key, ca, key.public_key(), NODE, ["elsewhere.example.com"], 3650)
    else:
        cert = C.sign_node_cert(ca_key, ca, C.generate_key("rsa2048").public_key(), NODE, names, 3650)
    change = _cert_change(eng, node, release, _with_cert(facts, cert, key))
    assert isinstance(change, Change), change
    assert change.summary.startswith("issue: ") and expect in change.summary, change.summary
    assert change.summary.endswith("(key made on the node)")
    assert change.exchange is not None  # the CSR comes back from the node mid-apply


def _started(facts):
    facts = copy.deepcopy(facts)
    facts["service:receptor.service"] = {"enabled": "enabled", "active": "active"}
    facts["version:receptor"] = {"installed": True, "version": "1.6.9"}
    return facts


def _engine_for(plugins, text):
    from meshctl.core.topology import parse_topology

    topo = parse_topology(text, str(DATA / "mesh.yml"), plugins)
    return Engine(topo, plugins), topo.node(NODE)


def test_changed_peers_reload_and_a_changed_certificate_restarts(plugins):
    """With receptor running: a new peer changes only receptor.conf, so receptor is
    reloaded; a reissued certificate needs a restart (TLS files are read at start)."""
    base = (DATA / "mesh.yml").read_text().replace("receptor: {start: false, install: none}",
                                                   "receptor: {start: true, install: none}")
    release, facts = load("debian12-provisioned.json")
    facts = _started(facts)
    eng, node = _engine_for(plugins, base)
    svc = [p for p in eng.plan_from_facts(node, release, facts) if p.op.id == "service:receptor.service"]
    assert isinstance(svc[0], NoChange), svc

    more_peers = base + "  - name: hop02.example.com\n    role: hop\n    peers: [awx-task]\n"
    more_peers = more_peers.replace("    peers: [hop01.example.com]", "    peers: [hop01.example.com, hop02.example.com]")
    eng, node = _engine_for(plugins, more_peers)
    planned = {p.op.id: p for p in eng.plan_from_facts(node, release, facts)}
    changed = sorted(k for k, p in planned.items() if isinstance(p, Change))
    assert changed == ["file:/etc/receptor/receptor.conf", "service:receptor.service"]
    assert planned["service:receptor.service"].summary == "reload (after preflight)"
    assert "+- tcp-peer:\n" in planned["file:/etc/receptor/receptor.conf"].diff
    after = planned["service:receptor.service"].exchange
    assert after is not None  # the host's preflight dump is judged before anything reloads

    eng, node = _engine_for(plugins, base)
    facts2 = copy.deepcopy(facts)
    facts2[f"file:/etc/receptor/tls/{NODE}.crt"]["sha256"] = "0" * 64  # content differs: reissue
    facts2[f"file:/etc/receptor/tls/{NODE}.crt"]["content_b64"] = ""
    planned = {p.op.id: p for p in eng.plan_from_facts(node, release, facts2)}
    assert isinstance(planned[f"cert:/etc/receptor/tls/{NODE}.crt"], Change)
    assert planned["service:receptor.service"].summary == "restart (after preflight)"
