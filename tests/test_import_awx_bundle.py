"""``meshctl import awx-bundle``: the printed mesh.yml entry keeps what the bundle says
(listener or none, protocol, peers, mintls13), and bundle values cannot inject YAML.

Bundles recorded from a real AWX 24.6.1 are used when ../shared (next to the
repository) holds them; bundles made by ``make_awx_bundle`` cover the rest."""

from __future__ import annotations

import re
import tarfile
from pathlib import Path

import pytest
import yaml
from awx_bundles import make_awx_bundle
from seed import edge
from test_certs import bundle_members, write_tar
from test_cli import meshctl

from meshctl.core import pki as C
from meshctl.plugins.cert_backends import awx_bundle as AB

RECORDED = Path(__file__).resolve().parents[2] / "shared" / "awx" / "24.6.1" / "bundles"
needs_recorded = pytest.mark.skipif(not RECORDED.is_dir(), reason=f"no recorded AWX bundles at {RECORDED}")


def recorded(host: str) -> Path:
    return RECORDED / f"{host}_install_bundle.tar.gz"


def entry_of(out: str) -> dict:
    """The one node the printed entry holds, read the way mesh.yml is read."""
    nodes = yaml.safe_load("nodes:\n" + out)["nodes"]
    assert isinstance(nodes, list) and len(nodes) == 1, out
    return nodes[0]


def cert_block(bundle: Path) -> dict:
    return {"backend": "awx-bundle", "options": {"bundle": str(bundle)}}


@pytest.fixture(scope="module")
def ca():
    return C.create_ca(C.ca_common_name("awx"), "rsa2048", 365)


@pytest.fixture(scope="module")
def work_key() -> bytes:
    return C.public_key_pem(C.generate_key("rsa2048"))


def rewrite(path: Path, out: Path, member: str, change) -> Path:
    """A copy of the bundle with one member's YAML changed by ``change(data)``."""
    members = bundle_members(path)
    (name,) = [n for n in members if n.endswith("/" + member)]
    data = yaml.safe_load(members[name])
    change(data)
    members[name] = yaml.safe_dump(data, sort_keys=False).encode()
    return write_tar(out, members)


@needs_recorded
@pytest.mark.parametrize(("host", "role", "listener", "peers"), [
    ("hop01.ansible.internal", "hop", {"port": 27199, "protocol": "tcp"}, None),
    ("exec02.ansible.internal", "execution", False, ["hop01.ansible.internal:27199 (tcp)"]),
    ("exec03.ansible.internal", "execution", {"port": 27199, "protocol": "tcp"}, ["hop01.ansible.internal:27199 (tcp)"]),
    # AWX accepted listener_port 0 and wrote receptor_listener: false.
    ("badport-zero.ansible.internal", "execution", False, None),
])
def test_recorded_bundles(host, role, listener, peers):
    r = meshctl("import", "awx-bundle", str(recorded(host)))
    assert r.returncode == 0 and r.stderr == "", r.stderr
    expected = {"name": host, "role": role, "address": host, "listener": listener}
    if peers:
        expected["peers"] = []
    expected["certificates"] = cert_block(recorded(host))
    assert entry_of(r.stdout) == expected
    listed = [line.strip() for line in r.stdout.splitlines() if line.startswith("    #   ")]
    assert listed == [f"#   {p}" for p in peers or []]


@needs_recorded
def test_recorded_bundles_make_a_valid_mesh(tmp_path):
    names = ["hop01.ansible.internal", "exec02.ansible.internal", "exec03.ansible.internal"]
    entries = "".join(meshctl("import", "awx-bundle", str(recorded(n))).stdout for n in names)
    text = ("mesh: awx\nnodes:\n  - name: awx-task\n    role: control\n    managed: false\n"
            "    address: awx.example.com\n    peers: [hop01.ansible.internal]\n"
            + entries.replace("peers: []", "peers: [hop01.ansible.internal]"))
    (tmp_path / "mesh.yml").write_text(text)
    r = meshctl("validate", cwd=tmp_path)
    assert r.returncode == 0 and "mesh.yml: valid (4 nodes, 3 managed)" in r.stdout, r.stdout + r.stderr


@needs_recorded
def test_recorded_bundle_with_a_negative_port_is_a_one_line_error():
    r = meshctl("import", "awx-bundle", str(recorded("badport-neg.ansible.internal")))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "error: badport-neg.ansible.internal_install_bundle.tar.gz: receptor_port -5 is not a port (1-65535); "
        "fix the instance's listener port in AWX and download the bundle again"]


def test_ws_listener_keeps_its_protocol_and_validates(ca, work_key, tmp_path):
    ca_key, ca_cert = ca
    bundle = make_awx_bundle(tmp_path, host="exec05.example.com", node_id="exec05.example.com",
                             role="execution", ca_key=ca_key, ca_cert=ca_cert, listener_port=8443,
                             listener_protocol="ws", work_public_key_pem=work_key)
    r = meshctl("import", "awx-bundle", str(bundle))
    assert r.returncode == 0, r.stderr
    assert entry_of(r.stdout)["listener"] == {"port": 8443, "protocol": "ws"}
    # Even under defaults that say tcp: the node listens the way AWX will dial it.
    (tmp_path / "mesh.yml").write_text("mesh: awx\ndefaults:\n  listener: {port: 27199, protocol: tcp}\n"
                                       "nodes:\n  - name: awx-task\n    role: control\n    managed: false\n"
                                       "    address: awx.example.com\n    peers: [exec05.example.com]\n" + r.stdout)
    r = meshctl("validate", cwd=tmp_path)
    assert r.returncode == 0 and "valid (2 nodes, 1 managed)" in r.stdout, r.stdout + r.stderr


def test_unsupported_listener_protocol_is_refused(ca, work_key, tmp_path):
    ca_key, ca_cert = ca
    made = make_awx_bundle(tmp_path, host="e6", node_id="e6", role="execution", ca_key=ca_key, ca_cert=ca_cert,
                           work_public_key_pem=work_key)
    bundle = rewrite(made, tmp_path / "udp.tar.gz", "group_vars/all.yml",
                     lambda gv: gv.update(receptor_protocol="udp"))
    r = meshctl("import", "awx-bundle", str(bundle))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip() == ("error: udp.tar.gz: receptor_protocol 'udp' is not supported "
                                "(meshctl listeners are tcp or ws)")


def test_mintls13_is_shown_in_the_entry_and_on_stderr(ca, work_key, tmp_path):
    ca_key, ca_cert = ca
    made = make_awx_bundle(tmp_path, host="e7", node_id="e7", role="execution", ca_key=ca_key, ca_cert=ca_cert,
                           work_public_key_pem=work_key)
    bundle = rewrite(made, tmp_path / "tls13.tar.gz", "group_vars/all.yml",
                     lambda gv: gv.update(receptor_mintls13=True))
    r = meshctl("import", "awx-bundle", str(bundle))
    assert r.returncode == 0
    assert r.stderr == ("note: tls13.tar.gz: receptor_mintls13 is true; in meshctl it is mesh-wide: "
                        "set receptor: {mintls13: true} in mesh.yml\n")
    assert "  # put `receptor: {mintls13: true}` at the top level of mesh.yml.\n" in r.stdout
    assert entry_of(r.stdout)["name"] == "e7"  # the comment is a comment
    # Where the note says it goes, it validates.
    (tmp_path / "mesh.yml").write_text("mesh: awx\nreceptor: {mintls13: true}\nnodes:\n" + r.stdout)
    r = meshctl("validate", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr

    plain = meshctl("import", "awx-bundle", str(made))  # AWX's own bundles say false
    assert plain.stderr == "" and "receptor_mintls13" not in plain.stdout


def test_bundle_values_cannot_inject_yaml(ca, work_key, tmp_path):
    ca_key, ca_cert = ca
    made = make_awx_bundle(tmp_path, host="e8", node_id="0x1f", role="execution", ca_key=ca_key,
                           ca_cert=ca_cert, peers=[("hop01:27199", "tcp")], work_public_key_pem=work_key)
    host = "e8.example.com\n  - name: injected\n    role: hop"
    user = "root # not a comment"
    address = "hop01:27199\n    peers: [injected]\n#"

    def inventory(inv):
        (vars_,) = inv["all"]["hosts"].values()
        vars_.update(ansible_host=host, ansible_user=user)

    bundle = rewrite(made, tmp_path / "odd.tar.gz", "inventory.yml", inventory)
    bundle = rewrite(bundle, tmp_path / "odd2.tar.gz", "group_vars/all.yml",
                     lambda gv: gv.update(receptor_peers=[{"address": address, "protocol": "tcp"}]))
    r = meshctl("import", "awx-bundle", str(bundle))
    assert r.returncode == 0, r.stderr
    assert entry_of(r.stdout) == {
        "name": "0x1f",  # a string, not 31 (yaml.v2 and PyYAML read a bare 0x1f as an int)
        "role": "execution", "address": host, "listener": {"port": 27199, "protocol": "tcp"}, "peers": [],
        "ssh": {"user": user}, "certificates": cert_block(bundle)}
    # The peer address is listed in a comment, on one line, escaped.
    assert '    #   "hop01:27199\\x0a    peers: [injected]\\x0a#" (tcp)\n' in r.stdout


def test_the_member_names_the_recorded_bundles_use(ca, work_key, tmp_path):
    """make_awx_bundle and the recorded bundles agree on group_vars/all.yml (what the
    tests above rewrite), so generated bundles stand in for AWX's where none is recorded."""
    ca_key, ca_cert = ca
    made = make_awx_bundle(tmp_path, host="e9", node_id="e9", role="execution", ca_key=ca_key,
                           ca_cert=ca_cert, listener_port=None, peers=[("hop01.ansible.internal:27199", "tcp")],
                           work_public_key_pem=work_key)
    with tarfile.open(made) as tar:
        ours = yaml.safe_load(tar.extractfile("e9_install_bundle/group_vars/all.yml").read())
    if not RECORDED.is_dir():
        pytest.skip(f"no recorded AWX bundles at {RECORDED}")
    with tarfile.open(recorded("exec02.ansible.internal")) as tar:
        theirs = yaml.safe_load(tar.extractfile("exec02.ansible.internal_install_bundle/group_vars/all.yml").read())
    assert ours == theirs


EVIL = "\n- name: evil\n  role: hop"


@pytest.mark.parametrize("node_id", ["e10" + EVIL, "e10 evil", "-e10", "e10/x", "e10\n"])
def test_a_node_id_that_receptor_would_not_take_is_refused(ca, work_key, tmp_path, node_id):
    ca_key, ca_cert = ca
    bundle = make_awx_bundle(tmp_path / "b.tar.gz", host="e10.example.com", node_id=node_id[:64],
                             role="execution", ca_key=ca_key, ca_cert=ca_cert, work_public_key_pem=work_key)
    r = meshctl("import", "awx-bundle", str(bundle))
    assert r.returncode == 2 and r.stdout == "", r.stdout
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: b.tar.gz: receptor/tls/receptor.crt: NodeID ") and "not a valid receptor node id" in line
    assert "Traceback" not in r.stderr


def test_a_bundle_file_name_cannot_inject_yaml(ca, work_key, tmp_path):
    ca_key, ca_cert = ca
    odd = tmp_path / ("b" + EVIL + ".tar.gz")
    make_awx_bundle(odd, host="e11.example.com", node_id="e11.example.com", role="execution",
                    ca_key=ca_key, ca_cert=ca_cert, work_public_key_pem=work_key)
    r = meshctl("import", "awx-bundle", str(odd))
    assert r.returncode == 0, r.stderr
    node = entry_of(r.stdout)  # exactly one node
    assert node["name"] == "e11.example.com" and node["certificates"] == cert_block(odd)
    assert all(not line.startswith("- ") for line in r.stdout.splitlines())


def test_a_broken_bundle_with_an_odd_file_name_is_a_one_line_error(tmp_path):
    odd = tmp_path / ("x" + EVIL + ".tar.gz")
    odd.write_bytes(b"not a tarball")
    r = meshctl("import", "awx-bundle", str(odd))
    assert r.returncode == 2 and r.stdout == ""
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and "not a tar archive" in line and "\\n- name: evil" in line


# -- the bundle's certificate: in its validity, with the NodeID, chaining to the CA ---------

def _now():
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def _bad_cert_bundles(ca, work_key, tmp_path):
    import datetime as dt

    ca_key, ca_cert = ca
    other = C.create_ca("someone else's CA", "ecdsa-p256", 365)
    common = dict(role="execution", ca_key=ca_key, ca_cert=ca_cert, work_public_key_pem=work_key)
    yield ("expired", make_awx_bundle(tmp_path / "expired.tar.gz", host="e20", node_id="e20",
                                      not_before=_now() - dt.timedelta(days=10), days=3, **common),
           "receptor/tls/receptor.crt expired on ")
    yield ("future", make_awx_bundle(tmp_path / "future.tar.gz", host="e21", node_id="e21",
                                     not_before=_now() + dt.timedelta(days=2), **common),
           "receptor/tls/receptor.crt is not valid before ")
    yield ("no-nodeid", make_awx_bundle(tmp_path / "no-nodeid.tar.gz", host="e22", node_id="e22",
                                        with_node_id=False, **common),
           "receptor/tls/receptor.crt has no Receptor NodeID otherName")
    yield ("other-ca", make_awx_bundle(tmp_path / "other-ca.tar.gz", host="e23", node_id="e23", signer=other,
                                       **common),
           "receptor/tls/receptor.crt does not chain to receptor/tls/ca/mesh-CA.crt")


@pytest.fixture(scope="module")
def bad_cert_bundles(ca, work_key, tmp_path_factory):
    return list(_bad_cert_bundles(ca, work_key, tmp_path_factory.mktemp("badcerts")))


@pytest.mark.parametrize("which", ["expired", "future", "no-nodeid", "other-ca"])
def test_import_refuses_a_bundle_whose_certificate_would_not_work(bad_cert_bundles, which):
    ((_, bundle, message),) = [b for b in bad_cert_bundles if b[0] == which]
    r = meshctl("import", "awx-bundle", str(bundle))
    assert r.returncode == 2 and r.stdout == "", r.stdout
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith(f"error: {bundle.name}: {message}"), line


@pytest.mark.parametrize("which", ["expired", "future", "no-nodeid", "other-ca"])
def test_validate_refuses_a_bundle_whose_certificate_would_not_work(bad_cert_bundles, tmp_path, which):
    ((_, bundle, message),) = [b for b in bad_cert_bundles if b[0] == which]
    name = {"expired": "e20", "future": "e21", "no-nodeid": "e22", "other-ca": "e23"}[which]
    (tmp_path / "mesh.yml").write_text(edge(nodes=f"""\
  - name: {name}
    role: execution
    address: {name}.example.com
    peers: [awx-task]
    certificates:
      backend: awx-bundle
      options: {{bundle: {bundle}}}
"""))
    r = meshctl("validate", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    located = [ln for ln in (r.stdout + r.stderr).splitlines() if message in ln]
    assert located and re.match(r"^mesh\.yml:2[3-5]:\d+: ", located[0]), r.stdout + r.stderr


def test_good_bundles_still_pass_the_certificate_checks(ca, work_key, tmp_path):
    ca_key, ca_cert = ca
    for layout in ("awx>=23", "awx<23"):
        bundle = make_awx_bundle(tmp_path / f"{layout[3:5]}.tar.gz", host="192.0.2.30", node_id="e30",
                                 role="execution", ca_key=ca_key, ca_cert=ca_cert, layout=layout,
                                 work_public_key_pem=work_key)
        assert AB.read_awx_bundle(bundle).node_id == "e30"


@needs_recorded
def test_every_recorded_bundle_passes_the_certificate_checks():
    bundles = sorted(RECORDED.glob("*_install_bundle.tar.gz"))
    assert len(bundles) >= 5
    for bundle in bundles:
        b = AB.read_awx_bundle(bundle)
        status = C.inspect_cert(b.cert_pem, b.ca_pem)
        assert status.chain_ok and b.node_id in status.node_ids, bundle
        assert status.days_left > 365 * 9, bundle  # AWX 24.6.1 issued them for ten years in 2026
