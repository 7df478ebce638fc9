"""meshctl-certbackend-openssl: sign Receptor node certificates with the ``openssl`` command.

Select it in mesh.yml::

    certificates:
      backend: openssl
      options:
        ca_cert: pki/mesh-ca.crt   # relative paths: relative to mesh.yml
        ca_key: pki/mesh-ca.key
        # openssl: /usr/local/bin/openssl   (default: "openssl" from PATH)
        # digest: sha384                    (default: sha256)

Certificates carry exactly what meshctl's own backends put in them (CN=<node id>,
subjectAltName with the node's DNS names and IP addresses plus the Receptor NodeID
otherName, KeyUsage, ExtendedKeyUsage, AKI/SKI). The CA key is only ever read by
openssl from its own path; request, extension file and new node keys live in a
private (0700) temporary directory that is removed afterwards.
"""

from __future__ import annotations

import re
import secrets
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed448, ed25519, rsa
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ConfigDict, Field

from meshctl.plugin import (
    NODEID_OID,
    CertBackend,
    MeshctlError,
    hookimpl,
    issued_cert_problems,
    load_certs,
    load_csr,
    load_private_key,
    node_general_names,
    public_key_pem,
)

if TYPE_CHECKING:
    from meshctl.plugin import BackendContext

__all__ = ["OpenSSLBackend", "OpenSSLBackendError", "OpenSSLOptions"]

# Seconds. Key generation gets longer: RSA 4096 on a slow VM can take a while.
TIMEOUT = 60.0
KEYGEN_TIMEOUT = 180.0

# meshctl's own node-id rule. Anything else could break out of `-subj /CN=...`
# ("/", "=", "+") or of the extension file ("," "$" "#" newlines).
_NODE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
# What meshctl.plugin.node_general_names lets through as a DNS name (lower-cased) or an IP address;
# re-checked here because these strings are spliced into an openssl config file.
_SAN_VALUE_RE = re.compile(r"^[a-z0-9_.:-]+$")

# Progress dots, informational lines, and the "<hex>:error:<code>:<lib>:..." stack.
_NOISE_RE = re.compile(r"^(?:[0-9A-Fa-f]+:error:|subject=|Signature ok|Certificate request self-signature ok"
                       r"|[.+*]+$)")

_GENPKEY: dict[str, list[str]] = {
    "rsa2048": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    "rsa4096": ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
    "ecdsa-p256": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                   "-pkeyopt", "ec_param_enc:named_curve"],
    "ecdsa-p384": ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384",
                   "-pkeyopt", "ec_param_enc:named_curve"],
}

# A minimal `openssl req` config: the host's openssl.cnf (req_extensions, prompts,
# RANDFILE...) must not shape the request. -subj replaces the placeholder CN.
_REQ_CONFIG = """\
[ req ]
distinguished_name = req_dn
string_mask = utf8only
prompt = no
[ req_dn ]
CN = unused
"""


class OpenSSLBackendError(MeshctlError):
    """A certificate could not be made; the CLI prints it without a traceback."""


class OpenSSLOptions(BaseModel):
    """``certificates.options`` of the ``openssl`` backend."""

    # A typo such as ``ca_crt:`` is an error located in mesh.yml, not ignored.
    model_config = ConfigDict(extra="forbid")

    ca_cert: str = Field(min_length=1, description="PEM CA certificate (first one signs; all are trusted)")
    ca_key: str = Field(min_length=1, description="unencrypted PEM private key of that CA")
    openssl: str = Field(default="openssl", min_length=1, description="openssl command or path")
    digest: Literal["sha256", "sha384", "sha512"] = "sha256"


class OpenSSLBackend:
    """Signs CSRs and issues key+certificate pairs by running ``openssl``."""

    supports_csr = True

    def __init__(self, options: OpenSSLOptions, context: BackendContext) -> None:
        self.ca_cert_path = context.path(options.ca_cert)
        self.ca_key_path = context.path(options.ca_key)
        # A bare name is looked up on PATH; anything with a slash is a path (mesh.yml-relative).
        self.openssl = str(context.path(options.openssl)) if "/" in options.openssl else options.openssl
        self.digest = options.digest
        self._ca: tuple[bytes, x509.Certificate] | None = None

    # -- the CA ------------------------------------------------------------------------
    def _load_ca(self) -> tuple[bytes, x509.Certificate]:
        if self._ca is None:
            try:
                data = self.ca_cert_path.read_bytes()
            except OSError as exc:
                raise OpenSSLBackendError(f"{self.ca_cert_path}: cannot read the CA certificate: "
                                          f"{exc.strerror}") from None
            try:
                certs = load_certs(data)
            except ValueError as exc:
                raise OpenSSLBackendError(f"{self.ca_cert_path}: not a PEM certificate ({exc})") from None
            # Re-encoded: only certificates reach the nodes, not comments or text dumps.
            bundle = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
            self._ca = (bundle, certs[0])  # `openssl x509 -CA` signs with the first one
        return self._ca

    def trust_bundle(self) -> bytes:
        return self._load_ca()[0]

    def validate(self) -> list[str]:
        """Called by ``meshctl validate``: the CA files are readable and belong together."""
        try:
            _, ca = self._load_ca()
            # Only its public half is compared here, and openssl signs with it: skipping
            # the RSA consistency check saves a quarter second per command (4096 bits).
            key = load_private_key(self.ca_key_path.read_bytes(), trusted=True)
        except OpenSSLBackendError as exc:
            return [str(exc)]
        except OSError as exc:
            return [f"{self.ca_key_path}: cannot read the CA key: {exc.strerror}"]
        except (ValueError, TypeError) as exc:
            return [f"{self.ca_key_path}: not an unencrypted PEM private key ({exc})"]
        if public_key_pem(key) != public_key_pem(ca):
            return [f"{self.ca_key_path} is not the key of {self.ca_cert_path}"]
        return []

    # -- signing -----------------------------------------------------------------------
    def sign_csr(self, csr_pem: bytes, node_id: str, addresses: list[str], days: int) -> bytes:
        san = _san_entries(node_id, addresses)
        _check_days(days)
        with _workdir() as work:
            return self._sign(work, csr_pem, node_id, addresses, san, days)

    def issue(self, node_id: str, addresses: list[str], key_type: str, days: int) -> tuple[bytes, bytes]:
        san = _san_entries(node_id, addresses)
        _check_days(days)
        if key_type not in _GENPKEY:
            raise OpenSSLBackendError(f"unknown key type {key_type!r} (one of {', '.join(_GENPKEY)})")
        with _workdir() as work:
            key, csr, conf = work / "node.key", work / "node.csr", work / "req.cnf"
            self._run(["genpkey", *_GENPKEY[key_type], "-out", str(key)],
                      f"making a {key_type} key for node {node_id!r}", KEYGEN_TIMEOUT)
            conf.write_text(_REQ_CONFIG)
            self._run(["req", "-new", "-batch", "-config", str(conf), "-key", str(key),
                       "-subj", f"/CN={node_id}", f"-{self.digest}", "-out", str(csr)],
                      f"making the request of node {node_id!r}")
            key_pem = key.read_bytes()
            cert_pem = self._sign(work, csr.read_bytes(), node_id, addresses, san, days)
        return key_pem, cert_pem

    def _sign(self, work: Path, csr_pem: bytes, node_id: str, addresses: list[str], san: list[str],
              days: int) -> bytes:
        csr = _checked_csr(csr_pem, node_id)
        _, ca = self._load_ca()
        csr_file, ext_file, out = work / "sign.csr", work / "ext.cnf", work / "node.crt"
        csr_file.write_bytes(csr_pem)
        ext_file.write_text(_extensions(san, isinstance(csr.public_key(), rsa.RSAPublicKey), ca))
        # EdDSA has no separate digest to choose, so none is passed.
        eddsa = isinstance(ca.public_key(), (ed25519.Ed25519PublicKey, ed448.Ed448PublicKey))
        self._run([
            "x509", "-req", "-in", str(csr_file),
            "-CA", str(self.ca_cert_path), "-CAkey", str(self.ca_key_path),
            # An encrypted CA key fails with an error instead of prompting on a terminal.
            "-passin", "pass:",
            # Explicit serial: without it openssl writes a <ca>.srl file next to the CA.
            "-set_serial", f"0x{secrets.randbits(128) or 1:x}",
            "-days", str(days), *([] if eddsa else [f"-{self.digest}"]),
            "-extfile", str(ext_file), "-extensions", "v3_node", "-out", str(out),
        ], f"signing the certificate of node {node_id!r} with {self.ca_key_path}")
        cert_pem = out.read_bytes()
        # Never hand out a certificate receptor would refuse: check what openssl made,
        # with the checker meshctl applies to every backend's certificates.
        problems = issued_cert_problems(cert_pem, node_id, public_key=csr_pem, trust_pem=self.trust_bundle(),
                                        addresses=addresses, key_source="the request")
        if problems:
            raise OpenSSLBackendError(f"the certificate openssl made for {node_id!r} is unusable: "
                                      + "; ".join(problems))
        return cert_pem

    def _run(self, args: list[str], what: str, timeout: float | None = None) -> None:
        timeout = TIMEOUT if timeout is None else timeout
        try:
            proc = subprocess.run(
                [self.openssl, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=timeout,
                # No controlling terminal: openssl can never stop to ask for a passphrase.
                start_new_session=True,
            )
        except FileNotFoundError:
            raise OpenSSLBackendError(f"{what}: command {self.openssl!r} not found (install openssl "
                                      "or set certificates.options.openssl)") from None
        except subprocess.TimeoutExpired:
            raise OpenSSLBackendError(f"{what}: {self.openssl} {args[0]} did not finish within "
                                      f"{timeout:g} seconds") from None
        except OSError as exc:
            raise OpenSSLBackendError(f"{what}: cannot run {self.openssl!r}: {exc.strerror}") from None
        if proc.returncode != 0:
            raise OpenSSLBackendError(f"{what}: {self.openssl} {args[0]} failed "
                                      f"(exit {proc.returncode}): {_reason(proc.stderr)}")


# -- helpers ----------------------------------------------------------------------------------
@contextmanager
def _workdir() -> Iterator[Path]:
    # mkdtemp makes the directory 0700; it is removed even when openssl fails.
    with tempfile.TemporaryDirectory(prefix="meshctl-openssl-") as name:
        yield Path(name)


def _reason(stderr: str) -> str:
    """openssl's own words, without its progress output and internal error stack
    (kept only when there is nothing else)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    useful = [line for line in lines if not _NOISE_RE.match(line)] or lines
    return " / ".join(useful[-3:]) or "no message"


def _check_days(days: int) -> None:
    if isinstance(days, bool) or not isinstance(days, int) or days <= 0:
        raise OpenSSLBackendError(f"certificate validity must be a positive number of days, got {days!r}")


def _san_entries(node_id: str, addresses: Iterable[str]) -> list[str]:
    """subjectAltName in openssl-config syntax, the same names in the same order as
    meshctl's own backends (``meshctl.plugin.node_general_names``)."""
    if not isinstance(node_id, str) or not _NODE_ID_RE.match(node_id):
        raise OpenSSLBackendError(f"node id {node_id!r} is not a receptor node id (letters, digits, "
                                  "'.', '_', '@', '-'; at most 64 characters)")
    try:
        names = node_general_names(node_id, addresses)
    except ValueError as exc:
        raise OpenSSLBackendError(f"node {node_id!r}: {exc}") from None
    entries: list[str] = []
    for name in names:
        if isinstance(name, x509.DNSName):
            kind, value = "DNS", name.value
        elif isinstance(name, x509.IPAddress):
            kind, value = "IP", str(name.value)  # ipaddress' canonical text
        else:
            continue  # the NodeID otherName, added below from the checked node id
        if not _SAN_VALUE_RE.match(value):
            raise OpenSSLBackendError(f"node {node_id!r}: address {value!r} cannot be written to openssl")
        entries.append(f"{kind}:{value}")
    entries.append(f"otherName:{NODEID_OID};UTF8:{node_id}")
    return entries


def _checked_csr(csr_pem: bytes, node_id: str) -> x509.CertificateSigningRequest:
    """`openssl x509 -req` copies the request's subject: it must be exactly CN=<node id>."""
    try:
        csr = load_csr(csr_pem)
    except ValueError as exc:
        raise OpenSSLBackendError(f"the request for node {node_id!r} is not a PEM CSR ({exc})") from None
    if not csr.is_signature_valid:
        raise OpenSSLBackendError(f"the request for node {node_id!r} has a bad self-signature")
    attrs = list(csr.subject)
    if len(attrs) != 1 or attrs[0].oid != NameOID.COMMON_NAME or attrs[0].value != node_id:
        raise OpenSSLBackendError(f"refusing to sign: the request's subject is "
                                  f"{csr.subject.rfc4514_string()!r}, not 'CN={node_id}'")
    return csr


def _extensions(san: list[str], rsa_key: bool, ca: x509.Certificate) -> str:
    """The extension section of a node certificate (as meshctl.plugin.sign_node_cert)."""
    key_usage = "critical, digitalSignature" + (", keyEncipherment" if rsa_key else "")
    try:
        ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        aki = "keyid"
    except x509.ExtensionNotFound:
        # openssl's "keyid" fails on a CA without SKI; derive it from the CA's key
        # instead, as meshctl does, and hand openssl the DER.
        value = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key())  # type: ignore[arg-type]
        aki = "DER:" + value.public_bytes().hex(":")
    return "\n".join([
        "[ v3_node ]",
        f"subjectAltName = {', '.join(san)}",
        f"keyUsage = {key_usage}",
        "extendedKeyUsage = serverAuth, clientAuth",
        "subjectKeyIdentifier = hash",
        f"authorityKeyIdentifier = {aki}",
        "",
    ])


@hookimpl
def meshctl_register_cert_backends(register: Callable[[CertBackend], None]) -> None:
    register(CertBackend("openssl", OpenSSLBackend, OpenSSLOptions,
                         "sign node certificates with the openssl command and your CA"))
