"""File operations: exact files, directories, absent paths, uploads."""

from __future__ import annotations

import base64
import difflib
import hashlib
import os
import posixpath
import threading
from dataclasses import dataclass
from typing import Any

from meshctl.core import facts as F
from meshctl.core.ops_base import (
    Change,
    Cmd,
    NoChange,
    Operation,
    OperationError,
    PlanResult,
    _mode,
    _q,
    attr_fixes,
    backup_commands,
)


@dataclass
class File(Operation):
    """A file with exact content, mode and ownership, written atomically
    (temporary file in the same directory, then rename)."""

    path: str = ""
    content: str | bytes = ""
    mode: str | int = "0644"
    owner: str = "root"
    group: str = "root"

    def __post_init__(self) -> None:
        self.id = self.id or f"file:{self.path}"
        self.description = self.description or self.path

    @property
    def data(self) -> bytes:
        return self.content.encode() if isinstance(self.content, str) else self.content

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.file_fact(self.path, content=not self.secret)]

    def write_commands(self) -> list[Cmd]:
        d = posixpath.dirname(self.path) or "/"
        body = base64.encodebytes(self.data).decode()
        return backup_commands(self.backup, self.path) + [
            Cmd(f"_tmp=$(mktemp {_q(d)}/.meshctl.XXXXXX)"),
            Cmd('base64 -d > "$_tmp"', stdin=body),
            Cmd(f'chown {_q(self.owner)}:{_q(self.group)} "$_tmp"'),
            Cmd(f'chmod {_mode(self.mode):04o} "$_tmp"'),
            Cmd(f'mv -f "$_tmp" {_q(self.path)}'),
            Cmd("_tmp="),
        ]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        fact = facts[f"file:{self.path}"]
        kind = fact.get("kind")
        if kind == "absent":
            return Change(self, "create", self.write_commands, diff=lambda: self._diff(b"", new=True))
        if kind != "file":
            raise OperationError(f"{self.path} exists but is a {kind}, not a regular file")
        want = hashlib.sha256(self.data).hexdigest()
        if fact.get("sha256") != want:
            return Change(self, "update content", self.write_commands,
                          diff=lambda: self._diff(F.decode_content(fact)))
        notes, cmds = attr_fixes(self.path, fact, _mode(self.mode), self.owner, self.group)
        if cmds:
            return Change(self, ", ".join(notes), cmds)
        return NoChange(self, "content, mode and owner match")

    def _diff(self, old: bytes | None, new: bool = False) -> str | None:
        if self.secret:
            return None
        if old is None:
            return "(previous content not shown: file too large or unreadable)"
        try:
            a = old.decode().splitlines(keepends=True)
            b = self.data.decode().splitlines(keepends=True)
        except UnicodeDecodeError:
            return "(binary content)"
        return "".join(
            difflib.unified_diff(a, b, "/dev/null" if new else self.path, self.path, n=2)
        )


@dataclass
class Directory(Operation):
    path: str = ""
    mode: str | int = "0755"
    owner: str = "root"
    group: str = "root"

    def __post_init__(self) -> None:
        self.id = self.id or f"dir:{self.path}"
        self.description = self.description or self.path + "/"

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.file_fact(self.path, content=False)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        fact = facts[f"file:{self.path}"]
        kind = fact.get("kind")
        p = _q(self.path)
        if kind == "absent":
            return Change(self, "create", [
                Cmd(f"mkdir -p {p}"),
                Cmd(f"chown {_q(self.owner)}:{_q(self.group)} {p}"),
                Cmd(f"chmod {_mode(self.mode):04o} {p}"),
            ])
        if kind != "dir":
            raise OperationError(f"{self.path} exists but is a {kind}, not a directory")
        notes, cmds = attr_fixes(self.path, fact, _mode(self.mode), self.owner, self.group)
        if cmds:
            return Change(self, ", ".join(notes), cmds)
        return NoChange(self, "exists with mode and owner")


@dataclass
class Absent(Operation):
    """A file or directory that must not exist (removal, cleanup of old layouts)."""

    path: str = ""

    def __post_init__(self) -> None:
        self.id = self.id or f"absent:{self.path}"
        self.description = self.description or f"{self.path} (absent)"

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.file_fact(self.path, content=False)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        if facts[f"file:{self.path}"].get("kind") == "absent":
            return NoChange(self, "already absent")
        return Change(self, "remove", [Cmd(f"rm -rf -- {_q(self.path)}")])


_digests: dict[tuple[str, int, int], str] = {}
_digests_lock = threading.Lock()


def _local_sha256(path: str) -> str:
    """Digest of a local file, once per run for every host uploading it (a
    wheelhouse to many nodes). Keyed by size and mtime: a file changed meanwhile
    is hashed again."""
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns)
    with _digests_lock:
        if key in _digests:
            return _digests[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    with _digests_lock:
        _digests[key] = h.hexdigest()
    return _digests[key]


@dataclass
class Upload(Operation):
    """A (large or binary) file copied from this machine by SFTP, then installed
    atomically with mode and owner: a receptor binary, Python wheels."""

    path: str = ""
    source: str = ""  # local path
    mode: str | int = "0644"
    owner: str = "root"
    group: str = "root"
    #: Compare size and mtime (the copy gets the source's mtime), as rsync does by
    #: default, instead of hashing the file on the host every run. For caches
    #: whose names pin their content (wheels); not for what runs as root.
    quick_check: bool = False

    def __post_init__(self) -> None:
        self.id = self.id or f"upload:{self.path}"
        self.description = self.description or self.path

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.file_fact(self.path, content=False, digest=not self.quick_check)]

    def _same(self, fact: dict[str, Any]) -> bool:
        if not self.quick_check:
            return fact.get("sha256") == self.local_sha256()
        st = os.stat(self.source)
        return fact.get("size") == st.st_size and fact.get("mtime") == int(st.st_mtime)

    def local_sha256(self) -> str:
        return _local_sha256(self.source)

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        fact = facts[f"file:{self.path}"]
        kind = fact.get("kind")
        if kind not in ("absent", "file"):
            raise OperationError(f"{self.path} exists but is a {kind}, not a regular file")
        size = os.path.getsize(self.source)
        if kind == "absent" or not self._same(fact):
            name = f"{len(self.path)}-{posixpath.basename(self.path)}"
            d, q = posixpath.dirname(self.path) or "/", _q(self.path)
            cmds = backup_commands(self.backup, self.path) + [
                Cmd(f"_tmp=$(mktemp {_q(d)}/.meshctl.XXXXXX)"),
                Cmd(f'cp "$_stage"/{_q(name)} "$_tmp"'),
                Cmd(f'chown {_q(self.owner)}:{_q(self.group)} "$_tmp"'),
                Cmd(f'chmod {_mode(self.mode):04o} "$_tmp"'),
                *([Cmd(f'touch -m -d @{int(os.stat(self.source).st_mtime)} "$_tmp"')] if self.quick_check else []),
                Cmd(f'mv -f "$_tmp" {q}'),
                Cmd("_tmp="),
            ]
            what = "upload" if kind == "absent" else (
                "replace (size or mtime differs)" if self.quick_check else "replace (checksum differs)")
            return Change(self, f"{what}, {size} bytes", cmds, uploads=[(self.source, name)])
        notes, cmds = attr_fixes(self.path, fact, _mode(self.mode), self.owner, self.group)
        if cmds:
            return Change(self, ", ".join(notes), cmds)
        return NoChange(self, f"{'size, mtime' if self.quick_check else 'checksum'}, mode and owner match")
