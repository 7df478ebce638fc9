"""The built-in certificate backends. The interface they and third-party ones
implement is :class:`meshctl.core.types.CertificateBackend` (also exported by
``meshctl.plugin``), built from :class:`~meshctl.core.types.BackendContext`."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from pydantic import Field

from meshctl.plugin import (
    SECRET_LIMIT,
    BackendContext,  # noqa: F401 (re-exported)
    MeshctlError,
    StrictModel,
    UsageError,
    atomic_write,
    read_bytes,
    shown,
)
from meshctl.plugin import pki as C
from meshctl.plugins.cert_backends import awx_bundle as AB


class CertError(MeshctlError):
    pass


@functools.lru_cache(maxsize=64)
def _pem(cert: Any) -> bytes:
    # Cached: trust_bundle() is asked once per node, of the same CA certificate.
    return cert.public_bytes(serialization.Encoding.PEM)


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file 0600 atomically (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # atomic_write's temporary file is made 0600 by mkstemp, before any byte is written.
    atomic_write(path, data, mode=0o600)


def _read(path: Path, what: str) -> bytes:
    """A CA or state file through the safe reader (no FIFO hang, size cap), as a CertError."""
    try:
        return read_bytes(path, what, SECRET_LIMIT)
    except UsageError as exc:
        raise CertError(str(exc)) from None


class _Signer:
    """Signs with one CA (key + certificate)."""

    supports_csr = True

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def signer(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def trust_bundle(self) -> bytes:
        return _pem(self.signer()[1])

    def sign_csr(self, csr_pem: bytes, node_id: str, addresses: list[str], days: int) -> bytes:
        from cryptography import x509

        key, cert = self.signer()
        csr = x509.load_pem_x509_csr(csr_pem)
        return _pem(C.sign_node_cert(key, cert, csr.public_key(), node_id, addresses, days))

    def issue(self, node_id: str, addresses: list[str], key_type: str, days: int) -> tuple[bytes, bytes]:
        ca_key, ca_cert = self.signer()
        key, cert = C.issue_node_cert(ca_key, ca_cert, node_id, addresses, key_type, days)
        return C.key_to_pem(key), _pem(cert)


class SelfSignedOptions(StrictModel):
    pass


class SelfSigned(_Signer):
    """meshctl keeps the mesh CA in the state directory (key 0600, never sent to a
    host). During ``certs rotate-ca`` a second CA ("next") is trusted alongside."""

    def __init__(self, options: SelfSignedOptions | None, ctx: BackendContext):
        super().__init__()
        self.ctx = ctx
        self.dir = ctx.state_dir
        self._cache: dict[str, tuple[Any, Any]] = {}
        self._certs: dict[str, Any] = {}
        self._phase: tuple[str | None] | None = None

    # -- state -------------------------------------------------------------------
    @property
    def rotation_file(self) -> Path:
        return self.dir / "rotation.json"

    def rotation_phase(self) -> str | None:
        if self._phase is None:
            try:
                if not self.rotation_file.exists():
                    raise FileNotFoundError
                self._phase = (json.loads(_read(self.rotation_file, "rotation state"))["phase"],)
            except FileNotFoundError:
                self._phase = (None,)
            except (ValueError, KeyError) as exc:
                raise CertError(f"{self.rotation_file}: unreadable rotation state ({exc})") from None
        return self._phase[0]

    def set_rotation_phase(self, phase: str | None) -> None:
        if phase is None:
            with contextlib.suppress(FileNotFoundError):
                self.rotation_file.unlink()
        else:
            write_private(self.rotation_file, json.dumps({"phase": phase}).encode())
        self._cache.clear()
        self._certs.clear()
        self._phase = None

    def _load(self, stem: str, create: bool) -> tuple[Any, Any] | None:
        if stem in self._cache:
            return self._cache[stem]
        crt, key = self.dir / f"{stem}.crt", self.dir / f"{stem}.key"
        with self._lock:
            if stem in self._cache:
                return self._cache[stem]
            if not crt.exists() or not key.exists():
                if not create:
                    return None
                k, c = C.create_ca(C.ca_common_name(self.ctx.mesh), "rsa4096", 3650)
                self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
                write_private(key, C.key_to_pem(k))
                atomic_write(crt, _pem(c))
            try:
                # Our own 0600 state: skip RSA consistency checks (a quarter second for 4096 bits).
                pair = (C.load_private_key(_read(key, "mesh CA key"), trusted=True),
                        C.load_cert(_read(crt, "mesh CA certificate")))
            except (ValueError, OSError) as exc:
                raise CertError(f"cannot read the mesh CA in {self.dir}: {exc}") from None
            self._cache[stem] = pair
            return pair

    def current(self) -> tuple[Any, Any]:
        pair = self._load("ca", create=True)
        assert pair is not None
        return pair

    def next(self, create: bool = False) -> tuple[Any, Any] | None:
        return self._load("ca-next", create=create)

    def signer(self) -> tuple[Any, Any]:
        if self.rotation_phase() in ("reissue",):
            pair = self.next()
            if pair is None:
                raise CertError(f"rotation in progress but {self.dir}/ca-next.* is missing")
            return pair
        return self.current()

    def _cert(self, stem: str) -> Any:
        """A CA certificate without its key (planning needs only the certificate)."""
        if stem not in self._certs:
            if stem in self._cache:
                self._certs[stem] = self._cache[stem][1]
            else:
                path = self.dir / f"{stem}.crt"
                if stem == "ca" and not path.exists():
                    self.current()  # a new mesh: make its CA
                self._certs[stem] = C.load_cert(_read(path, "CA certificate")) if path.exists() else None
        return self._certs[stem]

    def trust_bundle(self) -> bytes:
        bundle = _pem(self._cert("ca"))
        if self.rotation_phase() in ("trust-both", "reissue"):
            nxt = self._cert("ca-next")
            if nxt is not None:
                bundle += _pem(nxt)
        return bundle

    def promote_next(self) -> None:
        """Finish a rotation: the next CA becomes the current one; the old pair is
        kept as ca-retired-<serial>.* so nothing is lost."""
        nxt = self.next()
        if nxt is None:
            raise CertError("no next CA to promote")
        old_cert = self.current()[1]
        tag = format(old_cert.serial_number, "x")[:16]
        for ext in ("crt", "key"):
            os.replace(self.dir / f"ca.{ext}", self.dir / f"ca-retired-{tag}.{ext}")
            os.replace(self.dir / f"ca-next.{ext}", self.dir / f"ca.{ext}")
        self.set_rotation_phase(None)


class FileOptions(StrictModel):
    ca_cert: str = Field(description="PEM CA certificate (e.g. AWX's <awx>-receptor-ca tls.crt)")
    ca_key: str = Field(description="PEM CA private key (tls.key)")


class FileBackend(_Signer):
    """Bring your own CA, e.g. the one AWX already uses, to join an existing mesh."""

    def __init__(self, options: FileOptions, ctx: BackendContext):
        super().__init__()
        self.cert_path = ctx.path(options.ca_cert)
        self.key_path = ctx.path(options.ca_key)
        self._pair: tuple[Any, Any] | None = None

    def signer(self) -> tuple[Any, Any]:
        if self._pair is None:
            self._pair = load_ca_files(self.cert_path, self.key_path)
        return self._pair

    def validate(self) -> list[str]:
        try:
            self.signer()
        except CertError as exc:
            return [str(exc)]
        return []


def load_ca_files(cert_path: Path, key_path: Path) -> tuple[Any, Any]:
    try:
        cert = C.load_cert(_read(cert_path, "CA certificate"))
    except ValueError as exc:
        raise CertError(f"{cert_path}: not a PEM certificate ({exc})") from None
    try:
        key = C.load_private_key(_read(key_path, "CA key"))
    except (ValueError, TypeError) as exc:
        raise CertError(f"{key_path}: not an unencrypted PEM private key ({exc})") from None
    if C.public_key_pem(key) != C.public_key_pem(cert):
        raise CertError(f"{key_path} is not the key of {cert_path}")
    return key, cert


class AwxBundleOptions(StrictModel):
    bundle: str = Field(description="path to <host>_install_bundle.tar.gz downloaded from AWX")


class AwxBundle:
    """The node certificate, key, CA and work public key from an AWX install bundle.
    AWX made the key, so it travels (key_location is always controller)."""

    supports_csr = False

    def __init__(self, options: AwxBundleOptions, ctx: BackendContext):
        self.path = ctx.path(options.bundle)
        self._bundle: AB.AwxBundle | None = None

    @property
    def bundle(self) -> AB.AwxBundle:
        if self._bundle is None:
            try:
                self._bundle = AB.read_awx_bundle(self.path)
            except OSError as exc:
                raise CertError(f"{shown(self.path)}: {exc.strerror or exc}") from None
            except ValueError as exc:
                # Its message starts with the bundle's name: say the full path once.
                detail = str(exc).removeprefix(shown(self.path.name) + ": ")
                raise CertError(f"{shown(self.path)}: {detail}") from None
        return self._bundle

    def validate(self) -> list[str]:
        try:
            self.bundle  # noqa: B018 - reading it is the check
        except CertError as exc:
            return [str(exc)]
        return []

    def trust_bundle(self) -> bytes:
        return self.bundle.ca_pem

    def sign_csr(self, csr_pem: bytes, node_id: str, addresses: list[str], days: int) -> bytes:
        raise CertError("the awx-bundle backend cannot sign CSRs: AWX issued this node's key and certificate")

    def issue(self, node_id: str, addresses: list[str], key_type: str, days: int) -> tuple[bytes, bytes]:
        b = self.bundle
        if b.node_id != node_id:
            raise CertError(f"{self.path} holds the certificate of node {b.node_id!r}, not {node_id!r}")
        return b.key_pem, b.cert_pem

    @property
    def work_public_key_pem(self) -> bytes | None:
        """AWX's work public key, from the bundle (None in a hop node's)."""
        return self.bundle.work_public_key_pem

    @property
    def fixed(self) -> bool:
        """The certificate is what it is: compare content, never reissue."""
        return True
