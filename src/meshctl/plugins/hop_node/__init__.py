"""The ``hop`` role: a node that relays mesh traffic only (no podman, no
ansible-runner, no work-command, capacity 0)."""

from __future__ import annotations

from meshctl.core.hookspecs import hookimpl
from meshctl.core.types import Role


@hookimpl
def meshctl_register_roles(register):
    register(Role("hop", runs_work=False, provisionable=True, description="relays receptor traffic only"))
