"""Registry credentials: the built-in password sources, resolved once per run."""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
import subprocess
import threading
from typing import Any

from meshctl.plugin import (
    SECRET_LIMIT,
    MeshctlError,
    RegistryCredentials,
    UsageError,
    read_text,
    resolve_path,
)
from meshctl.plugins.registry_auth.model import Registry


def builtin_credentials(registry: Registry, topology: Any) -> RegistryCredentials | None:
    """The built-in sources: password_env, password_file, password_command, password."""
    if not registry.has_credentials:
        return None
    if registry.password_env is not None:
        value = os.environ.get(registry.password_env)
        if value is None:
            raise MeshctlError(f"registry {registry.host}: environment variable {registry.password_env} is not set")
    elif registry.password_file is not None:
        path = resolve_path(topology, registry.password_file)
        try:
            # The safe reader: a FIFO would block open(), /dev/zero would fill memory.
            value = read_text(path, "registry password_file", SECRET_LIMIT).rstrip("\n")
        except UsageError as exc:
            raise MeshctlError(f"registry {registry.host}: {exc}") from None
    elif registry.password_command is not None:
        try:
            r = subprocess.run(shlex.split(registry.password_command), capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MeshctlError(f"registry {registry.host}: password_command failed to run: {exc}") from None
        if r.returncode != 0:
            # Its output may hold the secret: say only that it failed.
            raise MeshctlError(f"registry {registry.host}: password_command exited {r.returncode}")
        value = r.stdout.splitlines()[0] if r.stdout else ""
    else:
        value = registry.password or ""
    return RegistryCredentials(registry.username or "", value)



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
