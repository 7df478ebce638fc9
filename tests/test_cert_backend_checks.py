"""What a certificate backend returns is checked before it goes anywhere (NodeID, key,
chain, validity), and whatever goes wrong in backend code is one line naming the backend
and its plugin: for ``certs issue``, and for provisioning (plan, the CSR exchange)."""

from __future__ import annotations

import broken_backends as BB
import pytest
import yaml

from meshctl.core import pki as C
from meshctl.core.errors import MeshctlError
from meshctl.plugins.cert_backends.checked import BackendError, CheckedBackend

WHO = "certificate backend 'broken' of plugin 'broken_backends'"

# fault -> what the message says (issue() and sign_csr() alike)
PROBLEMS = {
    "no-nodeid": "it has no Receptor NodeID (receptor exits: nodeID=e1 not found): add "
                 "otherName:1.3.6.1.4.1.2312.19.1;UTF8:e1 to its subjectAltName",
    "other-nodeid": "its NodeID is 'someone-else', not 'e1': put otherName:1.3.6.1.4.1.2312.19.1;UTF8:e1",
    "bad-nodeid-encoding": "its NodeID otherName holds no ASN.1 string: encode the node id as a DER UTF8String",
    "other-key": "its public key is not that of ",
    "other-ca": "it does not chain to the backend's trust_bundle() (issuer 'CN=another CA' is not signed by "
                "the CA certificate(s) 'CN=broken CA'): sign with a CA that trust_bundle() returns",
    "expired": "it expired on ",
}


def backend(fault: str) -> CheckedBackend:
    return CheckedBackend(BB.Broken(BB.Options(fault=fault), None), "broken", "broken_backends")


def csr(node_id: str = "e1", addresses=("e1.example.com",)) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return C.csr_for(C.generate_key("ecdsa-p256"), node_id, addresses).public_bytes(serialization.Encoding.PEM)


def test_a_good_backend_passes_unchanged():
    b = backend("none")
    key_pem, cert_pem = b.issue("e1", ["e1.example.com"], "ecdsa-p256", 5)
    assert C.public_key_pem(key_pem) == C.public_key_pem(cert_pem)
    assert C.inspect_cert(b.sign_csr(csr(), "e1", ["e1.example.com"], 5)).node_ids == ["e1"]


@pytest.mark.parametrize("fault", sorted(PROBLEMS))
@pytest.mark.parametrize("method", ["issue", "sign_csr"])
def test_a_certificate_receptor_would_refuse_is_refused_naming_the_plugin(fault, method):
    with pytest.raises(BackendError) as info:
        if method == "issue":
            backend(fault).issue("e1", ["e1.example.com"], "ecdsa-p256", 5)
        else:
            backend(fault).sign_csr(csr(), "e1", ["e1.example.com"], 5)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{WHO}: {method}() returned a certificate for node 'e1' that meshctl will not use: ")
    assert PROBLEMS[fault] in msg
    if fault == "other-key":
        assert ("the CSR" if method == "sign_csr" else "the key returned with it") in msg


def test_names_and_key_type_are_checked_too():
    fixed = CheckedBackend(_OtherNames([]), "broken", "broken_backends")
    with pytest.raises(BackendError, match=r"its subjectAltName lacks DNS:e1.example.com, which peers dial"):
        fixed.sign_csr(csr(), "e1", ["e1.example.com"], 5)
    with pytest.raises(BackendError, match=r"its key is ecdsa-p256, not the rsa2048 asked for"):
        CheckedBackend(_OneKeyType(), "broken", "broken_backends").issue("e1", [], "rsa2048", 5)


class _OtherNames(BB.Broken):
    """Certifies ``addresses`` whatever it is asked for."""

    def __init__(self, addresses):
        super().__init__(BB.Options(), None)
        self.addresses = addresses

    def sign_csr(self, csr_pem, node_id, addresses, days):
        return super().sign_csr(csr_pem, node_id, self.addresses, days)


class _OneKeyType(BB.Broken):
    def __init__(self):
        super().__init__(BB.Options(), None)

    def issue(self, node_id, addresses, key_type, days):
        return super().issue(node_id, addresses, "ecdsa-p256", days)


@pytest.mark.parametrize("fault,message", [
    ("raise-issue", "failed in issue() for node 'e1': RuntimeError: issue is broken"),
    ("raise-sign_csr", "failed in sign_csr() for node 'e1': RuntimeError: sign_csr is broken"),
    ("raise-trust_bundle", "failed in trust_bundle(): KeyError: 'ca'"),
    ("str-cert", "returned (bytes, str): return (key PEM bytes, certificate PEM bytes)"),
])
def test_an_exception_or_a_wrong_type_names_the_plugin(fault, message):
    b = backend(fault)
    with pytest.raises(BackendError) as info:
        if fault == "raise-sign_csr":
            b.sign_csr(csr(), "e1", [], 5)
        else:
            b.issue("e1", [], "ecdsa-p256", 5)
    assert str(info.value).startswith(WHO) and message in str(info.value)
    assert isinstance(info.value, MeshctlError)  # the CLI prints one line, not "internal error"


def test_the_backends_own_error_keeps_its_words_and_exit_code():
    from meshctl.core.errors import UsageError

    class Says(BB.Broken):
        def trust_bundle(self):
            raise UsageError("set certificates.options.url")

    with pytest.raises(BackendError) as info:
        CheckedBackend(Says(BB.Options(), None), "broken", "broken_backends").trust_bundle()
    assert str(info.value) == f"{WHO}: set certificates.options.url"
    assert info.value.exit_code == UsageError.exit_code


# -- certs issue ----------------------------------------------------------------------

MESH = """\
mesh: checks
certificates: {{backend: broken, key_type: ecdsa-p256, options: {{fault: {fault}}}}}
nodes:
  - {{name: awx, role: control, managed: false, address: awx.example.com, peers: [h1]}}
  - {{name: h1, role: hop, address: h1.example.com, listener: {{port: 27199}}}}
  - {{name: e1, role: execution, address: e1.example.com, peers: [h1]}}
"""


@pytest.mark.parametrize("fault,expect", [
    ("other-ca", f"error: {WHO}: issue() returned a certificate for node 'h1' that meshctl will not use: "
                 "it does not chain to the backend's trust_bundle()"),
    ("no-nodeid", f"error: {WHO}: issue() returned a certificate for node 'h1' that meshctl will not use: "
                  "it has no Receptor NodeID"),
    # validate (run by every command) builds the backend first
    ("raise-factory", f"mesh.yml:2:64: {WHO} failed in its factory: RuntimeError: cannot reach the signing service"),
    ("raise-issue", f"error: {WHO} failed in issue() for node 'h1': RuntimeError: issue is broken"),
])
def test_certs_issue_writes_nothing_and_names_the_plugin(tmp_path, monkeypatch, capsys, fault, expect):
    from meshctl.core.cli import main

    monkeypatch.setenv("MESHCTL_DISABLE_PLUGIN_AUTOLOAD", "1")
    (tmp_path / "mesh.yml").write_text(MESH.format(fault=fault))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["-p", "broken_backends", "certs", "issue", "-f", str(tmp_path / "mesh.yml"), "--out", str(out)])
    lines = [ln.removeprefix(str(tmp_path) + "/") for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert info.value.code not in (0, None)
    assert lines[0].startswith(expect) and lines[1:] in ([], ["1 error(s); nothing was changed"]), lines
    assert "internal error" not in lines[0]
    assert not out.exists() or list(out.iterdir()) == []


def test_certs_issue_with_a_good_backend_writes_everything(tmp_path, monkeypatch, capsys):
    from meshctl.core.cli import main

    monkeypatch.setenv("MESHCTL_DISABLE_PLUGIN_AUTOLOAD", "1")
    (tmp_path / "mesh.yml").write_text(MESH.format(fault="none"))
    with pytest.raises(SystemExit) as info:
        main(["-p", "broken_backends", "certs", "issue", "-f", str(tmp_path / "mesh.yml"), "--out", str(tmp_path / "o")])
    assert info.value.code == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["ca.crt", "e1.crt", "e1.key", "h1.crt", "h1.key"]


# -- provisioning ---------------------------------------------------------------------

def _engine(fault: str, key_location: str = "node"):
    from meshctl.core.engine import Engine
    from meshctl.core.plugins import create_plugin_manager
    from meshctl.core.topology import parse_topology
    from meshctl.testing import RECORDINGS

    plugins = create_plugin_manager(autoload=False, extra=[("broken_backends", BB)])
    data = yaml.safe_load((RECORDINGS / "mesh.yml").read_text())
    data["certificates"] = {"backend": "broken", "key_type": "ecdsa-p256", "key_location": key_location,
                            "options": {"fault": fault}}
    text = yaml.safe_dump(data, sort_keys=False)
    topo = parse_topology(text, str(RECORDINGS / "mesh.yml"), plugins)
    return Engine(topo, plugins), topo.node("exec01.example.com")


def _cert_change(fault: str, key_location: str = "node"):
    from meshctl.testing import recorded_facts

    eng, node = _engine(fault, key_location)
    rec = recorded_facts("debian12-fresh")
    (change,) = [p for p in eng.plan_from_facts(node, rec.os_release, rec.facts) if p.op.id.startswith("cert:")]
    return change


def test_plan_names_the_plugin_when_trust_bundle_raises():
    with pytest.raises(BackendError, match=rf"^{WHO} failed in trust_bundle\(\): KeyError: 'ca'$"):
        _cert_change("raise-trust_bundle")


@pytest.mark.parametrize("fault", ["other-ca", "other-key", "no-nodeid"])
def test_the_nodes_csr_comes_back_signed_wrong_and_is_refused(fault):
    change = _cert_change(fault)
    node_csr = csr("exec01.example.com", ["exec01.example.com"]).decode()
    with pytest.raises(BackendError) as info:
        change.exchange(f"noise\n{node_csr}")
    assert str(info.value).startswith(f"{WHO}: sign_csr() returned a certificate for node 'exec01.example.com'")


def test_a_controller_key_signed_wrong_is_refused_before_it_is_uploaded():
    change = _cert_change("other-ca", key_location="controller")
    with pytest.raises(BackendError, match=r"issue\(\) returned a certificate .* does not chain"):
        change.commands  # noqa: B018 - building the commands calls issue()
