"""meshctl.core.pki, checked by a second implementation: the openssl CLI (and the ssl
module's TLS handshake), not only by cryptography, which made the certificates."""

from __future__ import annotations

import datetime as dt
import grp
import io
import ipaddress
import os
import pwd
import re
import shutil
import ssl
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest
from awx_bundles import make_awx_bundle
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from meshctl.core import pki as C
from meshctl.plugins.cert_backends import awx_bundle as AB

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl CLI is needed (Debian package openssl)")

MESH = "edge"
UTC = dt.UTC


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert OPENSSL
    proc = subprocess.run([OPENSSL, *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed: {proc.stderr}")
    return proc


def pem(obj: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def verify(ca_file: Path, cert_file: Path) -> None:
    out = openssl("verify", "-CAfile", str(ca_file), str(cert_file)).stdout
    assert out.strip() == f"{cert_file}: OK"


def openssl_dates(cert_file: Path) -> tuple[dt.datetime, dt.datetime]:
    out = openssl("x509", "-in", str(cert_file), "-noout", "-startdate", "-enddate").stdout
    fields = dict(line.split("=", 1) for line in out.splitlines())
    parse = lambda s: dt.datetime.strptime(s, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)  # noqa: E731
    return parse(fields["notBefore"]), parse(fields["notAfter"])


def openssl_san_entries(addresses: list[str]) -> list[str]:
    """How `openssl x509 -text` prints our names: DNS lower-cased, IPv6 as 8 upper-case groups."""
    out: list[str] = []
    for address in addresses:
        try:
            ip = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            entry = f"DNS:{address.lower().rstrip('.')}"
        else:
            if ip.version == 6:
                entry = "IP Address:" + ":".join(f"{int(g, 16):X}" for g in ip.exploded.split(":"))
            else:
                entry = f"IP Address:{ip}"
        if entry not in out:
            out.append(entry)
    return out


def san_asn1(cert_file: Path) -> str:
    """`openssl asn1parse` of the subjectAltName extension's value, found by openssl itself."""
    full = openssl("asn1parse", "-in", str(cert_file)).stdout.splitlines()
    i = next(n for n, line in enumerate(full) if "X509v3 Subject Alternative Name" in line)
    # Skip the optional "critical" BOOLEAN: the next OCTET STRING holds the extension value.
    octet = next(line for line in full[i + 1 :] if "OCTET STRING" in line)
    offset = octet.split(":", 1)[0].strip()
    return openssl("asn1parse", "-in", str(cert_file), "-strparse", offset).stdout


def assert_nodeid_in_asn1(dump: str, node_id: str) -> None:
    lines = dump.splitlines()
    idx = [n for n, line in enumerate(lines) if re.search(r"OBJECT\s+:1\.3\.6\.1\.4\.1\.2312\.19\.1\s*$", line)]
    assert idx, dump
    # otherName: OBJECT, then the explicit [0], then the UTF8STRING holding the id.
    following = lines[idx[0] + 1 : idx[0] + 3]
    assert any(re.search(rf"UTF8STRING\s+:{re.escape(node_id)}\s*$", line) for line in following), dump


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, x509.Certificate, Path]:
    key, cert = C.create_ca(C.ca_common_name(MESH))  # RSA 4096, as awx-operator makes it
    path = write(tmp_path_factory.mktemp("ca") / "ca.pem", pem(cert))
    return key, cert, path


@pytest.fixture(scope="module")
def other_ca() -> tuple[object, x509.Certificate]:
    return C.create_ca("other Receptor Root CA", "ecdsa-p256")


# -- the CA --------------------------------------------------------------------------------
def test_ca_properties_via_openssl(ca):
    _, cert, path = ca
    text = openssl("x509", "-in", str(path), "-noout", "-text").stdout
    assert "Subject: CN = edge Receptor Root CA" in text
    assert "Issuer: CN = edge Receptor Root CA" in text
    assert "Public-Key: (4096 bit)" in text
    assert "sha256WithRSAEncryption" in text
    assert re.search(r"X509v3 Basic Constraints: critical\s+CA:TRUE", text)
    assert re.search(r"X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign", text)
    assert "X509v3 Subject Key Identifier" in text
    start, end = openssl_dates(path)
    assert (end - start) == dt.timedelta(days=3650, minutes=5)
    verify(path, path)  # self-signed and acceptable as a trust anchor
    assert C.key_type_of(cert) == "rsa4096"


def test_ca_common_name():
    assert C.ca_common_name("awx") == "awx Receptor Root CA"


# -- node certificates ----------------------------------------------------------------------
NAME_SETS = {
    "dns+ipv4+ipv6": ("exec01.example.com",
                      ["exec01.example.com", "192.0.2.10", "2001:db8::10", "EXEC01.example.com", "192.0.2.10"]),
    "extra-names": ("hop01", ["hop01", "hop01.dmz.example.com", "[2001:db8::1]", "10.0.0.1", "hop01-alias.example."]),
}


@pytest.mark.parametrize("names", NAME_SETS.values(), ids=NAME_SETS.keys())
@pytest.mark.parametrize("key_type", C.KEY_TYPES)
def test_node_certificate_checked_by_openssl(ca, tmp_path, key_type, names):
    ca_key, ca_cert, ca_file = ca
    node_id, addresses = names
    key, cert = C.issue_node_cert(ca_key, ca_cert, node_id, addresses, key_type, 397)
    cert_file = write(tmp_path / "node.pem", pem(cert))

    verify(ca_file, cert_file)
    for purpose in ("sslserver", "sslclient"):  # KU/EKU fit both ends of a receptor connection
        assert openssl("verify", "-purpose", purpose, "-CAfile", str(ca_file), str(cert_file)).stdout.endswith("OK\n")
    text = openssl("x509", "-in", str(cert_file), "-noout", "-text").stdout
    assert f"Subject: CN = {node_id}\n" in text
    assert re.search(r"X509v3 Subject Alternative Name: ?\n", text)
    entries = text.split("X509v3 Subject Alternative Name:")[1].splitlines()[1].strip().split(", ")
    assert entries[:-1] == openssl_san_entries(addresses)  # in order, de-duplicated
    assert entries[-1].lower().startswith("othername")
    assert re.search(r"X509v3 Extended Key Usage: ?\n\s+TLS Web Server Authentication, TLS Web Client Authentication",
                     text)
    ku = re.search(r"X509v3 Key Usage: critical\n\s+(.*)\n", text)
    assert ku, text
    if key_type.startswith("rsa"):
        assert ku.group(1).strip() == "Digital Signature, Key Encipherment"
    else:
        assert ku.group(1).strip() == "Digital Signature"
    assert "X509v3 Authority Key Identifier" in text and "X509v3 Subject Key Identifier" in text
    assert "CA:TRUE" not in text

    issuer = openssl("x509", "-in", str(cert_file), "-noout", "-issuer").stdout.split("=", 1)[1]
    ca_subject = openssl("x509", "-in", str(ca_file), "-noout", "-subject").stdout.split("=", 1)[1]
    assert issuer == ca_subject
    start, end = openssl_dates(cert_file)
    assert end - start == dt.timedelta(days=397, minutes=5)
    assert abs((dt.datetime.now(UTC) - start) - dt.timedelta(minutes=5)) < dt.timedelta(minutes=1)

    assert_nodeid_in_asn1(san_asn1(cert_file), node_id)
    # openssl's idea of the certificate's public key is the key we hold.
    pubkey = openssl("x509", "-in", str(cert_file), "-noout", "-pubkey").stdout.encode()
    assert pubkey == C.public_key_pem(key)
    assert C.key_type_of(key) == key_type


def test_ipv6_and_ipv4_names_in_openssl_text(ca, tmp_path):
    ca_key, ca_cert, _ = ca
    _, cert = C.issue_node_cert(ca_key, ca_cert, "n1", ["2001:db8::10", "192.0.2.7"], "ecdsa-p256", 30)
    text = openssl("x509", "-in", str(write(tmp_path / "c.pem", pem(cert))), "-noout", "-ext",
                   "subjectAltName").stdout
    assert "IP Address:2001:DB8:0:0:0:0:0:10" in text
    assert "IP Address:192.0.2.7" in text
    assert "DNS:" not in text


def test_general_names_order_dedupe_and_nodeid_der():
    names = C.node_general_names("n1", ["a.example.com", "A.example.com.", "192.0.2.1", "[::1]", "::1"])
    assert [type(n).__name__ for n in names] == ["DNSName", "IPAddress", "IPAddress", "OtherName"]
    other = names[-1]
    assert isinstance(other, x509.OtherName)
    assert other.type_id.dotted_string == C.NODEID_OID
    assert other.value == b"\x0c\x02n1"
    # A bare string is one address, not a list of characters.
    assert C.node_general_names("n1", "192.0.2.1")[0] == x509.IPAddress(ipaddress.ip_address("192.0.2.1"))


@pytest.mark.parametrize("bad", ["", "exec 01", "host,evil", "a" * 70 + ".example.com", "fe80::1%eth0", "-x.example"])
def test_bad_addresses_are_refused(bad):
    with pytest.raises(ValueError):
        C.node_general_names("n1", [bad])


def test_node_id_longer_than_a_cn_is_refused(ca):
    with pytest.raises(ValueError, match="1..64"):
        C.node_general_names("x" * 65, [])


def test_sign_with_wrong_ca_key_is_refused(ca, other_ca):
    _, ca_cert, _ = ca
    other_key, _ = other_ca
    with pytest.raises(ValueError, match="does not belong"):
        C.sign_node_cert(other_key, ca_cert, C.generate_key("ecdsa-p256").public_key(), "n1", [], 10)


def test_issuer_is_the_ca_subject_under_an_intermediate(ca, tmp_path):
    """AWX's bug (issuer = CA's issuer) only shows under an intermediate CA: sign with one."""
    root_key, root_cert, root_file = ca
    inter_key = C.generate_key("ecdsa-p256")
    now = dt.datetime.now(UTC)
    inter = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "edge intermediate")]))
        .issuer_name(root_cert.subject).public_key(inter_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(inter_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    _, cert = C.issue_node_cert(inter_key, inter, "n1", ["n1.example.com"], "ecdsa-p256", 10)
    assert cert.issuer == inter.subject != inter.issuer
    chain = write(tmp_path / "inter.pem", pem(inter))
    leaf = write(tmp_path / "leaf.pem", pem(cert))
    assert openssl("verify", "-CAfile", str(root_file), "-untrusted", str(chain), str(leaf)).stdout.endswith("OK\n")
    assert C.inspect_cert(pem(cert), pem(root_cert) + pem(inter)).chain_ok is True


def test_mutual_tls_handshake_between_two_nodes(ca, tmp_path):
    """A real TLS 1.3 handshake (system OpenSSL via ssl) with client certificates, the server
    checked by DNS name and by IP address like receptor's tcp-peer does."""
    ca_key, ca_cert, ca_file = ca
    files = {}
    for node, key_type in (("exec01.example.com", "ecdsa-p384"), ("hop01.example.com", "rsa2048")):
        key, cert = C.issue_node_cert(ca_key, ca_cert, node, [node, "192.0.2.5"], key_type, 30)
        files[node] = (write(tmp_path / f"{node}.crt", pem(cert)), write(tmp_path / f"{node}.key", C.key_to_pem(key)))

    for server_name in ("hop01.example.com", "192.0.2.5"):
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca_file))
        server_ctx.verify_mode = ssl.CERT_REQUIRED
        server_ctx.load_cert_chain(*map(str, files["hop01.example.com"]))
        client_ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
        client_ctx.load_cert_chain(*map(str, files["exec01.example.com"]))
        c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_ctx.wrap_bio(c_in, c_out, server_hostname=server_name)
        server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
        done = {"c": False, "s": False}
        for _ in range(10):
            for name, end in (("c", client), ("s", server)):
                if not done[name]:
                    try:
                        end.do_handshake()
                        done[name] = True
                    except ssl.SSLWantReadError:
                        pass
            s_in.write(c_out.read())
            c_in.write(s_out.read())
            if all(done.values()):
                break
        assert all(done.values())
        peer = server.getpeercert()
        assert dict(x[0] for x in peer["subject"])["commonName"] == "exec01.example.com"


# -- CSRs ----------------------------------------------------------------------------------
def test_csr_for_passes_check_and_signs(ca, tmp_path):
    ca_key, ca_cert, ca_file = ca
    key = C.generate_key("ecdsa-p256")
    csr = C.csr_for(key, "n1", ["n1.example.com", "192.0.2.1"])
    assert C.check_csr(csr, "n1", "ecdsa-p256", ["n1.example.com", "192.0.2.1", "n1-extra.example.com"]) == []
    cert = C.sign_node_cert(ca_key, ca_cert, csr.public_key(), "n1", ["n1.example.com", "192.0.2.1"], 10)
    verify(ca_file, write(tmp_path / "n1.pem", pem(cert)))


def test_csr_without_san_is_accepted():
    key = C.generate_key("ecdsa-p256")
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "n1")])).sign(key, hashes.SHA256()))
    assert C.check_csr(csr, "n1", "ecdsa-p256", ["n1.example.com"]) == []


def test_check_csr_wrong_key_type_and_size():
    rsa_key = C.generate_key("rsa2048")
    csr = C.csr_for(rsa_key, "n1", ["n1.example.com"])
    assert C.check_csr(csr, "n1", "ecdsa-p256", ["n1.example.com"]) == ["CSR public key is rsa2048, expected ecdsa-p256"]
    assert C.check_csr(csr, "n1", "rsa4096", ["n1.example.com"]) == ["CSR public key is rsa2048, expected rsa4096"]
    p384 = C.csr_for(C.generate_key("ecdsa-p384"), "n1", [])
    assert C.check_csr(p384, "n1", "ecdsa-p256", []) == ["CSR public key is ecdsa-p384, expected ecdsa-p256"]


def test_check_csr_wrong_cn_and_nodeid():
    key = C.generate_key("ecdsa-p256")
    csr = C.csr_for(key, "other", [])
    problems = C.check_csr(csr, "n1", "ecdsa-p256", [])
    assert problems == ["CSR subject has CN 'other', expected CN 'n1'",
                        "CSR NodeID otherName is 'other', expected 'n1'"]


def test_check_csr_extra_san_not_allowed():
    key = C.generate_key("ecdsa-p256")
    csr = C.csr_for(key, "n1", ["n1.example.com", "evil.example.com", "198.51.100.1"])
    problems = C.check_csr(csr, "n1", "ecdsa-p256", ["n1.example.com"])
    assert len(problems) == 2
    assert problems[0].startswith("CSR requests DNS:evil.example.com, which is not allowed (allowed: DNS:n1.example.com, "
                                  "otherName:1.3.6.1.4.1.2312.19.1;UTF8:n1)")
    assert "IP:198.51.100.1" in problems[1]
    email = (x509.CertificateSigningRequestBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "n1")]))
             .add_extension(x509.SubjectAlternativeName([x509.RFC822Name("a@b.example")]), critical=False)
             .sign(key, hashes.SHA256()))
    assert C.check_csr(email, "n1", "ecdsa-p256", [])[0].startswith("CSR requests email:a@b.example")


def test_check_csr_bad_signature():
    key = C.generate_key("rsa2048")
    der = bytearray(C.csr_for(key, "n1", []).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte belongs to the signature
    csr = x509.load_der_x509_csr(bytes(der))
    assert C.check_csr(csr, "n1", "rsa2048", []) == ["CSR signature does not verify against its own public key"]


# -- the node-side CSR script, run for real ------------------------------------------------
def run_script(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("key_type", C.KEY_TYPES)
def test_node_csr_script_with_openssl(ca, tmp_path, key_type):
    ca_key, ca_cert, ca_file = ca
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    keydir = tmp_path / "tls dir's"  # spaces and quotes survive shlex.quote
    keydir.mkdir()
    key_path = keydir / "exec01.example.com.key"
    node_id, addresses = "exec01.example.com", ["exec01.example.com", "192.0.2.10", "2001:db8::10"]
    script = C.node_csr_script(str(key_path), key_type, node_id, addresses, user, group)

    first = run_script(script)
    assert first.returncode == 0, first.stderr
    assert "PRIVATE KEY" not in first.stdout + first.stderr
    assert first.stdout.startswith("-----BEGIN CERTIFICATE REQUEST-----")
    mode = key_path.stat().st_mode
    assert stat.S_IMODE(mode) == 0o600 and key_path.stat().st_uid == os.getuid()
    assert sorted(p.name for p in keydir.iterdir()) == [key_path.name]  # no temp file left
    key_bytes = key_path.read_bytes()
    assert C.key_type_of(C.load_private_key(key_bytes)) == key_type

    csr = C.load_csr(first.stdout.encode())
    assert C.check_csr(csr, node_id, key_type, addresses) == []
    assert C.public_key_pem(csr) == C.public_key_pem(C.load_private_key(key_bytes))
    cert = C.sign_node_cert(ca_key, ca_cert, csr.public_key(), node_id, addresses, 30)
    cert_file = write(tmp_path / "node.pem", pem(cert))
    verify(ca_file, cert_file)
    assert_nodeid_in_asn1(san_asn1(cert_file), node_id)

    # Second run: the key is kept, the CSR is for the same key.
    second = run_script(script)
    assert second.returncode == 0, second.stderr
    assert key_path.read_bytes() == key_bytes
    assert C.public_key_pem(C.load_csr(second.stdout.encode())) == C.public_key_pem(csr)


def test_node_csr_script_existing_key_of_other_type_is_reported(tmp_path):
    key_path = tmp_path / "n1.key"
    key_path.write_bytes(C.key_to_pem(C.generate_key("rsa2048")))
    script = C.node_csr_script(str(key_path), "ecdsa-p256", "n1", ["n1.example.com"], "root", "root")
    proc = run_script(script)
    assert proc.returncode == 0, proc.stderr
    problems = C.check_csr(C.load_csr(proc.stdout.encode()), "n1", "ecdsa-p256", ["n1.example.com"])
    assert problems == ["CSR public key is rsa2048, expected ecdsa-p256"]


def test_node_csr_script_fails_cleanly_without_directory(tmp_path):
    script = C.node_csr_script(str(tmp_path / "missing" / "k.key"), "ecdsa-p256", "n1", [], "root", "root")
    proc = run_script(script)
    assert proc.returncode != 0 and proc.stdout == ""


def test_node_csr_script_refuses_ids_openssl_cannot_carry():
    with pytest.raises(ValueError, match="openssl"):
        C.node_csr_script("/k", "ecdsa-p256", "a/CN=b", [], "root", "root")
    with pytest.raises(ValueError, match="unknown key type"):
        C.node_csr_script("/k", "dsa", "n1", [], "root", "root")  # type: ignore[arg-type]


# -- inspecting ----------------------------------------------------------------------------
def test_inspect_good_cert(ca):
    ca_key, ca_cert, _ = ca
    key, cert = C.issue_node_cert(ca_key, ca_cert, "n1", ["n1.example.com", "192.0.2.1"], "ecdsa-p256", 90)
    status = C.inspect_cert(pem(cert), pem(ca_cert), C.public_key_pem(key))
    assert status.subject_cn == "n1" and status.node_ids == ["n1"]
    assert status.dns_names == ["n1.example.com"] and status.ip_addresses == ["192.0.2.1"]
    assert status.issuer == "CN=edge Receptor Root CA"
    assert status.chain_ok is True and status.key_matches is True and status.problems == []
    assert status.key_type == "ecdsa-p256" and 89.9 < status.days_left <= 90
    assert status.ok("n1", ["n1.example.com", "192.0.2.1"], 30) == []
    # Without CA and key the answers are "unknown", not "bad".
    bare = C.inspect_cert(pem(cert))
    assert bare.chain_ok is None and bare.key_matches is None


def test_inspect_expired_and_expiring(ca):
    ca_key, ca_cert, _ = ca
    now = dt.datetime.now(UTC)
    _, old = C.issue_node_cert(ca_key, ca_cert, "n1", ["n1.example.com"], "ecdsa-p256", 365,
                               now=now - dt.timedelta(days=400))
    status = C.inspect_cert(pem(old), pem(ca_cert))
    assert status.chain_ok is False and status.days_left < -34
    reasons = status.ok("n1", ["n1.example.com"], 30)
    assert len(reasons) == 1 and reasons[0].startswith("expired on ")

    _, soon = C.issue_node_cert(ca_key, ca_cert, "n1", ["n1.example.com"], "ecdsa-p256", 365,
                                now=now - dt.timedelta(days=350))
    status = C.inspect_cert(pem(soon), pem(ca_cert))
    assert status.chain_ok is True
    assert status.ok("n1", ["n1.example.com"], 10) == []
    reasons = status.ok("n1", ["n1.example.com"], 30)
    assert len(reasons) == 1 and reasons[0].startswith("expires in 15.0 days")

    future = C.inspect_cert(pem(soon), pem(ca_cert), now=now - dt.timedelta(days=351))
    assert future.chain_ok is False and any("not valid before" in r for r in future.ok("n1", [], 30))


def test_inspect_wrong_ca_and_ca_bundle(ca, other_ca):
    ca_key, ca_cert, _ = ca
    other_key, other_cert = other_ca
    _, cert = C.issue_node_cert(other_key, other_cert, "n1", [], "ecdsa-p256", 30)
    status = C.inspect_cert(pem(cert), pem(ca_cert))
    assert status.chain_ok is False
    (reason,) = status.ok("n1", [], 7)
    assert reason.startswith("does not chain to the mesh CA: issuer 'CN=other Receptor Root CA'")
    # During a CA rotation both CAs are trusted: a bundle with several certificates.
    assert C.inspect_cert(pem(cert), pem(ca_cert) + pem(other_cert)).chain_ok is True


def test_inspect_mismatched_key_and_wrong_names(ca):
    ca_key, ca_cert, _ = ca
    _, cert = C.issue_node_cert(ca_key, ca_cert, "n1", ["n1.example.com"], "ecdsa-p256", 30)
    other = C.generate_key("ecdsa-p256")
    status = C.inspect_cert(pem(cert), pem(ca_cert), C.public_key_pem(other))
    assert status.key_matches is False
    reasons = status.ok("n2", ["n1.example.com", "192.0.2.9"], 7)
    assert reasons == [
        "subject CN is 'n1', expected 'n2'",
        "NodeID otherName is 'n1', expected 'n2'",
        "subjectAltName lacks IP:192.0.2.9",
        "certificate does not match the node's private key",
    ]


def test_inspect_cert_without_nodeid(ca):
    """A certificate made without the NodeID otherName: receptor would refuse to start."""
    ca_key, ca_cert, _ = ca
    key = C.generate_key("ecdsa-p256")
    now = dt.datetime.now(UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "n1")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("n1.example.com")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    reasons = C.inspect_cert(pem(cert), pem(ca_cert)).ok("n1", ["n1.example.com"], 7)
    assert reasons == ["no Receptor NodeID otherName (receptor exits: nodeID=n1 not found)"]


def test_public_key_pem_accepts_objects_and_pem(ca):
    ca_key, ca_cert, _ = ca
    key, cert = C.issue_node_cert(ca_key, ca_cert, "n1", [], "rsa2048", 30)
    csr = C.csr_for(key, "n1", [])
    want = C.public_key_pem(key)
    for obj in (cert, csr, key.public_key(), pem(cert), pem(csr), C.key_to_pem(key), want):
        assert C.public_key_pem(obj) == want
    assert C.key_type_of_public_pem(want) == "rsa2048"
    with pytest.raises(ValueError):
        C.key_type_of_public_pem(b"nothing here")


def test_load_certs_bundle(ca, other_ca):
    _, ca_cert, _ = ca
    _, other_cert = other_ca
    assert C.load_certs(pem(ca_cert) + pem(other_cert)) == [ca_cert, other_cert]
    assert C.load_cert(pem(ca_cert) + pem(other_cert)) == ca_cert
    with pytest.raises(ValueError):
        C.load_certs(b"")


def test_key_to_pem_is_pkcs8_and_work_keypair():
    key = C.generate_key("ecdsa-p384")
    text = C.key_to_pem(key)
    assert text.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert C.public_key_pem(C.load_private_key(text)) == C.public_key_pem(key)
    private, public = C.work_signing_keypair()
    assert C.key_type_of(private) == "rsa4096" and public.startswith(b"-----BEGIN PUBLIC KEY-----")
    assert C.public_key_pem(private) == public


# -- AWX install bundles -------------------------------------------------------------------
@pytest.fixture(scope="module")
def work_public_key() -> bytes:
    return C.public_key_pem(C.generate_key("rsa2048"))


@pytest.mark.parametrize("layout", ["awx>=23", "awx<23"])
def test_awx_bundle_round_trip(ca, tmp_path, layout, work_public_key):
    ca_key, ca_cert, ca_file = ca
    path = make_awx_bundle(tmp_path, host="exec01.example.com", node_id="exec01.example.com", role="execution",
                           ca_key=ca_key, ca_cert=ca_cert, layout=layout, work_public_key_pem=work_public_key)
    assert path.name == "exec01.example.com_install_bundle.tar.gz"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    names = {
        "awx>=23": ("receptor/tls/ca/mesh-CA.crt", "receptor/work_public_key.pem"),
        "awx<23": ("receptor/tls/ca/receptor-ca.crt", "receptor/work-public-key.pem"),
    }[layout]
    with tarfile.open(path) as tar:
        members = sorted(tar.getnames())
    root = "exec01.example.com_install_bundle/"
    assert members == sorted(root + m for m in (*names, "receptor/tls/receptor.crt", "receptor/tls/receptor.key",
                                                 "install_receptor.yml", "inventory.yml", "group_vars/all.yml",
                                                 "requirements.yml"))
    bundle = AB.read_awx_bundle(path)
    assert bundle.layout == layout and bundle.role == "execution"
    assert (bundle.host, bundle.user, bundle.node_id) == ("exec01.example.com", "cloud-user", "exec01.example.com")
    assert bundle.listener_port == 27199 and bundle.listener_protocol == "tcp" and bundle.peers == []
    assert bundle.tls and bundle.verify and not bundle.mintls13
    assert bundle.work_public_key_pem == work_public_key
    assert " key_pem=" not in repr(bundle) and "PRIVATE" not in repr(bundle)
    assert C.load_cert(bundle.ca_pem) == ca_cert

    # The bundle's certificate as openssl sees it: AWX-style, with the NodeID, chains to the CA.
    cert_file = write(tmp_path / "receptor.crt", bundle.cert_pem)
    verify(ca_file, cert_file)
    text = openssl("x509", "-in", str(cert_file), "-noout", "-text").stdout
    assert "Public-Key: (2048 bit)" in text and "DNS:exec01.example.com" in text
    assert "X509v3 Key Usage" not in text and "X509v3 Extended Key Usage" not in text
    assert_nodeid_in_asn1(san_asn1(cert_file), "exec01.example.com")
    key_file = write(tmp_path / "receptor.key", bundle.key_pem)
    assert openssl("pkey", "-in", str(key_file), "-pubout").stdout.encode() == C.public_key_pem(bundle.cert_pem)
    status = C.inspect_cert(bundle.cert_pem, bundle.ca_pem, C.public_key_pem(bundle.key_pem))
    assert status.chain_ok and status.key_matches
    assert status.ok("exec01.example.com", ["exec01.example.com"], 30) == []


def test_awx_bundle_hop_with_peers_and_ip_host(ca, tmp_path):
    ca_key, ca_cert, ca_file = ca
    path = make_awx_bundle(tmp_path / "hop.tar.gz", host="192.0.2.20", node_id="hop01", role="hop",
                           ca_key=ca_key, ca_cert=ca_cert, peers=[("awx-task.example.com:27199", "tcp"),
                                                                  ("wss://gw.example.com:443/mesh", "ws")],
                           listener_port=8443, listener_protocol="ws", work_public_key_pem=b"unused")
    bundle = AB.read_awx_bundle(path)
    assert bundle.role == "hop" and bundle.work_public_key_pem is None
    assert bundle.node_id == "hop01" and bundle.host == "192.0.2.20"
    assert bundle.listener_port == 8443 and bundle.listener_protocol == "ws"
    assert bundle.peers == [("awx-task.example.com:27199", "tcp"), ("wss://gw.example.com:443/mesh", "ws")]
    verify(ca_file, write(tmp_path / "hop.crt", bundle.cert_pem))
    status = C.inspect_cert(bundle.cert_pem, bundle.ca_pem)
    assert status.ip_addresses == ["192.0.2.20"] and status.dns_names == []


def test_awx_bundle_without_listener(ca, tmp_path):
    ca_key, ca_cert, _ = ca
    path = make_awx_bundle(tmp_path, host="e2", node_id="e2", role="execution", ca_key=ca_key, ca_cert=ca_cert,
                           listener_port=None, peers=[("hop01:27199", "tcp")], work_public_key_pem=b"x")
    # b"x" is no public key: an execution bundle needs a real one.
    with pytest.raises(ValueError, match="work_public_key.pem is not a PEM public key"):
        AB.read_awx_bundle(path)


def test_awx_bundle_placeholder_user_and_old_hop_refused(ca, tmp_path, work_public_key):
    ca_key, ca_cert, _ = ca
    path = make_awx_bundle(tmp_path, host="e3", node_id="e3", role="execution", ca_key=ca_key, ca_cert=ca_cert,
                           user="<username>", work_public_key_pem=work_public_key)
    assert AB.read_awx_bundle(path).user is None
    with pytest.raises(ValueError, match="AWX < 23"):
        make_awx_bundle(tmp_path, host="h", node_id="h", role="hop", ca_key=ca_key, ca_cert=ca_cert,
                        layout="awx<23")


# -- broken and malicious bundles -------------------------------------------------------------
def bundle_members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]


def write_tar(path: Path, members: dict[str, bytes], extra: list[tarfile.TarInfo] = ()) -> Path:  # type: ignore[assignment]
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


@pytest.fixture(scope="module")
def good_members(ca, tmp_path_factory, work_public_key) -> dict[str, bytes]:
    ca_key, ca_cert, _ = ca
    path = make_awx_bundle(tmp_path_factory.mktemp("b"), host="e1", node_id="e1", role="execution",
                           ca_key=ca_key, ca_cert=ca_cert, work_public_key_pem=work_public_key)
    return bundle_members(path)


ROOT = "e1_install_bundle/"


@pytest.mark.parametrize("member", ["receptor/tls/receptor.key", "receptor/tls/receptor.crt", "inventory.yml",
                                    "group_vars/all.yml", "receptor/work_public_key.pem",
                                    "receptor/tls/ca/mesh-CA.crt"])
def test_bundle_missing_member(good_members, tmp_path, member):
    members = {k: v for k, v in good_members.items() if k != ROOT + member}
    path = write_tar(tmp_path / "e1_install_bundle.tar.gz", members)
    with pytest.raises(ValueError, match=re.escape(f"e1_install_bundle.tar.gz: missing member {ROOT}{member}")):
        AB.read_awx_bundle(path)


@pytest.mark.parametrize(("name", "message"), [
    ("e1_install_bundle/../../etc/cron.d/evil", "'..'"),
    ("/etc/cron.d/evil", "absolute path"),
])
def test_bundle_path_traversal(good_members, tmp_path, name, message):
    path = write_tar(tmp_path / "b.tar.gz", {**good_members, name: b"* * * * * root sh\n"})
    with pytest.raises(ValueError, match=re.escape(message)):
        AB.read_awx_bundle(path)


def test_bundle_links_and_devices_refused(good_members, tmp_path):
    link = tarfile.TarInfo(ROOT + "receptor/tls/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/shadow"
    with pytest.raises(ValueError, match="is a link"):
        AB.read_awx_bundle(write_tar(tmp_path / "l.tar.gz", good_members, [link]))
    fifo = tarfile.TarInfo(ROOT + "fifo")
    fifo.type = tarfile.FIFOTYPE
    with pytest.raises(ValueError, match="not a regular file"):
        AB.read_awx_bundle(write_tar(tmp_path / "f.tar.gz", good_members, [fifo]))


def test_bundle_oversize_member(good_members, tmp_path):
    big = tarfile.TarInfo(ROOT + "receptor/huge.bin")
    big.size = AB.MAX_MEMBER_BYTES + 1
    with pytest.raises(ValueError, match="huge.bin' is 1048577 bytes"):
        AB.read_awx_bundle(write_tar(tmp_path / "big.tar.gz", good_members, [big]))


def test_bundle_gzip_bomb_is_bounded(good_members, tmp_path):
    fillers = []
    for i in range(20):  # 20 MiB of zeros, each member under the per-member limit
        info = tarfile.TarInfo(f"{ROOT}filler{i}")
        info.size = AB.MAX_MEMBER_BYTES
        fillers.append(info)
    path = tmp_path / "bomb.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for info in fillers:
            tar.addfile(info, io.BytesIO(bytes(info.size)))
    assert path.stat().st_size < 200_000
    with pytest.raises(ValueError, match="uncompresses to more than"):
        AB.read_awx_bundle(path)


def test_bundle_duplicate_member_and_garbage(good_members, tmp_path):
    dup = tarfile.TarInfo(ROOT + "inventory.yml")
    dup.size = 3
    with pytest.raises(ValueError, match="appears twice"):
        AB.read_awx_bundle(write_tar(tmp_path / "d.tar.gz", good_members, [dup]))
    garbage = write(tmp_path / "g.tar.gz", b"\x1f\x8bnot really gzip")
    with pytest.raises(ValueError, match="g.tar.gz: not a valid gzip file"):
        AB.read_awx_bundle(garbage)
    plain = write(tmp_path / "p.tar.gz", b"hello")
    with pytest.raises(ValueError, match="not a tar archive"):
        AB.read_awx_bundle(plain)


def test_bundle_key_from_another_cert(good_members, tmp_path):
    members = dict(good_members)
    members[ROOT + "receptor/tls/receptor.key"] = C.key_to_pem(C.generate_key("rsa2048"))
    with pytest.raises(ValueError, match="receptor.key is not the key of receptor/tls/receptor.crt"):
        AB.read_awx_bundle(write_tar(tmp_path / "k.tar.gz", members))


def test_bundle_bad_yaml(good_members, tmp_path):
    members = {**good_members, ROOT + "group_vars/all.yml": b"receptor_port: [unclosed\n"}
    with pytest.raises(ValueError, match="group_vars/all.yml is not valid YAML"):
        AB.read_awx_bundle(write_tar(tmp_path / "y.tar.gz", members))


def test_awx_bundle_certificate_checked_at_a_given_time(ca, tmp_path, work_public_key):
    ca_key, ca_cert, _ = ca
    path = make_awx_bundle(tmp_path, host="e40", node_id="e40", role="execution", ca_key=ca_key,
                           ca_cert=ca_cert, days=30, work_public_key_pem=work_public_key)
    now = dt.datetime.now(dt.UTC)
    assert AB.read_awx_bundle(path, now=now + dt.timedelta(days=29)).node_id == "e40"
    with pytest.raises(ValueError, match=r"^e40_install_bundle.tar.gz: receptor/tls/receptor.crt expired on "):
        AB.read_awx_bundle(path, now=now + dt.timedelta(days=31))
    with pytest.raises(ValueError, match=r"receptor.crt is not valid before .* \(check this machine's clock"):
        AB.read_awx_bundle(path, now=now - dt.timedelta(days=1))



def test_certs_issue_writes_nothing_when_a_node_fails(tmp_path, monkeypatch, capsys):
    """Everything is issued in memory first: the second node's failure leaves no file."""
    from meshctl.core.cli import main
    from meshctl.plugins.cert_backends import backends

    real = backends._Signer.issue

    def issue(self, node_id, addresses, key_type, days):
        if node_id == "e1":  # what cryptography says of a name it cannot put in a certificate
            raise ValueError("scoped IPv6 address cannot be a certificate name")
        return real(self, node_id, addresses, key_type, days)

    monkeypatch.setattr(backends._Signer, "issue", issue)
    monkeypatch.setenv("MESHCTL_DISABLE_PLUGIN_AUTOLOAD", "1")
    p = tmp_path / "mesh.yml"
    p.write_text("mesh: issue\nnodes:\n  - name: awx\n    role: control\n    managed: false\n"
                 "    address: awx.example.com\n    peers: [h1]\n  - name: h1\n    role: hop\n"
                 "    address: h1.example.com\n    listener: {port: 27199}\n"
                 "  - name: e1\n    role: execution\n    address: e1.example.com\n    peers: [h1]\n")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["certs", "issue", "-f", str(p), "--out", str(out)])
    err = capsys.readouterr().err
    assert info.value.code not in (0, None) and "internal error" not in err, err
    assert [ln for ln in err.splitlines() if ln.strip()] == [
        "error: certificate backend 'selfsigned' of plugin 'cert_backends' failed in issue() for node 'e1': "
        "ValueError: scoped IPv6 address cannot be a certificate name"]
    assert not out.exists() or list(out.iterdir()) == []
