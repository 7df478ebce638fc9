"""The receptor binary: a pinned GitHub release (checksum verified, never
"latest"), the distribution's package, a local file (air-gapped), or none."""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import threading
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshctl.core import facts as F
from meshctl.core import receptor as R
from meshctl.core.errors import MeshctlError
from meshctl.core.ops import Change, NoChange, Operation, OperationError, PlanResult, Upload

ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
BASE_URL = "https://github.com/ansible/receptor/releases/download"
MAX_DOWNLOAD = 200 * 1024 * 1024
_VERSION_RE = re.compile(r"\d+\.\d+\.\d+(?:[-.+][0-9A-Za-z.]+)?")
_lock = threading.Lock()


def tarball_name(version: str, arch: str) -> str:
    return f"receptor_{version}_linux_{arch}.tar.gz"


def release_urls(version: str, arch: str) -> tuple[str, str]:
    """(tarball, checksums.txt) of a release, from the pinned tag."""
    base = f"{BASE_URL}/v{version}"
    return f"{base}/{tarball_name(version, arch)}", f"{base}/checksums.txt"


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
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "meshctl" / "receptor"


Opener = Callable[[str], Any]


def _get(url: str, opener: Opener, limit: int = MAX_DOWNLOAD) -> bytes:
    try:
        with opener(url) as resp:
            data = resp.read(limit + 1)
    except OSError as exc:
        raise MeshctlError(f"cannot download {url}: {exc}") from None
    if len(data) > limit:
        raise MeshctlError(f"{url} is larger than {limit} bytes")
    return data


def _default_opener(url: str) -> Any:
    return urllib.request.urlopen(url, timeout=60)  # noqa: S310 - https URL we build


def fetch_release(version: str, arch: str, sha256: str | None = None, cache: Path | None = None,
                  opener: Opener = _default_opener) -> Path:
    """The receptor binary of a release, downloaded once into the cache and checked
    against ``sha256`` (of the tarball) or, when not given, the release's checksums.txt."""
    goarch = ARCH.get(arch)
    if goarch is None:
        raise MeshctlError(f"no receptor release for architecture {arch!r} (have {', '.join(sorted(set(ARCH)))})")
    root = (cache or cache_dir()) / version / goarch
    binary = root / "receptor"
    with _lock:
        if binary.exists() and (root / "verified").exists():
            return binary
        tar_url, sums_url = release_urls(version, goarch)
        data = _get(tar_url, opener)
        digest = hashlib.sha256(data).hexdigest()
        if sha256:
            want, source = sha256.lower(), "receptor.sha256 in mesh.yml"
        else:
            sums = _get(sums_url, opener, 1024 * 1024).decode("utf-8", "replace")
            entry = [ln.split()[0] for ln in sums.splitlines() if ln.strip().endswith(tarball_name(version, goarch))]
            if not entry:
                raise MeshctlError(f"{sums_url} lists no checksum for {tarball_name(version, goarch)}")
            want, source = entry[0].lower(), sums_url
        if digest != want:
            raise MeshctlError(f"{tar_url}: sha256 {digest} does not match {want} ({source}); refusing it")
        member = _extract(data, tar_url)
        root.mkdir(parents=True, exist_ok=True)
        tmp = root / ".receptor.tmp"
        tmp.write_bytes(member)
        tmp.chmod(0o755)
        os.replace(tmp, binary)
        (root / "verified").write_text(f"{digest}  {tarball_name(version, goarch)}\n")
        return binary


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

    version: str = ""
    arch: str = ""
    sha256: str | None = None
    fetch: Callable[..., Path] = fetch_release

    def __post_init__(self) -> None:
        self.id = self.id or "receptor-binary"
        self.description = self.description or f"{R.BINARY} (release {self.version})"

    def facts(self, manager: str) -> list[F.Fact]:
        return [version_fact(), F.file_fact(R.BINARY, content=False)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        have = facts["version:receptor"]
        if have.get("installed") and have.get("version") == self.version:
            return NoChange(self, f"receptor {self.version} installed")
        what = f"install receptor {self.version}" + (f" (have {have['version']})" if have.get("installed") else "")
        change = Change(self, what + f" from {release_urls(self.version, ARCH.get(self.arch, self.arch))[0]}", [])

        def commands() -> list[Any]:
            binary = self.fetch(self.version, self.arch, self.sha256)
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
