"""examples/meshctl-certbackend-openssl: a third-party certificate backend that signs
with the openssl CLI. Its certificates are checked against what meshctl's own
``sign_node_cert`` makes, by ``openssl verify``, and by ``inspect_cert``; then the
package is pip-installed into a fresh virtualenv and driven through ``meshctl``."""

from __future__ import annotations

import datetime as dt
import importlib.metadata as md
import importlib.util
import json
import os
import shutil
import site
import stat
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from seed import edge

import meshctl
from meshctl.core import pki as C
from meshctl.core.plugins import DISABLE_AUTOLOAD_ENV, create_plugin_manager
from meshctl.plugin import BackendContext

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "examples" / "meshctl-certbackend-openssl"
MODULE = "meshctl_certbackend_openssl"
OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="the openssl CLI is needed (Debian package openssl)")

MESH = "edge"
NAME_SETS = {
    "dns+ipv4+ipv6": ("exec01.example.com",
                      ["exec01.example.com", "192.0.2.10", "2001:db8::10", "EXEC01.example.com", "192.0.2.10"]),
    "extra-names": ("hop01", ["hop01", "hop01.dmz.example.com", "[2001:db8::1]", "10.0.0.1", "hop01-alias.example."]),
    "at-sign-no-address": ("worker@site-a", []),
}


# -- helpers -------------------------------------------------------------------------------
def pem(obj: Any) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


def write_secret(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def openssl_verify(ca_file: Path, cert_pem: bytes, tmp: Path) -> None:
    assert OPENSSL
    cert_file = tmp / "verify-me.crt"
    cert_file.write_bytes(cert_pem)
    # Both ends of a receptor connection: server and client purpose.
    for purpose in ("sslserver", "sslclient"):
        proc = subprocess.run([OPENSSL, "verify", "-purpose", purpose, "-CAfile", str(ca_file), str(cert_file)],
                              capture_output=True, text=True, timeout=60)
        assert proc.stdout.strip() == f"{cert_file}: OK", proc.stderr


def extension_map(cert: x509.Certificate) -> dict[str, tuple[bool, Any]]:
    return {ext.oid.dotted_string: (ext.critical, ext.value) for ext in cert.extensions}


def assert_like_core(cert_pem: bytes, ca_key: Any, ca_cert: x509.Certificate, node_id: str,
                     addresses: list[str], days: int) -> x509.Certificate:
    """Same subject, issuer and extensions (SAN names in order, KU, EKU, AKI, SKI, with
    their criticality) as meshctl's own signer; serial and dates necessarily differ."""
    cert = C.load_cert(cert_pem)
    ref = C.sign_node_cert(ca_key, ca_cert, cert.public_key(), node_id, addresses, days)  # type: ignore[arg-type]
    assert cert.subject == ref.subject
    assert cert.issuer == ref.issuer == ca_cert.subject
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value == \
        ref.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert extension_map(cert) == extension_map(ref)
    assert len(extension_map(cert)) == 5  # SAN, KU, EKU, AKI, SKI: nothing else
    assert cert.version == ref.version
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == dt.timedelta(days=days)
    assert 0 < cert.serial_number < 2**128
    return cert


def assert_usable(cert_pem: bytes, key_or_csr_pem: bytes, trust: bytes, node_id: str, addresses: list[str]) -> None:
    status = C.inspect_cert(cert_pem, trust, key_or_csr_pem)
    assert status.ok(node_id, addresses, 0) == []
    assert status.chain_ok is True and status.key_matches is True and status.problems == []
    assert status.node_ids == [node_id]


def make_ca(key: Any, *, ski: bool = True) -> x509.Certificate:
    """A CA not made by create_ca: other key types, or no SKI (as some old CAs)."""
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "other Receptor Root CA")])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                        critical=False)
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(key, algorithm)


# -- fixtures ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def plugin() -> types.ModuleType:
    # Loaded from its file, not installed; no __pycache__ litter in examples/.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "dont_write_bytecode", True)
        spec = importlib.util.spec_from_file_location(MODULE, PACKAGE / f"{MODULE}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        mp.setitem(sys.modules, MODULE, module)  # pydantic resolves annotations through it
        spec.loader.exec_module(module)
        yield module


@pytest.fixture(scope="module")
def ca(tmp_path_factory) -> tuple[Any, x509.Certificate, Path]:
    """(key, certificate, directory holding ca.crt and ca.key 0600)."""
    key, cert = C.create_ca(C.ca_common_name(MESH), "rsa2048", 365)
    d = tmp_path_factory.mktemp("ca")
    (d / "ca.crt").write_bytes(pem(cert))
    write_secret(d / "ca.key", C.key_to_pem(key))
    return key, cert, d


def build(plugin: types.ModuleType, base: Path, **options: Any) -> Any:
    """The backend as meshctl builds it: registration, options model, factory."""
    plugins = create_plugin_manager(autoload=False, extra=[("openssl", plugin)])
    reg = plugins.cert_backends()["openssl"]
    opts = reg.options_model.model_validate({"ca_cert": "ca.crt", "ca_key": "ca.key", **options})
    return reg.factory(opts, BackendContext(MESH, base / "state", base))


@pytest.fixture
def backend(plugin, ca) -> Any:
    return build(plugin, ca[2])  # relative option paths: resolved against the mesh.yml directory


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Path:
    """The backend's temporary directories go here, so leftovers can be seen."""
    d = tmp_path / "scratch"
    d.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(d))
    return d


# -- in-process: certificates ----------------------------------------------------------------
def test_registered_backend(plugin, backend, ca):
    reg = create_plugin_manager(autoload=False, extra=[("openssl", plugin)]).cert_backends()["openssl"]
    assert reg.options_model is plugin.OpenSSLOptions
    assert backend.supports_csr is True
    assert backend.ca_key_path == ca[2] / "ca.key"
    assert backend.trust_bundle() == (ca[2] / "ca.crt").read_bytes()


@pytest.mark.parametrize("names", NAME_SETS.values(), ids=NAME_SETS.keys())
@pytest.mark.parametrize("key_type", C.KEY_TYPES)
def test_issue_matches_meshctl_signer(backend, ca, tmp_path, key_type, names):
    ca_key, ca_cert, ca_dir = ca
    node_id, addresses = names
    key_pem, cert_pem = backend.issue(node_id, addresses, key_type, 397)

    key = C.load_private_key(key_pem)
    assert key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, as meshctl writes keys
    assert C.key_type_of(key) == key_type
    assert_usable(cert_pem, key_pem, backend.trust_bundle(), node_id, addresses)
    openssl_verify(ca_dir / "ca.crt", cert_pem, tmp_path)
    cert = assert_like_core(cert_pem, ca_key, ca_cert, node_id, addresses, 397)
    assert cert.signature_hash_algorithm is not None and cert.signature_hash_algorithm.name == "sha256"


@pytest.mark.parametrize("key_type", C.KEY_TYPES)
def test_sign_csr_matches_meshctl_signer(backend, ca, tmp_path, key_type):
    ca_key, ca_cert, ca_dir = ca
    node_id, addresses = NAME_SETS["dns+ipv4+ipv6"]
    key = C.generate_key(key_type)
    csr_pem = pem(C.csr_for(key, node_id, addresses))
    cert_pem = backend.sign_csr(csr_pem, node_id, addresses, 30)

    assert_usable(cert_pem, C.key_to_pem(key), backend.trust_bundle(), node_id, addresses)
    openssl_verify(ca_dir / "ca.crt", cert_pem, tmp_path)
    assert_like_core(cert_pem, ca_key, ca_cert, node_id, addresses, 30)


def test_requested_extensions_are_ignored(backend, ca):
    """Only the CSR's key and (checked) subject are used: a node cannot ask for more names
    or for CA:TRUE."""
    key = C.generate_key("ecdsa-p256")
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "n1")]))
        .add_extension(x509.SubjectAlternativeName(C.node_general_names("n1", ["evil.example.com"])),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = backend.sign_csr(pem(csr), "n1", ["n1.example.com"], 30)
    assert_like_core(cert_pem, ca[0], ca[1], "n1", ["n1.example.com"], 30)


def test_serials_are_random(backend):
    csr_pem = pem(C.csr_for(C.generate_key("ecdsa-p256"), "n1", []))
    serials = {C.load_cert(backend.sign_csr(csr_pem, "n1", [], 1)).serial_number for _ in range(3)}
    assert len(serials) == 3


@pytest.mark.parametrize(
    ("ca_key_factory", "ski", "digest"),
    [
        (lambda: C.generate_key("ecdsa-p384"), False, "sha384"),  # old CA without SKI
        (ed25519.Ed25519PrivateKey.generate, True, "sha512"),  # EdDSA: no separate digest
    ],
    ids=["ecdsa-ca-without-ski", "ed25519-ca"],
)
def test_other_cas_and_digests(plugin, tmp_path, ca_key_factory, ski, digest):
    ca_key = ca_key_factory()
    ca_cert = make_ca(ca_key, ski=ski)
    (tmp_path / "ca.crt").write_bytes(pem(ca_cert))
    write_secret(tmp_path / "ca.key", C.key_to_pem(ca_key))
    backend = build(plugin, tmp_path, digest=digest)
    key_pem, cert_pem = backend.issue("n1", ["n1.example.com"], "rsa2048", 10)

    assert_usable(cert_pem, key_pem, backend.trust_bundle(), "n1", ["n1.example.com"])
    openssl_verify(tmp_path / "ca.crt", cert_pem, tmp_path)
    cert = assert_like_core(cert_pem, ca_key, ca_cert, "n1", ["n1.example.com"], 10)
    algorithm = cert.signature_hash_algorithm
    assert (algorithm.name if algorithm else None) == (None if isinstance(ca_key, ed25519.Ed25519PrivateKey)
                                                       else digest)


def test_trust_bundle_is_every_certificate_and_nothing_else(plugin, ca, tmp_path):
    other = make_ca(C.generate_key("ecdsa-p256"))
    noisy = b"# mesh CA, next CA\n" + pem(ca[1]) + b"junk between\n" + pem(other)
    (tmp_path / "ca.crt").write_bytes(noisy)
    write_secret(tmp_path / "ca.key", (ca[2] / "ca.key").read_bytes())
    backend = build(plugin, tmp_path)
    assert backend.trust_bundle() == pem(ca[1]) + pem(other)
    # The first certificate of the file signs.
    key_pem, cert_pem = backend.issue("n1", [], "ecdsa-p256", 5)
    assert C.load_cert(cert_pem).issuer == ca[1].subject


# -- in-process: hygiene ------------------------------------------------------------------
def test_private_temporary_directories_are_removed_and_the_ca_key_stays_put(backend, ca, scratch, monkeypatch):
    ca_key_pem = (ca[2] / "ca.key").read_bytes()
    seen: list[dict[str, Any]] = []
    original = backend._run

    def spy(args: list[str], what: str, timeout: float | None = None) -> None:
        work = Path(args[args.index("-out") + 1]).parent
        files = {p.name: p.read_bytes() for p in work.iterdir()}
        seen.append({"args": args, "work": work, "mode": stat.S_IMODE(work.stat().st_mode), "files": files,
                     "timeout": timeout})
        original(args, what, timeout)

    monkeypatch.setattr(backend, "_run", spy)
    key = C.generate_key("ecdsa-p256")
    backend.sign_csr(pem(C.csr_for(key, "n1", [])), "n1", [], 5)
    backend.issue("n2", ["n2.example.com"], "rsa2048", 5)

    assert [s["args"][0] for s in seen] == ["x509", "genpkey", "req", "x509"]
    for s in seen:
        assert s["work"].parent == scratch and s["mode"] == 0o700
        assert not any(ca_key_pem in data for data in s["files"].values())
        if s["args"][0] == "x509":
            args = s["args"]
            assert args[args.index("-CAkey") + 1] == str(ca[2] / "ca.key")
            assert args[args.index("-set_serial") + 1].startswith("0x")
    assert seen[1]["timeout"] is not None and seen[1]["timeout"] > 60  # key generation may be slow
    assert list(scratch.iterdir()) == []
    assert sorted(p.name for p in ca[2].iterdir()) == ["ca.crt", "ca.key"]  # no ca.srl written


def test_temporary_directory_removed_when_openssl_fails(plugin, ca, tmp_path, scratch):
    (tmp_path / "ca.crt").write_bytes(pem(ca[1]))
    write_secret(tmp_path / "ca.key", C.key_to_pem(C.generate_key("ecdsa-p256")))  # not the CA's key
    backend = build(plugin, tmp_path)
    with pytest.raises(plugin.OpenSSLBackendError, match=r"signing the certificate of node 'n1'.*x509 failed") as info:
        backend.issue("n1", [], "ecdsa-p256", 5)
    assert ":error:" not in str(info.value)  # openssl's reason, not its internal error stack
    assert list(scratch.iterdir()) == []


@pytest.mark.parametrize("node_id", [
    "n1/CN=evil", "n1,DNS:evil.example.com", "n1\nsubjectAltName=DNS:x", "$ENV::HOME", "-n1", "n 1",
    "n1#x", "x" * 65, "",
])
def test_node_ids_that_could_inject_are_refused_before_openssl_runs(backend, plugin, monkeypatch, node_id):
    monkeypatch.setattr(backend, "_run", lambda *a, **k: pytest.fail("openssl must not run"))
    with pytest.raises(plugin.OpenSSLBackendError, match="not a receptor node id"):
        backend.issue(node_id, [], "ecdsa-p256", 5)
    with pytest.raises(plugin.OpenSSLBackendError, match="not a receptor node id"):
        backend.sign_csr(b"", node_id, [], 5)


@pytest.mark.parametrize("address", [
    "evil.example.com, DNS:other.example.com", "a b.example.com", "x$y.example.com", "fe80::1%eth0",
    "host/32", "n1.example.com\nkeyUsage=critical",
])
def test_addresses_that_could_inject_are_refused(backend, plugin, monkeypatch, address):
    monkeypatch.setattr(backend, "_run", lambda *a, **k: pytest.fail("openssl must not run"))
    with pytest.raises(plugin.OpenSSLBackendError, match="node 'n1'"):
        backend.issue("n1", ["n1.example.com", address], "ecdsa-p256", 5)


@pytest.mark.parametrize(("key_type", "days", "message"), [
    ("ed25519", 5, "unknown key type 'ed25519'"),
    ("rsa2048", 0, "positive number of days"),
    ("rsa2048", True, "positive number of days"),
])
def test_bad_key_type_or_days(backend, plugin, key_type, days, message):
    with pytest.raises(plugin.OpenSSLBackendError, match=message):
        backend.issue("n1", [], key_type, days)


def test_csr_subject_must_be_exactly_the_node_id(backend, plugin):
    key = C.generate_key("ecdsa-p256")
    with pytest.raises(plugin.OpenSSLBackendError, match=r"subject is 'CN=other', not 'CN=n1'"):
        backend.sign_csr(pem(C.csr_for(key, "other", [])), "n1", [], 5)
    two = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "evil"),
                                    x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "n1")]))
           .sign(key, hashes.SHA256()))
    with pytest.raises(plugin.OpenSSLBackendError, match="refusing to sign"):
        backend.sign_csr(pem(two), "n1", [], 5)
    with pytest.raises(plugin.OpenSSLBackendError, match="not a PEM CSR"):
        backend.sign_csr(b"hello", "n1", [], 5)


def test_csr_with_a_bad_self_signature_is_refused(backend, plugin):
    der = bytearray(C.csr_for(C.generate_key("rsa2048"), "n1", []).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # last byte of the RSA signature
    forged = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(plugin.OpenSSLBackendError, match="bad self-signature"):
        backend.sign_csr(pem(forged), "n1", [], 5)


def test_missing_files_and_commands_are_clear_errors(plugin, ca, tmp_path):
    with pytest.raises(plugin.OpenSSLBackendError, match=r"ca\.crt: cannot read the CA certificate"):
        build(plugin, tmp_path).trust_bundle()
    backend = build(plugin, ca[2], openssl="bin/no-such-openssl")
    assert backend.openssl == str(ca[2] / "bin" / "no-such-openssl")  # relative to mesh.yml
    with pytest.raises(plugin.OpenSSLBackendError, match="no-such-openssl' not found"):
        backend.issue("n1", [], "ecdsa-p256", 5)


def test_encrypted_ca_key_fails_instead_of_prompting(plugin, ca, tmp_path):
    (tmp_path / "ca.crt").write_bytes(pem(ca[1]))
    write_secret(tmp_path / "ca.key", ca[0].private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    backend = build(plugin, tmp_path)
    with pytest.raises(plugin.OpenSSLBackendError, match="x509 failed") as info:
        backend.issue("n1", [], "ecdsa-p256", 5)
    assert "CA private key" in str(info.value)


def test_openssl_runs_are_bounded(plugin, ca, tmp_path, monkeypatch):
    slow = tmp_path / "slow-openssl"
    slow.write_text("#!/bin/sh\nexec sleep 30\n")
    slow.chmod(0o755)
    monkeypatch.setattr(plugin, "TIMEOUT", 0.5)
    backend = build(plugin, ca[2], openssl=str(slow))
    started = time.monotonic()
    csr_pem = pem(C.csr_for(C.generate_key("ecdsa-p256"), "n1", []))
    with pytest.raises(plugin.OpenSSLBackendError, match="x509 did not finish within 0.5 seconds"):
        backend.sign_csr(csr_pem, "n1", [], 5)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(("options", "field"), [
    ({"ca_cert": "ca.crt", "ca_key": "ca.key", "ca_crt": "x"}, "ca_crt"),
    ({"ca_cert": "ca.crt", "ca_key": "ca.key", "digest": "md5"}, "digest"),
    ({"ca_cert": "ca.crt"}, "ca_key"),
    ({"ca_cert": "ca.crt", "ca_key": "ca.key", "openssl": ""}, "openssl"),
])
def test_options_model_is_strict(plugin, options, field):
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        plugin.OpenSSLOptions.model_validate(options)
    assert [e["loc"] for e in info.value.errors()] == [(field,)]


# -- installed into a fresh virtualenv, used through its entry point -----------------------
def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MESHCTL_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env["MESHCTL_STATE_DIR"] = str(tmp / "state")  # never the user's ~/.local/share
    env.update(extra)
    return env


def run(python: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", *args], cwd=cwd, env=clean_env(cwd, **env),
                          capture_output=True, text=True, timeout=600)


def _can_build_wheels() -> bool:
    """setuptools < 70.1 needs the separate ``wheel`` package to build a wheel."""
    try:
        major, minor = (int(x) for x in md.version("setuptools").split(".")[:2])
    except md.PackageNotFoundError:
        return False
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory) -> Path:
    """A virtualenv with only meshctl-certbackend-openssl installed (same approach as
    tests/test_plugins.py): meshctl and its dependencies come from the running
    environment through a .pth file, so nothing of meshctl's is downloaded."""
    tmp = tmp_path_factory.mktemp("openssl-venv")
    venv = tmp / "venv"
    # --without-pip: the venv's own (old) pip and setuptools would shadow ours.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    meshctl_src = Path(meshctl.__file__).resolve().parent.parent
    Path(purelib, "meshctl-host.pth").write_text("\n".join([*site.getsitepackages(), str(meshctl_src)]) + "\n")

    def pip(*args: str) -> None:
        proc = run(python, "pip", "--disable-pip-version-check", "--no-input", *args, cwd=tmp)
        assert proc.returncode == 0, f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"

    if not _can_build_wheels():
        # The only download: a setuptools that builds wheels by itself, into the venv.
        pip("install", "--ignore-installed", "--no-deps", "setuptools>=70.1")
    # Build from a copy so no build/ or *.egg-info lands in the repository.
    src = tmp / PACKAGE.name
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    pip("install", "--no-deps", "--no-build-isolation", "--no-index", str(src))
    return python


# The seed with the openssl backend, and hop01 with more names and its own key type.
MESH_YML = edge({"    listener: {port: 27199}\n":
                 "    address: 192.0.2.20\n    names: [hop01.dmz.example.com]\n    listener: {port: 27199}\n",
                 "    peers: [awx-task]\n": "    peers: [awx-task]\n    certificates: {key_type: ecdsa-p384}\n"},
                sections="certificates:\n  backend: openssl\n  options: {ca_cert: pki/ca.crt, ca_key: pki/ca.key}\n")
ISSUED = {  # node -> (addresses in its certificate, key type)
    "hop01.example.com": (["192.0.2.20", "hop01.dmz.example.com"], "ecdsa-p384"),
    "exec01.example.com": (["exec01.example.com"], "rsa2048"),
}


@pytest.fixture
def mesh_dir(tmp_path, ca) -> Path:
    (tmp_path / "pki").mkdir(mode=0o700)
    shutil.copyfile(ca[2] / "ca.crt", tmp_path / "pki" / "ca.crt")
    write_secret(tmp_path / "pki" / "ca.key", (ca[2] / "ca.key").read_bytes())
    (tmp_path / "mesh.yml").write_text(MESH_YML)
    return tmp_path


def test_installed_backend_is_listed_with_its_distribution(venv_python, tmp_path):
    proc = run(venv_python, "meshctl", "plugins", "-o", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    assert listed["openssl"] == {
        "name": "openssl",
        "distribution": "meshctl-certbackend-openssl",
        "version": "0.1.0",
        "hooks": ["meshctl_register_cert_backends"],
        "builtin": False,
    }


def test_installed_backend_validates_and_issues(venv_python, mesh_dir, ca):
    ok = run(venv_python, "meshctl", "validate", "-f", "mesh.yml", cwd=mesh_dir)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "mesh.yml: valid (3 nodes, 2 managed)"

    issued = run(venv_python, "meshctl", "certs", "issue", "-f", "mesh.yml", "--out", "out", cwd=mesh_dir)
    assert issued.returncode == 0, issued.stderr
    out = mesh_dir / "out"
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["ca.crt", *(f"{n}.{ext}" for n in ISSUED for ext in ("crt", "key"))])
    assert (out / "ca.crt").read_bytes() == pem(ca[1])
    for node_id, (addresses, key_type) in ISSUED.items():
        cert_pem, key_pem = (out / f"{node_id}.crt").read_bytes(), (out / f"{node_id}.key").read_bytes()
        assert stat.S_IMODE((out / f"{node_id}.key").stat().st_mode) == 0o600
        assert C.key_type_of(key_pem) == key_type
        assert_usable(cert_pem, key_pem, (out / "ca.crt").read_bytes(), node_id, addresses)
        openssl_verify(out / "ca.crt", cert_pem, mesh_dir)
        assert_like_core(cert_pem, ca[0], ca[1], node_id, addresses, 3650)
    # Nothing beside the CA: no serial file, no copy of the key.
    assert sorted(p.name for p in (mesh_dir / "pki").iterdir()) == ["ca.crt", "ca.key"]


def test_installed_backend_options_are_validated(venv_python, mesh_dir):
    (mesh_dir / "mesh.yml").write_text(MESH_YML.replace("ca_key: pki/ca.key", "ca_kee: pki/ca.key"))
    bad = run(venv_python, "meshctl", "validate", "-f", "mesh.yml", cwd=mesh_dir)
    assert bad.returncode == 2
    assert "openssl backend option ca_key: Field required" in bad.stderr
    assert "openssl backend option ca_kee: Extra inputs are not permitted" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_installed_backend_off_when_autoload_is_disabled(venv_python, mesh_dir):
    proc = run(venv_python, "meshctl", "validate", "-f", "mesh.yml", cwd=mesh_dir, **{DISABLE_AUTOLOAD_ENV: "1"})
    assert proc.returncode == 2
    assert "unknown certificate backend 'openssl'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_validate_reports_ca_problems_before_any_host(tmp_path):
    """meshctl validate asks the backend: a key that is not the CA's is an error at
    certificates.options, exit 2, before anything else happens."""
    import os
    import subprocess
    import sys

    from cryptography.hazmat.primitives import serialization

    from meshctl.core import pki as C

    _, ca = C.create_ca("t Receptor Root CA", "ecdsa-p256")
    other_key, _ = C.create_ca("other", "ecdsa-p256")
    (tmp_path / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.key").write_bytes(C.key_to_pem(other_key))
    (tmp_path / "mesh.yml").write_text(
        "mesh: t\ncertificates:\n  backend: openssl\n  options: {ca_cert: ca.crt, ca_key: ca.key}\n"
        "nodes:\n  - name: n1\n    role: execution\n    address: n1.example.com\n")
    plugin_dir = Path(__file__).resolve().parent.parent / "examples" / "meshctl-certbackend-openssl"
    env = dict(os.environ, MESHCTL_DISABLE_PLUGIN_AUTOLOAD="1", MESHCTL_STATE_DIR=str(tmp_path / "state"),
               PYTHONPATH=str(plugin_dir), PYTHONDONTWRITEBYTECODE="1")
    r = subprocess.run([sys.executable, "-m", "meshctl", "-p", "meshctl_certbackend_openssl", "validate", "-f",
                        "mesh.yml"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "mesh.yml:4:" in r.stderr and "ca.key is not the key of" in r.stderr


def test_the_example_imports_only_the_public_surface():
    import ast

    tree = ast.parse((PACKAGE / f"{MODULE}.py").read_text())
    used = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    used |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert sorted(m for m in used if m and m.startswith("meshctl")) == ["meshctl.plugin"]


@pytest.mark.parametrize("key_type", ["rsa2048", "ecdsa-p384"])
def test_the_example_passes_the_conformance_check(backend, key_type):
    from meshctl.testing.backends import assert_conformant

    assert_conformant(backend, key_type=key_type)
