"""The ``execution`` role: runs ``ansible-runner worker`` under receptor."""

from __future__ import annotations

from typing import Any

from meshctl.core import receptor as R
from meshctl.core.hookspecs import hookimpl
from meshctl.core.types import NodeContext, Role


@hookimpl
def meshctl_register_roles(register):
    register(Role("execution", runs_work=True, provisionable=True,
                  description="runs ansible-runner jobs in podman containers"))


@hookimpl
def meshctl_receptor_config(ctx: NodeContext) -> list[dict[str, Any]] | None:
    if ctx.node.role != "execution":
        return None
    # verifysignature turns on whenever a work-verification key is configured
    # (receptor.finalize_sections).
    return [{"work-command": {"worktype": "ansible-runner", "command": R.RUNNER, "params": "worker",
                              "allowruntimeparams": True, "verifysignature": False}}]
