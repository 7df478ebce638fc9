"""mesh.yml sections owned by the certificate plugin, and where its state lives."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from meshctl.plugin import Node, StrictModel, Topology, base_dir, resolve_path  # noqa: F401 (re-exported)
from meshctl.plugin import state_dir as core_state_dir

KeyType = Literal["rsa2048", "rsa4096", "ecdsa-p256", "ecdsa-p384"]


class CertificatesSection(StrictModel):
    """``certificates:`` (mesh level): how node certificates are made."""

    backend: str = "selfsigned"
    key_type: KeyType = "rsa2048"
    validity_days: int = Field(default=3650, ge=1, le=36500)
    key_location: Literal["node", "controller"] = "node"
    renew_within_days: int = Field(default=30, ge=0, le=36500)
    state_dir: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)


class NodeCertificates(StrictModel):
    """``certificates:`` on a node: overrides for that node (e.g. an AWX bundle)."""

    backend: str | None = None
    key_type: KeyType | None = None
    validity_days: int | None = Field(default=None, ge=1, le=36500)
    key_location: Literal["node", "controller"] | None = None
    options: dict[str, Any] | None = None


class WorkSigning(StrictModel):
    """``work_signing:``: the controller's work public key, or a generated pair
    (the default when the section is absent). ``verify: false`` lets execution
    nodes run unsigned work: anyone holding a mesh certificate can then run code."""

    public_key: str | None = None
    #: with public_key: its private half, for control nodes meshctl manages (they sign)
    private_key: str | None = None
    generate: bool = False
    verify: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> WorkSigning:
        if self.private_key and not self.public_key:
            raise ValueError("private_key goes with public_key (the pair AWX's secret holds)")
        if not self.verify:
            if self.public_key or self.generate:
                raise ValueError("verify: false takes no key: remove public_key/generate")
            return self
        if bool(self.public_key) == bool(self.generate):
            raise ValueError("set exactly one of public_key: FILE or generate: true")
        return self


class Effective(StrictModel):
    backend: str
    key_type: KeyType
    validity_days: int
    key_location: Literal["node", "controller"]
    renew_within_days: int
    options: dict[str, Any]


def mesh_settings(topo: Topology) -> CertificatesSection:
    return topo.sections.get("certificates") or CertificatesSection()


def effective(topo: Topology, node: Node) -> Effective:
    base = mesh_settings(topo)
    own: NodeCertificates | None = node.sections.get("certificates")
    values = base.model_dump(exclude={"state_dir"})
    if own is not None:
        values.update(own.model_dump(exclude_none=True))
        if own.backend is not None and own.backend != base.backend and own.options is None:
            values["options"] = {}
    return Effective(**values)


def state_dir(topo: Topology) -> Path:
    """Where the mesh CA and generated keys live: certificates.state_dir, else
    $MESHCTL_STATE_DIR/<mesh>, else ~/.local/share/meshctl/<mesh>."""
    configured = mesh_settings(topo).state_dir
    return resolve_path(topo, configured) if configured else core_state_dir(topo)


def node_addresses(node: Node) -> list[str]:
    """Names for the certificate's subjectAltName: the address peers dial plus any
    extra names listed for the node."""
    out: list[str] = []
    for a in [node.address, *node.names]:
        if a not in out:
            out.append(a)
    return out
