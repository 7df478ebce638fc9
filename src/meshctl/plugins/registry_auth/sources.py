"""Registry credentials: the built-in password sources, resolved once per run."""

from __future__ import annotations

import base64
import hashlib
import threading
from typing import Any

from meshctl.plugin import (
    MeshctlError,
    RegistryCredentials,
    read_secret,
)
from meshctl.plugins.registry_auth.model import Registry


def builtin_credentials(registry: Registry, topology: Any) -> RegistryCredentials | None:
    """The built-in sources: password_env, password_file, password_command, password."""
    if not registry.has_credentials:
        return None
    value = read_secret(topology, f"registry {registry.host}", "password", env=registry.password_env,
                        file=registry.password_file, command=registry.password_command, value=registry.password)
    return RegistryCredentials(registry.username or "", value or "")



_cred_cache: dict[tuple[int, str], RegistryCredentials | None] = {}
_cred_lock = threading.Lock()


def credentials(plugins: Any, topo: Any, registry: Registry, node: Any) -> RegistryCredentials | None:
    """Resolved once per run and registry (a password command runs once)."""
    key = (id(topo), registry.host)
    with _cred_lock:
        if key not in _cred_cache:
            creds = plugins.registry_credentials(registry, node, topo)
            if creds is None and registry.has_credentials:
                raise MeshctlError(f"registry {registry.host}: no plugin supplied credentials")
            _cred_cache[key] = creds
        return _cred_cache[key]


def auth_value(creds: RegistryCredentials) -> str:
    return base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def digest(auth: str) -> str:
    return hashlib.sha256(auth.encode()).hexdigest()
