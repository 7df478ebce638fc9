"""Receptor release download and verification, against a release (GitHub's URLs, or a
mirror's) served on loopback (the real GitHub is not reachable here; the HTTP client,
tar handling and checksum checks are the ones users run)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from loopback_http import serve

from meshctl.core.errors import MeshctlError
from meshctl.core.ops import Change, NoChange
from meshctl.plugins.base_node import binary as B

VERSION = "1.6.9"


def tarball(content: bytes = b"#!/bin/sh\necho 1.6.9\n") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in (("LICENSE", b"Apache-2.0\n"), ("receptor", content)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# A receptor stand-in: tests the download/verify/extract path, not receptor.
PAYLOAD = b'#!/bin/sh\n[ "$1" = --version ] && echo "receptor version 1.6.9"\n'
MIRROR_PATH = "/mirror/receptor/releases/download"


@dataclass
class Served:
    files: dict[str, bytes]  # path -> body; what is absent answers 404
    root: str  # http://127.0.0.1:PORT
    requests: list[str] = field(default_factory=list)

    def put_release(self, prefix: str, data: bytes, sums: bytes | None = None) -> None:
        name = B.tarball_name(VERSION, "amd64")
        self.files[f"{prefix}/v{VERSION}/{name}"] = data
        self.files[f"{prefix}/v{VERSION}/checksums.txt"] = (
            sums if sums is not None else f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode())


@pytest.fixture
def server():
    """An HTTP server on 127.0.0.1 (port 0) serving `files`, shut down afterwards."""
    served = Served(files={}, root="")

    with serve(served.files, served.requests) as root:
        served.root = root
        yield served


@pytest.fixture
def release(server):
    """GitHub's release URLs, answered by the loopback server: /v1.6.9/<tarball>, checksums.txt."""
    data = tarball()
    server.put_release("", data)

    def opener(url: str):
        assert url.startswith(B.BASE_URL + "/")  # the URL pattern of the reference
        return urllib.request.urlopen(server.root + url[len(B.BASE_URL):], timeout=10)

    return server.files, opener, data


@pytest.fixture
def mirror(server):
    """A mirror of the release under MIRROR_PATH, fetched with the real default opener."""
    data = tarball(PAYLOAD)
    server.put_release(MIRROR_PATH, data)
    return server, server.root + MIRROR_PATH, data


def fetch_mirror(base: str, cache: Path, **kw) -> Path:
    return B.fetch_release(VERSION, "x86_64", cache=cache, base_url=base, **kw)


def cache_files(cache: Path) -> list[str]:
    return sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def test_urls_follow_the_release_pattern():
    assert B.release_urls("1.4.9", "arm64") == (
        "https://github.com/ansible/receptor/releases/download/v1.4.9/receptor_1.4.9_linux_arm64.tar.gz",
        "https://github.com/ansible/receptor/releases/download/v1.4.9/checksums.txt",
    )


def test_download_verified_against_release_checksums_and_cached(release, tmp_path):
    files, opener, _ = release
    path = B.fetch_release(VERSION, "x86_64", cache=tmp_path, opener=opener)
    assert path.read_bytes() == b"#!/bin/sh\necho 1.6.9\n" and path.stat().st_mode & 0o111
    files.clear()  # the cache answers now
    assert B.fetch_release(VERSION, "x86_64", cache=tmp_path, opener=opener) == path


def test_checksum_mismatch_and_missing_entries_are_refused(release, tmp_path):
    files, opener, data = release
    with pytest.raises(MeshctlError, match="does not match"):
        B.fetch_release(VERSION, "x86_64", sha256="0" * 64, cache=tmp_path / "a", opener=opener)
    files[f"/v{VERSION}/checksums.txt"] = b"deadbeef  receptor_1.6.9_linux_amd64.tar.gz\n"
    with pytest.raises(MeshctlError, match="refusing it"):
        B.fetch_release(VERSION, "x86_64", cache=tmp_path / "b", opener=opener)
    files[f"/v{VERSION}/checksums.txt"] = b"abc  something_else.tar.gz\n"
    with pytest.raises(MeshctlError, match="lists no checksum"):
        B.fetch_release(VERSION, "x86_64", cache=tmp_path / "c", opener=opener)
    # A configured hash is enough on its own.
    ok = B.fetch_release(VERSION, "x86_64", sha256=hashlib.sha256(data).hexdigest(), cache=tmp_path / "d",
                         opener=opener)
    assert ok.exists()
    with pytest.raises(MeshctlError, match="no receptor release for architecture 's390x'"):
        B.fetch_release(VERSION, "s390x", cache=tmp_path / "e", opener=opener)


def test_not_a_tarball_or_no_binary(release, tmp_path):
    files, opener, _ = release
    name = f"/v{VERSION}/{B.tarball_name(VERSION, 'amd64')}"
    files[name] = b"<html>not found</html>"
    with pytest.raises(MeshctlError, match="not a readable tarball"):
        B.fetch_release(VERSION, "x86_64", sha256=hashlib.sha256(files[name]).hexdigest(), cache=tmp_path,
                        opener=opener)


def test_release_op_plans_by_version_and_downloads_only_when_applying(release, tmp_path):
    _, opener, _ = release
    calls = []

    def fetch(version, arch, sha256=None, base_url=None):
        calls.append(version)
        assert base_url is None
        return B.fetch_release(version, arch, sha256, cache=tmp_path, opener=opener)

    op = B.ReleaseBinary(version=VERSION, arch="x86_64", fetch=fetch)
    same = op.plan({"version:receptor": {"installed": True, "version": VERSION}}, set(), "apt")
    assert isinstance(same, NoChange) and calls == []
    old = op.plan({"version:receptor": {"installed": True, "version": "1.4.9"}}, set(), "apt")
    assert isinstance(old, Change) and old.summary.startswith("install receptor 1.6.9 (have 1.4.9) from https://")
    assert calls == []  # planning downloads nothing
    cmds = [c.line for c in old.commands]
    assert calls == [VERSION]
    assert old.uploads and Path(old.uploads[0][0]).read_bytes().startswith(b"#!/bin/sh")
    assert cmds[-2] == "mv -f \"$_tmp\" /usr/bin/receptor" and "chmod 0755 \"$_tmp\"" in cmds


def test_version_fact_parsing():
    assert B._parse_version("absent\n", 0) == {"installed": False, "version": ""}
    assert B._parse_version("1.4.9\n", 0) == {"installed": True, "version": "1.4.9"}
    assert B._parse_version("receptor version 1.6.9+g1234\n", 0)["version"] == "1.6.9+g1234"


# -- a release mirror (receptor.release_url) ----------------------------------


def test_urls_on_a_mirror_drop_a_trailing_slash():
    assert B.release_urls("1.6.9", "amd64", "https://mirror.example/receptor/") == (
        "https://mirror.example/receptor/v1.6.9/receptor_1.6.9_linux_amd64.tar.gz",
        "https://mirror.example/receptor/v1.6.9/checksums.txt",
    )


def test_mirror_download_is_verified_executable_and_cached(mirror, tmp_path):
    server, base, _ = mirror
    path = fetch_mirror(base, tmp_path)
    assert path.read_bytes() == PAYLOAD and os.access(path, os.X_OK)
    out = subprocess.run([str(path), "--version"], capture_output=True, text=True, timeout=10, check=True).stdout
    assert B._parse_version(out, 0) == {"installed": True, "version": VERSION}
    assert server.requests == [f"{MIRROR_PATH}/v{VERSION}/receptor_1.6.9_linux_amd64.tar.gz",
                               f"{MIRROR_PATH}/v{VERSION}/checksums.txt"]
    record = json.loads((path.parent / "verified").read_text())
    assert record["checked_against"] == f"{base}/v{VERSION}/checksums.txt"
    server.files.clear()  # the cache answers now, without asking the mirror
    server.requests.clear()
    assert fetch_mirror(base, tmp_path) == path and server.requests == []


def test_mirror_with_a_wrong_checksum_is_refused_and_nothing_is_cached(mirror, tmp_path):
    server, base, data = mirror
    got = hashlib.sha256(data).hexdigest()
    listed = hashlib.sha256(b"another tarball").hexdigest()
    server.put_release(MIRROR_PATH, data, f"{listed}  receptor_1.6.9_linux_amd64.tar.gz\n".encode())
    with pytest.raises(MeshctlError) as exc:
        fetch_mirror(base, tmp_path / "cache")
    msg = str(exc.value)
    assert "\n" not in msg
    assert msg == (f"{base}/v{VERSION}/receptor_1.6.9_linux_amd64.tar.gz: sha256 {got} does not match {listed} "
                   f"expected by {base}/v{VERSION}/checksums.txt; refusing it")
    assert cache_files(tmp_path / "cache") == []


def test_mirror_tarball_missing_from_checksums_is_refused(mirror, tmp_path):
    server, base, data = mirror
    # Only a name that ends like ours: the entry must name the tarball exactly.
    sums = f"{hashlib.sha256(data).hexdigest()}  old-receptor_1.6.9_linux_amd64.tar.gz\n".encode()
    server.put_release(MIRROR_PATH, data, sums)
    with pytest.raises(MeshctlError, match=rf"^{base}/v{VERSION}/checksums.txt lists no checksum for "
                                           r"receptor_1\.6\.9_linux_amd64\.tar\.gz$"):
        fetch_mirror(base, tmp_path)
    assert cache_files(tmp_path) == []


def test_sha256sum_binary_mode_entries_are_read(mirror, tmp_path):
    server, base, data = mirror
    server.put_release(MIRROR_PATH, data,
                       f"{hashlib.sha256(data).hexdigest().upper()} *receptor_1.6.9_linux_amd64.tar.gz\n".encode())
    assert fetch_mirror(base, tmp_path).read_bytes() == PAYLOAD


def test_pinned_sha256_overrides_the_mirror_checksums(mirror, tmp_path):
    server, base, data = mirror
    server.put_release(MIRROR_PATH, data, b"0" * 64 + b"  receptor_1.6.9_linux_amd64.tar.gz\n")
    pin = hashlib.sha256(data).hexdigest().upper()
    assert fetch_mirror(base, tmp_path, sha256=pin).read_bytes() == PAYLOAD
    assert not any(r.endswith("checksums.txt") for r in server.requests)
    # ...and a pin is checked even when checksums.txt agrees with the tarball.
    server.put_release(MIRROR_PATH, data)
    with pytest.raises(MeshctlError, match="expected by receptor.sha256 in mesh.yml; refusing it"):
        fetch_mirror(base, tmp_path / "other", sha256="1" * 64)
    assert cache_files(tmp_path / "other") == []


def test_base_url_with_a_trailing_slash(mirror, tmp_path):
    server, base, _ = mirror
    assert fetch_mirror(base + "/", tmp_path).read_bytes() == PAYLOAD
    assert all("//" not in r for r in server.requests) and len(server.requests) == 2


def test_file_url_mirror(tmp_path):
    data = tarball(PAYLOAD)
    release_dir = tmp_path / "mirror" / f"v{VERSION}"
    release_dir.mkdir(parents=True)
    (release_dir / B.tarball_name(VERSION, "amd64")).write_bytes(data)
    (release_dir / "checksums.txt").write_text(f"{hashlib.sha256(data).hexdigest()}  "
                                               f"{B.tarball_name(VERSION, 'amd64')}\n")
    base = (tmp_path / "mirror").as_uri()
    assert base.startswith("file:///")
    assert fetch_mirror(base, tmp_path / "cache").read_bytes() == PAYLOAD
    with pytest.raises(MeshctlError, match=r"^cannot download file:///.*/nowhere/v1\.6\.9/receptor_1\.6\.9"):
        fetch_mirror((tmp_path / "nowhere").as_uri(), tmp_path / "cache2")


def test_cache_verified_by_one_source_is_rechecked_for_another(release, mirror, tmp_path):
    """The cache is keyed by version and architecture: a hit verified against GitHub's
    checksums.txt counts for a mirror only if the mirror's checksums.txt names the same digest."""
    server, base, mirror_data = mirror
    _, github_opener, github_data = release
    from_github = B.fetch_release(VERSION, "x86_64", cache=tmp_path, opener=github_opener)
    assert from_github.read_bytes() == b"#!/bin/sh\necho 1.6.9\n"

    # The mirror lists another digest (and serves a tarball that does not match it): the
    # cached binary is not handed out, nor is the mirror's.
    listed = hashlib.sha256(b"what the mirror claims").hexdigest()
    server.put_release(MIRROR_PATH, mirror_data, f"{listed}  receptor_1.6.9_linux_amd64.tar.gz\n".encode())
    with pytest.raises(MeshctlError, match=f"does not match {listed}"):
        fetch_mirror(base, tmp_path)

    # A mirror with other, self-consistent content replaces it.
    server.put_release(MIRROR_PATH, mirror_data)
    assert fetch_mirror(base, tmp_path).read_bytes() == PAYLOAD

    # The same bytes as the cache: only checksums.txt is asked for.
    server.put_release(MIRROR_PATH, github_data)
    B.fetch_release(VERSION, "x86_64", cache=tmp_path, opener=github_opener)  # back to GitHub's build
    server.requests.clear()
    assert fetch_mirror(base, tmp_path).read_bytes() == b"#!/bin/sh\necho 1.6.9\n"
    assert server.requests == [f"{MIRROR_PATH}/v{VERSION}/checksums.txt"]

    # A pin other than the cached digest is never answered from the cache.
    with pytest.raises(MeshctlError, match="expected by receptor.sha256 in mesh.yml"):
        fetch_mirror(base, tmp_path, sha256="2" * 64)


def test_a_changed_cached_binary_is_downloaded_again(mirror, tmp_path):
    server, base, _ = mirror
    path = fetch_mirror(base, tmp_path)
    path.write_bytes(b"#!/bin/sh\necho tampered\n")
    server.requests.clear()
    assert fetch_mirror(base, tmp_path).read_bytes() == PAYLOAD
    assert len(server.requests) == 2


def test_cache_of_an_older_meshctl_is_downloaded_again(mirror, tmp_path):
    server, base, data = mirror
    root = tmp_path / VERSION / "amd64"
    root.mkdir(parents=True)
    (root / "receptor").write_bytes(b"old")
    (root / "verified").write_text(f"{hashlib.sha256(data).hexdigest()}  receptor_1.6.9_linux_amd64.tar.gz\n")
    assert fetch_mirror(base, tmp_path).read_bytes() == PAYLOAD


def test_plan_shows_the_mirror_url(mirror, tmp_path):
    server, base, _ = mirror
    seen = []

    def fetch(version, arch, sha256=None, base_url=None):
        seen.append(base_url)
        return B.fetch_release(version, arch, sha256, cache=tmp_path, base_url=base_url)

    op = B.ReleaseBinary(version=VERSION, arch="x86_64", base_url=base + "/", fetch=fetch)
    assert op.description == f"/usr/bin/receptor (release {VERSION} from {base})"
    change = op.plan({"version:receptor": {"installed": False}}, set(), "apt")
    assert isinstance(change, Change)
    assert change.summary == f"install receptor {VERSION} from {base}/v{VERSION}/receptor_1.6.9_linux_amd64.tar.gz"
    assert server.requests == []  # planning downloads nothing
    change.commands  # noqa: B018 - building the commands downloads
    assert seen == [base + "/"] and Path(change.uploads[0][0]).read_bytes() == PAYLOAD


def test_credentials_in_a_mirror_url_are_not_shown():
    op = B.ReleaseBinary(version=VERSION, arch="x86_64", base_url="https://user:s3cret@mirror.example/rel")
    change = op.plan({"version:receptor": {"installed": False}}, set(), "apt")
    assert "s3cret" not in op.description + change.summary
    assert B.shown_url("https://user:s3cret@mirror.example/rel") == "https://***@mirror.example/rel"
    assert B.shown_url("https://mirror.example/rel") == "https://mirror.example/rel"
