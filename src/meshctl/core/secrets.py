"""Secret sources every plugin offers its users the same way: ``<kind>_env``,
``<kind>_file``, ``<kind>_command`` or (discouraged) the value itself in mesh.yml.
Registry passwords and AWX tokens both come from here; a secret never appears in
an error message, only where it came from."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable
from typing import Any

from meshctl.core.errors import MeshctlError, UsageError
from meshctl.core.files import SECRET_LIMIT, read_text, secret_file_problem
from meshctl.core.topology import resolve_path

#: A password command that hangs must not hang the run.
COMMAND_TIMEOUT = 60


def read_secret(topology: Any, what: str, kind: str, *, env: str | None = None, file: str | None = None,
                command: str | None = None, value: str | None = None) -> str | None:
    """The secret from the first source given (env, file, command, value); None when
    none is. ``what`` names the owner in errors ("registry r.example.com"), ``kind``
    the field family ("password" for password_env/_file/_command)."""
    if env is not None:
        found = os.environ.get(env)
        if found is None:
            raise MeshctlError(f"{what}: environment variable {env} is not set")
        return found
    if file is not None:
        path = resolve_path(topology, file)
        try:
            # The safe reader: a FIFO would block open(), /dev/zero would fill memory.
            return read_text(path, f"{what.split()[0]} {kind}_file", SECRET_LIMIT).rstrip("\n")
        except UsageError as exc:
            raise MeshctlError(f"{what}: {exc}") from None
    if command is not None:
        try:
            r = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MeshctlError(f"{what}: {kind}_command failed to run: {exc}") from None
        if r.returncode != 0:
            # Its output may hold the secret: say only that it failed.
            raise MeshctlError(f"{what}: {kind}_command exited {r.returncode}")
        return r.stdout.splitlines()[0] if r.stdout else ""
    return value


def report_secret_sources(topology: Any, what: str, kind: str, base: tuple, report: Callable[..., None], *,
                          env: str | None = None, file: str | None = None, value: str | None = None) -> None:
    """``meshctl validate``'s findings on a secret's sources, at their mesh.yml keys."""
    if value is not None:
        report(base + (kind,), f"{what}: plaintext {kind} in the topology file; "
               f"prefer {kind}_env, {kind}_file or {kind}_command", "warning")
    if env is not None and env not in os.environ:
        report(base + (f"{kind}_env",), f"{what}: environment variable {env} is not set")
    if file is not None:
        path = resolve_path(topology, file)
        found = secret_file_problem(path, f"{what.split()[0]} {kind}_file")
        if found is not None:
            report(base + (f"{kind}_file",), f"{what}: {found[1]}", found[0])
        if (found is None or found[0] != "error") and not os.access(path, os.R_OK):
            report(base + (f"{kind}_file",), f"{what}: cannot read {kind}_file {path}")
