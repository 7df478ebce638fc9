"""Checks of a certificate a backend returned for a node, before meshctl uses it.

Each problem says what is wrong and what to change, for the backend's author: the
Receptor NodeID, the key it was issued for, the chain to the backend's trust bundle,
its validity now, and (for certificates meshctl asks to be made) CN, names and key type.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from meshctl.core.pki.inspect import BAD_NODEID, NO_SAN, inspect_cert
from meshctl.core.pki.keys import load_certs, public_key_of, spki_der, utc
from meshctl.core.pki.names import NODEID_OID, describe_name, node_general_names

_HINT = "meshctl.plugin.node_general_names builds these names"
# Curves Go's crypto/tls (receptor) verifies and signs with.
_GO_CURVES = {"secp256r1", "secp384r1", "secp521r1"}


def receptor_key_problem(key: Any) -> str | None:
    """Why receptor (Go's crypto/tls) cannot use ``key`` (a key, certificate or CSR, as an
    object or PEM) as a node key; None when it can: RSA of 2048 bits or more, ECDSA on
    P-256, P-384 or P-521, or Ed25519."""
    pub = public_key_of(key)
    if isinstance(pub, rsa.RSAPublicKey):
        return None if pub.key_size >= 2048 else f"an RSA key of {pub.key_size} bits is too small (2048 or more)"
    if isinstance(pub, ec.EllipticCurvePublicKey):
        return None if pub.curve.name in _GO_CURVES else f"receptor has no ECDSA curve {pub.curve.name}"
    if isinstance(pub, ed25519.Ed25519PublicKey):
        return None
    return (f"receptor cannot use a {type(pub).__name__} key "
            "(use RSA of 2048 bits or more, ECDSA P-256/P-384/P-521 or Ed25519)")


def issued_cert_problems(
    cert_pem: Any,
    node_id: str,
    *,
    public_key: bytes,
    trust_pem: bytes,
    addresses: Iterable[str] | None = None,
    key_type: str | None = None,
    key_source: str = "the key it was issued for",
    now: dt.datetime | None = None,
) -> list[str]:
    """Why the certificate ``cert_pem`` a backend made for ``node_id`` must not be used;
    empty when it may.

    Always checked: it is one PEM certificate (the first of the file: receptor reads no
    other); its subjectAltName holds the Receptor NodeID otherName of ``node_id`` and no
    other node's; its public key is ``public_key`` (the CSR's, or the key returned with
    it; ``key_source`` names it); it is signed by a certificate of ``trust_pem``; it is
    valid ``now``; receptor can use its key. With ``addresses``: CN is the node id and
    the subjectAltName has a DNS:/IP: name for each address (peers dial them). With
    ``key_type``: the key is of that type.
    """
    if not isinstance(cert_pem, bytes):
        return [f"it is a {type(cert_pem).__name__}, not PEM bytes"]
    try:
        load_certs(cert_pem)
    except ValueError:
        return ["it is not a PEM certificate: return the certificate as PEM bytes (-----BEGIN CERTIFICATE-----)"]
    now = utc(now)
    status = inspect_cert(cert_pem, trust_pem, now=now)
    out: list[str] = []
    wanted = f"otherName:{NODEID_OID};UTF8:{node_id}"
    if NO_SAN in status.problems:
        out.append(f"it has no subjectAltName: add one with {wanted} ({_HINT})")
    elif BAD_NODEID in status.problems:
        out.append(f"its NodeID otherName holds no ASN.1 string: encode the node id as a DER UTF8String ({wanted})")
    elif not status.node_ids:
        out.append(f"it has no Receptor NodeID (receptor exits: nodeID={node_id} not found): "
                   f"add {wanted} to its subjectAltName ({_HINT})")
    elif node_id not in status.node_ids:
        out.append(f"its NodeID is {', '.join(map(repr, status.node_ids))}, not {node_id!r}: "
                   f"put {wanted} in its subjectAltName")
    others = [n for n in status.node_ids if n != node_id]
    if others and node_id in status.node_ids:
        out.append(f"it also carries the NodeID of {', '.join(map(repr, others))}: a node's certificate "
                   "names that node only")
    try:
        same_key = spki_der(public_key) == spki_der(cert_pem)
    except (ValueError, TypeError) as exc:
        out.append(f"{key_source} is unreadable ({exc})")
    else:
        if not same_key:
            out.append(f"its public key is not that of {key_source}: certify that key, do not make another")
    if status.chain_problems:
        out.append("it does not chain to the backend's trust_bundle() ("
                   + "; ".join(status.chain_problems)
                   + "): sign with a CA that trust_bundle() returns")
    if now > status.not_after:
        out.append(f"it expired on {status.not_after:%Y-%m-%d %H:%M:%S} UTC: make it valid from now for the "
                   "days asked for")
    elif now < status.not_before:
        out.append(f"it is not valid before {status.not_before:%Y-%m-%d %H:%M:%S} UTC (now {now:%H:%M:%S}): "
                   "start its validity now or earlier (is the signer's clock ahead?)")
    unusable = receptor_key_problem(cert_pem)
    if unusable:
        out.append(f"its key: {unusable}")
    if addresses is not None:
        if status.subject_cn != node_id:
            out.append(f"its subject is {'no single CN' if status.subject_cn is None else 'CN=' + status.subject_cn}, "
                       f"not CN={node_id}")
        have = {f"DNS:{d.lower()}" for d in status.dns_names} | {f"IP:{ip}" for ip in status.ip_addresses}
        missing = [n for n in map(describe_name, node_general_names(node_id, addresses)[:-1]) if n not in have]
        if missing:
            out.append(f"its subjectAltName lacks {', '.join(missing)}, which peers dial ({_HINT})")
    if key_type is not None and status.key_type != key_type:
        out.append(f"its key is {status.key_type}, not the {key_type} asked for: make a key of the key_type given")
    return out
