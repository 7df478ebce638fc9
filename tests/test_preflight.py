"""Preflight judged from a host's dump (the format the preflight script prints)."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives import serialization

from meshctl.core import pki as C
from meshctl.core import receptor as R
from meshctl.core.receptor import Octal
from meshctl.plugins.base_node import preflight as P

NODE = "exec01.example.com"
M = P.MARK


def pem(cert) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def conf(node=NODE, extra=None, port=27199):
    cert, key = R.node_cert(node), R.node_key(node)
    sections = [
        {"node": {"id": node}},
        {"log-level": "info"},
        {"control-service": {"service": "control", "filename": R.SOCKET, "permissions": Octal(0o660),
                             "tls": "tls_server"}},
        {"tls-server": {"name": "tls_server", "cert": cert, "key": key, "clientcas": R.CA_FILE,
                        "requireclientcert": True, "mintls13": False}},
        {"tls-client": {"name": "tls_client", "cert": cert, "key": key, "rootcas": R.CA_FILE,
                        "insecureskipverify": False, "mintls13": False}},
        {"tcp-listener": {"port": port, "tls": "tls_server"}},
        {"tcp-peer": {"address": "hop01.example.com:27199", "redial": True, "tls": "tls_client"}},
    ] + (extra or [])
    return R.render_config("m", sections)


@pytest.fixture(scope="module")
def pki():
    ca_key, ca = C.create_ca("m Receptor Root CA", "ecdsa-p256")
    key, cert = C.issue_node_cert(ca_key, ca, NODE, [NODE], "ecdsa-p256", 365)
    return {"ca_key": ca_key, "ca": ca, "key": key, "cert": cert}


def dump(pki, *, conf_text=None, cert=None, key=None, ca=None, readable=None, listen=(), resolve=None,
         clock=None, binary="receptor 1.6.9", end=True):
    cert = cert or pki["cert"]
    key = key or pki["key"]
    ca = ca or pki["ca"]
    lines = [f"{M} conf", (conf_text or conf()).rstrip("\n")]
    lines += [f"{M} cert {R.node_cert(NODE)}", pem(cert).rstrip("\n"), f"{M} cert {R.CA_FILE}", pem(ca).rstrip("\n")]
    lines += [f"{M} pubkey {R.node_key(NODE)}", C.public_key_pem(key).decode().rstrip("\n")]
    files = readable if readable is not None else {R.CONF_FILE: True, R.node_cert(NODE): True,
                                                  R.node_key(NODE): True, R.CA_FILE: True}
    lines += [f"{M} readable {1 if ok else 0} {f}" for f, ok in files.items()]
    lines += [f"{M} writable 1 {R.RUN_DIR}", f"{M} writable 1 {R.LOG_DIR}"]
    lines += [f"{M} listen", *listen]
    for h, ok in (resolve or {"hop01.example.com": True}).items():
        lines.append(f"{M} resolve {1 if ok else 0} {h}")
    lines += [f"{M} clock {int(clock if clock is not None else time.time())}", f"{M} binary", binary]
    if end:
        lines.append(f"{M} end")
    return "\n".join(lines) + "\n"


def failures(text, **kw):
    return {name: detail for name, ok, detail in P.evaluate(P.parse(text), NODE, **kw) if not ok}


def test_healthy_node_passes_every_check(pki):
    results = P.evaluate(P.parse(dump(pki)), NODE)
    assert all(ok for _, ok, _ in results), results
    names = {n for n, _, _ in results}
    assert {"config-parses", "node-id", "tls-server:tls_server node-id", "tls-client:tls_client chain",
            "files-readable", "port-27199", "peers-resolve", "clock", "receptor-binary"} <= names


def test_certificate_without_node_id_is_what_receptor_would_die_on(pki):
    ca_key, ca = pki["ca_key"], pki["ca"]
    other_key, other = C.issue_node_cert(ca_key, ca, "someone-else", [NODE], "ecdsa-p256", 365)
    f = failures(dump(pki, cert=other, key=other_key))
    assert "nodeID=exec01.example.com not found" in f["tls-server:tls_server node-id"]


def test_key_mismatch_wrong_ca_and_expired(pki):
    f = failures(dump(pki, key=C.generate_key("ecdsa-p256")))
    assert "is not the key of" in f["tls-server:tls_server key"]
    _, other_ca = C.create_ca("other", "ecdsa-p256")
    f = failures(dump(pki, ca=other_ca))
    assert "tls-client:tls_client chain" in f and "tls-server:tls_server chain" in f
    import datetime as dt

    old = C.sign_node_cert(pki["ca_key"], pki["ca"], pki["key"].public_key(), NODE, [NODE], 1,
                           now=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    f = failures(dump(pki, cert=old))
    assert "expired on" in f["tls-server:tls_server validity"]


def test_unknown_sections_and_keys(pki):
    text = conf(extra=[{"tcp-peerz": {"address": "x:1"}}, {"work-command": {"worktype": "a", "comand": "x"}}])
    f = failures(dump(pki, conf_text=text))
    assert "unknown section 'tcp-peerz'" in f["config-parses"] and "work-command: unknown key(s) comand" in f["config-parses"]
    f = failures(dump(pki, conf_text="- node: {id: [unclosed\n"))
    assert "not valid YAML" in f["config-parses"]
    f = failures(dump(pki, conf_text=conf(node="wrong-id")))
    assert "want exec01.example.com" in f["node-id"]


def test_unreadable_files_port_in_use_resolution_clock_binary(pki):
    f = failures(dump(pki, readable={R.CONF_FILE: True, R.node_cert(NODE): True, R.node_key(NODE): False,
                                     R.CA_FILE: True}))
    assert f["files-readable"] == f"not readable by the service user: {R.node_key(NODE)}"
    busy = ['LISTEN 0      511          0.0.0.0:27199      0.0.0.0:*    users:(("nginx",pid=812,fd=6))']
    assert 'port 27199 is in use by users:(("nginx"' in failures(dump(pki, listen=busy))["port-27199"]
    ours = ['LISTEN 0      4096         0.0.0.0:27199      0.0.0.0:*    users:(("receptor",pid=90,fd=7))']
    assert "port-27199" not in failures(dump(pki, listen=ours))
    assert "hop01.example.com" in failures(dump(pki, resolve={"hop01.example.com": False}))["peers-resolve"]
    now = float(int(time.time()))  # the host reports whole seconds
    f = failures(dump(pki, clock=now + 45), received_at=now)
    assert f["clock"].startswith("+45 s") and "NTP" in f["clock"]
    f = failures(dump(pki, binary="absent"))
    assert f["receptor-binary"] == f"{R.BINARY} is missing"
    assert "receptor-binary" not in failures(dump(pki, binary="absent"), need_binary=False)


def test_cut_short_output_fails_closed(pki):
    assert failures(dump(pki, end=False)) == {"preflight": "the host's preflight output was cut short"}


def test_preflight_script_runs_under_sh():
    """The script is valid POSIX sh (syntax check) and quotes its inputs."""
    import subprocess

    script = P.script("awx", ["hop01.example.com", "we;ird"])
    r = subprocess.run(["sh", "-n"], input=script, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "'we;ird'" in script


def test_server_certificate_must_name_the_address_peers_dial(pki):
    assert failures(dump(pki), dialed_as=[NODE]) == {}
    got = failures(dump(pki), dialed_as=["10.0.0.5"])
    assert list(got) == ["tls-server:tls_server san 10.0.0.5"]
    assert "subjectAltName lacks 10.0.0.5" in got["tls-server:tls_server san 10.0.0.5"]
    assert f"is valid for {NODE.lower()}, not 10.0.0.5" in got["tls-server:tls_server san 10.0.0.5"]


def test_certificate_not_yet_valid_is_named(pki):
    import datetime as dt

    from cryptography import x509

    b = x509.CertificateBuilder().subject_name(pki["cert"].subject).issuer_name(pki["ca"].subject)
    now = dt.datetime.now(dt.UTC)
    cert = (b.public_key(pki["cert"].public_key()).serial_number(7).not_valid_before(now + dt.timedelta(days=2))
            .not_valid_after(now + dt.timedelta(days=30)))
    for ext in pki["cert"].extensions:
        cert = cert.add_extension(ext.value, ext.critical)
    from cryptography.hazmat.primitives import hashes

    got = failures(dump(pki, cert=cert.sign(pki["ca_key"], hashes.SHA256())))
    assert any("not valid before" in d for d in got.values()), got
