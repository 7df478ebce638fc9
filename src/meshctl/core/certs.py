"""Receptor mesh certificates: the mesh CA, node certificates, CSRs, inspection, AWX bundles.

Pure functions over `cryptography` objects: no SSH, no plugin code. The contract is the
"Certificates" and "The AWX install bundle" sections of the receptor-mesh reference:

* a node certificate has ``CN=<node id>`` and a subjectAltName with the node's DNS names
  and IP addresses plus an otherName ``1.3.6.1.4.1.2312.19.1`` (Receptor NodeID) whose
  value is the DER UTF8String of the node id; receptor refuses to start without it;
* the issuer is the CA's *subject* (AWX uses the CA's issuer, right only for a root);
* AWX install bundles come in two layouts (``mesh-CA.crt`` / ``work_public_key.pem`` and,
  before AWX 22.4, ``receptor-ca.crt`` / ``work-public-key.pem``).

Private keys only ever live in memory here; writing them (0600) is the caller's job.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import ipaddress
import os
import re
import shlex
import tarfile
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshctl.core.errors import UsageError
from meshctl.core.files import read_bytes as _read_bytes

__all__ = [
    "KEY_TYPES",
    "NODEID_OID",
    "AwxBundle",
    "CertStatus",
    "KeyType",
    "ca_common_name",
    "check_csr",
    "create_ca",
    "csr_for",
    "generate_key",
    "inspect_cert",
    "issue_node_cert",
    "key_to_pem",
    "key_type_of",
    "key_type_of_public_pem",
    "load_cert",
    "load_certs",
    "load_csr",
    "load_private_key",
    "make_awx_bundle",
    "node_csr_script",
    "node_general_names",
    "public_key_pem",
    "read_awx_bundle",
    "sign_node_cert",
    "work_signing_keypair",
]

KeyType = Literal["rsa2048", "rsa4096", "ecdsa-p256", "ecdsa-p384"]
KEY_TYPES: tuple[KeyType, ...] = get_args(KeyType)
NODEID_OID = "1.3.6.1.4.1.2312.19.1"  # Red Hat arc .19 = receptor, .1 = NodeID
_NODEID = x509.ObjectIdentifier(NODEID_OID)

_RSA_BITS: dict[str, int] = {"rsa2048": 2048, "rsa4096": 4096}
_EC_CURVES: dict[str, tuple[type[ec.EllipticCurve], str]] = {
    "ecdsa-p256": (ec.SECP256R1, "P-256"),
    "ecdsa-p384": (ec.SECP384R1, "P-384"),
}
_EC_NAMES = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}

# Node certificates start 5 minutes in the past: a node whose clock is slightly behind
# the controller's would otherwise reject a brand-new certificate as "not yet valid".
BACKDATE = dt.timedelta(minutes=5)
# RFC 5280 ub-common-name; cryptography and `openssl req -subj` both refuse longer CNs.
_CN_MAX = 64
_HOSTNAME_RE = re.compile(
    r"^(?=.{1,253}$)[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?(?:\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?)*$"
)
# What node_csr_script lets through to openssl's -subj / -addext syntax, where "/", ",",
# "=", "+", ";" and backslashes are separators (same set as meshctl's node-id rule).
_SCRIPT_NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]*")  # fullmatch: no trailing newline

NodeKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


# -- keys and PEM ------------------------------------------------------------------------
def generate_key(key_type: KeyType) -> NodeKey:
    """A new private key of ``key_type``."""
    if key_type in _RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS[key_type])
    if key_type in _EC_CURVES:
        return ec.generate_private_key(_EC_CURVES[key_type][0]())
    raise ValueError(f"unknown key type {key_type!r} (one of {', '.join(KEY_TYPES)})")


def key_to_pem(key: PrivateKeyTypes) -> bytes:
    """PKCS#8 PEM, unencrypted: the caller writes it mode 0600."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_private_key(pem: bytes, trusted: bool = False) -> PrivateKeyTypes:
    """An unencrypted PEM private key (PKCS#8 or traditional). ValueError/TypeError otherwise.
    ``trusted``: a key meshctl wrote itself, so RSA consistency checks can be skipped."""
    return serialization.load_pem_private_key(pem, password=None, unsafe_skip_rsa_key_validation=trusted)


def load_cert(pem: bytes) -> x509.Certificate:
    """The first certificate of a PEM file (a chain file's leaf)."""
    return load_certs(pem)[0]


def load_certs(pem_bundle: bytes) -> list[x509.Certificate]:
    """Every certificate of a PEM bundle, in file order; ValueError when there is none."""
    return x509.load_pem_x509_certificates(pem_bundle)


def load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    return x509.load_pem_x509_csr(pem)


def _public_key(obj: Any) -> PublicKeyTypes:
    if isinstance(obj, (bytes, str)):
        obj = _load_any_pem(obj.encode() if isinstance(obj, str) else obj)
    if isinstance(obj, (x509.Certificate, x509.CertificateSigningRequest)):
        return obj.public_key()
    public_key = getattr(obj, "public_key", None)
    return public_key() if callable(public_key) else obj  # a private key, else a public key


def _load_any_pem(pem: bytes) -> Any:
    # "CERTIFICATE REQUEST" first: its label also contains "CERTIFICATE".
    if b"CERTIFICATE REQUEST-----" in pem:
        return load_csr(pem)
    if b"-----BEGIN CERTIFICATE-----" in pem:
        return load_cert(pem)
    if b"PRIVATE KEY-----" in pem:
        return load_private_key(pem)
    if b"PUBLIC KEY-----" in pem:
        return serialization.load_pem_public_key(pem)
    raise ValueError("no PEM certificate, CSR, private or public key found")


def public_key_pem(obj: Any) -> bytes:
    """SubjectPublicKeyInfo PEM of a private/public key, certificate or CSR (object or PEM).

    Equal outputs mean "this key belongs to this certificate"; the text is what
    ``openssl pkey -pubout`` prints, so it also compares with a node's key.
    """
    return _public_key(obj).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_type_of(obj: Any) -> str:
    """``rsa2048``/``ecdsa-p256``... of a key, certificate or CSR (``rsa3072``,
    ``ecdsa-p521``, ``ed25519`` for keys meshctl does not issue)."""
    pub = _public_key(obj)
    if isinstance(pub, rsa.RSAPublicKey):
        return f"rsa{pub.key_size}"
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return _EC_NAMES.get(pub.curve.name, f"ecdsa-{pub.curve.name}")
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return "ed25519"
    if isinstance(pub, ed448.Ed448PublicKey):
        return "ed448"
    return type(pub).__name__.lower()


def key_type_of_public_pem(pem: bytes) -> str:
    """:func:`key_type_of` for PEM text (``openssl pkey -pubout`` output); ValueError if unreadable."""
    return key_type_of(pem)


def work_signing_keypair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a new RSA 4096 work-signing key, as awx-operator makes.

    The controller signs work with the private key (``work-signing``); execution nodes
    verify with the public one (``work-verification``).
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=4096)
    return key_to_pem(key), public_key_pem(key)


# -- names -------------------------------------------------------------------------------
def ca_common_name(mesh: str) -> str:
    """The mesh CA's CN, as awx-operator names it: ``<mesh> Receptor Root CA``."""
    return f"{mesh} Receptor Root CA"


def _check_node_id(node_id: str) -> None:
    if not isinstance(node_id, str) or not 1 <= len(node_id) <= _CN_MAX:
        raise ValueError(f"node id {node_id!r} must be 1..{_CN_MAX} characters (it is the certificate CN)")
    if not node_id.isprintable() or node_id != node_id.strip():
        raise ValueError(f"node id {node_id!r} has control characters or surrounding spaces")


def _der_utf8(text: str) -> bytes:
    """DER UTF8String (tag 12): what receptor's --cert-makereq puts in the NodeID otherName."""
    data = text.encode("utf-8")
    n = len(data)
    if n < 0x80:
        return bytes([0x0C, n]) + data
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x0C, 0x80 | len(size)]) + size + data


# Go's asn1.Unmarshal into a string accepts these tags, so receptor would too.
_DER_STRING_TAGS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii"}


def _decode_der_string(der: bytes) -> str | None:
    if len(der) < 2 or der[0] not in _DER_STRING_TAGS:
        return None
    n, pos = der[1], 2
    if n & 0x80:
        width = n & 0x7F
        if width == 0 or width > 4 or len(der) < 2 + width:
            return None
        n, pos = int.from_bytes(der[2 : 2 + width], "big"), 2 + width
    if len(der) != pos + n:
        return None
    try:
        return der[pos:].decode(_DER_STRING_TAGS[der[0]])
    except UnicodeDecodeError:
        return None


def _parse_address(address: str) -> x509.GeneralName:
    text = address.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]  # "[2001:db8::1]" as written in URLs
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        pass
    else:
        if getattr(ip, "scope_id", None):
            raise ValueError(f"{address!r}: a scoped IPv6 address cannot be a certificate name")
        return x509.IPAddress(ip)
    name = text.rstrip(".").lower()  # DNS is case-insensitive; certificates carry lower case
    if not _HOSTNAME_RE.match(name):
        raise ValueError(f"{address!r} is neither an IP address nor a DNS host name")
    return x509.DNSName(name)


def _addresses(addresses: Iterable[str] | str) -> list[str]:
    # A bare string would otherwise be iterated character by character.
    return [addresses] if isinstance(addresses, str) else list(addresses)


def node_general_names(node_id: str, addresses: Iterable[str]) -> list[x509.GeneralName]:
    """subjectAltName entries of a node: ``DNS:`` for host names, ``IP:`` for IPv4/IPv6
    addresses (de-duplicated, in order), then the Receptor NodeID otherName.

    The node id is *not* added as a DNS name by itself: pass it in ``addresses`` when
    peers dial the node by that name.
    """
    _check_node_id(node_id)
    names: list[x509.GeneralName] = []
    for address in _addresses(addresses):
        name = _parse_address(address)
        if name not in names:
            names.append(name)
    names.append(x509.OtherName(_NODEID, _der_utf8(node_id)))
    return names


def _describe(name: x509.GeneralName) -> str:
    """openssl-config spelling of a name, for messages."""
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.OtherName):
        value = _decode_der_string(name.value)
        shown = f"UTF8:{value}" if value is not None else f"DER:{name.value.hex()}"
        return f"otherName:{name.type_id.dotted_string};{shown}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    if isinstance(name, x509.RegisteredID):
        return f"RID:{name.value.dotted_string}"
    if isinstance(name, x509.DirectoryName):
        return f"dirName:{name.value.rfc4514_string()}"
    return repr(name)


def _cn_name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _subject_cn(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(values) != 1:
        return None
    value = values[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


# -- issuing -----------------------------------------------------------------------------
def _utc(now: dt.datetime | None) -> dt.datetime:
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now if now.tzinfo else now.replace(tzinfo=dt.UTC)


def _hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    # Ed25519/Ed448 sign without a separate digest.
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    return hashes.SHA256()


def create_ca(
    common_name: str, key_type: KeyType = "rsa4096", days: int = 3650, now: dt.datetime | None = None
) -> tuple[NodeKey, x509.Certificate]:
    """A self-signed mesh CA: CA:TRUE and keyCertSign+cRLSign (both critical), SKI, SHA-256.

    awx-operator makes it RSA 4096 for 3650 days with ``CN=<awx> Receptor Root CA``
    (:func:`ca_common_name`).
    """
    if days <= 0:
        raise ValueError(f"CA validity must be positive, got {days} days")
    now = _utc(now)
    key = generate_key(key_type)
    name = _cn_name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _authority_key_id(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        # A CA made elsewhere without SKI: derive the identifier from its key instead.
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _spki_der(obj: Any) -> bytes:
    return _public_key(obj).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def sign_node_cert(
    ca_key: CertificateIssuerPrivateKeyTypes,
    ca_cert: x509.Certificate,
    public_key: CertificatePublicKeyTypes,
    node_id: str,
    addresses: Iterable[str],
    days: int,
    now: dt.datetime | None = None,
) -> x509.Certificate:
    """A node certificate for ``public_key``, signed by the mesh CA.

    Exactly: ``CN=<node id>``; subjectAltName (non-critical) from
    :func:`node_general_names`; KeyUsage digitalSignature (+keyEncipherment for RSA),
    critical; ExtendedKeyUsage serverAuth+clientAuth; issuer = the CA's subject;
    AuthorityKeyIdentifier and SubjectKeyIdentifier; valid from now-5min to now+days;
    random serial; SHA-256. Nothing is copied from a CSR but its public key.
    """
    if days <= 0:
        raise ValueError(f"certificate validity must be positive, got {days} days")
    if _spki_der(ca_key) != _spki_der(ca_cert):
        raise ValueError("the CA key does not belong to the CA certificate")
    now = _utc(now)
    names = node_general_names(node_id, addresses)
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_cn_name(node_id))
        # The CA's subject, not its issuer (AWX's bug): they differ under an intermediate CA.
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=is_rsa,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(_authority_key_id(ca_cert), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    return builder.sign(ca_key, _hash_for(ca_key))


def issue_node_cert(
    ca_key: CertificateIssuerPrivateKeyTypes,
    ca_cert: x509.Certificate,
    node_id: str,
    addresses: Iterable[str],
    key_type: KeyType,
    days: int,
    now: dt.datetime | None = None,
) -> tuple[NodeKey, x509.Certificate]:
    """A new key and its certificate, both made here ("controller" key location)."""
    key = generate_key(key_type)
    return key, sign_node_cert(ca_key, ca_cert, key.public_key(), node_id, addresses, days, now)


# -- CSRs --------------------------------------------------------------------------------
def csr_for(key: NodeKey, node_id: str, addresses: Iterable[str]) -> x509.CertificateSigningRequest:
    """The CSR a node would send: ``CN=<node id>`` and its subjectAltName names."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(_cn_name(node_id))
        .add_extension(x509.SubjectAlternativeName(node_general_names(node_id, addresses)), critical=False)
        .sign(key, _hash_for(key))
    )


def check_csr(
    csr: x509.CertificateSigningRequest, node_id: str, key_type: KeyType, allowed_addresses: Iterable[str]
) -> list[str]:
    """Why ``csr`` must not be signed for ``node_id``; empty when it is fine.

    Checks the self-signature, the key type and size, the subject CN and that the
    requested subjectAltName names (if any) are among ``allowed_addresses`` plus the
    NodeID otherName of this node. Other requested extensions are ignored: the
    certificate's extensions come from :func:`sign_node_cert`, never from the CSR.
    """
    problems: list[str] = []
    if not csr.is_signature_valid:
        problems.append("CSR signature does not verify against its own public key")
    actual = key_type_of(csr)
    if actual != key_type:
        problems.append(f"CSR public key is {actual}, expected {key_type}")
    cn = _subject_cn(csr.subject)
    if cn != node_id:
        got = "no single CN" if cn is None else f"CN {cn!r}"
        problems.append(f"CSR subject has {got}, expected CN {node_id!r}")
    allowed = node_general_names(node_id, allowed_addresses)
    try:
        requested: list[x509.GeneralName] = list(
            csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        )
    except x509.ExtensionNotFound:
        requested = []
    except (ValueError, x509.DuplicateExtension) as exc:
        problems.append(f"CSR extensions are malformed: {exc}")
        requested = []
    allowed_text = ", ".join(_describe(n) for n in allowed)
    for name in requested:
        if name in allowed:
            continue
        if isinstance(name, x509.OtherName) and name.type_id == _NODEID:
            value = _decode_der_string(name.value)
            problems.append(
                f"CSR NodeID otherName is {value!r}, expected {node_id!r}" if value is not None
                else "CSR NodeID otherName is not a DER UTF8String"
            )
        else:
            problems.append(f"CSR requests {_describe(name)}, which is not allowed (allowed: {allowed_text})")
    return problems


def node_csr_script(
    key_path: str, key_type: KeyType, node_id: str, addresses: Iterable[str], owner: str, group: str
) -> str:
    """A POSIX sh script, run on the node, that prints a PEM CSR for its key on stdout.

    If ``key_path`` does not exist, a ``key_type`` key is made first with
    ``openssl genpkey`` (umask 077, in a temporary file beside it, chown
    ``owner:group``, chmod 0600, then renamed into place). An existing key is used as
    it is (:func:`check_csr` reports a wrong type). The key itself is never printed.
    Works with OpenSSL 1.1.1 (RHEL 8) to 3.x: a minimal ``-config`` keeps the host's
    openssl.cnf (``req_extensions``, ``RANDFILE``...) out of the request.
    """
    if key_type in _RSA_BITS:
        genpkey = f"-algorithm RSA -pkeyopt rsa_keygen_bits:{_RSA_BITS[key_type]}"
    elif key_type in _EC_CURVES:
        curve = _EC_CURVES[key_type][1]
        genpkey = f"-algorithm EC -pkeyopt ec_paramgen_curve:{curve} -pkeyopt ec_param_enc:named_curve"
    else:
        raise ValueError(f"unknown key type {key_type!r} (one of {', '.join(KEY_TYPES)})")
    _check_node_id(node_id)
    if not _SCRIPT_NODE_ID_RE.fullmatch(node_id):
        raise ValueError(f"node id {node_id!r} has characters openssl's -subj/-addext syntax cannot carry")
    names = node_general_names(node_id, addresses)
    san = ",".join(_describe(n) for n in names[:-1]) + ("," if len(names) > 1 else "")
    san += f"otherName:{NODEID_OID};UTF8:{node_id}"
    q = shlex.quote
    config = ("[ req ]", "distinguished_name = req_dn", "string_mask = utf8only", "prompt = no",
              "[ req_dn ]", "CN = unused")
    return "\n".join([
        "set -eu",
        "umask 077",
        f"key={q(key_path)}",
        "tmp= conf=",
        'trap \'rm -f -- ${tmp:+"$tmp"} ${conf:+"$conf"}\' EXIT',
        'if [ ! -e "$key" ]; then',
        '  tmp=$(mktemp "$(dirname -- "$key")/.meshctl-key.XXXXXX")',
        # genpkey writes the key to the file only; its stderr (progress dots on 1.1.1)
        # is shown only when it fails.
        f'  if ! out=$(openssl genpkey {genpkey} -out "$tmp" 2>&1); then',
        "    printf '%s\\n' \"$out\" >&2; exit 1",
        "  fi",
        f'  chown -- {q(f"{owner}:{group}")} "$tmp"',
        '  chmod 0600 -- "$tmp"',
        '  mv -f -- "$tmp" "$key"',
        "  tmp=",
        "fi",
        "conf=$(mktemp)",
        "printf '%s\\n' " + " ".join(q(line) for line in config) + ' > "$conf"',
        'openssl req -new -batch -sha256 -config "$conf" -key "$key"'
        f" -subj {q('/CN=' + node_id)} -addext {q('subjectAltName=' + san)}",
        "",
    ])


# -- inspecting --------------------------------------------------------------------------
@dataclass
class CertStatus:
    """What a certificate is, and (with a CA bundle and a public key) whether it holds."""

    subject_cn: str | None
    dns_names: list[str]
    ip_addresses: list[str]
    node_ids: list[str]  # values of the Receptor NodeID otherNames
    issuer: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    days_left: float  # negative once expired
    key_type: str
    chain_ok: bool | None = None  # None: no CA bundle given
    key_matches: bool | None = None  # None: no public key given
    problems: list[str] = field(default_factory=list)
    chain_problems: list[str] = field(default_factory=list)  # signature/CA part of chain_ok
    checked_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def ok(self, node_id: str, addresses: Iterable[str], renew_within_days: float = 30.0) -> list[str]:
        """Why the certificate must be (re)issued for ``node_id`` at ``addresses``; empty if not.

        Names the certificate has beyond ``addresses`` are no reason: they do no harm.
        """
        reasons: list[str] = []
        if self.subject_cn != node_id:
            reasons.append(f"subject CN is {self.subject_cn!r}, expected {node_id!r}")
        if node_id not in self.node_ids:
            if not self.node_ids:
                reasons.append(f"no Receptor NodeID otherName (receptor exits: nodeID={node_id} not found)")
            else:
                reasons.append(f"NodeID otherName is {', '.join(map(repr, self.node_ids))}, expected {node_id!r}")
        have = {f"DNS:{d.lower()}" for d in self.dns_names} | {f"IP:{ip}" for ip in self.ip_addresses}
        wanted = [_describe(n) for n in node_general_names(node_id, addresses)[:-1]]
        missing = [n for n in wanted if n not in have]
        if missing:
            reasons.append(f"subjectAltName lacks {', '.join(missing)}")
        if self.days_left <= 0:
            reasons.append(f"expired on {self.not_after:%Y-%m-%d %H:%M} UTC")
        elif self.days_left < renew_within_days:
            reasons.append(
                f"expires in {self.days_left:.1f} days (on {self.not_after:%Y-%m-%d}), "
                f"within the {renew_within_days:g}-day renewal window"
            )
        if self.checked_at < self.not_before:
            reasons.append(f"not valid before {self.not_before:%Y-%m-%d %H:%M} UTC")
        if self.chain_ok is False and self.chain_problems:
            reasons.append("does not chain to the mesh CA: " + "; ".join(self.chain_problems))
        if self.key_matches is False:
            reasons.append("certificate does not match the node's private key")
        return reasons


def inspect_cert(
    cert_pem: bytes,
    ca_pems: bytes | None = None,
    public_key_pem: bytes | None = None,
    now: dt.datetime | None = None,
) -> CertStatus:
    """Read a node certificate (the first of ``cert_pem``). ValueError if there is none.

    ``chain_ok``: signed by one of the CA certificates in ``ca_pems`` (checked with
    ``verify_directly_issued_by``, which also compares issuer and CA subject), that CA
    is within its validity, and so is the certificate. ``key_matches``: the certificate's
    public key is ``public_key_pem`` (any PEM: public or private key, certificate).
    """
    now = _utc(now)
    cert = load_cert(cert_pem)
    problems: list[str] = []
    dns: list[str] = []
    ips: list[str] = []
    node_ids: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        problems.append("no subjectAltName extension")
    except (ValueError, x509.DuplicateExtension) as exc:
        problems.append(f"extensions are malformed: {exc}")
    else:
        for name in san:
            if isinstance(name, x509.DNSName):
                dns.append(name.value)
            elif isinstance(name, x509.IPAddress):
                ips.append(str(name.value))
            elif isinstance(name, x509.OtherName) and name.type_id == _NODEID:
                value = _decode_der_string(name.value)
                if value is None:
                    problems.append("a NodeID otherName is not a DER UTF8String")
                else:
                    node_ids.append(value)
    not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
    in_validity = not_before <= now <= not_after
    if now > not_after:
        problems.append(f"expired on {not_after:%Y-%m-%d %H:%M} UTC")
    elif now < not_before:
        problems.append(f"not valid before {not_before:%Y-%m-%d %H:%M} UTC")

    chain_ok: bool | None = None
    chain_problems: list[str] = []
    if ca_pems is not None:
        chain_problems = _chain_problems(cert, ca_pems, now)
        chain_ok = not chain_problems and in_validity
    key_matches: bool | None = None
    if public_key_pem is not None:
        try:
            key_matches = _spki_der(public_key_pem) == _spki_der(cert)
        except (ValueError, TypeError) as exc:
            key_matches = False
            problems.append(f"the given key is unreadable: {exc}")
        if not key_matches:
            problems.append("certificate does not match the given key")
    return CertStatus(
        subject_cn=_subject_cn(cert.subject),
        dns_names=dns,
        ip_addresses=ips,
        node_ids=node_ids,
        issuer=cert.issuer.rfc4514_string(),
        serial=cert.serial_number,
        not_before=not_before,
        not_after=not_after,
        days_left=(not_after - now).total_seconds() / 86400,
        key_type=key_type_of(cert),
        chain_ok=chain_ok,
        key_matches=key_matches,
        problems=chain_problems + problems,
        chain_problems=chain_problems,
        checked_at=now,
    )


def _chain_problems(cert: x509.Certificate, ca_pems: bytes, now: dt.datetime) -> list[str]:
    try:
        cas = load_certs(ca_pems)
    except ValueError:
        return ["the CA bundle holds no certificate"]
    for ca in cas:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        if not ca.not_valid_before_utc <= now <= ca.not_valid_after_utc:
            return [f"its CA {ca.subject.rfc4514_string()!r} is outside its validity "
                    f"({ca.not_valid_before_utc:%Y-%m-%d} .. {ca.not_valid_after_utc:%Y-%m-%d})"]
        return []
    subjects = ", ".join(repr(ca.subject.rfc4514_string()) for ca in cas)
    return [f"issuer {cert.issuer.rfc4514_string()!r} is not signed by the CA certificate(s) {subjects}"]


# -- AWX install bundles -----------------------------------------------------------------
Layout = Literal["awx>=23", "awx<23"]
# Member names (below "<host>_install_bundle/") per layout. The "awx<23" names were
# used by AWX 21.7.0 .. 22.3.0 (renamed in 22.4.0); the labels follow the reference.
_LAYOUTS: dict[str, dict[str, str]] = {
    "awx>=23": {"ca": "receptor/tls/ca/mesh-CA.crt", "work": "receptor/work_public_key.pem"},
    "awx<23": {"ca": "receptor/tls/ca/receptor-ca.crt", "work": "receptor/work-public-key.pem"},
}
_CERT_MEMBER = "receptor/tls/receptor.crt"
_KEY_MEMBER = "receptor/tls/receptor.key"
_INVENTORY = "inventory.yml"
_GROUP_VARS = "group_vars/all.yml"
_USER_PLACEHOLDER = "<username>"  # AWX leaves the SSH user to the person running the play

MAX_MEMBER_BYTES = 1 << 20  # a bundle's files are a few KiB each
MAX_BUNDLE_BYTES = 16 << 20  # compressed, and again uncompressed (gzip bombs)
MAX_MEMBERS = 100


@dataclass(frozen=True)
class AwxBundle:
    """What an AWX install bundle (``<host>_install_bundle.tar.gz``) provisions."""

    path: Path
    layout: Layout
    host: str  # ansible_host: AWX's instance hostname
    user: str | None  # ansible_user; None while it is AWX's "<username>" placeholder
    node_id: str  # the certificate's NodeID otherName, else its CN
    role: Literal["execution", "hop"]  # execution when receptor_work_commands is set
    listener_port: int | None  # None: receptor_listener false
    listener_protocol: str
    peers: list[tuple[str, str]]  # (address, protocol) from receptor_peers
    tls: bool
    verify: bool
    mintls13: bool
    cert_pem: bytes
    key_pem: bytes = field(repr=False)  # secret
    ca_pem: bytes
    work_public_key_pem: bytes | None  # None for hop nodes
    variables: dict[str, Any] = field(repr=False)  # group_vars/all.yml merged with the host's vars


# Receptor node ids as mesh.yml takes them (topology's rule); fullmatch, as "$"
# would accept a trailing newline.
_BUNDLE_NODE_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path for a one-line message: quoted when it holds a line break or control."""
    text = os.fspath(path)
    return text if text.isprintable() else repr(text)


def _bundle_error(path: Path, message: str) -> ValueError:
    return ValueError(f"{shown_path(path.name)}: {message}")


def _bundle_files(path: Path) -> dict[str, bytes]:
    """Regular files of the tarball by normalised name, read in memory with every bound
    checked; nothing is extracted to disk."""
    try:
        # The safe reader: a FIFO reports size 0 and would then block a plain read.
        raw = _read_bytes(path, "install bundle", MAX_BUNDLE_BYTES)
    except UsageError as exc:
        raise _bundle_error(path, str(exc).removeprefix(shown_path(path) + ": ")) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(raw)) as gz:
                raw = gz.read(MAX_BUNDLE_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise _bundle_error(path, f"not a valid gzip file ({exc})") from None
        if len(raw) > MAX_BUNDLE_BYTES:
            raise _bundle_error(path, f"uncompresses to more than {MAX_BUNDLE_BYTES} bytes")
    files: dict[str, bytes] = {}
    data_filter = getattr(tarfile, "data_filter", None)  # 3.11.4+
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
            members = tar.getmembers()
            if len(members) > MAX_MEMBERS:
                raise _bundle_error(path, f"{len(members)} members, more than {MAX_MEMBERS}")
            for member in members:
                name = member.name
                parts = PurePosixPath(name).parts
                if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
                    raise _bundle_error(path, f"member {name!r} has an absolute path")
                if ".." in parts or ".." in name.split("\\"):
                    raise _bundle_error(path, f"member {name!r} climbs out of the bundle with '..'")
                if member.issym() or member.islnk():
                    raise _bundle_error(path, f"member {name!r} is a link")
                if not (member.isfile() or member.isdir()):
                    raise _bundle_error(path, f"member {name!r} is not a regular file")
                if data_filter is not None:
                    # The "data" extraction filter's verdict, without extracting anything.
                    try:
                        data_filter(member, "/nonexistent/meshctl-bundle")
                    except tarfile.FilterError as exc:
                        raise _bundle_error(path, f"member {name!r} refused: {exc}") from None
                if member.isdir():
                    continue
                if member.size > MAX_MEMBER_BYTES:
                    raise _bundle_error(path, f"member {name!r} is {member.size} bytes (limit {MAX_MEMBER_BYTES})")
                key = "/".join(p for p in parts if p != ".")
                if key in files:
                    raise _bundle_error(path, f"member {name!r} appears twice")
                handle = tar.extractfile(member)
                files[key] = handle.read(MAX_MEMBER_BYTES + 1) if handle else b""
    except tarfile.TarError as exc:
        raise _bundle_error(path, f"not a tar archive ({exc})") from None
    return files


def _strip_root(files: dict[str, bytes]) -> tuple[str, dict[str, bytes]]:
    # AWX puts everything below "<host>_install_bundle/"; tolerate a re-packed bundle without it.
    tops = {name.split("/", 1)[0] for name in files}
    if len(tops) == 1 and all("/" in name for name in files):
        root = tops.pop()
        return root, {name.split("/", 1)[1]: data for name, data in files.items()}
    return "", files


def _yaml(path: Path, member: str, data: bytes) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(data.decode("utf-8")) or {}
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _bundle_error(path, f"{member} is not valid YAML ({exc})") from None
    if not isinstance(loaded, dict):
        raise _bundle_error(path, f"{member} is not a YAML mapping")
    return loaded


def _port(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value < 65536 else None
    if isinstance(value, str) and value.strip().isdigit():
        return _port(int(value))
    return None  # e.g. "None" rendered by an old AWX for a node without a listener


def awx_bundle_cert_problems(cert_pem: bytes, ca_pem: bytes, ca_member: str,
                             now: dt.datetime | None = None) -> list[str]:
    """Why receptor would refuse the bundle's certificate: outside its validity, no
    NodeID otherName (receptor exits "nodeID=... not found"), not signed by the CA the
    bundle ships (peers would refuse the TLS handshake). Empty when none of these."""
    now = _utc(now)
    status = inspect_cert(cert_pem, ca_pem, now=now)
    out = []
    if now > status.not_after:
        out.append(f"{_CERT_MEMBER} expired on {status.not_after:%Y-%m-%d %H:%M} UTC: download a new bundle")
    elif now < status.not_before:
        out.append(f"{_CERT_MEMBER} is not valid before {status.not_before:%Y-%m-%d %H:%M} UTC "
                   "(check this machine's clock, or AWX's)")
    if not status.node_ids:
        out.append(f"{_CERT_MEMBER} has no Receptor NodeID otherName ({NODEID_OID}) in its subjectAltName")
    if status.chain_problems:
        out.append(f"{_CERT_MEMBER} does not chain to {ca_member}: " + "; ".join(status.chain_problems))
    return out


def read_awx_bundle(path: str | os.PathLike[str], now: dt.datetime | None = None) -> AwxBundle:
    """Read an AWX install bundle safely (both layouts). ValueError naming the bundle and
    the member for anything broken, missing, unsafe or oversized, and for a certificate
    receptor would refuse (see :func:`awx_bundle_cert_problems`; ``now`` for its validity)."""
    path = Path(path)
    root, files = _strip_root(_bundle_files(path))
    prefix = f"{root}/" if root else ""

    def need(member: str) -> bytes:
        if member not in files:
            raise _bundle_error(path, f"missing member {prefix}{member}")
        return files[member]

    layout: Layout
    if _LAYOUTS["awx>=23"]["ca"] in files:
        layout = "awx>=23"
    elif _LAYOUTS["awx<23"]["ca"] in files:
        layout = "awx<23"
    else:
        raise _bundle_error(
            path, f"missing member {prefix}{_LAYOUTS['awx>=23']['ca']} "
                  f"(or {_LAYOUTS['awx<23']['ca']} before AWX 22.4)"
        )
    names = _LAYOUTS[layout]
    cert_pem, key_pem, ca_pem = need(_CERT_MEMBER), need(_KEY_MEMBER), need(names["ca"])
    inventory = _yaml(path, _INVENTORY, need(_INVENTORY))
    group_vars = _yaml(path, _GROUP_VARS, need(_GROUP_VARS))

    hosts = (inventory.get("all") or {}).get("hosts") if isinstance(inventory.get("all"), dict) else None
    if not isinstance(hosts, dict) or not hosts:
        raise _bundle_error(path, f"{_INVENTORY} has no host under all.hosts")
    host_vars = next(iter(hosts.values())) or {}
    if not isinstance(host_vars, dict):
        raise _bundle_error(path, f"{_INVENTORY}: the host's variables are not a mapping")
    variables = {**group_vars, **host_vars}  # host vars win, as in Ansible

    try:
        cert = load_cert(cert_pem)
    except ValueError as exc:
        raise _bundle_error(path, f"{_CERT_MEMBER} is not a PEM certificate ({exc})") from None
    try:
        key = load_private_key(key_pem)
    except (ValueError, TypeError) as exc:
        raise _bundle_error(path, f"{_KEY_MEMBER} is not an unencrypted PEM key ({exc})") from None
    if _spki_der(key) != _spki_der(cert):
        raise _bundle_error(path, f"{_KEY_MEMBER} is not the key of {_CERT_MEMBER}")
    try:
        load_certs(ca_pem)
    except ValueError as exc:
        raise _bundle_error(path, f"{names['ca']} is not a PEM certificate ({exc})") from None

    role: Literal["execution", "hop"] = "execution" if variables.get("receptor_work_commands") else "hop"
    work_pem: bytes | None = None
    if role == "execution":
        work_pem = need(names["work"])
        try:
            serialization.load_pem_public_key(work_pem)
        except (ValueError, TypeError) as exc:
            raise _bundle_error(path, f"{names['work']} is not a PEM public key ({exc})") from None

    problems = awx_bundle_cert_problems(cert_pem, ca_pem, names["ca"], now)
    if problems:
        raise _bundle_error(path, "; ".join(problems))
    node_id = inspect_cert(cert_pem).node_ids[0]
    if not _BUNDLE_NODE_ID_RE.fullmatch(node_id):
        raise _bundle_error(path, f"{_CERT_MEMBER}: NodeID {node_id!r} is not a valid receptor node id "
                                  "(letters, digits, '.', '_', '@', '-'; at most 64 characters)")

    peers: list[tuple[str, str]] = []
    for i, peer in enumerate(variables.get("receptor_peers") or []):
        if not isinstance(peer, dict) or not isinstance(peer.get("address"), str):
            raise _bundle_error(path, f"{_GROUP_VARS}: receptor_peers[{i}] has no address")
        peers.append((peer["address"], str(peer.get("protocol") or "tcp")))

    listener = variables.get("receptor_listener", True) is not False
    port = variables.get("receptor_port", variables.get("receptor_listener_port"))
    user = host_vars.get("ansible_user")
    host = host_vars.get("ansible_host") or root.removesuffix("_install_bundle")
    if not host:
        raise _bundle_error(path, f"{_INVENTORY} has no ansible_host")
    return AwxBundle(
        path=path,
        layout=layout,
        host=str(host),
        user=None if user in (None, _USER_PLACEHOLDER) else str(user),
        node_id=node_id,
        role=role,
        listener_port=_port(port) if listener else None,
        listener_protocol=str(variables.get("receptor_protocol") or "tcp"),
        peers=peers,
        tls=variables.get("receptor_tls", True) is not False,
        verify=variables.get("receptor_verify", True) is not False,
        mintls13=variables.get("receptor_mintls13", False) is True,
        cert_pem=cert_pem,
        key_pem=key_pem,
        ca_pem=ca_pem,
        work_public_key_pem=work_pem,
        variables=variables,
    )


# The files AWX renders (awx/api/templates/instance_install_bundle/, AWX 24 and 22.3.0),
# as they come out of the template engine.
_PLAYBOOK_NEW = """\
---
- hosts: all
  become: yes
  tasks:
    - name: Create the receptor group
      group:
        name: "{{ receptor_group }}"
        state: present
    - name: Create the receptor user
      user:
        name: "{{ receptor_user }}"
        shell: /bin/bash
%(podman)s    - import_role:
        name: ansible.receptor.setup
"""
_PODMAN_ROLE = "    - import_role:\n        name: ansible.receptor.podman\n"
_PLAYBOOK_OLD = """
---
- hosts: all
  become: yes
  tasks:
    - name: Create the receptor user
      user:
        name: "{{ receptor_user }}"
        shell: /bin/bash
    - name: Enable Copr repo for Receptor
      command: dnf copr enable ansible-awx/receptor -y
    - import_role:
        name: ansible.receptor.podman
    - import_role:
        name: ansible.receptor.setup
    - name: Install ansible-runner
      pip:
        name: ansible-runner
        executable: pip3.9
"""
_INVENTORY_TEXT = """\
---
all:
  hosts:
    remote-execution:
      ansible_host: %(host)s
      ansible_user: %(user)s
      ansible_ssh_private_key_file: ~/.ssh/id_rsa
"""
_REQUIREMENTS = {
    "awx>=23": "---\ncollections:\n  - name: ansible.receptor\n    version: 2.0.3\n",
    "awx<23": "---\ncollections:\n  - name: ansible.receptor\n    version: 1.1.0\n",
}
_WORK_COMMANDS = """\
receptor_work_commands:
  ansible-runner:
    command: ansible-runner
    params: worker
    allowruntimeparams: true
    verifysignature: true
"""
_PODMAN_VARS = 'podman_user: "{{ receptor_user }}"\npodman_group: "{{ receptor_group }}"\n'


def _group_vars_new(role: str, listener_port: int | None, protocol: str, peers: Sequence[tuple[str, str]]) -> str:
    out = "receptor_user: awx\nreceptor_group: awx\nreceptor_verify: true\nreceptor_tls: true\nreceptor_mintls13: false\n"
    if role == "execution":
        out += _WORK_COMMANDS + "additional_python_packages:\n  - ansible-runner\n"
    out += (f"custom_worksign_public_keyfile: {_LAYOUTS['awx>=23']['work']}\n"
            f"custom_tls_certfile: {_CERT_MEMBER}\ncustom_tls_keyfile: {_KEY_MEMBER}\n"
            f"custom_ca_certfile: {_LAYOUTS['awx>=23']['ca']}\n")
    if listener_port:
        out += f"receptor_protocol: {protocol}\nreceptor_listener: true\nreceptor_port: {listener_port}\n"
    else:
        out += "receptor_listener: false\n"
    if peers:
        out += "receptor_peers:\n" + "".join(
            f"  - address: {address}\n    protocol: {proto}\n" for address, proto in peers
        )
    return out + _PODMAN_VARS


def _group_vars_old(listener_port: int | None) -> str:
    return (
        "receptor_user: awx\nreceptor_group: awx\nreceptor_verify: true\nreceptor_tls: true\n"
        "receptor_mintls13: false\n" + _WORK_COMMANDS
        + f"custom_worksign_public_keyfile: {_LAYOUTS['awx<23']['work']}\n"
        f"custom_tls_certfile: {_CERT_MEMBER}\ncustom_tls_keyfile: {_KEY_MEMBER}\n"
        f"custom_ca_certfile: {_LAYOUTS['awx<23']['ca']}\n"
        f"receptor_protocol: 'tcp'\nreceptor_listener: true\nreceptor_port: {listener_port}\n"
        "receptor_dependencies:\n  - python39-pip\n\n" + _PODMAN_VARS + "\n"
    )


@lru_cache(maxsize=1)
def _stand_in_work_public_key() -> bytes:
    # Only the public half is kept; one per process keeps test bundles cheap (RSA 4096).
    return work_signing_keypair()[1]


def _awx_node_cert(
    ca_key: CertificateIssuerPrivateKeyTypes, ca_cert: x509.Certificate, host: str, node_id: str,
    key_type: KeyType, days: int, not_before: dt.datetime | None = None, with_node_id: bool = True,
) -> tuple[bytes, bytes]:
    """Key and certificate as AWX's generate_receptor_tls makes them: CN, SAN with DNS
    (or IP), NodeID otherName, no KU/EKU/AKI, valid from now, traditional key PEM."""
    key = generate_key(key_type)
    host_name = _parse_address(host)
    names: list[x509.GeneralName] = []
    if isinstance(host_name, x509.DNSName):
        names.append(host_name)
    if with_node_id:
        names.append(x509.OtherName(_NODEID, _der_utf8(node_id)))
    if isinstance(host_name, x509.IPAddress):
        names.append(host_name)
    now = _utc(not_before)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_cn_name(node_id))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, _hash_for(ca_key))
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def make_awx_bundle(
    path: str | os.PathLike[str],
    *,
    host: str,
    node_id: str,
    role: Literal["execution", "hop"],
    ca_key: CertificateIssuerPrivateKeyTypes,
    ca_cert: x509.Certificate,
    layout: Layout = "awx>=23",
    peers: Sequence[tuple[str, str]] = (),
    listener_port: int | None = 27199,
    listener_protocol: str = "tcp",
    user: str = "cloud-user",
    key_type: KeyType = "rsa2048",
    days: int = 3650,
    work_public_key_pem: bytes | None = None,
    not_before: dt.datetime | None = None,
    with_node_id: bool = True,
    signer: tuple[CertificateIssuerPrivateKeyTypes, x509.Certificate] | None = None,
) -> Path:
    """Write an AWX-format install bundle (for tests and demos) and return its path.

    ``path`` is the file, or a directory to hold ``<host>_install_bundle.tar.gz``. The
    files mirror what AWX renders for ``layout``; the node certificate is made like
    AWX makes it. ``work_public_key_pem`` defaults to a throwaway RSA 4096 public key.
    The file is created mode 0600: it holds the node's private key.

    For bundles AWX would not make (tests of the checks): ``not_before`` (default now)
    starts the validity, ``with_node_id=False`` leaves the NodeID otherName out, and
    ``signer`` (key, certificate) signs the node certificate instead of the CA shipped.
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (awx>=23 or awx<23)")
    if role not in ("execution", "hop"):
        raise ValueError(f"AWX makes install bundles for execution and hop nodes only, not {role!r}")
    if layout == "awx<23" and (role == "hop" or peers or not listener_port):
        raise ValueError("AWX < 23 bundles exist only for execution nodes with a listener and no peers")
    out = Path(path)
    if out.is_dir():
        out = out / f"{host}_install_bundle.tar.gz"
    root = f"{host}_install_bundle"
    names = _LAYOUTS[layout]
    sign_key, sign_cert = signer or (ca_key, ca_cert)
    key_pem, cert_pem = _awx_node_cert(sign_key, sign_cert, host, node_id, key_type, days, not_before, with_node_id)
    if layout == "awx>=23":
        playbook = _PLAYBOOK_NEW % {"podman": _PODMAN_ROLE if role == "execution" else ""}
        group_vars = _group_vars_new(role, listener_port, listener_protocol, peers)
    else:
        playbook, group_vars = _PLAYBOOK_OLD, _group_vars_old(listener_port)
    members = [  # AWX's order
        (names["ca"], ca_cert.public_bytes(serialization.Encoding.PEM)),
        (names["work"], work_public_key_pem or _stand_in_work_public_key()),
        (_KEY_MEMBER, key_pem),
        (_CERT_MEMBER, cert_pem),
        ("install_receptor.yml", playbook.encode()),
        (_INVENTORY, (_INVENTORY_TEXT % {"host": host, "user": user}).encode()),
        (_GROUP_VARS, group_vars.encode()),
        ("requirements.yml", _REQUIREMENTS[layout].encode()),
    ]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(buf.getvalue())
    return out
