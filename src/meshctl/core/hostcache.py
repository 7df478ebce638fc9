"""What meshctl last read from each host, kept on this machine by sha256, so a warm
run neither fetches file content it already has nor recomputes a fact derived
from an unchanged file (a key's public half).

Safe by construction: every run the host reports the sha256 of each file, and
cached content or values are used only for exactly that digest. Only what facts
carry is stored: file content meshctl reads is never a secret (secret files are
compared by digest only) and memoized facts are public by contract. Files are
0600 in 0700 directories; a damaged cache is ignored and rewritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

CACHE_ENV = "MESHCTL_CACHE_DIR"


def cache_root() -> Path:
    """``$MESHCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/meshctl``, else ``~/.cache/meshctl``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "meshctl"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name).lstrip(".") or "_"


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class HostCache:
    """One host's entry: ``files`` maps a path to the digest of the content kept in
    ``blobs/``; ``memo`` maps a fact key to the digest it was derived at and its value."""

    def __init__(self, root: Path, mesh: str, node: str, blobs: dict[str, bytes | None] | None = None):
        """``blobs``: verified blob contents to share between the hosts of one run
        (the CA certificate is the same file on every node)."""
        self.blobs = root / "blobs"
        self.index_path = root / "hosts" / _safe(mesh) / f"{_safe(node)}.json"
        self.files: dict[str, str] = {}
        self.memo: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(OSError, ValueError, AttributeError):
            data = json.loads(self.index_path.read_text())
            self.files = {str(k): str(v) for k, v in data.get("files", {}).items()}
            self.memo = {str(k): v for k, v in data.get("memo", {}).items()
                         if isinstance(v, dict) and isinstance(v.get("value"), dict)}
        self._dirty = False
        self._blobs: dict[str, bytes | None] = blobs if blobs is not None else {}

    def known_files(self) -> dict[str, str]:
        """Paths whose last content is at hand (and intact), with its digest."""
        return {p: d for p, d in self.files.items() if self.content(d) is not None}

    def content(self, digest: str) -> bytes | None:
        if digest not in self._blobs:
            try:
                data: bytes | None = (self.blobs / digest).read_bytes()
            except OSError:
                data = None
            self._blobs[digest] = data if data is not None and hashlib.sha256(data).hexdigest() == digest else None
        return self._blobs[digest]

    def memo_digests(self) -> dict[str, str]:
        return {k: str(v.get("digest", "")) for k, v in self.memo.items()}

    def remember_file(self, path: str, data: bytes) -> None:
        digest = hashlib.sha256(data).hexdigest()
        blob = self.blobs / digest
        if self.content(digest) is None:
            _write(blob, data)
            self._blobs[digest] = data
        if self.files.get(path) != digest:
            self.files[path] = digest
            self._dirty = True

    def remember_memo(self, key: str, digest: str, value: dict[str, Any]) -> None:
        entry = {"digest": digest, "value": value}
        if self.memo.get(key) != entry:
            self.memo[key] = entry
            self._dirty = True

    def save(self) -> None:
        if self._dirty:
            _write(self.index_path, json.dumps({"files": self.files, "memo": self.memo}, indent=1).encode())
            self._dirty = False
