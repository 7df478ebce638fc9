"""Container registries for nodes that run work: the service user's auth.json
(merged with entries meshctl does not manage), trust for private CAs, insecure and
mirror drop-ins, and pre-pulled Execution Environment images.

Passwords come from the environment, a file or a command (or a plugin's secret
store through ``meshctl_registry_credentials``); they reach the node only on the
apply script's stdin and never appear in plans, logs or errors.
"""

from __future__ import annotations

from typing import Any

from meshctl.plugin import (
    SECRET_LIMIT,
    Command,
    Directory,
    File,
    NodeContext,
    RegistryCredentials,
    TopologySection,
    UsageError,
    hookimpl,
    read_bytes,
    receptor_settings,
    report_secret_sources,
    resolve_path,
)
from meshctl.plugins.registry_auth.authjson import AuthJson, auth_fact, merge_script, pythons
from meshctl.plugins.registry_auth.model import (
    CERTS_D,
    CONF_D,
    MANAGED_MARK,
    Registries,
    Registry,
    image_reference_problem,
    registries,
    valid_hostport,
    valid_location,
)
from meshctl.plugins.registry_auth.ops import Prepull, PruneManaged, Warn, dedupe, drop_in
from meshctl.plugins.registry_auth.sources import (
    auth_value,
    builtin_credentials,
    credentials,
    digest,
)

__all__ = [
    "CERTS_D", "CONF_D", "MANAGED_MARK", "AuthJson", "Prepull", "PruneManaged", "Registries", "Registry", "Warn",
    "auth_fact", "auth_value", "credentials", "digest", "drop_in", "image_reference_problem", "merge_script",
    "registries", "valid_hostport", "valid_location",
]


@hookimpl
def meshctl_register_topology_sections(register):
    register(TopologySection("registries", Registries, "mesh", "container registries for execution nodes"))


@hookimpl(trylast=True)
def meshctl_registry_credentials(registry: Registry, topology: Any) -> RegistryCredentials | None:
    """The built-in sources: password_env, password_file, password_command, password."""
    return builtin_credentials(registry, topology)


@hookimpl
def meshctl_validate_topology(topology, report):
    for i, reg in enumerate(registries(topology)):
        base = ("registries", i)
        report_secret_sources(topology, f"registry {reg.host}", "password", base, report,
                              env=reg.password_env, file=reg.password_file, value=reg.password)
        if reg.ca_file is not None:
            p = resolve_path(topology, reg.ca_file)
            try:
                data = _ca_file(p)
            except UsageError as exc:
                report(base + ("ca_file",), f"registry {reg.host}: {exc}")
                continue
            if b"-----BEGIN CERTIFICATE-----" not in data:
                report(base + ("ca_file",), f"registry {reg.host}: ca_file {p} is not a PEM certificate")
        if reg.insecure:
            report(base + ("insecure",), f"registry {reg.host}: insecure: true turns off TLS verification for it",
                   "warning")


def _ca_file(path: Any) -> bytes:
    return read_bytes(path, "registry ca_file", SECRET_LIMIT)


# -- operations ----------------------------------------------------------------------

@hookimpl
def meshctl_registry_files(ctx: NodeContext):
    if not ctx.node.managed or not ctx.topology.role_of(ctx.node).runs_work:
        return None
    regs = registries(ctx.topology)
    s = receptor_settings(ctx)
    plugins = ctx.topology.plugins
    ops: list[Any] = []
    keep_confs, keep_certs, wanted = [], [], {}
    for reg in regs:
        if reg.ca_file:
            d = f"{CERTS_D}/{reg.host}"
            keep_certs.append(d)
            ops += [Directory(path=CERTS_D, mode="0755"), Directory(path=d, mode="0755", category="registries"),
                    File(path=f"{d}/ca.crt", content=_ca_file(resolve_path(ctx.topology, reg.ca_file)),
                         mode="0644", category="registries"),
                    File(path=f"{d}/{MANAGED_MARK}", content=f"# {reg.host}: managed by meshctl\n",
                         category="registries")]
        if reg.insecure or reg.mirror_of:
            path = f"{CONF_D}/meshctl-{reg.slug}.conf"
            keep_confs.append(path)
            ops.append(File(path=path, content=drop_in(reg), category="registries"))
        if reg.insecure:
            ops.append(Warn(id=f"warn:insecure:{reg.host}", description=f"registry {reg.host}",
                            message=f"WARNING: TLS verification is off for registry {reg.host} (insecure: true)"))
        creds = credentials(plugins, ctx.topology, reg, ctx.node)
        if creds is not None:
            wanted[reg.host] = auth_value(creds)
    ops = dedupe(ops)
    ops.append(PruneManaged(keep_confs=keep_confs, keep_certs=keep_certs))
    # Always planned: with no registries left it removes what meshctl once added.
    ops.append(AuthJson(path=f"{s.home}/.config/containers/auth.json", owner=s.user, wanted=wanted,
                        pythons=pythons(ctx.topology), notify=["authjson"]))
    for reg in regs:
        for image in reg.prepull:
            ops.append(Prepull(image=image, registry=reg.host, user=s.user))
    return ops


@hookimpl
def meshctl_removal_operations(ctx: NodeContext, purge_user: bool):
    if not ctx.node.managed or not ctx.topology.role_of(ctx.node).runs_work:
        return None
    s = receptor_settings(ctx)
    ops: list[Any] = [
        PruneManaged(notify=["cmd:certs.d-rmdir"]),
        # meshctl made certs.d for its CAs; it goes only if nothing else is left in it.
        Command(id="cmd:certs.d-rmdir", command=f"rmdir {CERTS_D} 2>/dev/null || true", only_when_notified=True,
                description=f"{CERTS_D} (if empty)"),
    ]
    if not purge_user:  # otherwise the user's home goes, auth.json with it
        ops.append(AuthJson(path=f"{s.home}/.config/containers/auth.json", owner=s.user, wanted={},
                            pythons=pythons(ctx.topology)))
    return ops


@hookimpl
def meshctl_known_secrets(topology, node):
    out: list[str] = []
    plugins = topology.plugins
    for reg in registries(topology):
        try:
            creds = credentials(plugins, topology, reg, node)
        except Exception:  # a missing password must not stop a diagnosis
            continue
        if creds is not None:
            out += [creds.password, auth_value(creds)]
    return out
