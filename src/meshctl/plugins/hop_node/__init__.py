"""The ``hop`` role: a node that relays mesh traffic only (no podman, no
ansible-runner, no work-command, capacity 0)."""

from __future__ import annotations

from meshctl.plugin import Role, hookimpl


@hookimpl
def meshctl_register_roles(register):
    register(Role("hop", runs_work=False, provisionable=True, dot_shape="diamond", mermaid_shape=("{", "}"),
                  legend_order=2, description="relays receptor traffic only"))
