"""A certificate-backend plugin whose backend is broken in one chosen way, for the tests of
the checks meshctl makes of what a backend returns. Load it with ``-p broken_backends``
(tests/ is on sys.path) and select ``certificates: {backend: broken, options: {fault: ...}}``.

Faults: ``none`` (a good backend), ``no-nodeid``, ``other-nodeid``, ``other-key``,
``other-ca``, ``expired``, ``bad-nodeid-encoding``, ``str-cert``, and ``raise-<where>``
for an exception in ``factory``, ``trust_bundle``, ``issue`` or ``sign_csr``.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from pydantic import BaseModel, ConfigDict

from meshctl.core import pki as C
from meshctl.core.pki.names import NODEID, cn_name, der_utf8
from meshctl.plugin import CertBackend, hookimpl

FAULTS = ("none", "no-nodeid", "other-nodeid", "other-key", "other-ca", "expired", "bad-nodeid-encoding",
          "str-cert", "raise-factory", "raise-trust_bundle", "raise-issue", "raise-sign_csr")


@lru_cache(maxsize=2)
def ca(name: str = "broken CA") -> tuple[object, x509.Certificate]:
    return C.create_ca(name, "ecdsa-p256", 30)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def node_cert(public_key, node_id: str, addresses: list[str], *, signer=None, names=None,
              days: int = 5, start: dt.datetime | None = None) -> bytes:
    """A node certificate made by hand: ``names`` replaces the subjectAltName meshctl
    would write (``node_general_names``), ``signer`` the CA, ``start`` its notBefore."""
    key, cert = signer or ca()
    start = start or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    names = C.node_general_names(node_id, addresses) if names is None else names
    builder = (x509.CertificateBuilder().subject_name(cn_name(node_id)).issuer_name(cert.subject)
               .public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + dt.timedelta(days=days)))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return pem(builder.sign(key, hashes.SHA256()))


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fault: str = "none"


class Broken:
    supports_csr = True

    def __init__(self, options: Options, context) -> None:
        self.fault = options.fault
        if self.fault == "raise-factory":
            raise RuntimeError("cannot reach the signing service")

    def trust_bundle(self) -> bytes:
        if self.fault == "raise-trust_bundle":
            raise KeyError("ca")
        return pem(ca()[1])

    def _fault(self, method: str) -> str:
        # raise-<method> breaks that method only
        return "none" if self.fault.startswith("raise-") and self.fault != f"raise-{method}" else self.fault

    def _cert(self, fault: str, public_key, node_id: str, addresses: list[str], days: int):
        san = C.node_general_names(node_id, addresses)[:-1]  # without the NodeID
        if fault.startswith("raise-"):
            raise RuntimeError(f"{fault[6:]} is broken")
        if fault == "no-nodeid":
            return node_cert(public_key, node_id, addresses, names=san or [x509.DNSName("unused.example.com")])
        if fault == "other-nodeid":
            return node_cert(public_key, node_id, addresses,
                             names=[*san, x509.OtherName(NODEID, der_utf8("someone-else"))])
        if fault == "bad-nodeid-encoding":  # an OCTET STRING, not a string
            return node_cert(public_key, node_id, addresses, names=[*san, x509.OtherName(NODEID, b"\x04\x02e1")])
        if fault == "other-key":
            return node_cert(C.generate_key("ecdsa-p256").public_key(), node_id, addresses)
        if fault == "other-ca":
            return node_cert(public_key, node_id, addresses, signer=ca("another CA"))
        if fault == "expired":
            return node_cert(public_key, node_id, addresses, days=1,
                             start=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
        cert = node_cert(public_key, node_id, addresses, days=days)
        return cert.decode() if fault == "str-cert" else cert

    def sign_csr(self, csr_pem: bytes, node_id: str, addresses: list[str], days: int) -> bytes:
        return self._cert(self._fault("sign_csr"), C.load_csr(csr_pem).public_key(), node_id, addresses, days)

    def issue(self, node_id: str, addresses: list[str], key_type: str, days: int) -> tuple[bytes, bytes]:
        key = C.generate_key(key_type)
        return C.key_to_pem(key), self._cert(self._fault("issue"), key.public_key(), node_id, addresses, days)


@hookimpl
def meshctl_register_cert_backends(register):
    register(CertBackend("broken", Broken, Options, "a backend broken on purpose"))
