"""Typed values from inventory variables: ports, addresses, booleans, ssh settings,
listeners, jump hosts and peers, each checked at the line that sets it."""

from __future__ import annotations

import re
import shlex
from typing import Any

from meshctl.plugin import DEFAULT_LISTENER_PORT, USER_GRAMMAR, valid_address, valid_user
from meshctl.plugin import shorten as _q
from meshctl.plugins.import_aap.ini import Inventory, Var, first_of, text_of

# Ansible accepts several spellings for connection variables; the first wins.
SSH_VARS: dict[str, tuple[str, ...]] = {
    "user": ("ansible_user", "ansible_ssh_user"),
    "port": ("ansible_port", "ansible_ssh_port"),
    "key": ("ansible_ssh_private_key_file", "ansible_private_key_file"),
    "become": ("ansible_become",),
}
HOST_VARS = ("ansible_host", "ansible_ssh_host")
JUMP_VARS = ("ansible_ssh_common_args", "ansible_ssh_extra_args")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def port_value(inv: Inventory, var: Var, what: str) -> int:
    text = text_of(var) or ""
    # ASCII digits only: int() also reads "２７１９９" and fails on "²".
    if not (text.isascii() and text.isdigit() and len(text) <= 5 and 1 <= int(text) <= 65535):
        raise inv.error(var.line, f"{what} must be a port number (1-65535), got {_q(text)}")
    return int(text)


def address_value(inv: Inventory, values: dict[str, Var], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` set, checked: peers dial it and ssh connects to it."""
    for name in names:
        if name in values:
            text = text_of(values[name])
            if not text or not valid_address(text):
                raise inv.error(values[name].line, f"{name} {_q(text)} is not a hostname or IP address")
            return text
    return None


def bool_value(inv: Inventory, var: Var, what: str) -> bool:
    text = (text_of(var) or "").lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise inv.error(var.line, f"{what} must be true or false, got {_q(text)}")


def ssh_values(inv: Inventory, values: dict[str, Var]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, names in SSH_VARS.items():
        var = first_of(values, names)
        if var is None:
            continue
        if key == "port":
            out[key] = port_value(inv, var, names[0])
        elif key == "become":
            out[key] = bool_value(inv, var, names[0])
        elif key == "user":
            user = text_of(var) or ""
            if not valid_user(user):
                name = next(n for n in names if n in values)
                raise inv.error(var.line, f"{name} {_q(user)} is not a user name ({USER_GRAMMAR})")
            out[key] = user
        else:
            out[key] = text_of(var)
    return out


def listener_values(inv: Inventory, values: dict[str, Var]) -> dict[str, Any]:
    out: dict[str, Any] = {"port": DEFAULT_LISTENER_PORT, "protocol": "tcp"}
    if (var := values.get("receptor_listener_port")) is not None:
        out["port"] = port_value(inv, var, "receptor_listener_port")
    if (var := values.get("receptor_listener_protocol")) is not None:
        proto = (text_of(var) or "").lower()
        if proto not in ("tcp", "ws"):
            raise inv.error(var.line, f"receptor_listener_protocol {_q(proto)} is not supported "
                            "(meshctl supports tcp and ws)")
        out["protocol"] = proto
    return out


def _jump_spec(args: list[str]) -> str | None:
    """The value of ``-J SPEC``, ``-JSPEC``, ``-o ProxyJump=SPEC`` or ``-oProxyJump SPEC``."""
    for i, arg in enumerate(args):
        following = args[i + 1] if i + 1 < len(args) else ""
        if arg.startswith("-J"):
            return arg[2:] or following or None
        if arg.startswith("-o"):
            option = arg[2:] or following
            key, _, value = option.replace(" ", "=", 1).partition("=")
            if key.strip().lower() == "proxyjump" and value.strip():
                return value.strip()
    return None


def jump_host(values: dict[str, Var]) -> tuple[str, Var] | None:
    """The first jump host named in ``ansible_ssh_common_args``/``_extra_args``, as a
    bare host name (the ``user@`` and ``:port`` are the jump node's own ssh settings)."""
    for name in JUMP_VARS:
        var = values.get(name)
        if var is None or not isinstance(var.value, str):
            continue
        try:
            spec = _jump_spec(shlex.split(var.value))
        except ValueError:  # unbalanced quotes: ssh would fail too, nothing to import
            continue
        if spec is None:
            continue
        host = spec.split(",", 1)[0].rpartition("@")[2]
        if host.startswith("["):  # [v6addr]:port
            host = host[1:].partition("]")[0]
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        return host, var
    return None


def peer_names(var: Var) -> list[str]:
    if isinstance(var.value, list):
        return [str(v).strip() for v in var.value if str(v).strip()]
    return [p.strip() for p in str(var.value).split(",") if p.strip()]


def sanitize_mesh_name(stem: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem)
    name = re.sub(r"^[^A-Za-z0-9]+", "", name)[:63].rstrip("-.")
    return name or "mesh"
