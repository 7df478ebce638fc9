"""The ``execution`` role: runs ``ansible-runner worker`` under receptor, each job
in a rootless podman container of the service user.

Besides the work-command, the role prepares that user for rootless podman: subuid
and subgid ranges, linger (a user manager survives logout, so containers and
their cgroups outlive the SSH session), and the user's containers.conf and
storage.conf written before its first podman call (storage settings are fixed at
first use).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from meshctl.core import receptor as R
from meshctl.core.hookspecs import hookimpl
from meshctl.core.ops import Command, Directory, File
from meshctl.core.topology import StrictModel
from meshctl.core.types import NodeContext, Role, TopologySection

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
    register(Role("execution", runs_work=True, provisionable=True,
                  description="runs ansible-runner jobs in podman containers"))


@hookimpl
def meshctl_register_topology_sections(register):
    register(TopologySection("podman", PodmanSection, "mesh", "subordinate ids for rootless podman"))


@hookimpl
def meshctl_receptor_config(ctx: NodeContext) -> list[dict[str, Any]] | None:
    if ctx.node.role != "execution":
        return None
    # AWX signs every submit when its receptor has work-signing (awx-operator always
    # writes it), and receptor refuses a signature it does not expect; unsigned work
    # would also let any holder of a mesh certificate run code as the service user.
    # Off only with work_signing.verify: false (receptor.finalize_sections).
    return [{"work-command": {"worktype": "ansible-runner", "command": R.RUNNER, "params": "worker",
                              "allowruntimeparams": True, "verifysignature": True}}]


@hookimpl
def meshctl_node_operations(ctx: NodeContext):
    if ctx.node.role != "execution" or not ctx.node.managed:
        return None
    from meshctl.core.receptor import receptor_settings as settings

    s = settings(ctx)
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
    from meshctl.core.ops import Absent
    from meshctl.core.receptor import receptor_settings as settings

    if ctx.node.role != "execution" or not ctx.node.managed:
        return None
    s = settings(ctx)
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
