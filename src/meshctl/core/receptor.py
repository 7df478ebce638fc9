"""Receptor facts shared by plugins: paths on nodes, receptor.conf rendering."""

from __future__ import annotations

import json
import re
from typing import Any

import jinja2

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
BINARY = "/usr/bin/receptor"
UNIT_NAME = "receptor.service"
UNIT_FILE = f"/usr/lib/systemd/system/{UNIT_NAME}"
VENV = "/opt/meshctl/venv"
RUNNER = f"{VENV}/bin/ansible-runner"
RECEPTORCTL = f"{VENV}/bin/receptorctl"


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


class Octal(int):
    """An int written in octal (``permissions: 0660``), as receptor's docs show it."""


_PLAIN = re.compile(r"^[A-Za-z0-9_/][A-Za-z0-9_./:@\[\]-]*$")
_RESERVED = re.compile(r"^(?:y|n|yes|no|true|false|on|off|null|~|[-+]?[0-9][0-9_.:eE+-]*|\.inf|\.nan)$", re.I)


def scalar(value: Any) -> str:
    """One YAML scalar (or a JSON flow value, which YAML reads too). Hand-rolled
    because PyYAML's pure-Python emitter dominated planning time for big meshes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Octal):
        return f"0{value:o}"
    if isinstance(value, (int, float)):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, str):
        if _PLAIN.match(value) and not _RESERVED.match(value):
            return value
        return json.dumps(value)
    return json.dumps(value)


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("meshctl.core", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)
_ENV.filters["scalar"] = scalar
_TEMPLATE = _ENV.get_template("receptor.conf.j2")


def finalize_sections(sections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cross-plugin consistency: when some plugin configures work verification,
    every work-command verifies signatures (one without the other is pointless)."""
    if any("work-verification" in s for s in sections):
        for s in sections:
            if "work-command" in s:
                s["work-command"] = {**s["work-command"], "verifysignature": True}
    return sections


def order_sections(sections: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(sections, key=lambda s: _ORDER.get(next(iter(s)), 8))


def render_config(mesh: str, sections: list[dict[str, Any]]) -> str:
    # Scalars are formatted here rather than by a template filter: per-call filter
    # overhead dominated rendering for thousands of nodes.
    rows = []
    for section in order_sections(sections):
        for name, body in section.items():
            if isinstance(body, dict):
                rows.append((name, None, [(k, scalar(v)) for k, v in body.items()]))
            else:
                rows.append((name, scalar(body), ()))
    return _TEMPLATE.render(mesh=mesh, sections=rows)


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
RestartSec=5
LimitNOFILE=8192

[Install]
WantedBy=multi-user.target
"""
