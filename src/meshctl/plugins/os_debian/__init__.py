"""OS plugin for Debian 12/13 and Ubuntu 22.04/24.04 (apt).

The OS part of provisioning a managed node (role plugins add receptor, the venv...):

- packages, by release (:data:`RELEASES`): the base tools every node needs, podman and
  its rootless helpers on execution nodes;
- ufw: allows the listener port (``<port>/tcp``) while ufw is active;
- nftables: when ``nftables.service`` is active the plan carries a warning to allow the
  port by hand; a user's ruleset has no structure meshctl could safely edit.

Facts (``fw:ufw``, ``fw:nftables``, packages, guards) come in the one fact round trip.
The operation classes are shared with ``os_rhel`` through ``meshctl.core.oskit``.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshctl.plugin import (
    FirewallRule,
    NodeContext,
    Notice,
    Operation,
    OSFamily,
    OSRelease,
    Packages,
    hookimpl,
    runs_work,
    state_fact,
)
from meshctl.plugin import facts as F

SUPPORTED = {"debian": {"12", "13"}, "ubuntu": {"22.04", "24.04"}}


def detect(release: OSRelease) -> bool:
    if release.id in SUPPORTED:
        versions = SUPPORTED[release.id]
        return release.version_id in versions or release.major in versions
    return False


# ---------------------------------------------------------------------------
# Packages per release


@dataclass(frozen=True)
class Release:
    """What one release needs installed: ``base`` on every managed node,
    ``execution`` on nodes that run jobs; ``python`` builds meshctl's virtualenv."""

    python: str
    base: tuple[str, ...]
    execution: tuple[str, ...]


_BASE = ("openssl", "python3", "python3-venv", "tar")

#: (ID, VERSION_ID) -> package names. Why these names:
#:
#: - ``python3-venv``: Debian splits ``venv``/``ensurepip`` out of python3; without it
#:   ``python3 -m venv`` fails. System Python is new enough everywhere (3.10 on
#:   Ubuntu 22.04 up to 3.13 on Debian 13); pip goes into the venv, never the system
#:   (PEP 668, externally-managed-environment).
#: - ``crun``: packaged on all four releases (Debian 12: 1.8, 13: 1.21, Ubuntu 22.04:
#:   0.17 in universe, 24.04: 1.14), so no runc fallback is needed today; a release
#:   without crun would list ``runc`` here instead.
#: - ``fuse-overlayfs``, ``slirp4netns``, ``uidmap`` (newuidmap/newgidmap): podman only
#:   *recommends* them, and meshctl installs with ``--no-install-recommends``. AWX runs
#:   jobs with ``--network slirp4netns:...``.
#: - Ubuntu: podman, crun, fuse-overlayfs and slirp4netns are in "universe", which
#:   must be enabled (it is on Ubuntu's server and cloud images).
RELEASES: dict[tuple[str, str], Release] = {
    ("debian", "12"): Release("/usr/bin/python3", _BASE,
                              ("podman", "crun", "fuse-overlayfs", "slirp4netns", "uidmap")),
    ("debian", "13"): Release("/usr/bin/python3", _BASE,
                              ("podman", "crun", "fuse-overlayfs", "slirp4netns", "uidmap")),
    ("ubuntu", "22.04"): Release("/usr/bin/python3", _BASE,
                                 ("podman", "crun", "fuse-overlayfs", "slirp4netns", "uidmap")),
    ("ubuntu", "24.04"): Release("/usr/bin/python3", _BASE,
                                 ("podman", "crun", "fuse-overlayfs", "slirp4netns", "uidmap")),
}


def release_info(release: OSRelease) -> Release:
    found = RELEASES.get((release.id, release.version_id)) or RELEASES.get((release.id, release.major))
    return found or RELEASES[("debian", "13")]


def python_for(release: OSRelease) -> str:
    return release_info(release).python


# ---------------------------------------------------------------------------
# Facts (stable keys; each command also works where the tool is absent)

# ufw translates its output: read it in the C locale.
UFW_FACT = state_fact(
    "fw:ufw",
    "if ! command -v ufw >/dev/null 2>&1; then echo state=absent; "
    "elif LC_ALL=C ufw status 2>/dev/null | head -n 1 | grep -qx 'Status: active'; then echo state=active; "
    "else echo state=inactive; fi",
)

NFTABLES_FACT = F.service_state_fact("fw:nftables", "nftables.service")


def ufw_allowed(port: int) -> str:
    """Succeeds when an incoming ALLOW (or LIMIT) rule for the port exists, whatever
    its source: a rule the user narrowed to some addresses is theirs to keep."""
    # The ufw check first: without ufw, no pipeline to start on every run.
    return (f"command -v ufw >/dev/null && LC_ALL=C ufw status | grep -E '^{port}(/tcp)?[[:space:]]' "
            f"| grep -v 'ALLOW OUT' | grep -Eq 'ALLOW|LIMIT'")


# ---------------------------------------------------------------------------
# Hooks


@hookimpl
def meshctl_register_os_families(register):
    register(
        OSFamily(
            name="debian",
            detect=detect,
            package_manager="apt",
            description="Debian and Ubuntu",
            supported="Debian 12, 13; Ubuntu 22.04, 24.04",
            python=python_for,
        )
    )


@hookimpl
def meshctl_node_operations(ctx: NodeContext) -> list[Operation] | None:
    if ctx.os_family.name != "debian" or not ctx.node.managed:
        return None
    info = release_info(ctx.os_release)
    ops: list[Operation] = [Packages(id="packages:os-base", names=list(info.base))]
    if runs_work(ctx):
        ops.append(Packages(id="packages:os-execution", names=list(info.execution)))
    return ops + firewall_ops(ctx)


def firewall_ops(ctx: NodeContext) -> list[Operation]:
    if ctx.node.listener is None or ctx.node.listener.port is None:
        return []
    port = ctx.node.listener.port
    # The ``firewall:`` section is core's (meshctl.core.sections); absent means defaults.
    fw = ctx.section("firewall")
    if fw is not None and not fw.manage:
        return [Notice(id="firewall:ufw", description=f"ufw: {port}/tcp",
                       inactive="firewall.manage is false: not touched")]
    return [
        FirewallRule(
            id="firewall:ufw",
            description=f"ufw: {port}/tcp",
            gate=UFW_FACT,
            service="ufw",
            inactive="inactive",
            command=f"ufw allow {port}/tcp comment 'receptor (meshctl)'",
            unless=ufw_allowed(port),
            summary=f"allow {port}/tcp",
            done=f"{port}/tcp allowed",
        ),
        Notice(
            id="firewall:nftables",
            description=f"nftables: {port}/tcp",
            gate=NFTABLES_FACT,
            active=(f"WARNING: nftables.service is active and meshctl does not edit its ruleset: "
                    f"allow {port}/tcp in yourself (e.g. 'nft add rule inet filter input tcp dport "
                    f"{port} accept', and persist it in /etc/nftables.conf)"),
            inactive="nftables.service not active: nothing to open",
        ),
    ]


@hookimpl
def meshctl_removal_operations(ctx: NodeContext, purge_user: bool) -> list[Operation] | None:
    if ctx.os_family.name != "debian" or not ctx.node.managed:
        return None
    if ctx.node.listener is None or ctx.node.listener.port is None:
        return None
    fw = ctx.section("firewall")
    if fw is not None and not fw.manage:
        return None
    port = ctx.node.listener.port
    return [FirewallRule(
        id="firewall:ufw", description=f"ufw: {port}/tcp", gate=UFW_FACT, service="ufw", inactive="inactive",
        command=f"ufw delete allow {port}/tcp", unless=f"! ( {ufw_allowed(port)} )",
        summary=f"delete the allow rule for {port}/tcp", done=f"no rule for {port}/tcp",
    )]
