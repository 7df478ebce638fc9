"""A certificate backend as the rest of this plugin sees it: what the backend returns is
checked before it goes anywhere (a file, a host, the screen), and whatever goes wrong
in backend code is one line naming the backend and the plugin that registered it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from meshctl.plugin import MeshctlError, issued_cert_problems, load_certs, load_private_key


class BackendError(MeshctlError):
    """Backend code failed or returned something meshctl refuses to use."""


def who(name: str, plugin: str) -> str:
    return f"certificate backend {name!r} of plugin {plugin!r}"


def call(what: str, name: str, plugin: str, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)``, with any exception turned into a BackendError naming the plugin."""
    try:
        return fn(*args)
    except MeshctlError as exc:  # the backend's own words, already meant for the user
        err = BackendError(f"{who(name, plugin)}: {exc}")
        err.exit_code = exc.exit_code
        raise err from exc
    except Exception as exc:
        raise BackendError(f"{who(name, plugin)} failed in {what}: {type(exc).__name__}: {exc}") from exc


class CheckedBackend:
    """Wraps the object a ``CertBackend.factory`` made. Attributes other than the
    protocol's (``validate``, a built-in backend's state) are the backend's own."""

    def __init__(self, inner: Any, name: str, plugin: str) -> None:
        self.inner = inner
        self.name = name
        self.plugin = plugin

    def __getattr__(self, attr: str) -> Any:
        if attr == "inner" or attr.startswith("__"):  # copy and pickle probe dunders first
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    @property
    def supports_csr(self) -> bool:
        return self.inner.supports_csr

    def _fail(self, message: str) -> BackendError:
        return BackendError(f"{who(self.name, self.plugin)}: {message}")

    def trust_bundle(self) -> bytes:
        pem = call("trust_bundle()", self.name, self.plugin, self.inner.trust_bundle)
        if pem is not None and pem == getattr(self, "_trusted", None):
            return pem  # asked once per node: the same bytes were checked already
        try:
            if not isinstance(pem, bytes):
                raise TypeError
            load_certs(pem)
        except (ValueError, TypeError):
            raise self._fail("trust_bundle() returned no PEM certificate: return the CA certificate(s) the "
                             "nodes trust as PEM bytes") from None
        self._trusted = pem
        return pem

    def _checked(self, what: str, cert_pem: Any, node_id: str, addresses: list[str], **kw: Any) -> bytes:
        # A backend whose certificates are what they are (an AWX bundle's) is held to
        # what receptor needs; the others also to what meshctl asked for.
        fixed = getattr(self.inner, "fixed", False) is True
        problems = issued_cert_problems(cert_pem, node_id, trust_pem=self.trust_bundle(),
                                        addresses=None if fixed else addresses, **kw)
        if problems:
            raise self._fail(f"{what} returned a certificate for node {node_id!r} that meshctl will not use: "
                             + "; ".join(problems))
        return cert_pem

    def sign_csr(self, csr_pem: bytes, node_id: str, addresses: list[str], days: int) -> bytes:
        cert = call(f"sign_csr() for node {node_id!r}", self.name, self.plugin, self.inner.sign_csr, csr_pem, node_id, addresses, days)
        return self._checked("sign_csr()", cert, node_id, addresses, public_key=csr_pem, key_source="the CSR")

    def issue(self, node_id: str, addresses: list[str], key_type: str, days: int) -> tuple[bytes, bytes]:
        got = call(f"issue() for node {node_id!r}", self.name, self.plugin, self.inner.issue, node_id, addresses, key_type, days)
        if not (isinstance(got, tuple) and len(got) == 2 and all(isinstance(x, bytes) for x in got)):
            shape = (f"({', '.join(type(x).__name__ for x in got)})" if isinstance(got, tuple)
                     else type(got).__name__)
            raise self._fail(f"issue() returned {shape}: return (key PEM bytes, certificate PEM bytes)")
        key_pem, cert_pem = got
        try:
            load_private_key(key_pem)
        except (ValueError, TypeError) as exc:
            raise self._fail(f"issue() returned a key for node {node_id!r} that is not an unencrypted PEM "
                             f"private key ({exc})") from None
        fixed = getattr(self.inner, "fixed", False) is True
        self._checked("issue()", cert_pem, node_id, addresses, public_key=key_pem,
                      key_source="the key returned with it", key_type=None if fixed else key_type)
        return key_pem, cert_pem


def unwrap(backend: Any) -> Any:
    """The backend object its factory made."""
    return backend.inner if isinstance(backend, CheckedBackend) else backend
