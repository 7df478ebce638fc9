"""Receptor release download and verification, against a release served on
loopback (the real GitHub is not reachable here; the HTTP client, tar handling
and checksum checks are the ones users run)."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import urllib.request
from pathlib import Path

import pytest

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


@pytest.fixture
def release(tmp_path):
    """Serve /v1.6.9/<tarball> and /v1.6.9/checksums.txt on 127.0.0.1."""
    files: dict[str, bytes] = {}
    data = tarball()
    name = B.tarball_name(VERSION, "amd64")
    files[f"/v{VERSION}/{name}"] = data
    files[f"/v{VERSION}/checksums.txt"] = f"{hashlib.sha256(data).hexdigest()}  {name}\n".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            if body is not None:
                self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"

    def opener(url: str):
        assert url.startswith(B.BASE_URL + "/")  # the URL pattern of the reference
        return urllib.request.urlopen(base + url[len(B.BASE_URL):], timeout=10)

    yield files, opener, data
    srv.shutdown()


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

    def fetch(version, arch, sha256=None):
        calls.append(version)
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
