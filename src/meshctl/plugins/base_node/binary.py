"""The receptor binary: a pinned GitHub release or a mirror of it (checksum verified,
never "latest"), the distribution's package, a local file (air-gapped), or none."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshctl.plugin import (
    Change,
    MeshctlError,
    NoChange,
    Operation,
    OperationError,
    PlanResult,
    Upload,
    cache_root,
)
from meshctl.plugin import facts as F
from meshctl.plugin import receptor as R

ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
BASE_URL = "https://github.com/ansible/receptor/releases/download"
MAX_DOWNLOAD = 200 * 1024 * 1024
_VERSION_RE = re.compile(r"\d+\.\d+\.\d+(?:[-.+][0-9A-Za-z.]+)?")
_lock = threading.Lock()
# binary -> (size, mtime_ns) whose sha256 was checked in this process: hosts share one hash.
_hashed: dict[Path, tuple[int, int]] = {}


def tarball_name(version: str, arch: str) -> str:
    return f"receptor_{version}_linux_{arch}.tar.gz"


def release_urls(version: str, arch: str, base_url: str | None = None) -> tuple[str, str]:
    """(tarball, checksums.txt) of a release, from the pinned tag, on GitHub or a mirror
    with GitHub's layout (``<base_url>/v<version>/...``)."""
    base = f"{(base_url or BASE_URL).rstrip('/')}/v{version}"
    return f"{base}/{tarball_name(version, arch)}", f"{base}/checksums.txt"


def shown_url(url: str) -> str:
    """`url` fit for plans and errors: credentials in it (user:pass@) are masked."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def version_fact() -> F.Fact:
    cmd = f"if [ -x {R.BINARY} ]; then {R.BINARY} --version 2>&1 | head -n 1; else echo absent; fi"
    return F.Fact(key="version:receptor", command=cmd, kind="version", parser=_parse_version)


def _parse_version(output: str, rc: int) -> dict[str, Any]:
    text = output.strip()
    if text == "absent" or not text:
        return {"installed": False, "version": ""}
    m = _VERSION_RE.search(text)
    return {"installed": True, "version": m.group(0) if m else text[:40]}


def cache_dir() -> Path:
    return cache_root() / "receptor"


Opener = Callable[[str], Any]


def _get(url: str, opener: Opener, limit: int = MAX_DOWNLOAD) -> bytes:
    try:
        with opener(url) as resp:
            data = resp.read(limit + 1)
    except OSError as exc:
        raise MeshctlError(f"cannot download {shown_url(url)}: {exc}") from None
    if len(data) > limit:
        raise MeshctlError(f"{shown_url(url)} is larger than {limit} bytes")
    return data


def _default_opener(url: str) -> Any:
    # http(s) or file:// only: mesh.yml's release_url pattern allows nothing else.
    return urllib.request.urlopen(url, timeout=60)  # noqa: S310


def fetch_release(version: str, arch: str, sha256: str | None = None, cache: Path | None = None,
                  opener: Opener = _default_opener, base_url: str | None = None) -> Path:
    """The receptor binary of a release, downloaded once into the cache and checked
    against ``sha256`` (of the tarball) or, when not given, the release's checksums.txt.

    The cache is keyed by version and architecture only, so a hit is trusted only when its
    recorded tarball digest equals the one expected now: the pinned ``sha256``, or the
    checksums.txt of this source (fetched again when another source verified the cache)."""
    goarch = ARCH.get(arch)
    if goarch is None:
        raise MeshctlError(f"no receptor release for architecture {arch!r} (have {', '.join(sorted(set(ARCH)))})")
    root = (cache or cache_dir()) / version / goarch
    binary = root / "receptor"
    name = tarball_name(version, goarch)
    tar_url, sums_url = release_urls(version, goarch, base_url)
    pinned = sha256.lower() if sha256 else None
    source = "receptor.sha256 in mesh.yml" if pinned else shown_url(sums_url)
    with _lock:
        want = pinned
        cached = _cached(root, binary)
        if cached is not None:
            if want is None:  # this source's checksums.txt, asked again if another verified the cache
                same = cached["checked_against"] == source
                want = cached["sha256"] if same else _listed_digest(sums_url, name, opener)
            if cached["sha256"] == want:
                return binary
        data = _get(tar_url, opener)
        digest = hashlib.sha256(data).hexdigest()
        want = want or _listed_digest(sums_url, name, opener)
        if digest != want:
            raise MeshctlError(f"{shown_url(tar_url)}: sha256 {digest} does not match {want} expected by "
                               f"{source}; refusing it")
        member = _extract(data, shown_url(tar_url))
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / ".receptor.tmp"
        tmp.write_bytes(member)
        tmp.chmod(0o755)
        os.replace(tmp, binary)
        record = {"tarball": name, "sha256": digest, "checked_against": source, "url": shown_url(tar_url),
                  "binary_sha256": hashlib.sha256(member).hexdigest()}
        (root / "verified").write_text(json.dumps(record, indent=1) + "\n")
        return binary


def _listed_digest(sums_url: str, name: str, opener: Opener) -> str:
    """The sha256 checksums.txt (sha256sum's format) gives for `name`."""
    sums = _get(sums_url, opener, 1024 * 1024).decode("utf-8", "replace")
    for line in sums.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == name:  # "*name": sha256sum --binary
            return parts[0].lower()
    raise MeshctlError(f"{shown_url(sums_url)} lists no checksum for {name}")


def _cached(root: Path, binary: Path) -> dict[str, str] | None:
    """The record of a cached binary whose bytes are still the ones verified, else None
    (also for caches written before records were JSON: they are downloaded again)."""
    try:
        record = json.loads((root / "verified").read_text())
        st = binary.stat()
        if _hashed.get(binary) != (st.st_size, st.st_mtime_ns):
            if hashlib.sha256(binary.read_bytes()).hexdigest() != record["binary_sha256"]:
                return None
            _hashed[binary] = (st.st_size, st.st_mtime_ns)
        return {k: str(record[k]) for k in ("sha256", "checked_against")}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _extract(data: bytes, url: str) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for m in tar.getmembers():
                if m.isfile() and Path(m.name).name == "receptor":
                    fh = tar.extractfile(m)
                    if fh is not None:
                        return fh.read()
    except (tarfile.TarError, OSError) as exc:
        raise MeshctlError(f"{url}: not a readable tarball ({exc})") from None
    raise MeshctlError(f"{url}: no 'receptor' binary inside")


@dataclass
class ReleaseBinary(Operation):
    """/usr/bin/receptor from a pinned release. Planned by version (no download
    needed to know nothing changes); the download happens only when applying."""

    default_category = "receptor binary"

    version: str = ""
    arch: str = ""
    sha256: str | None = None
    base_url: str | None = None  # a mirror with GitHub's layout; None: GitHub
    fetch: Callable[..., Path] = fetch_release

    def __post_init__(self) -> None:
        self.id = self.id or "receptor-binary"
        mirror = f" from {shown_url(self.base_url.rstrip('/'))}" if self.base_url else ""
        self.description = self.description or f"{R.BINARY} (release {self.version}{mirror})"

    def facts(self, manager: str) -> list[F.Fact]:
        return [version_fact(), F.file_fact(R.BINARY, content=False)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        have = facts["version:receptor"]
        if have.get("installed") and have.get("version") == self.version:
            return NoChange(self, f"receptor {self.version} installed")
        what = f"install receptor {self.version}" + (f" (have {have['version']})" if have.get("installed") else "")
        url = release_urls(self.version, ARCH.get(self.arch, self.arch), self.base_url)[0]
        change = Change(self, f"{what} from {shown_url(url)}", [])

        def commands() -> list[Any]:
            binary = self.fetch(self.version, self.arch, self.sha256, base_url=self.base_url)
            upload = Upload(path=R.BINARY, source=str(binary), mode="0755", backup=self.backup)
            planned = upload.plan({f"file:{R.BINARY}": {"kind": "absent"}}, set(), manager)
            assert isinstance(planned, Change)
            change.uploads = planned.uploads
            return planned.commands

        change._commands = commands
        return change


@dataclass
class BinaryPresent(Operation):
    """install: none -- receptor comes by other means; meshctl only checks it."""

    default_category = "receptor binary"

    required: bool = True

    def __post_init__(self) -> None:
        self.id = self.id or "receptor-binary"
        self.description = self.description or f"{R.BINARY} (installed by other means)"

    def facts(self, manager: str) -> list[F.Fact]:
        return [version_fact()]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        have = facts["version:receptor"]
        if have.get("installed"):
            return NoChange(self, f"receptor {have['version']} present")
        if self.required:
            raise OperationError(f"{R.BINARY} is missing and receptor.install is none: install receptor, "
                                 "or choose install: release | package | local")
        return NoChange(self, "not installed; not needed while receptor.start is false")
