"""A conformance check for certificate backends, for their authors' tests.

    from meshctl.testing.backends import assert_conformant, check_certificate_backend

    def test_my_backend_is_conformant(tmp_path):
        backend = MyBackend(MyOptions(...), BackendContext("test", tmp_path, tmp_path))
        assert_conformant(backend)

The check calls the backend as meshctl does (``trust_bundle``, ``issue``, and
``sign_csr`` when ``supports_csr``) and judges what comes back with the checker meshctl
applies before it uses a backend's certificate (``meshctl.plugin.issued_cert_problems``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cryptography.hazmat.primitives import serialization

from meshctl.core.pki import csr_for, generate_key, load_certs, load_private_key
from meshctl.core.pki.checks import issued_cert_problems
from meshctl.core.types import backend_problems

__all__ = ["assert_conformant", "check_certificate_backend"]

ADDRESSES = ("exec01.example.com", "192.0.2.10")


def _call(problems: list[str], what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:
        problems.append(f"{what} raised {type(exc).__name__}: {exc}")
        return None


def check_certificate_backend(
    backend: Any,
    *,
    node_id: str = "exec01",
    addresses: Sequence[str] = ADDRESSES,
    key_type: str = "rsa2048",
    days: int = 30,
) -> list[str]:
    """What keeps ``backend`` (the object a ``CertBackend`` factory returns) from being a
    certificate backend meshctl can use; empty when it is conformant.

    Checked: the :class:`~meshctl.plugin.CertificateBackend` protocol; ``trust_bundle()``
    returns PEM certificates; ``issue(node_id, addresses, key_type, days)`` returns an
    unencrypted PEM key and a certificate for it; with ``supports_csr``,
    ``sign_csr(csr_pem, node_id, addresses, days)`` certifies the key of a CSR made here.
    Each certificate must carry the Receptor NodeID of ``node_id`` (and no other), CN and
    a DNS:/IP: name for each address, chain to the trust bundle, be valid now, and hold a
    key receptor can use; ``issue``'s key must be of ``key_type``.
    """
    lacks = backend_problems(backend)
    if lacks:
        return [f"lacks {item}" for item in lacks]
    problems: list[str] = []
    addresses = list(addresses)
    trust = _call(problems, "trust_bundle()", backend.trust_bundle)
    if trust is None:
        return problems
    try:
        if not isinstance(trust, bytes):
            raise TypeError
        load_certs(trust)
    except (ValueError, TypeError):
        return [f"trust_bundle() returned {type(trust).__name__} holding no PEM certificate"]

    def judge(what: str, cert_pem: Any, **kw: Any) -> None:
        problems.extend(f"{what}: {p}" for p in issued_cert_problems(
            cert_pem, node_id, trust_pem=trust, addresses=addresses, **kw))

    got = _call(problems, "issue()", backend.issue, node_id, addresses, key_type, days)
    if got is not None:
        if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(x, bytes) for x in got)):
            problems.append("issue() must return (key PEM bytes, certificate PEM bytes)")
        else:
            try:
                load_private_key(got[0])
            except (ValueError, TypeError) as exc:
                problems.append(f"issue(): the key is not an unencrypted PEM private key ({exc})")
            else:
                judge("issue()", got[1], public_key=got[0], key_source="the key returned with it",
                      key_type=key_type)
    if backend.supports_csr:
        csr_pem = csr_for(generate_key(key_type), node_id, addresses).public_bytes(serialization.Encoding.PEM)
        cert = _call(problems, "sign_csr()", backend.sign_csr, csr_pem, node_id, addresses, days)
        if cert is not None:
            judge("sign_csr()", cert, public_key=csr_pem, key_source="the CSR")
    return problems


def assert_conformant(backend: Any, **kwargs: Any) -> None:
    """``check_certificate_backend`` for tests: AssertionError listing every problem."""
    problems = check_certificate_backend(backend, **kwargs)
    if problems:
        raise AssertionError("certificate backend is not conformant:\n" + "\n".join(f"- {p}" for p in problems))
