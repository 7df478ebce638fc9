"""Inspecting: what a certificate holds, and whether it holds for a node (names, NodeID,
validity, chain to the mesh CA, key)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from meshctl.core.pki.keys import key_type_of, load_cert, load_certs, spki_der, utc
from meshctl.core.pki.names import (
    NODEID,
    decode_der_string,
    describe_name,
    node_general_names,
    subject_cn,
)

# Problems of inspect_cert that checks.py tells apart.
NO_SAN = "no subjectAltName extension"
BAD_NODEID = "a NodeID otherName is not a DER UTF8String"


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
        wanted = [describe_name(n) for n in node_general_names(node_id, addresses)[:-1]]
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
    now = utc(now)
    cert = load_cert(cert_pem)
    problems: list[str] = []
    dns: list[str] = []
    ips: list[str] = []
    node_ids: list[str] = []
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        problems.append(NO_SAN)
    except (ValueError, x509.DuplicateExtension) as exc:
        problems.append(f"extensions are malformed: {exc}")
    else:
        for name in san:
            if isinstance(name, x509.DNSName):
                dns.append(name.value)
            elif isinstance(name, x509.IPAddress):
                ips.append(str(name.value))
            elif isinstance(name, x509.OtherName) and name.type_id == NODEID:
                value = decode_der_string(name.value)
                if value is None:
                    problems.append(BAD_NODEID)
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
            key_matches = spki_der(public_key_pem) == spki_der(cert)
        except (ValueError, TypeError) as exc:
            key_matches = False
            problems.append(f"the given key is unreadable: {exc}")
        if not key_matches:
            problems.append("certificate does not match the given key")
    return CertStatus(
        subject_cn=subject_cn(cert.subject),
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
