"""Certificates for receptor: backends chosen by name in mesh.yml (selfsigned,
file, awx-bundle, or a third party's), node certificates with the Receptor NodeID,
the mesh CA on every node, and the work-signing public key on execution nodes."""

from __future__ import annotations

import base64
import json
import re
import threading
import weakref
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from meshctl.plugin import (
    SECRET_LIMIT,
    CertBackend,
    File,
    Importer,
    NodeContext,
    TopologySection,
    UsageError,
    atomic_write,
    backend_problems,
    hookimpl,
    read_bytes,
    secret_file_problem,
)
from meshctl.plugin import receptor as R
from meshctl.plugins.cert_backends import settings as S
from meshctl.plugins.cert_backends.awx_api import AwxApi, AwxApiOptions
from meshctl.plugins.cert_backends.backends import (
    AwxBundle,
    AwxBundleOptions,
    BackendContext,
    FileBackend,
    FileOptions,
    SelfSigned,
    SelfSignedOptions,
)
from meshctl.plugins.cert_backends.checked import BackendError, CheckedBackend, call, unwrap, who
from meshctl.plugins.cert_backends.ops import NodeCertificate

SERVICE = f"service:{R.UNIT_NAME}"
RELABEL = "cmd:restorecon"  # the OS plugin's SELinux relabel, where SELinux is on


@hookimpl
def meshctl_register_cert_backends(register):
    register(CertBackend("selfsigned", SelfSigned, SelfSignedOptions,
                         "meshctl creates and keeps the mesh CA in its state directory"))
    register(CertBackend("file", FileBackend, FileOptions, "your own CA certificate and key (e.g. AWX's)"))
    register(CertBackend("awx-bundle", AwxBundle, AwxBundleOptions,
                         "the node certificate and key from an AWX install bundle"))
    register(CertBackend("awx-api", AwxApi, AwxApiOptions,
                         "each node's certificate and key from AWX's API (its install_bundle endpoint)"))


@hookimpl
def meshctl_register_topology_sections(register):
    register(TopologySection("certificates", S.CertificatesSection, "mesh", "how node certificates are made"))
    register(TopologySection("certificates", S.NodeCertificates, "node", "per-node certificate overrides"))
    register(TopologySection("work_signing", S.WorkSigning, "mesh", "work-signing public key"))


# -- backends ------------------------------------------------------------------

_lock = threading.Lock()
_runs: dict[int, dict[Any, Any]] = {}
_runs_lock = threading.Lock()


def run_cache(topo: Any) -> dict[Any, Any]:
    """What this plugin computes once per topology (one run): backends, the work key.
    Keyed by the topology's id and dropped by a finalizer when it is collected, so a
    later topology that reuses the id never receives another mesh's entries."""
    with _runs_lock:
        cache = _runs.get(id(topo))
        if cache is None:
            cache = _runs[id(topo)] = {}
            weakref.finalize(topo, _runs.pop, id(topo), None)
        return cache


def backend_for(plugins: Any, topo: Any, node: Any) -> Any:
    """The backend object for a node (cached: one CA load per run), checked: see
    :class:`~meshctl.plugins.cert_backends.checked.CheckedBackend`."""
    cache = run_cache(topo)
    own = node.sections.get("certificates")
    fast = "<mesh>" if own is None or (own.backend is None and own.options is None) else None
    if fast is not None and fast in cache:
        return cache[fast]
    eff = S.effective(topo, node)
    key = (eff.backend, json.dumps(eff.options, sort_keys=True, default=str))
    with _lock:
        if key not in cache:
            reg = plugins.cert_backends()[eff.backend]
            options = reg.options_model.model_validate(eff.options) if reg.options_model else eff.options
            ctx = BackendContext(topo.mesh, S.state_dir(topo), S.base_dir(topo), topology=topo)
            plugin = plugins.owner("meshctl_register_cert_backends", eff.backend)
            made = call("its factory", eff.backend, plugin, reg.factory, options, ctx)
            cache[key] = CheckedBackend(made, eff.backend, plugin)
        if fast is not None:
            cache[fast] = cache[key]
        return cache[key]


def key_location(backend: Any, eff: S.Effective) -> str:
    return eff.key_location if getattr(backend, "supports_csr", False) else "controller"


# -- validation ------------------------------------------------------------------

@hookimpl
def meshctl_validate_topology(topology, report):
    plugins = _plugins_of(topology)
    registered = plugins.cert_backends() if plugins else {}
    has_section = topology.sections.get("certificates") is not None
    checked: set[str] = set()
    for node in topology.managed_nodes:
        own = node.sections.get("certificates")
        eff = S.effective(topology, node)
        base = ("nodes", node.index, "certificates") if own is not None and own.backend else ("certificates",)
        if eff.backend not in registered:
            path = base + ("backend",) if (own is not None and own.backend) or has_section else ("nodes", node.index)
            report(path, f"unknown certificate backend {eff.backend!r}; available: {', '.join(sorted(registered))}")
            continue
        reg = registered[eff.backend]
        if reg.factory is AwxApi:
            others = [a for a in S.node_addresses(node) if a != node.name]
            if others:
                report(("nodes", node.index, "address"), f"node {node.name!r}: AWX's certificates (backend awx-api) "
                       f"name only its hostname {node.name!r}, not {', '.join(others)}: set address: {node.name} "
                       "(AWX dials a node by its hostname) or use another certificate backend")
        opts_path = (("nodes", node.index, "certificates", "options") if own is not None and own.options is not None
                     else ("certificates", "options"))
        if reg.options_model is not None:
            try:
                options = reg.options_model.model_validate(eff.options)
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    report(opts_path + tuple(err["loc"]), f"{eff.backend} backend option "
                           f"{'.'.join(str(x) for x in err['loc']) or 'options'}: {err['msg']}")
                continue
        else:
            options = eff.options
        sig = (eff.backend, json.dumps(eff.options, sort_keys=True, default=str))
        if str(sig) in checked:
            continue
        checked.add(str(sig))
        ctx = BackendContext(topology.mesh, S.state_dir(topology), S.base_dir(topology), topology=topology)
        owner = plugins.owner("meshctl_register_cert_backends", eff.backend) if plugins else "?"
        try:
            backend = call("its factory", eff.backend, owner, reg.factory, options, ctx)
            lacks = backend_problems(backend)
            if lacks:
                report(opts_path, f"{who(eff.backend, owner)} lacks "
                       f"{', '.join(lacks)} (see meshctl.plugin.CertificateBackend)")
                continue
            secret = _secret_problem(backend)
            if secret is not None:
                report(opts_path + (secret[0],), secret[2], secret[1])
            # Optional for backends: check files and settings before any host is touched.
            problems = [] if secret and secret[1] == "error" else (
                call("validate()", eff.backend, owner, backend.validate) if hasattr(backend, "validate") else [])
        except BackendError as exc:  # a third-party backend's bug must read as its problem
            problems = [str(exc)]
        for problem in problems:
            report(opts_path, problem)
        if eff.backend == "awx-bundle" and not problems and not secret and backend.bundle.node_id != node.name:
            report(opts_path + ("bundle",), f"{backend.path} is the bundle of node {backend.bundle.node_id!r}, "
                   f"not {node.name!r}")
        if own is not None and own.key_location == "node" and not getattr(backend, "supports_csr", False):
            report(("nodes", node.index, "certificates", "key_location"),
                   f"the {eff.backend} backend brings its own keys: key_location must be controller")
    ws = topology.sections.get("work_signing")
    if ws is not None and ws.public_key:
        p = S.resolve_path(topology, ws.public_key)
        try:
            problem = work_key_problem(_read_key(p, "work_signing public_key"))
        except UsageError as exc:
            report(("work_signing", "public_key"), str(exc))
        else:
            if problem:
                report(("work_signing", "public_key"), f"{p}: {problem}")
        if ws.private_key:
            found = secret_file_problem(S.resolve_path(topology, ws.private_key), "work_signing private_key")
            if found is not None:
                report(("work_signing", "private_key"), found[1], found[0])
    elif ws is not None and not ws.verify:
        report(("work_signing", "verify"), "verify: false: execution nodes run unsigned work, so anyone "
               "holding a mesh certificate can run commands as the service user", "warning")
    elif ws is None and _joins_awx(topology) and _generated_key_used(topology):
        report(("nodes",), "execution nodes verify work with a key meshctl generates, which an AWX control "
               "node does not sign with: set work_signing.public_key to AWX's work-public-key.pem", "warning")
    if any(n.managed and topology.role_of(n).controller for n in topology.nodes):
        problem = _signing_problem(topology)
        if problem:
            report(("work_signing",) if ws is not None else ("nodes",), problem)


def _secret_problem(backend: Any) -> tuple[str, str, str] | None:
    """(option, severity, message) for a built-in backend's secret file: the file
    backend's CA key, the AWX bundle (it holds the node's private key)."""
    if isinstance(backend, FileBackend):
        option, path, what = "ca_key", backend.key_path, "CA key"
    elif isinstance(backend, AwxBundle):
        option, path, what = "bundle", backend.path, "install bundle"
    else:
        return None
    found = secret_file_problem(path, what)
    return None if found is None else (option, *found)


def _read_key(path: Path, what: str) -> bytes:
    # The safe reader: a FIFO must not block, /dev/zero must not fill memory.
    return read_bytes(path, what, SECRET_LIMIT)


def _joins_awx(topology: Any) -> bool:
    """AWX's own CA is brought (file backend) and AWX's control nodes are unmanaged:
    they sign with AWX's key, never with one meshctl made."""
    return S.mesh_settings(topology).backend == "file" and any(
        topology.role_of(n).controller and not n.managed for n in topology.nodes)


def _generated_key_used(topology: Any) -> bool:
    return any(n.managed and topology.role_of(n).runs_work and S.effective(topology, n).backend != "awx-bundle"
               for n in topology.nodes)


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(.*?)-----END \1-----[ \t]*(?:\r?\n|$)", re.S)


def work_key_problem(data: bytes) -> str | None:
    """Why receptor would refuse this work public key when a job arrives (it reads
    it only then): it wants one PEM "PUBLIC KEY" (PKIX) block holding an RSA key,
    with nothing after it."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    m = _PEM_BLOCK.search(data)
    if m is None:
        return "not a PEM public key"
    if m.group(1) != b"PUBLIC KEY":
        return (f"a {m.group(1).decode()!r} PEM block; receptor wants a PKIX 'PUBLIC KEY' "
                "(convert with: openssl rsa -pubin -in FILE -RSAPublicKey_in -pubout)")
    if data[m.end():]:
        return "has data after the key's END line (receptor refuses trailing content, even a blank line)"
    try:
        key = load_der_public_key(base64.b64decode(b"".join(m.group(2).split())))
    except ValueError:
        return "the PUBLIC KEY block does not hold a readable key"
    if not isinstance(key, rsa.RSAPublicKey):
        return "not an RSA key: receptor verifies work signatures (RS512) with RSA keys only"
    return None


def _plugins_of(topology: Any) -> Any:
    return getattr(topology, "plugins", None)


# -- work signing ------------------------------------------------------------------

def work_public_key(topo: Any) -> bytes | None:
    """The work public key from ``work_signing:``: the given file, else the pair
    meshctl generates (also when the section is absent); None with verify: false.
    Read once per run: every execution node asks."""
    cache = run_cache(topo)
    if "work_public_key" not in cache:
        cache["work_public_key"] = _work_public_key(topo)
    return cache["work_public_key"]


def _work_public_key(topo: Any) -> bytes | None:
    ws = topo.sections.get("work_signing")
    if ws is not None and not ws.verify:
        return None
    if ws is not None and ws.public_key:
        return _read_key(S.resolve_path(topo, ws.public_key), "work_signing public_key")
    from meshctl.plugin import work_signing_keypair
    from meshctl.plugins.cert_backends.backends import write_private

    d = S.state_dir(topo)
    pub, priv = d / "work-public.pem", d / "work-private.pem"
    with _lock:
        if not pub.exists():
            private_pem, public_pem = work_signing_keypair()
            write_private(priv, private_pem)
            atomic_write(pub, public_pem)  # its existence marks the pair complete
    return _read_key(pub, "work public key")


def work_private_key_path(topo: Any) -> Path | None:
    """The signing key on this machine, for a control node meshctl manages: the
    given private_key, else the generated one; None when there is none to sign with."""
    ws = topo.sections.get("work_signing")
    if ws is not None and ws.private_key:
        return S.resolve_path(topo, ws.private_key)
    if ws is not None and (ws.public_key or not ws.verify):
        return None
    work_public_key(topo)
    return S.state_dir(topo) / "work-private.pem"


def _signing_problem(topology: Any) -> str | None:
    """Why a managed control node could not sign work that execution nodes accept."""
    ws = topology.sections.get("work_signing")
    if ws is not None and not ws.verify:
        return None  # nothing verifies, so nothing needs signing
    path = work_private_key_path(topology)
    if path is None:
        return ("a managed control node signs work: give work_signing.private_key "
                "(the private half of public_key), or use generate: true")
    if ws is None or not ws.private_key:
        return None
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        private = load_pem_private_key(_read_key(path, "work_signing private_key"), password=None)
    except UsageError as exc:
        return str(exc)
    except (ValueError, TypeError):
        return f"{path}: not an unencrypted PEM private key"
    from cryptography.hazmat.primitives import serialization

    try:
        public = work_public_key(topology) or b""
    except UsageError:
        return None  # the public key's own check reports it
    mine = private.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    try:
        theirs = serialization.load_pem_public_key(public).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    except ValueError:
        return None  # the public key's own check reports it
    if mine != theirs:
        return f"{path} is not the private half of work_signing.public_key"
    return None


def work_key_for(plugins: Any, topo: Any, node: Any, backend: Any = None) -> bytes | None:
    """The work public key an execution node verifies with: work_signing's, else
    the one in the node's AWX install bundle, else the generated one."""
    if not topo.role_of(node).runs_work:
        return None
    if topo.sections.get("work_signing") is None:
        # AWX's backends carry the key AWX signs work with.
        theirs = getattr(unwrap(backend or backend_for(plugins, topo, node)), "work_public_key_pem", None)
        if theirs is not None:
            return theirs
    return work_public_key(topo)


@hookimpl
def meshctl_receptor_config(ctx: NodeContext):
    if not ctx.node.managed:
        return None
    if ctx.topology.role_of(ctx.node).controller and work_private_key_path(ctx.topology) is not None:
        # As awx-operator configures AWX's own receptor: AWX signs every submit.
        return [{"work-signing": {"privatekey": R.WORK_PRIVATE_KEY, "tokenexpiration": "1m"}}]
    if work_key_for(ctx.topology.plugins, ctx.topology, ctx.node) is None:
        return None
    return [{"work-verification": {"publickey": R.WORK_PUBLIC_KEY}}]


# -- operations --------------------------------------------------------------------

@hookimpl
def meshctl_node_operations(ctx: NodeContext):
    node, topo = ctx.node, ctx.topology
    if not node.managed:
        return None
    from meshctl.plugin import receptor_settings

    rs = receptor_settings(ctx)
    plugins = ctx.options.get("plugins") or _plugins_of(topo)
    backend = backend_for(plugins, topo, node)
    eff = S.effective(topo, node)
    renew = ctx.options.get("cert_renew_within")
    force = node.name in (ctx.options.get("cert_force") or ())
    trust = backend.trust_bundle()
    # openssl (for keys made on the node) comes with the OS plugin's base packages.
    ops: list[Any] = [
        File(path=R.CA_FILE, content=trust, mode="0640", owner=rs.user, group=rs.group,
             notify=[SERVICE, RELABEL], category="certificates"),
        NodeCertificate(
            node_id=node.name, addresses=S.node_addresses(node), days=eff.validity_days,
            # A backend that makes one kind of key (AWX: RSA 2048) is planned against it.
            key_type=getattr(unwrap(backend), "key_type", None) or eff.key_type,
            renew_within=eff.renew_within_days if renew is None else int(renew),
            key_location=key_location(backend, eff), backend=backend, trust_pem=trust,
            cert_path=R.node_cert(node.name), key_path=R.node_key(node.name), owner=rs.user, group=rs.group,
            force=force, notify=[SERVICE, RELABEL],
        ),
    ]
    private = work_private_key_path(topo) if topo.role_of(node).controller else None
    if private is not None:
        ops.append(File(path=R.WORK_PRIVATE_KEY, content=_read_key(private, "work_signing private_key"), mode="0600", owner=rs.user,
                        group=rs.group, secret=True, notify=[SERVICE, RELABEL]))
    pub = work_key_for(plugins, topo, node, backend)
    if pub is not None:
        ops.append(File(path=R.WORK_PUBLIC_KEY, content=pub, mode="0640", owner=rs.user, group=rs.group,
                        notify=[SERVICE, RELABEL]))
    return ops


@hookimpl
def meshctl_register_importers(register):
    from meshctl.plugins.cert_backends.commands import import_awx_bundle

    register(Importer("awx-bundle", command=import_awx_bundle,
                      description="Print the mesh.yml node entry for an AWX install bundle."))


@hookimpl
def meshctl_register_commands(cli):
    from meshctl.plugins.cert_backends.commands import register

    register(cli)
