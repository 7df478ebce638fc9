"""Keys and PEM: generating, loading and comparing keys, certificates and CSRs.

Private keys only ever live in memory here; writing them (0600) is the caller's job.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, get_args

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)

KeyType = Literal["rsa2048", "rsa4096", "ecdsa-p256", "ecdsa-p384"]
KEY_TYPES: tuple[KeyType, ...] = get_args(KeyType)

RSA_BITS: dict[str, int] = {"rsa2048": 2048, "rsa4096": 4096}
EC_CURVES: dict[str, tuple[type[ec.EllipticCurve], str]] = {
    "ecdsa-p256": (ec.SECP256R1, "P-256"),
    "ecdsa-p384": (ec.SECP384R1, "P-384"),
}
_EC_NAMES = {"secp256r1": "ecdsa-p256", "secp384r1": "ecdsa-p384", "secp521r1": "ecdsa-p521"}

NodeKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def generate_key(key_type: KeyType) -> NodeKey:
    """A new private key of ``key_type``."""
    if key_type in RSA_BITS:
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS[key_type])
    if key_type in EC_CURVES:
        return ec.generate_private_key(EC_CURVES[key_type][0]())
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


def public_key_of(obj: Any) -> PublicKeyTypes:
    """The public key of a key, certificate or CSR, given as an object or PEM."""
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
    return public_key_of(obj).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_type_of(obj: Any) -> str:
    """``rsa2048``/``ecdsa-p256``... of a key, certificate or CSR (``rsa3072``,
    ``ecdsa-p521``, ``ed25519`` for keys meshctl does not issue)."""
    pub = public_key_of(obj)
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


def spki_der(obj: Any) -> bytes:
    """DER SubjectPublicKeyInfo of anything :func:`public_key_pem` takes: equal bytes, same key."""
    return public_key_of(obj).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def hash_for(key: CertificateIssuerPrivateKeyTypes) -> hashes.SHA256 | None:
    # Ed25519/Ed448 sign without a separate digest.
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed448.Ed448PrivateKey)):
        return None
    return hashes.SHA256()


def utc(now: dt.datetime | None) -> dt.datetime:
    """``now``, or the current time, as an aware UTC datetime."""
    if now is None:
        return dt.datetime.now(dt.UTC)
    return now if now.tzinfo else now.replace(tzinfo=dt.UTC)
