"""OS plugin for the RHEL family (dnf): RHEL, CentOS Stream, Rocky, AlmaLinux,
Oracle Linux 8/9/10 and Fedora.

The OS part of provisioning a managed node (role plugins add receptor, the venv...):

- packages, by release (:data:`RELEASES`): the base tools every node needs, podman and
  its rootless helpers on execution nodes, ``container-selinux`` where SELinux is on;
- firewalld: opens the listener port (``<port>/tcp``) permanently and at runtime, only
  while firewalld runs, in the zone of the ``firewall:`` section of mesh.yml;
- SELinux: restores the policy's labels on receptor's and meshctl's files.

Everything is decided from facts gathered in the one fact round trip (``fw:firewalld``,
``selinux``, package and guard facts): operations exist for every node of the family
and say "no change, because..." when a firewall or SELinux is absent, so plans tell.

The small operation classes here (:class:`FirewallRule`, :class:`Notice`) and
:func:`state_fact` are shared with ``os_debian``.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Any

from meshctl.plugin import (
    Change,
    Cmd,
    Command,
    FirewallRule,
    NoChange,
    NodeContext,
    Notice,
    Operation,
    OperationError,
    OSFamily,
    OSRelease,
    Packages,
    PlanResult,
    firewall_settings,
    hookimpl,
    parse_kv,
    runs_work,
    state_fact,
)
from meshctl.plugin import facts as F
from meshctl.plugin import receptor as R

EL_IDS = {"rhel", "centos", "rocky", "almalinux", "ol"}
EL_MAJORS = {"8", "9", "10"}


def detect(release: OSRelease) -> bool:
    if release.id == "fedora":
        return True
    is_el = release.id in EL_IDS or ("rhel" in release.id_like and release.id != "fedora")
    return is_el and release.major in EL_MAJORS


# ---------------------------------------------------------------------------
# Packages per release


@dataclass(frozen=True)
class Release:
    """What one release stream needs installed.

    ``python`` is the interpreter meshctl builds its virtualenv with; ``base`` goes on
    every managed node, ``execution`` on nodes that run jobs. ``since_minor``: the
    first minor release whose repositories carry ``base`` (0: all of them).
    """

    python: str
    base: tuple[str, ...]
    execution: tuple[str, ...]
    since_minor: int = 0


_EXECUTION = ("podman", "crun", "fuse-overlayfs", "slirp4netns", "shadow-utils")

#: Release stream -> package names. Why these names:
#:
#: - Python: ansible-runner and receptorctl need Python >= 3.9. EL8's platform
#:   Python is 3.6 and EL9's 3.9, so EL8/9 get ``python3.11`` + ``python3.11-pip``
#:   (AppStream, non-modular, since RHEL 8.8 and 9.2). ``python39-pip`` (what the
#:   ansible.receptor collection installs on EL8) is the wrong-name trap of awx#13287
#:   and awx#14247. EL10 (3.12) and Fedora use the platform ``python3`` + ``python3-pip``.
#: - ``crun``: the runtime the ansible.receptor podman role installs and configures;
#:   the only one left on EL10 (runc removed).
#: - ``slirp4netns``: AWX runs job containers with ``--network slirp4netns:...``
#:   (DEFAULT_CONTAINER_RUN_OPTIONS); deprecated in favour of pasta on EL10 but still
#:   shipped, and still what AWX asks for.
#: - ``shadow-utils``: carries ``newuidmap``/``newgidmap`` (setuid/file-caps) for rootless
#:   podman on every release; ``shadow-utils-subid`` is only the libsubid library.
#: - ``tar``: unpacks the receptor release archive; absent from minimal/container images.
RELEASES: dict[str, Release] = {
    "el8": Release(
        python="/usr/bin/python3.11",
        base=("openssl", "python3.11", "python3.11-pip", "tar"),
        execution=_EXECUTION,
        since_minor=8,
    ),
    "el9": Release(
        python="/usr/bin/python3.11",
        base=("openssl", "python3.11", "python3.11-pip", "tar"),
        execution=_EXECUTION,
        since_minor=2,
    ),
    "el10": Release(
        python="/usr/bin/python3",
        base=("openssl", "python3", "python3-pip", "tar"),
        execution=_EXECUTION,
    ),
    "fedora": Release(
        python="/usr/bin/python3",
        base=("openssl", "python3", "python3-pip", "tar"),
        execution=_EXECUTION,
    ),
}

#: Where SELinux is enabled: the policy module for container processes and files.
SELINUX_PACKAGES = ("container-selinux",)


def stream(release: OSRelease) -> str:
    return "fedora" if release.id == "fedora" else f"el{release.major}"


def release_info(release: OSRelease) -> Release:
    return RELEASES.get(stream(release), RELEASES["el10"])


def python_for(release: OSRelease) -> str:
    return release_info(release).python


def too_old(release: OSRelease) -> str | None:
    """Why this minor release cannot be provisioned, or None. CentOS Stream has no
    minor version: it always carries the newest packages."""
    info = release_info(release)
    _, _, minor = release.version_id.partition(".")
    if info.since_minor and minor.isdigit() and int(minor) < info.since_minor:
        return (f"{release.pretty_name or release.id + ' ' + release.version_id} has no "
                f"{info.python.rsplit('/', 1)[-1]} package (it is in AppStream since {release.major}.{info.since_minor}); "
                f"update the host to {release.major}.{info.since_minor} or later")
    return None


# ---------------------------------------------------------------------------
# Facts (stable keys; each command also works where the tool is absent)


FIREWALLD_FACT = state_fact(
    "fw:firewalld",
    "if ! command -v firewall-cmd >/dev/null 2>&1; then echo state=absent; "
    "elif firewall-cmd --state >/dev/null 2>&1; then echo state=active; "
    "else echo state=inactive; fi",
)

SELINUX_FACT = F.Fact(
    key="selinux",
    command='if command -v getenforce >/dev/null 2>&1; then echo "mode=$(getenforce)"; '
    "else echo mode=absent; fi",
    kind="selinux",
    parser=parse_kv,
)


def selinux_enabled(facts: dict[str, Any]) -> bool:
    # Permissive counts: labels are the same, and a permissive host is often one
    # switch away from enforcing.
    return facts[SELINUX_FACT.key].get("mode") in ("enforcing", "permissive")


# ---------------------------------------------------------------------------
# Operations


@dataclass
class Refuse(Operation):
    """Fails the host's plan with ``reason`` (a release meshctl cannot provision)."""

    reason: str = ""

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        raise OperationError(self.reason)


@dataclass
class SELinuxPackages(Packages):
    """Packages needed only where SELinux is enabled."""

    def facts(self, manager: str) -> list[F.Fact]:
        return [SELINUX_FACT, *super().facts(manager)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        if not selinux_enabled(facts):
            return NoChange(self, f"SELinux {facts[SELINUX_FACT.key].get('mode', 'unknown')}: not needed")
        return super().plan(facts, changed, manager)


#: What receptor writes; restorecon -i skips the ones not there yet. The trees of
#: plugins' node tools (meshctl's virtualenv) come after R.BINARY.
RELABEL_PATHS = (R.CONF_DIR, R.LOG_DIR, R.BINARY, R.RUN_DIR)
RESTORECON_ID = "cmd:restorecon"


@dataclass
class Restorecon(Command):
    """``restorecon`` on meshctl's paths, where SELinux is enabled.

    A file moved into place keeps the label of where it was made (a receptor binary
    unpacked under /tmp stays ``user_tmp_t`` and systemd may not execute it under
    enforcing). Operations that place such files notify this one (``notify=
    ["cmd:restorecon"]``); as not every plugin does yet, it also runs whenever its
    guard, ``restorecon -n -v`` (a dry run listing what it would relabel), finds a
    mislabeled file. Either trigger suffices, unlike Command's usual
    ``only_when_notified``."""

    def facts(self, manager: str) -> list[F.Fact]:
        return [SELINUX_FACT, *super().facts(manager)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        if not selinux_enabled(facts):
            return NoChange(self, f"SELinux {facts[SELINUX_FACT.key].get('mode', 'unknown')}: no labels to restore")
        if self.id in changed:
            return Change(self, "relabel (notified)", [Cmd(self.command)])
        if facts[f"rc:{self.unless}"]["rc"] == 0:
            return NoChange(self, "labels match the policy")
        return Change(self, "relabel: files differ from the policy's labels", [Cmd(self.command)])


def restorecon_op(tool_dirs: tuple[str, ...] | list[str] = ()) -> Restorecon:
    where = (*RELABEL_PATHS[:3], *tool_dirs, *RELABEL_PATHS[3:])
    paths = " ".join(shlex.quote(p) for p in where)
    return Restorecon(
        id=RESTORECON_ID,
        description="SELinux labels of " + ", ".join(where),
        command=f"restorecon -R -i {paths}",
        unless=f"! restorecon -R -i -n -v {paths} | grep -q .",
        # After every plugin's files (it relabels them) and what notifies it; before services.
        phase="late",
    )


# ---------------------------------------------------------------------------
# mesh.yml section


# ---------------------------------------------------------------------------
# Hooks


@hookimpl
def meshctl_register_os_families(register):
    register(
        OSFamily(
            name="rhel",
            detect=detect,
            package_manager="dnf",
            description="RHEL family",
            supported="RHEL, CentOS Stream, Rocky, AlmaLinux, Oracle Linux 8-10; Fedora",
            python=python_for,
        )
    )


def _mine(ctx: NodeContext) -> bool:
    return ctx.os_family.name == "rhel" and ctx.node.managed


@hookimpl
def meshctl_node_operations(ctx: NodeContext) -> list[Operation] | None:
    if not _mine(ctx):
        return None
    refusal = too_old(ctx.os_release)
    if refusal:
        return [Refuse(id="os:release", description="OS release", reason=refusal),
                restorecon_op(ctx.topology.tool_directories())]
    info = release_info(ctx.os_release)
    ops: list[Operation] = [Packages(id="packages:os-base", names=list(info.base))]
    if runs_work(ctx):
        ops += [
            Packages(id="packages:os-execution", names=list(info.execution)),
            SELinuxPackages(id="packages:container-selinux", names=list(SELINUX_PACKAGES)),
        ]
    ops += firewall_ops(ctx)
    return [*ops, restorecon_op(ctx.topology.tool_directories())]


def firewall_ops(ctx: NodeContext) -> list[Operation]:
    if ctx.node.listener is None or ctx.node.listener.port is None:
        return []
    fw, port = firewall_settings(ctx), f"{ctx.node.listener.port}/tcp"
    if not fw.manage:
        return [Notice(id="firewall:firewalld", description=f"firewalld: {port}",
                       inactive="firewall.manage is false: not touched")]
    z = f"--zone={shlex.quote(fw.zone)}"
    return [FirewallRule(
        id="firewall:firewalld",
        description=f"firewalld: {port} in zone {fw.zone}",
        gate=FIREWALLD_FACT,
        service="firewalld",
        # Permanent for reboots and reloads, runtime to take effect now.
        command=f"firewall-cmd --permanent {z} --add-port={port} && firewall-cmd {z} --add-port={port}",
        unless=f"firewall-cmd --permanent {z} --query-port={port} && firewall-cmd {z} --query-port={port}",
        summary=f"open {port} in zone {fw.zone}",
        done=f"{port} open in zone {fw.zone}",
    )]



@hookimpl
def meshctl_removal_operations(ctx: NodeContext, purge_user: bool) -> list[Operation] | None:
    if not _mine(ctx) or ctx.node.listener is None or ctx.node.listener.port is None:
        return None
    fw, port = firewall_settings(ctx), f"{ctx.node.listener.port}/tcp"
    if not fw.manage:
        return None
    z = f"--zone={shlex.quote(fw.zone)}"
    return [FirewallRule(
        id="firewall:firewalld", description=f"firewalld: {port} in zone {fw.zone}", gate=FIREWALLD_FACT,
        service="firewalld",
        command=f"firewall-cmd --permanent {z} --remove-port={port} && firewall-cmd {z} --remove-port={port}",
        unless=f"! firewall-cmd --permanent {z} --query-port={port} && ! firewall-cmd {z} --query-port={port}",
        summary=f"close {port} in zone {fw.zone}", done=f"{port} not open in zone {fw.zone}",
    )]
