"""What every provisioned node has: the service user, receptor's directories,
limits, tmpfiles entry, receptor.conf (node id, control service, TLS, listener,
peers) and the systemd unit. Also declares the unmanaged ``control`` and
``hybrid`` roles."""

from __future__ import annotations

import shlex
import time
from typing import Any

from meshctl.plugin import (
    Change,
    Check,
    CheckResult,
    Directory,
    File,
    Group,
    GuardedService,
    NodeContext,
    Octal,
    Packages,
    PlanResult,
    ReceptorSection,
    Role,
    Upload,
    User,
    hookimpl,
    receptor_settings,
)
from meshctl.plugin import facts as F
from meshctl.plugin import receptor as R

settings = receptor_settings  # this plugin's short name for core's accessor


@hookimpl
def meshctl_register_roles(register):
    register(Role("control", runs_work=False, provisionable=True, managed_by_default=False, needs_runner=True,
                  controller=True, dot_shape="doubleoctagon", mermaid_shape=("{{", "}}"), legend_order=0,
                  description="the AWX/AAP controller; configured by AWX itself, or by meshctl "
                              "with managed: true (AAP VM installs)"))
    register(Role("hybrid", runs_work=True, provisionable=False, controller=True, dot_shape="octagon",
                  mermaid_shape=("[[", "]]"), legend_order=1,
                  description="control + execution (AAP VM installs); not provisioned by meshctl"))


@hookimpl
def meshctl_receptor_config(ctx: NodeContext) -> list[dict[str, Any]]:
    node, topo, s = ctx.node, ctx.topology, settings(ctx)
    cert, key = R.node_cert(node.name), R.node_key(node.name)
    client = R.tls_client_name(topo.role_of(node))
    sections: list[dict[str, Any]] = [
        {"node": {"id": node.name, "datadir": s.datadir}},
        {"log-level": s.log_level},
        {"control-service": {"service": "control", "filename": R.SOCKET,
                             "permissions": Octal(0o660), "tls": "tls_server"}},
        {"tls-server": {"name": "tls_server", "cert": cert, "key": key, "clientcas": R.CA_FILE,
                        "requireclientcert": True, "mintls13": s.mintls13}},
        {"tls-client": {"name": client, "cert": cert, "key": key, "rootcas": R.CA_FILE,
                        "insecureskipverify": False, "mintls13": s.mintls13}},
    ]
    if node.listener is not None:
        kind = "tcp-listener" if node.listener.protocol != "ws" else "ws-listener"
        listener: dict[str, Any] = {"port": node.listener.port, "tls": "tls_server"}
        if node.listener.bindaddr:
            listener["bindaddr"] = node.listener.bindaddr
        if kind == "ws-listener" and node.listener.path:
            listener["path"] = node.listener.path
        sections.append({kind: listener})
    for peer in topo.dials(node):
        assert peer.listener is not None  # validation guarantees it
        sections.append(peer_section(peer, client))
    return sections


def peer_section(peer: Any, tls: str) -> dict[str, Any]:
    hostport = _hostport(peer.address, peer.listener.port)
    if peer.listener.protocol == "ws":
        # gorilla/websocket does TLS only for wss://; ws:// would speak plain HTTP
        # to a TLS listener (AWX renders wss:// for every ws address).
        return {"ws-peer": {"address": f"wss://{hostport}{peer.listener.path or ''}", "redial": True, "tls": tls}}
    return {"tcp-peer": {"address": hostport, "redial": True, "tls": tls}}


def _hostport(host: str, port: int | None) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ReceptorConfigFile(File):
    """receptor.conf: reloaded when only peers or listeners changed (all that
    `receptorctl reload` applies), restarted otherwise."""

    default_category = "receptor.conf"

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        result = super().plan(facts, changed, manager)
        if isinstance(result, Change) and result.summary == "update content":
            old = F.decode_content(facts[f"file:{self.path}"])
            text = old.decode("utf-8", "replace") if old is not None else None
            if R.restart_needed(text, self.data.decode()):
                result.escalate = True
                result.summary = "update content (restart: more than peers or listeners changed)"
            else:
                result.summary = "update content (reload: only peers or listeners changed)"
        return result


def binary_operations(ctx: NodeContext, s: ReceptorSection, svc: str) -> list[Any]:
    from meshctl.plugins.base_node import binary as B

    relabel = "cmd:restorecon"  # the OS plugin's SELinux relabel, where SELinux is on
    if s.install == "release":
        return [B.ReleaseBinary(version=s.version, arch=ctx.os_release.arch, sha256=s.sha256,
                                base_url=s.release_url, notify=[svc, relabel])]
    if s.install == "local":
        from meshctl.plugin import resolve_path

        source = resolve_path(ctx.topology, s.binary or "")
        return [Upload(path=R.BINARY, source=str(source), mode="0755", notify=[svc, relabel],
                       category="receptor binary"),
                B.BinaryPresent(id="receptor-version", required=False, description="receptor version")]
    if s.install == "package":
        return [Packages(id="packages:receptor", names=["receptor"], notify=[svc], category="receptor binary"),
                B.BinaryPresent(id="receptor-version", required=False, description="receptor version")]
    return [B.BinaryPresent(required=s.start)]


def _preflight_check(ctx: NodeContext) -> Any:
    from meshctl.plugins.base_node import preflight as P

    def check(output: str) -> list[str]:
        results = P.evaluate(P.parse(output), ctx.node.name, received_at=time.time(),
                             dialed_as=P.dialed_as(ctx.topology, ctx.node))
        return [f"{name}: {detail}" for name, ok, detail in results if not ok]

    return check


@hookimpl
def meshctl_node_operations(ctx: NodeContext):
    if not ctx.node.managed:
        return None
    from meshctl.plugins.base_node import preflight as P

    s = settings(ctx)
    u, g = s.user, s.group
    svc = f"service:{R.UNIT_NAME}"
    extra = ""
    if ctx.node.listener is not None and (ctx.node.listener.port or 0) < 1024:
        # receptor runs as the service user, which may not bind ports below 1024.
        extra = "AmbientCapabilities=CAP_NET_BIND_SERVICE\n"
    unit = R.UNIT_TEMPLATE.format(user=u, group=g, binary=R.BINARY, config=R.CONF_FILE, log=R.LOG_FILE,
                                  extra=extra)
    return [*binary_operations(ctx, s, svc),
        Group(name=g),
        User(name=u, group=g, home=s.home),
        Directory(path=R.CONF_DIR, mode="0755", owner=u, group=g),
        Directory(path=R.TLS_DIR, mode="0750", owner=u, group=g),
        Directory(path=R.CA_DIR, mode="0750", owner=u, group=g),
        Directory(path=R.LOG_DIR, mode="0755", owner=u, group=g),
        File(path=R.LOGROTATE_FILE, content=R.LOGROTATE_TEMPLATE.format(log=R.LOG_FILE)),
        Directory(path=s.datadir, mode="0700", owner=u, group=g),
        # For login sessions of the user; the unit's LimitNOFILE governs receptor, so no restart.
        File(path="/etc/security/limits.d/receptor.conf",
             content=f"# Managed by meshctl.\n{u} soft nofile 4096\n{u} hard nofile 8192\n"),
        File(path="/etc/tmpfiles.d/receptor.conf",
             content=f"# Managed by meshctl.\nD {R.RUN_DIR} 0750 {u} {g} -\n"),
        Directory(path=R.RUN_DIR, mode="0750", owner=u, group=g),
        ReceptorConfigFile(path=R.CONF_FILE, content=R.render_config(ctx.topology.mesh, ctx.receptor_config),
                           mode="0644", owner=u, group=g, reload=[svc], notify=["cmd:restorecon"]),
        File(id="file:receptor-unit", path=R.UNIT_FILE, content=unit, notify=[svc, "cmd:restorecon"]),
        GuardedService(unit=R.UNIT_NAME, enabled=True, state="started" if s.start else None,
                       reload_command=R.reload_command(ctx.topology.tool("receptorctl")),
                       unit_file_op="file:receptor-unit",
                       preflight_script=P.script(u, P.peer_hosts(ctx.topology, ctx.node)),
                       preflight=_preflight_check(ctx),
                       log_tail=f"tail -n 20 {R.LOG_FILE}"),
    ]


def _check_service_user(ctx: NodeContext) -> CheckResult:
    s = settings(ctx)
    rc, out = ctx.run(f"id -un {s.user} && id -gn {s.user}")
    names = out.split()
    ok = rc == 0 and names == [s.user, s.group]
    return CheckResult(ok, f"user {s.user} in group {s.group}" if ok else f"id {s.user}: {out.strip()}")


def _check_config(ctx: NodeContext) -> CheckResult:
    """The live receptor.conf is the one meshctl renders for this topology."""
    import hashlib

    want = R.render_config(ctx.topology.mesh, ctx.receptor_config)
    rc, out = ctx.run(f"sha256sum {R.CONF_FILE}")
    have = out.split()[0] if rc == 0 and out.strip() else ""
    if not have:
        return CheckResult(False, f"{R.CONF_FILE} missing or unreadable")
    if have != hashlib.sha256(want.encode()).hexdigest():
        return CheckResult(False, f"{R.CONF_FILE} differs from the topology (run meshctl plan)")
    return CheckResult(True, f"{R.CONF_FILE} matches the topology")


def _check_unit(ctx: NodeContext) -> CheckResult:
    rc, out = ctx.run(f"systemctl is-enabled {R.UNIT_NAME}; systemctl is-active {R.UNIT_NAME}")
    enabled, _, active = out.strip().partition("\n")
    want_active = settings(ctx).start
    ok = enabled.strip() == "enabled" and (active.strip() == "active" or not want_active)
    return CheckResult(ok, f"{R.UNIT_NAME}: {enabled.strip() or '?'}, {active.strip() or '?'}")


@hookimpl
def meshctl_register_checks(register):
    register(Check("service-user", _check_service_user, description="the receptor service user exists"))
    register(Check("receptor-config", _check_config, description="receptor.conf matches the topology"))
    register(Check("receptor-unit", _check_unit, description="receptor.service is enabled (and active when started)"))


@hookimpl
def meshctl_register_commands(cli):
    from meshctl.plugins.base_node import commands

    commands.register(cli)
    commands.register_remove(cli)
    commands.register_status(cli)
    commands.register_diagnose(cli)


@hookimpl
def meshctl_removal_operations(ctx: NodeContext, purge_user: bool):
    from meshctl.plugin import Absent, Command, Service

    if not ctx.node.managed:
        return None
    s = settings(ctx)
    ops: list[Any] = [
        # KillMode=process leaves work units running on stop: end the whole cgroup first.
        Command(id="cmd:end-work", command=f"systemctl kill {R.UNIT_NAME}; sleep 1",
                unless=f"! systemctl is-active --quiet {R.UNIT_NAME}", description="end receptor and its work units"),
        Service(id="service:receptor.service", unit=R.UNIT_NAME, enabled=False, state="stopped"),
        Absent(path=R.UNIT_FILE, notify=["cmd:daemon-reload"]),
        Command(id="cmd:daemon-reload", command="systemctl daemon-reload", only_when_notified=True),
        Absent(path=R.CONF_DIR),
        Absent(path=R.LOG_DIR),
        Absent(path=R.RUN_DIR),
        Absent(path=s.datadir),
        Absent(path=R.LOGROTATE_FILE),
        Absent(path="/etc/tmpfiles.d/receptor.conf"),
        Absent(path="/etc/security/limits.d/receptor.conf"),
        Absent(path="/var/lib/meshctl"),
    ]
    if s.install in ("release", "local"):  # a package or other means own their binary
        ops.append(Absent(path=R.BINARY))
    if purge_user:
        u, g = shlex.quote(s.user), shlex.quote(s.group)
        ops += [
            # Linger keeps a user manager (and its processes) alive: end it first.
            Command(id="purge:linger", command=f"loginctl disable-linger {u}; loginctl terminate-user {u} || true",
                    unless=f"! id {u} >/dev/null 2>&1", description=f"end {s.user}'s sessions", phase="last"),
            Command(id="purge:user", command=f"userdel -r {u}", unless=f"! id {u} >/dev/null 2>&1",
                    description=f"remove user {s.user} and {s.home}", phase="last"),
            # userdel may already have taken the user's own group: check again when running.
            Command(id="purge:group", command=f"if getent group {g} >/dev/null; then groupdel {g}; fi",
                    unless=f"! getent group {g} >/dev/null", description=f"remove group {s.group}",
                    phase="last"),
        ]  # phase "last": the user goes after everything it owned
    return ops
