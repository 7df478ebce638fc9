"""The ``execution`` role: runs ``ansible-runner worker`` under receptor, each job
in a rootless podman container of the service user.

The work-command comes with ansible-runner (python_env); this plugin prepares the
service user of every node that runs work for rootless podman: subuid
and subgid ranges, linger (a user manager survives logout, so containers and
their cgroups outlive the SSH session), and the user's containers.conf and
storage.conf written before its first podman call (storage settings are fixed at
first use).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from meshctl.plugin import (
    Absent,
    Command,
    Directory,
    File,
    NodeContext,
    Role,
    StrictModel,
    TopologySection,
    hookimpl,
    receptor_settings,
)

CONTAINERS_CONF = """\
# Managed by meshctl: podman settings for receptor's work (ansible-runner jobs).
[engine]
runtime = "crun"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

STORAGE_CONF = """\
# Managed by meshctl: rootless overlay storage through fuse-overlayfs.
[storage]
driver = "overlay"

[storage.options.overlay]
mount_program = "/usr/bin/fuse-overlayfs"
"""

FULLY_QUALIFIED = """\
# Managed by meshctl: images must be named with their registry (no short-name lookups).
unqualified-search-registries = []
"""


class PodmanSection(StrictModel):
    """``podman:``: the service user's subordinate id range for rootless podman."""

    subid_start: int = Field(default=100000, ge=1000, le=4_000_000_000)
    subid_count: int = Field(default=65536, ge=65536, le=1_000_000_000)

    @model_validator(mode="after")
    def _fits(self) -> PodmanSection:
        if self.subid_start + self.subid_count > 2**32 - 1:
            raise ValueError("subid_start + subid_count must stay below 2^32")
        return self


@hookimpl
def meshctl_register_roles(register):
    register(Role("execution", runs_work=True, provisionable=True, dot_shape="ellipse", mermaid_shape=("(", ")"),
                  legend_order=3, description="runs ansible-runner jobs in podman containers"))


@hookimpl
def meshctl_register_topology_sections(register):
    register(TopologySection("podman", PodmanSection, "mesh", "subordinate ids for rootless podman"))


@hookimpl
def meshctl_node_operations(ctx: NodeContext):
    if not ctx.node.managed or not ctx.topology.role_of(ctx.node).runs_work:
        return None
    s = receptor_settings(ctx)
    p: PodmanSection = ctx.section("podman") or PodmanSection()
    u, g, home = s.user, s.group, s.home
    end = p.subid_start + p.subid_count - 1
    cfg = f"{home}/.config"
    return [
        Command(id="cmd:subids", description=f"subuid/subgid {p.subid_start}-{end} for {u}",
                command=f"usermod --add-subuids {p.subid_start}-{end} --add-subgids {p.subid_start}-{end} {u}",
                unless=f"grep -q '^{u}:' /etc/subuid && grep -q '^{u}:' /etc/subgid"),
        Command(id="cmd:linger", description=f"linger for {u}", command=f"loginctl enable-linger {u}",
                creates=f"/var/lib/systemd/linger/{u}"),
        Directory(path=cfg, mode="0700", owner=u, group=g),
        Directory(path=f"{cfg}/containers", mode="0700", owner=u, group=g),
        File(path=f"{cfg}/containers/containers.conf", content=CONTAINERS_CONF, mode="0644", owner=u, group=g),
        File(path=f"{cfg}/containers/storage.conf", content=STORAGE_CONF, mode="0644", owner=u, group=g),
        Directory(path="/etc/containers/registries.conf.d", mode="0755"),
        File(path="/etc/containers/registries.conf.d/force-fully-qualified-images.conf", content=FULLY_QUALIFIED),
    ]


@hookimpl
def meshctl_removal_operations(ctx: NodeContext, purge_user: bool):
    if not ctx.node.managed or not ctx.topology.role_of(ctx.node).runs_work:
        return None
    s = receptor_settings(ctx)
    p: PodmanSection = ctx.section("podman") or PodmanSection()
    ops: list[Any] = [Absent(path="/etc/containers/registries.conf.d/force-fully-qualified-images.conf")]
    if purge_user:
        return ops  # the user's removal takes its home, linger and subordinate ids with it
    u, end = s.user, p.subid_start + p.subid_count - 1
    return ops + [
        Absent(path=f"{s.home}/.config/containers/containers.conf"),
        Absent(path=f"{s.home}/.config/containers/storage.conf"),
        Command(id="cmd:linger-off", command=f"loginctl disable-linger {u}",
                unless=f"! test -e /var/lib/systemd/linger/{u}", description=f"linger off for {u}"),
        Command(id="cmd:subids-off", description=f"subuid/subgid of {u}",
                command=f"usermod --del-subuids {p.subid_start}-{end} --del-subgids {p.subid_start}-{end} {u}",
                unless=f"! grep -q '^{u}:' /etc/subuid && ! grep -q '^{u}:' /etc/subgid"),
    ]
