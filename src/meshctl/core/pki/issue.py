"""Issuing: the mesh CA and node certificates signed by it.

A node certificate has ``CN=<node id>`` and the names of
:func:`meshctl.core.pki.names.node_general_names`; its issuer is the CA's *subject*
(AWX uses the CA's issuer, right only for a root).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtendedKeyUsageOID

from meshctl.core.pki.keys import KeyType, NodeKey, generate_key, hash_for, spki_der, utc
from meshctl.core.pki.names import cn_name, node_general_names

# Node certificates start 5 minutes in the past: a node whose clock is slightly behind
# the controller's would otherwise reject a brand-new certificate as "not yet valid".
BACKDATE = dt.timedelta(minutes=5)



_USAGES = ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
           "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only")


def key_usage(**granted: bool) -> x509.KeyUsage:
    """A KeyUsage with only the ``granted`` bits set."""
    return x509.KeyUsage(**{u: granted.get(u, False) for u in _USAGES})

def create_ca(
    common_name: str, key_type: KeyType = "rsa4096", days: int = 3650, now: dt.datetime | None = None
) -> tuple[NodeKey, x509.Certificate]:
    """A self-signed mesh CA: CA:TRUE and keyCertSign+cRLSign (both critical), SKI, SHA-256.

    awx-operator makes it RSA 4096 for 3650 days with ``CN=<awx> Receptor Root CA``
    (:func:`ca_common_name`).
    """
    if days <= 0:
        raise ValueError(f"CA validity must be positive, got {days} days")
    now = utc(now)
    key = generate_key(key_type)
    name = cn_name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(key_cert_sign=True, crl_sign=True), critical=True)
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
    if spki_der(ca_key) != spki_der(ca_cert):
        raise ValueError("the CA key does not belong to the CA certificate")
    now = utc(now)
    names = node_general_names(node_id, addresses)
    is_rsa = isinstance(public_key, rsa.RSAPublicKey)
    builder = (
        x509.CertificateBuilder()
        .subject_name(cn_name(node_id))
        # The CA's subject, not its issuer (AWX's bug): they differ under an intermediate CA.
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(key_usage(digital_signature=True, key_encipherment=is_rsa), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(_authority_key_id(ca_cert), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    return builder.sign(ca_key, hash_for(ca_key))


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
