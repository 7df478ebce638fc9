"""Receptor facts shared by plugins: paths on nodes, receptor.conf rendering."""

from __future__ import annotations

import functools
import json
from typing import Any, Literal

from pydantic import Field, model_validator

from meshctl.core.topology import StrictModel
from meshctl.core.types import Role
from meshctl.core.writers import Octal as Octal  # re-exported: receptor.conf permissions
from meshctl.core.writers import yaml_scalar

CONF_DIR = "/etc/receptor"
CONF_FILE = f"{CONF_DIR}/receptor.conf"
TLS_DIR = f"{CONF_DIR}/tls"
CA_DIR = f"{TLS_DIR}/ca"
CA_FILE = f"{CA_DIR}/mesh-CA.crt"
WORK_PUBLIC_KEY = f"{CONF_DIR}/work_public_key.pem"
RUN_DIR = "/var/run/receptor"
SOCKET = f"{RUN_DIR}/receptor.sock"
LOG_DIR = "/var/log/receptor"
LOG_FILE = f"{LOG_DIR}/receptor.log"
LOGROTATE_FILE = "/etc/logrotate.d/receptor"
# Work units live here (receptor's default /tmp/receptor is lost on a tmpfs /tmp,
# aged out by systemd-tmpfiles, and can be pre-created by any local user).
DATA_DIR = "/var/lib/receptor"
BINARY = "/usr/bin/receptor"
UNIT_NAME = "receptor.service"
UNIT_FILE = f"/usr/lib/systemd/system/{UNIT_NAME}"
WORK_PRIVATE_KEY = f"{CONF_DIR}/work_private_key.pem"


def tls_client_name(role: Role) -> str:
    """Controllers name their TLS client as awx-operator does (AWX passes
    ``tlsclient`` to every submit); other nodes as AWX's install bundles do."""
    return "tlsclient" if role.controller else "tls_client"


def node_cert(node_id: str) -> str:
    return f"{TLS_DIR}/{node_id}.crt"


def node_key(node_id: str) -> str:
    return f"{TLS_DIR}/{node_id}.key"


# receptor reads sections in any order; this is the order AWX's bundle renders,
# so files compare cleanly with what users already have.
_ORDER = {
    "node": 0,
    "work-verification": 1,
    "log-level": 2,
    "control-service": 3,
    "tls-server": 4,
    "tls-client": 5,
    "tcp-listener": 6,
    "ws-listener": 6,
    "tcp-peer": 7,
    "ws-peer": 7,
    "work-signing": 8,
    "work-command": 9,
}


#: One YAML scalar as receptor's yaml.v2 reads it (see :func:`yaml_scalar`).
scalar = functools.partial(yaml_scalar, go=True)
#: Section names and keys repeat on every node: each is worked out once.
_name = functools.lru_cache(maxsize=4096, typed=True)(scalar)
_CACHED = frozenset({str, int, bool, type(None)})


def _value(v: Any) -> str:
    # Most values (paths, names, flags) are the same on every node.
    return _name(v) if type(v) in _CACHED else scalar(v)


def finalize_sections(sections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cross-plugin consistency: work-commands verify signatures exactly when some
    plugin configures work verification (receptor refuses to start with
    verifysignature and no key)."""
    verify = any("work-verification" in s for s in sections)
    for s in sections:
        if "work-command" in s:
            s["work-command"] = {**s["work-command"], "verifysignature": verify}
    return sections


# What `receptorctl reload` applies (receptor pkg/controlsvc/reload.go); a change to
# any other section makes it answer "restart needed" (exit 3).
RELOADABLE = frozenset({"tcp-peer", "ws-peer", "udp-peer", "tcp-listener", "ws-listener", "udp-listener",
                        "local-only"})


def restart_needed(old: str | None, new: str) -> bool:
    """Whether going from config ``old`` to ``new`` needs a restart rather than a
    reload: true when any non-backend section differs, or ``old`` is unreadable."""
    if old is None:
        return True
    import yaml

    try:
        before, after = yaml.safe_load(old), yaml.safe_load(new)
    except yaml.YAMLError:
        return True
    if not isinstance(before, list) or not isinstance(after, list):
        return True

    def fixed(items: list[Any]) -> list[str] | None:
        out = []
        for item in items:
            if not isinstance(item, dict) or len(item) != 1:
                return None
            if next(iter(item)) not in RELOADABLE:
                out.append(json.dumps(item, sort_keys=True, default=str))
        return sorted(out)

    a, b = fixed(before), fixed(after)
    return a is None or a != b


def order_sections(sections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(sections, key=lambda s: _ORDER.get(next(iter(s)), 8))


def render_config(mesh: str, sections: list[dict[str, Any]]) -> str:
    """receptor.conf: a YAML list of one-key mappings, every key and value through
    :func:`scalar` (quoted where yaml.v2 would read it as something else)."""
    out = [f"---\n# Managed by meshctl for mesh {scalar(mesh)}; local edits are overwritten.\n"]
    for section in order_sections(sections):
        for name, body in section.items():
            if isinstance(body, dict):
                out.append(f"- {_name(name)}:\n")
                out.extend(f"    {_name(k)}: {_value(v)}\n" for k, v in body.items())
            else:
                out.append(f"- {_name(name)}: {_value(body)}\n")
    return "".join(out)


class ReceptorSection(StrictModel):
    """``receptor:`` in mesh.yml: how receptor runs on provisioned nodes."""

    user: str = Field(default="awx", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    group: str = Field(default="awx", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    # Paths reach unit files, tmpfiles entries and shell commands: a plain absolute path only.
    home: str = Field(default="/home/awx", pattern=r"^/[A-Za-z0-9._/-]*$")
    # receptor's work units (node.datadir); not under /tmp, see receptor.DATA_DIR
    datadir: str = Field(default=DATA_DIR, pattern=r"^/[A-Za-z0-9._/-]*$")
    log_level: str = Field(default="info", pattern=r"^(error|warning|info|debug)$")
    start: bool = True
    mintls13: bool = False
    version: str = Field(default="1.6.9", pattern=r"^\d+\.\d+\.\d+([-+.][0-9A-Za-z.]+)?$")
    install: Literal["release", "package", "local", "none"] = "release"
    binary: str | None = None  # install: local -- a receptor binary on this machine
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    # install: release -- where releases are mirrored (GitHub's layout: <url>/v<version>/<tarball>)
    release_url: str | None = Field(default=None, pattern=r"^(https?|file)://[^\s]+$")

    @model_validator(mode="after")
    def _binary_for_local(self) -> ReceptorSection:
        if self.install == "local" and not self.binary:
            raise ValueError("install: local needs binary: PATH (the receptor binary to upload)")
        return self


def receptor_settings(ctx: Any) -> ReceptorSection:
    """The ``receptor:`` section of a node's topology, or its defaults."""
    return ctx.section("receptor") or ReceptorSection()


def reload_command(receptorctl: str = "receptorctl") -> str:
    """receptorctl reload; its exit 3 means "restart needed", which is done then
    rather than counted as a failure (that would roll the new files back).
    ``receptorctl`` is its path on the node (``Topology.tool("receptorctl")``)."""
    return (f"{receptorctl} --socket {SOCKET} reload; _rc=$?; "
            f"if [ $_rc -eq 3 ]; then systemctl restart {UNIT_NAME}; elif [ $_rc -ne 0 ]; then (exit $_rc); fi")


UNIT_TEMPLATE = """\
# Managed by meshctl.
[Unit]
Description=Receptor mesh node (meshctl)
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=0

[Service]
User={user}
Group={group}
ExecStart={binary} --config {config}
StandardOutput=append:{log}
StandardError=append:{log}
Restart=on-failure
# receptor does not handle SIGHUP: Go exits, and systemd counts that as clean.
RestartForceExitStatus=SIGHUP
RestartSec=5
# Stop only receptor itself: its work units (ansible-runner, podman) keep running
# and receptor re-attaches to them when it starts again.
KillMode=process
LimitNOFILE=8192
{extra}
[Install]
WantedBy=multi-user.target
"""

# receptor keeps its log open (systemd's append:), so rotate by copy and truncate.
LOGROTATE_TEMPLATE = """\
# Managed by meshctl.
{log} {{
    weekly
    maxsize 100M
    rotate 8
    compress
    delaycompress
    missingok
    notifempty
    copytruncate
}}
"""
