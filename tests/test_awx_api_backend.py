"""The awx-api certificate backend through the AWX 24.6.1 stand-in (tests/awx_standin):
node certificates from the install_bundle endpoint, one download per certificate
needed, AWX's CA and work key kept, and every certificate checked by openssl too."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from awx_bundles import make_awx_bundle
from awx_standin import PASSWORD, RECORDINGS, USER, awx_standin
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization

from meshctl.core.cli import build_cli
from meshctl.core.errors import MeshctlError, PluginError
from meshctl.core.pki.issue import create_ca
from meshctl.plugin import hookimpl
from meshctl.plugin import receptor as R
from meshctl.testing import changes, parse, plan_from_facts, plugin_manager

pytestmark = pytest.mark.skipif(not RECORDINGS.is_dir(), reason=f"AWX recordings not found at {RECORDINGS}")

HOSTS = {"hop01.example.com": "hop", "exec01.example.com": "execution"}


def mesh(url: str, exec_address: str = "exec01.example.com") -> str:
    return f"""\
mesh: edge
awx: {{url: "{url}", username: {USER}, password_env: AWX_PASSWORD}}
certificates: {{backend: awx-api}}
nodes:
  - {{name: awx-task, role: control, managed: false, address: awx-task}}
  - {{name: hop01.example.com, role: hop, address: hop01.example.com, listener: {{port: 27199}},
     peers_from_control_nodes: true}}
  - {{name: exec01.example.com, role: execution, address: {exec_address}, listener: false,
     peers: [hop01.example.com], instance_groups: [edge]}}
"""


@pytest.fixture(scope="module")
def awx_ca(tmp_path_factory):
    """AWX's mesh CA (as the awx-operator makes it) and its bundles for the two nodes."""
    key, cert = create_ca("awx Receptor Root CA")
    out = tmp_path_factory.mktemp("bundles")
    bundles = {host: make_awx_bundle(out, host=host, node_id=host, role=role, ca_key=key, ca_cert=cert,
                                     peers=[("hop01.example.com:27199", "tcp")] if role == "execution" else ())
               .read_bytes() for host, role in HOSTS.items()}
    return key, cert, bundles


@pytest.fixture
def awx(monkeypatch, awx_ca, meshctl_state_dir):
    monkeypatch.setenv("AWX_PASSWORD", PASSWORD)
    with awx_standin(bundles=awx_ca[2]) as server:
        yield server


def bundle_gets(awx) -> list[str]:
    return [c.path for c in awx.calls if c.path.endswith("/install_bundle/")]


def sync(awx, tmp_path) -> None:
    path = tmp_path / "mesh.yml"
    path.write_text(mesh(awx.url))
    r = CliRunner().invoke(build_cli(plugin_manager()), ["awx", "sync", "-f", str(path), "-o", "json"])
    assert r.exit_code == 0, r.output


def cert_change(planned, node: str):
    (change,) = [c for c in changes(planned) if c.op.id == f"cert:{R.node_cert(node)}"]
    return change


def issued(change) -> tuple[bytes, bytes]:
    """The key and certificate the change would upload (its apply commands hold them)."""
    op = change.op
    return op.backend.issue(op.node_id, op.addresses, op.key_type, op.days)


def test_certificates_come_from_awx_once_each_and_openssl_verifies_them(awx, awx_ca, tmp_path):
    sync(awx, tmp_path)
    topo = parse(mesh(awx.url), plugin_manager(), tmp_path / "mesh.yml")
    planned = plan_from_facts(topo, "exec01.example.com")
    # The plan needed AWX's CA and work key: one bundle, of the first execution node.
    assert len(bundle_gets(awx)) == 1
    change = cert_change(planned, "exec01.example.com")
    assert "key made by meshctl" in change.summary  # AWX made it: the key travels
    key_pem, cert_pem = issued(change)
    assert len(bundle_gets(awx)) == 1  # that same download serves exec01's certificate
    no_key = {f"pubkey:{R.node_key('hop01.example.com')}": {"state": "absent"}}
    hop_change = cert_change(plan_from_facts(topo, "hop01.example.com", facts=no_key), "hop01.example.com")
    issued(hop_change)
    assert len(bundle_gets(awx)) == 2  # hop01's own

    ca = tmp_path / "ca.pem"
    ca.write_bytes(awx_ca_pem(awx))
    crt = tmp_path / "exec01.crt"
    crt.write_bytes(cert_pem)
    r = subprocess.run(["openssl", "verify", "-CAfile", str(ca), str(crt)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr
    key = tmp_path / "exec01.key"
    key.write_bytes(key_pem)
    pub_of = [subprocess.run(["openssl", *args], capture_output=True, check=True).stdout
              for args in (["pkey", "-in", str(key), "-pubout"], ["x509", "-in", str(crt), "-noout", "-pubkey"])]
    assert pub_of[0] == pub_of[1]
    text = subprocess.run(["openssl", "x509", "-in", str(crt), "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout
    assert "1.3.6.1.4.1.2312.19.1" in text and "DNS:exec01.example.com" in text

    # Nodes trust AWX's CA and verify the work AWX signs with AWX's key.
    files = {c.op.id: c.op for c in changes(planned)}
    assert files[f"file:{R.CA_FILE}"].content == awx_ca_pem(awx)
    assert files[f"file:{R.WORK_PUBLIC_KEY}"].content == awx_work_key(awx_ca, "exec01.example.com")


def test_a_second_run_downloads_nothing_for_a_node_with_a_good_certificate(awx, tmp_path):
    sync(awx, tmp_path)
    topo = parse(mesh(awx.url), plugin_manager(), tmp_path / "mesh.yml")
    key_pem, cert_pem = issued(cert_change(plan_from_facts(topo, "exec01.example.com"), "exec01.example.com"))
    before = len(bundle_gets(awx))
    again = parse(mesh(awx.url), plugin_manager(), tmp_path / "mesh.yml")  # a new run
    on_host = {
        f"file:{R.node_cert('exec01.example.com')}": file_fact(cert_pem),
        f"file:{R.node_key('exec01.example.com')}": {"kind": "file", "mode": "0600", "owner": "awx", "group": "awx",
                                                    "size": len(key_pem)},
        f"pubkey:{R.node_key('exec01.example.com')}": {"state": "present", "pem": public_pem(key_pem)},
    }
    planned = plan_from_facts(again, "exec01.example.com", facts=on_host)
    assert not [c for c in changes(planned) if c.op.id.startswith("cert:")]
    assert len(bundle_gets(awx)) == before  # the CA and work key came from the state dir


def test_an_instance_awx_does_not_know_gets_what_to_do(awx, tmp_path):
    topo = parse(mesh(awx.url), plugin_manager(), tmp_path / "mesh.yml")  # never synced
    with pytest.raises(MeshctlError, match=r"AWX has no instance 'exec01.example.com'.*meshctl awx sync"):
        plan_from_facts(topo, "exec01.example.com")
    assert bundle_gets(awx) == []


def test_a_changed_awx_ca_is_kept_and_reported(awx, awx_ca, tmp_path, meshctl_state_dir):
    sync(awx, tmp_path)
    plan_from_facts(parse(mesh(awx.url), plugin_manager(), tmp_path / "mesh.yml"), "exec01.example.com")
    kept = meshctl_state_dir / "edge" / "awx-api" / "mesh-CA.crt"
    assert kept.read_bytes() == awx_ca_pem(awx)
    new_key, new_cert = create_ca("awx Receptor Root CA")
    awx.bundles["exec01.example.com"] = make_awx_bundle(
        tmp_path, host="exec01.example.com", node_id="exec01.example.com", role="execution",
        ca_key=new_key, ca_cert=new_cert).read_bytes()
    topo = parse(mesh(awx.url), plugin_manager(), tmp_path / "mesh.yml")
    with pytest.raises(MeshctlError, match="AWX's mesh CA changed"):
        issued(cert_change(plan_from_facts(topo, "exec01.example.com"), "exec01.example.com"))
    assert kept.read_bytes() == new_cert.public_bytes(serialization.Encoding.PEM)


def test_validate_refuses_an_address_awx_certificates_cannot_name(tmp_path, monkeypatch):
    path = tmp_path / "mesh.yml"
    path.write_text(mesh("https://awx.example.com", exec_address="10.0.0.5"))
    monkeypatch.setenv("AWX_PASSWORD", "x")
    r = meshctl("validate", "-f", str(path))
    assert r.returncode != 0 and "Traceback" not in r.stderr
    line = next(ln for ln in r.stderr.splitlines() if "awx-api" in ln)
    assert line.startswith(f"{path}:8:") and "name only its hostname 'exec01.example.com', not 10.0.0.5" in line


def test_validate_wants_an_awx_section(tmp_path):
    path = tmp_path / "mesh.yml"
    path.write_text("\n".join(ln for ln in mesh("x").splitlines() if not ln.startswith("awx:")) + "\n")
    r = meshctl("validate", "-f", str(path))
    assert r.returncode != 0 and "the awx-api backend downloads certificates from AWX: add an awx: section" in r.stderr


def test_provision_awx_registers_before_touching_hosts(awx, tmp_path):
    """AWX's own order: the instances exist (so their bundles can be fetched) before
    meshctl reaches any host; here the hosts are unreachable, and AWX was still synced."""
    text = mesh(awx.url).replace("listener: false,", "listener: false, ssh: {host: 127.0.0.1, port: 1},")
    text = text.replace("peers_from_control_nodes: true}", "peers_from_control_nodes: true, ssh: {host: 127.0.0.1, port: 1}}")
    path = tmp_path / "mesh.yml"
    path.write_text(text)
    r = CliRunner().invoke(build_cli(plugin_manager()), ["provision", "--awx", "-f", str(path), "-o", "json"])
    assert r.exit_code == 1
    # AWX first (hop, exec, exec's peer, the group and its member), then the hosts.
    assert r.stderr.index("awx: 5 change(s) made") < r.stderr.index("unreachable"), r.stderr
    assert {awx.instance(h)["node_type"] for h in HOSTS} == {"hop", "execution"}
    hosts = {h["node"]: h["status"] for h in json.loads(r.stdout)["hosts"]}
    assert hosts == {h: "unreachable" for h in HOSTS}


# -- helpers -------------------------------------------------------------------------

def meshctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "meshctl", *args], capture_output=True, text=True, timeout=120)


def awx_ca_pem(awx) -> bytes:
    from meshctl.plugins.cert_backends.awx_bundle import read_awx_bundle

    return read_awx_bundle("b", data=awx.bundles["exec01.example.com"]).ca_pem


def awx_work_key(awx_ca, host: str) -> bytes:
    from meshctl.plugins.cert_backends.awx_bundle import read_awx_bundle

    return read_awx_bundle("b", data=awx_ca[2][host]).work_public_key_pem


def public_pem(key_pem: bytes) -> str:
    from meshctl.core.pki import load_private_key, public_key_pem

    return public_key_pem(load_private_key(key_pem)).decode()


def file_fact(data: bytes) -> dict:
    import base64
    import hashlib

    return {"kind": "file", "mode": "0640", "owner": "awx", "group": "awx", "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "content_b64": base64.b64encode(data).decode()}



class _Vault:
    """A third-party plugin answering meshctl_install_bundle."""

    def __init__(self, answer):
        self.answer = answer

    @hookimpl
    def meshctl_install_bundle(self, node_id):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_install_bundle_hook_asks_third_parties_first_and_names_a_bad_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("AWX_PASSWORD", "x")
    topo = parse(mesh("https://awx.example.com"), plugin_manager(), tmp_path / "mesh.yml")
    assert plugin_manager(_Vault(b"bytes")).install_bundle(topo, "exec01.example.com") == b"bytes"
    with pytest.raises(PluginError, match=r"plugin '_Vault' .* answered meshctl_install_bundle with str, not bytes"):
        plugin_manager(_Vault("text")).install_bundle(topo, "exec01.example.com")
    with pytest.raises(PluginError, match=r"plugin '_Vault' .* failed fetching an install bundle: KeyError"):
        plugin_manager(_Vault(KeyError("x"))).install_bundle(topo, "exec01.example.com")
    with pytest.raises(MeshctlError, match="vault sealed"):
        plugin_manager(_Vault(MeshctlError("vault sealed"))).install_bundle(topo, "exec01.example.com")
    # Without an awx: section the built-in awx plugin does not answer.
    text = mesh("x").replace('awx: {url: "x", username: admin, password_env: AWX_PASSWORD}\n', "")
    bare = parse(text.replace("certificates: {backend: awx-api}\n", ""), plugin_manager(), tmp_path / "mesh.yml")
    assert plugin_manager().install_bundle(bare, "exec01.example.com") is None
