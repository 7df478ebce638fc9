"""The ``awx-api`` certificate backend: each node's certificate and key from AWX's
install_bundle endpoint, so AWX's CA key never leaves AWX. AWX mints a new key on
every download: a node's bundle is fetched once per certificate it needs, and AWX's
mesh CA and work public key (the same in every bundle) are kept in the state
directory, so a plan of an up-to-date mesh downloads nothing."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from meshctl.plugin import MeshctlError, StrictModel, atomic_write, read_bytes
from meshctl.plugins.cert_backends import awx_bundle as AB
from meshctl.plugins.cert_backends.backends import CertError

#: What AWX makes (awx/api/views/instance_install_bundle.py): certificates.key_type
#: does not apply, and planning compares against this.
AWX_KEY_TYPE = "rsa2048"


class AwxApiOptions(StrictModel):
    """None: AWX's URL and credentials are the ``awx:`` section's."""


class AwxApi:
    supports_csr = False
    key_type = AWX_KEY_TYPE

    def __init__(self, options: AwxApiOptions, ctx: Any):
        self.ctx = ctx
        self.dir: Path = ctx.state_dir / "awx-api"
        self._bundles: dict[str, AB.AwxBundle] = {}  # this run's downloads, by node id
        self._read: dict[str, bytes] = {}  # kept files, read once per run (asked once per node)
        self._lock = threading.Lock()

    # -- the protocol ----------------------------------------------------------------
    def trust_bundle(self) -> bytes:
        return self._kept("mesh-CA.crt", runs_work=False)

    def sign_csr(self, csr_pem: bytes, node_id: str, addresses: list[str], days: int) -> bytes:
        raise CertError("the awx-api backend cannot sign CSRs: AWX makes each node's key and certificate")

    def issue(self, node_id: str, addresses: list[str], key_type: str, days: int) -> tuple[bytes, bytes]:
        bundle = self._download(node_id)
        return bundle.key_pem, bundle.cert_pem

    def validate(self) -> list[str]:
        topo = self.ctx.topology
        if topo is not None and topo.sections.get("awx") is None:
            return ["the awx-api backend downloads certificates from AWX: add an awx: section "
                    "(url and credentials)"]
        return []

    @property
    def work_public_key_pem(self) -> bytes:
        """AWX's work public key: execution nodes verify the work AWX signs with it."""
        return self._kept("work_public_key.pem", runs_work=True)

    # -- downloads -----------------------------------------------------------------
    def _kept(self, name: str, runs_work: bool) -> bytes:
        if name in self._read:
            return self._read[name]
        path = self.dir / name
        if not path.exists():
            self._download(self._some_node(runs_work))
        try:
            data = read_bytes(path, f"AWX's {name} (kept by the awx-api backend)", AB.MAX_MEMBER_BYTES)
        except MeshctlError as exc:
            raise CertError(str(exc)) from None
        self._read[name] = data
        return data

    def _some_node(self, runs_work: bool) -> str:
        topo = self.ctx.topology
        if topo is None:
            raise CertError("the awx-api backend needs the mesh (it was built without a topology)")
        nodes = [n for n in topo.managed_nodes if not runs_work or topo.role_of(n).runs_work]
        if not nodes:
            raise CertError("the awx-api backend found no node whose install bundle holds "
                            + ("AWX's work public key (no execution node)" if runs_work else "AWX's mesh CA"))
        return nodes[0].name

    def _download(self, node_id: str) -> AB.AwxBundle:
        with self._lock:
            if node_id in self._bundles:
                return self._bundles[node_id]
            topo = self.ctx.topology
            plugins = getattr(topo, "plugins", None)
            if plugins is None:
                raise CertError("the awx-api backend needs the mesh (it was built without a topology)")
            data = plugins.install_bundle(topo, node_id)
            if data is None:
                raise CertError(f"no plugin downloads install bundles (for node {node_id!r}): "
                                "is the awx plugin blocked (-p no:awx)?")
            name = f"{node_id}_install_bundle.tar.gz from AWX"
            try:
                bundle = AB.read_awx_bundle(name, data=data)
            except ValueError as exc:
                raise CertError(str(exc)) from None
            if bundle.node_id != node_id:
                raise CertError(f"AWX's install bundle for {node_id!r} holds the certificate of {bundle.node_id!r}")
            self._keep(bundle)
            self._bundles[node_id] = bundle
            return bundle

    def _keep(self, bundle: AB.AwxBundle) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        ca = self.dir / "mesh-CA.crt"
        if ca.exists() and ca.read_bytes() != bundle.ca_pem:
            atomic_write(ca, bundle.ca_pem)
            raise CertError(f"AWX's mesh CA changed since {ca} was kept; it now holds the new one: "
                            "run the command again to give every node AWX's new CA")
        for path, data in ((ca, bundle.ca_pem), (self.dir / "work_public_key.pem", bundle.work_public_key_pem)):
            if data is not None and (not path.exists() or path.read_bytes() != data):
                atomic_write(path, data)
