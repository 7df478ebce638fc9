"""Joining an existing AWX mesh: a node provisioned from an AWX install bundle
(import awx-bundle prints its mesh.yml entry; provision deploys AWX's key,
certificate, CA and work public key)."""

from __future__ import annotations

import pytest
import yaml
from awx_bundles import make_awx_bundle

from meshctl.core import pki as C
from meshctl.core import receptor as R
from meshctl.plugins.cert_backends import awx_bundle as AB

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("layout", ["awx>=23", "awx<23"])
def test_node_from_an_awx_install_bundle(minilab, tmp_path, layout):
    ca_key, ca = C.create_ca("awx Receptor Root CA", "rsa2048")
    _, work_pub = C.work_signing_keypair()
    # AWX before 23 made bundles only for listening execution nodes without peers.
    peers = [("awx-task.example.com:27199", "tcp")] if layout == "awx>=23" else []
    bundle = make_awx_bundle(tmp_path / "ops01_install_bundle.tar.gz", host=minilab.ip("ops"), node_id="ops01",
                             role="execution", ca_key=ca_key, ca_cert=ca, layout=layout, peers=peers,
                             user="root", work_public_key_pem=work_pub)
    entry = minilab.meshctl("import", "awx-bundle", str(bundle)).stdout
    assert "backend: awx-bundle" in entry and f"bundle: {bundle}" in entry and "role: execution" in entry
    if peers:
        assert "awx-task.example.com:27199" in entry  # the bundle's peer, for the user to map to a node
    else:
        entry += "    peers: []\n"
    mesh = tmp_path / "mesh.yml"
    mesh.write_text(f"""\
mesh: awxjoin-{layout.replace('>=', 'ge').replace('<', 'lt')}
defaults:
  ssh: {{key: {minilab.key}}}
  listener: {{port: 27199}}
receptor: {{start: false, install: none}}
python: {{wheelhouse: {minilab.wheels}}}
nodes:
  - name: awx-task
    role: control
    managed: false
    address: awx-task.example.com
{entry}""".replace("    peers: []", "    peers: [awx-task]"))
    minilab.meshctl("validate", "-f", str(mesh))
    kh = ("--known-hosts", str(minilab.known_hosts))
    first = minilab.provision_json("provision", "-f", str(mesh), *kh)
    (h,) = first["hosts"]
    assert h["status"] == "changed", h
    cert_change = next(c for c in h["changes"] if c["id"].startswith("cert:"))
    assert cert_change["summary"].endswith("(key made by meshctl)")
    b = AB.read_awx_bundle(bundle)
    assert minilab.exec("ops", "cat", R.node_cert("ops01")).stdout.encode() == b.cert_pem
    assert minilab.exec("ops", "cat", R.CA_FILE).stdout.encode() == b.ca_pem
    assert minilab.exec("ops", "cat", R.WORK_PUBLIC_KEY).stdout.encode() == work_pub
    key_pub = minilab.exec("ops", "openssl", "pkey", "-in", R.node_key("ops01"), "-pubout").stdout.encode()
    assert key_pub == C.public_key_pem(C.load_private_key(b.key_pem))
    conf = yaml.safe_load(minilab.exec("ops", "cat", R.CONF_FILE).stdout)
    assert {"work-verification": {"publickey": R.WORK_PUBLIC_KEY}} in conf
    assert next(s["work-command"] for s in conf if "work-command" in s)["verifysignature"] is True
    assert "ops01.crt: OK" in minilab.exec("ops", "openssl", "verify", "-CAfile", R.CA_FILE,
                                           R.node_cert("ops01")).stdout
    # The key is a secret: it never appears in meshctl's output.
    key_body = "".join(b.key_pem.decode().strip().splitlines()[1:-1])[:64]
    assert key_body not in str(first)
    again = minilab.provision_json("provision", "-f", str(mesh), *kh)
    assert again["hosts"][0]["changed"] == 0, again
    minilab.exec("ops", "rm", "-rf", "/etc/receptor")


def test_bundle_for_another_node_is_refused_before_any_host_is_touched(minilab, tmp_path):
    ca_key, ca = C.create_ca("awx Receptor Root CA", "rsa2048")
    bundle = make_awx_bundle(tmp_path / "b.tar.gz", host="10.0.0.9", node_id="someone-else", role="hop",
                             ca_key=ca_key, ca_cert=ca)
    mesh = tmp_path / "mesh.yml"
    mesh.write_text(f"""\
mesh: awxwrong
nodes:
  - name: ops01
    role: execution
    address: {minilab.ip('ops')}
    ssh: {{user: root, key: {minilab.key}}}
    certificates: {{backend: awx-bundle, options: {{bundle: {bundle}}}}}
    listener: {{port: 27199}}
""")
    r = minilab.meshctl("provision", "-f", str(mesh), "--known-hosts", str(minilab.known_hosts), check_rc=2)
    assert "mesh.yml:7:" in r.stderr and "is the bundle of node 'someone-else', not 'ops01'" in r.stderr
