"""Small typed records that plugins register with the core.

Plugins never return these from hooks directly: registration hooks receive a
``register`` callback, so the core owns naming, de-duplication and error messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import click
    from pydantic import BaseModel

    from meshctl.core.topology import Node, Topology


@dataclass(frozen=True)
class OSRelease:
    """What ``/etc/os-release`` and ``uname -m`` say about a host."""

    id: str
    version_id: str = ""
    id_like: tuple[str, ...] = ()
    pretty_name: str = ""
    arch: str = ""

    @property
    def major(self) -> str:
        return self.version_id.split(".", 1)[0]

    @classmethod
    def parse(cls, text: str, arch: str = "") -> OSRelease:
        values: dict[str, str] = {}
        for line in text.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip().strip('"').strip("'")
        return cls(
            id=values.get("ID", "").lower(),
            version_id=values.get("VERSION_ID", ""),
            id_like=tuple(values.get("ID_LIKE", "").lower().split()),
            pretty_name=values.get("PRETTY_NAME", ""),
            arch=arch,
        )


@dataclass(frozen=True)
class OSFamily:
    """An OS plugin's claim to a family of distributions.

    ``detect`` returns True when the plugin supports the host; ``package_manager``
    names the package fact/operation backend (``apt`` or ``dnf``).
    """

    name: str
    detect: Callable[[OSRelease], bool]
    package_manager: Literal["apt", "dnf"]
    description: str = ""
    supported: str = ""  # human list of releases, shown when detection fails
    #: The interpreter meshctl builds its virtualenv with on this release.
    python: Callable[[OSRelease], str] = lambda release: "/usr/bin/python3"


@dataclass(frozen=True)
class Role:
    """A node role (``execution``, ``hop``, ``control``...). Core and plugins ask these
    attributes, never the role's name, so a third party's role with the same
    attributes gets the same treatment as a built-in one.

    ``runs_work``: the node runs jobs: a work-command, instance groups, ansible-runner,
    podman, registry credentials, signature verification; the topology warns when it
    has no path to a controller.
    ``provisionable``: meshctl may provision nodes of this role over SSH.
    ``managed_by_default``: ``managed`` when mesh.yml does not say (None: provisionable).
    ``needs_runner``: the node runs ansible-runner itself (a controller's transmit/process).
    ``controller``: an AWX/AAP controller: it submits work (and signs it), names its
    TLS client ``tlsclient`` as AWX does on every submit, dials the nodes flagged
    ``peers_from_control_nodes`` and is what work-running nodes must reach.
    ``dot_shape``, ``mermaid_shape`` and ``legend_order``: how ``meshctl graph`` draws
    the role (a Graphviz shape, Mermaid's opening and closing brackets) and where its
    legend lists it (lower first, then by name).
    """

    name: str
    runs_work: bool
    provisionable: bool
    description: str = ""
    managed_by_default: bool | None = None
    needs_runner: bool = False
    controller: bool = False
    dot_shape: str = "box"
    mermaid_shape: tuple[str, str] = ("[", "]")
    legend_order: int = 100


@dataclass(frozen=True)
class NodeTool:
    """A program a plugin installs on nodes that other plugins run by absolute path
    (``receptorctl``, ``ansible-runner``), so that none of them imports the plugin
    that installs it. ``directory`` is the tree that plugin lays down for it (OS
    plugins restore its SELinux labels). Read with ``Topology.tool(name)``."""

    name: str
    path: str
    directory: str = ""
    description: str = ""


@dataclass(frozen=True)
class CertBackend:
    """A certificate backend, selected by ``certificates.backend`` in mesh.yml.

    ``factory(options, context)`` returns the backend object; ``options_model``
    (a pydantic model) validates ``certificates.options`` before any host is touched.
    """

    name: str
    factory: Callable[..., Any]
    options_model: type[BaseModel] | None = None
    description: str = ""


@dataclass
class BackendContext:
    """What a certificate backend's factory receives besides its options."""

    mesh: str
    state_dir: Path  # where the backend may keep its CA and other state
    base_dir: Path  # relative option paths resolve here (the topology file's directory)
    #: The mesh, for a backend that reads other sections of mesh.yml or asks other
    #: plugins (``topology.plugins``); None where a backend is built without one (tests).
    topology: Any = None

    def path(self, value: str) -> Path:
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else self.base_dir / p


@runtime_checkable
class CertificateBackend(Protocol):
    """The object ``CertBackend.factory(options, context)`` returns.

    ``supports_csr``: it signs CSRs made on the node (``key_location: node``); without
    it keys are made on the controller and travel. ``validate()`` is optional: problems
    with its files or settings, reported by ``meshctl validate``."""

    supports_csr: bool

    def trust_bundle(self) -> bytes:
        """PEM CA certificate(s) the nodes trust."""

    def sign_csr(self, csr_pem: bytes, node_id: str, addresses: list[str], days: int) -> bytes:
        """A PEM certificate for the CSR, carrying the Receptor NodeID."""

    def issue(self, node_id: str, addresses: list[str], key_type: str, days: int) -> tuple[bytes, bytes]:
        """(key PEM, certificate PEM) made on the controller."""


def backend_problems(backend: Any) -> list[str]:
    """What ``backend`` lacks of :class:`CertificateBackend`, in words."""
    out = []
    if not isinstance(getattr(backend, "supports_csr", None), bool):
        out.append("supports_csr (a bool: True when it signs CSRs made on the node)")
    for name in ("trust_bundle", "sign_csr", "issue"):
        if not callable(getattr(backend, name, None)):
            out.append(f"{name}()")
    return out


@dataclass(frozen=True)
class TopologySection:
    """A plugin-owned section of mesh.yml, validated by a pydantic model.

    ``scope`` is ``"mesh"`` for a top-level key or ``"node"`` for a key allowed on
    every node entry (and under ``defaults``).
    """

    name: str
    model: type[BaseModel]
    scope: Literal["mesh", "node"] = "mesh"
    description: str = ""


@dataclass
class CheckResult:
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Check:
    """A verification check run against a provisioned node (``meshctl verify``).

    ``run(ctx)`` returns a :class:`CheckResult`; ``roles`` limits it to those roles
    (empty: all provisionable roles).
    """

    name: str
    run: Callable[[NodeContext], CheckResult]
    roles: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Importer:
    """A format ``meshctl import NAME`` reads. Give ``convert`` or ``command``.

    ``convert(source)`` receives the path the user named and returns the mesh.yml text,
    or ``(text, lines)`` where ``lines[i]`` is the source line that line ``i + 1`` of the
    text came from (0: none), so a validation error names the source's own line. The
    core adds ``meshctl import NAME SOURCE [--out FILE]``, validates the text with the
    loaded plugins and prints it or writes it atomically. ``command`` is a click
    command for a format that needs its own arguments or output; it is added as NAME.
    """

    name: str
    convert: Callable[[Path], str | tuple[str, Sequence[int]]] | None = None
    command: click.Command | None = None
    description: str = ""


@dataclass(frozen=True)
class RegistryCredentials:
    """Credentials for one registry. ``password`` is a secret: never print it."""

    username: str
    password: str = field(repr=False)


class ReadOnlyError(TypeError):
    """A plugin wrote to what it was given to read (its NodeContext)."""


class ReadOnlyDict(dict):
    """A dict nobody can change: what NodeContext holds. Still a dict, so renderers
    and ``json`` treat it as one."""

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise ReadOnlyError("this mapping of a NodeContext is read-only")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (ReadOnlyDict, (dict(self),))


_SCALARS = frozenset({str, int, float, bool, type(None)})


def read_only(value: Any) -> Any:
    """``value`` with its dicts and lists, at any depth, made read-only (lists become tuples)."""
    # Scalar leaves are most of a node's receptor.conf: tested inline, not by a call each.
    kind = type(value)
    if kind is dict:
        out = ReadOnlyDict(value)  # copied in C; only the nested containers are redone
        for k, v in value.items():
            if type(v) not in _SCALARS:
                dict.__setitem__(out, k, read_only(v))
        return out
    if kind is list or kind is tuple:
        return tuple(v if type(v) in _SCALARS else read_only(v) for v in value)
    if kind in _SCALARS or kind is ReadOnlyDict:
        return value
    if isinstance(value, Mapping):
        return ReadOnlyDict({k: read_only(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(read_only(v) for v in value)
    return value


@dataclass(frozen=True)
class NodeContext:
    """Everything a plugin needs to plan one node: the node, the whole topology, the
    detected OS, the values of plugin CLI options, and (for the operation hooks) the
    combined answers of ``meshctl_receptor_config``. Frozen, and its containers are
    read-only: a hook returns what it makes; the core builds each hook's context
    (``dataclasses.replace``) from what earlier hooks returned."""

    node: Node
    topology: Topology
    os_release: OSRelease
    os_family: OSFamily
    facts: Mapping[str, Any] = field(default_factory=ReadOnlyDict)
    #: receptor.conf sections from every plugin's ``meshctl_receptor_config``.
    receptor_config: Sequence[Mapping[str, Any]] = ()
    #: Plugin CLI options only (never the engine's settings).
    options: Mapping[str, Any] = field(default_factory=ReadOnlyDict)
    #: Given by the engine when a check runs on a live host.
    run: Callable[[str], tuple[int, str]] | None = None

    def __post_init__(self) -> None:
        for name in ("facts", "receptor_config", "options"):
            object.__setattr__(self, name, read_only(getattr(self, name)))

    def section(self, name: str, default: Any = None) -> Any:
        """A plugin section of the topology by name (mesh scope)."""
        return self.topology.sections.get(name, default)

