"""The hooks that declare what a plugin brings: sections, rules, roles, tools,
OS families, certificate backends, checks, import formats. The core calls each
once per run and owns the names (duplicates name both plugins)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from meshctl.core.hookmarkers import hookspec

if TYPE_CHECKING:

    from meshctl.core.topology import Topology
    from meshctl.core.types import (
        CertBackend,
        Check,
        Importer,
        NodeTool,
        OSFamily,
        Role,
        TopologySection,
    )


@hookspec
def meshctl_register_topology_sections(register: Callable[[TopologySection], None]) -> None:
    """Add validated sections to mesh.yml.

    Call ``register(TopologySection(name, model, scope))`` once per section.

    - ``model`` is a pydantic model. Give it ``model_config = ConfigDict(extra="forbid")``
      (or subclass ``StrictModel``) so that a typo is an error, not an ignored key.
    - ``scope="mesh"`` adds a top-level key; read it with ``ctx.section(name)`` or
      ``topology.sections[name]`` (``None`` when the user did not write it).
    - ``scope="node"`` adds the key to every entry of ``nodes:`` and to ``defaults:``;
      read it with ``node.sections[name]`` (the node's value, else the default's,
      else ``None``).

    Validation errors inside your section are reported as FILE:LINE:COL like the
    core's own, with a "did you mean" for unknown keys. Section names are named
    registrations: two plugins cannot own one key.

    Example::

        from pydantic import BaseModel, ConfigDict

        from meshctl.plugin import TopologySection, hookimpl


        class Proxy(BaseModel):
            model_config = ConfigDict(extra="forbid")
            url: str
            no_proxy: list[str] = []


        @hookimpl
        def meshctl_register_topology_sections(register):
            register(TopologySection("proxy", Proxy, scope="node", description="HTTP proxy for podman"))

    Since meshctl 0.1.
    """


@hookspec
def meshctl_validate_topology(topology: Topology, report: Callable[..., None]) -> None:
    """Check rules that span fields or sections, which a model cannot express.

    It runs on the parsed and resolved topology (defaults applied), only when the
    file has no schema error. Call ``report(path, message, severity="error")`` for each
    problem; ``path`` is a tuple locating the offending value, such as
    ``("nodes", 2, "peers", 0)`` or ``("motd", "text")``, and becomes the FILE:LINE:COL
    of the message. All problems of all plugins are shown together; any error stops
    the command before a host is touched, a ``severity="warning"`` is only printed.

    Example::

        @hookimpl
        def meshctl_validate_topology(topology, report):
            for node in topology.nodes:
                proxy = node.sections.get("proxy")
                if proxy is not None and not topology.role_of(node).runs_work:
                    report(("nodes", node.index, "proxy"), "this node pulls no images: drop 'proxy'",
                           severity="warning")

    Since meshctl 0.1.
    """


@hookspec
def meshctl_register_roles(register: Callable[[Role], None]) -> None:
    """Declare node roles, the values of ``role:`` in mesh.yml.

    The built-ins are ``execution``, ``hop``, ``control`` and ``hybrid``.
    ``Role(name, runs_work, provisionable)`` plus the attributes core and plugins ask
    instead of a role's name (``controller``, ``needs_runner``, ``managed_by_default``,
    and how ``meshctl graph`` draws it): a role of yours with ``runs_work=True`` gets
    everything the execution role gets (a work-command, instance groups,
    ansible-runner, podman, registry credentials, signature checks).
    ``provisionable`` lets meshctl provision nodes of the role; others are unmanaged by
    default and ``managed: true`` on them is an error. Ask a node's role with
    ``topology.role_of(node)``. What a role installs comes from
    :func:`meshctl_node_operations`, its receptor configuration from
    :func:`meshctl_receptor_config`.

    Example::

        from meshctl.plugin import Role, hookimpl


        @hookimpl
        def meshctl_register_roles(register):
            register(Role("gpu-exec", runs_work=True, provisionable=True,
                          description="execution node with a GPU", dot_shape="box3d"))

    Since meshctl 0.1.
    """


@hookspec
def meshctl_register_node_tools(register: Callable[[NodeTool], None]) -> None:
    """Declare programs your plugin installs on nodes that other plugins run by path.

    Call ``register(NodeTool(name, path, directory))`` once per program. Other
    plugins ask ``topology.tool(name)`` and so never import yours; without a plugin
    that registers it the answer is the bare name, found on the node's PATH.
    ``directory`` is the tree your plugin lays down for it (OS plugins restore its
    SELinux labels). The built-in python_env registers ``receptorctl``,
    ``ansible-runner`` and ``python`` from meshctl's virtualenv. Tool names are
    named registrations: two plugins cannot register one name.

    Example::

        @hookimpl
        def meshctl_register_node_tools(register):
            register(NodeTool("nodectl", "/opt/acme/bin/nodectl", "/opt/acme",
                              description="Acme's node agent CLI"))

    Since meshctl 0.1.
    """


@hookspec
def meshctl_register_os_families(register: Callable[[OSFamily], None]) -> None:
    """Declare an OS family: ``OSFamily(name, detect, package_manager)``.

    Before planning a host, the core reads its ``/etc/os-release`` and calls every
    family's ``detect(os_release)`` with an ``OSRelease`` (``id``, ``version_id``,
    ``id_like``, ``major``, ``arch``). Exactly one family must accept the host; none or
    several is an error for that host naming its OS and the families available
    (``supported`` is the human list shown then). ``package_manager`` is ``"apt"`` or
    ``"dnf"``, the backend ``Packages`` operations use.

    Example::

        from meshctl.plugin import OSFamily, hookimpl


        @hookimpl
        def meshctl_register_os_families(register):
            register(OSFamily(
                name="mint",
                detect=lambda r: r.id == "linuxmint" and r.major in {"21", "22"},
                package_manager="apt",
                description="Linux Mint",
                supported="Linux Mint 21, 22",
            ))

    Since meshctl 0.1.
    """


@hookspec
def meshctl_register_cert_backends(register: Callable[[CertBackend], None]) -> None:
    """Declare certificate backends, the values of ``certificates.backend`` in mesh.yml.

    ``CertBackend(name, factory, options_model)``: ``options_model`` is a pydantic model
    that validates ``certificates.options`` before any host is touched, and
    ``factory(options, context)`` builds the backend from the validated options and a
    ``BackendContext`` (``mesh``, ``state_dir``, ``base_dir``, ``path()``). The object it
    returns is a ``CertificateBackend``: ``supports_csr``, ``trust_bundle()``,
    ``sign_csr()``, ``issue()`` and optionally ``validate()``. ``meshctl validate`` checks
    the object against that protocol, and every certificate it returns is checked
    (NodeID, key, chain, dates) before it goes anywhere; both name your plugin when
    something is wrong. Backend names are named registrations. The whole contract,
    and how to test a backend, is in docs/certificate-backends.md.

    Example::

        from pydantic import BaseModel, ConfigDict

        from meshctl.plugin import CertBackend, hookimpl

        from .vault import VaultBackend  # your CertificateBackend


        class VaultOptions(BaseModel):
            model_config = ConfigDict(extra="forbid")
            url: str
            mount: str = "pki"


        @hookimpl
        def meshctl_register_cert_backends(register):
            register(CertBackend("vault", factory=VaultBackend, options_model=VaultOptions,
                                 description="node certificates from HashiCorp Vault PKI"))

    Since meshctl 0.1.
    """


@hookspec
def meshctl_register_checks(register: Callable[[Check], None]) -> None:
    """Declare verification checks run by ``meshctl verify`` against live nodes.

    ``Check(name, run, roles)``: ``run(ctx)`` returns a ``CheckResult(ok, detail)``;
    ``ctx.run(command)`` runs a command on the node and returns ``(exit code,
    output)``. ``roles`` limits the check to those roles (empty: every provisionable
    role).

    Example::

        from meshctl.plugin import Check, CheckResult, hookimpl


        def _podman(ctx):
            rc, out = ctx.run("podman --version")
            return CheckResult(ok=rc == 0, detail=out.strip())


        @hookimpl
        def meshctl_register_checks(register):
            register(Check("podman", run=_podman, roles=("execution",),
                           description="podman is installed and runs"))

    Since meshctl 0.1.
    """


@hookspec
def meshctl_register_importers(register: Callable[[Importer], None]) -> None:
    """Add a format to ``meshctl import``: ``register(Importer(name, convert=...))``.

    ``convert(source)`` reads the file the user named and returns mesh.yml text, or
    ``(text, lines)`` where ``lines[i]`` is the source line that text line ``i + 1``
    came from (0: none). meshctl adds ``meshctl import NAME SOURCE [--out FILE]``,
    validates the text with the loaded plugins before printing or writing anything,
    and names the source's own line in an error when ``lines`` says it. Raise
    ``UsageError("FILE:LINE: message")`` for a problem in the source. A format that
    needs its own arguments or output registers ``command=`` (a click command)
    instead. ``meshctl import --help`` lists every format with its plugin; format
    names are named registrations: two plugins cannot register one name. Write
    values with ``yaml_scalar``, never by hand: the source is outside input.

    Example::

        from meshctl.plugin import Importer, UsageError, read_text, yaml_scalar


        def convert(source):
            hosts = read_text(source, "host list", 1 << 20).split()
            if not hosts:
                raise UsageError(f"{source}: no host names")
            lines = ["mesh: hosts", "nodes:"]
            for host in hosts:
                lines += [f"  - name: {yaml_scalar(host)}", "    role: execution",
                          "    listener: {port: 27199}"]
            return "\\n".join(lines) + "\\n"


        @hookimpl
        def meshctl_register_importers(register):
            register(Importer("host-list", convert=convert, description="One host name a line."))

    Since meshctl 0.1.
    """
