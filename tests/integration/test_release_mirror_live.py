"""receptor.install: release from a mirror (receptor.release_url): meshctl downloads the
release on this machine from a mirror served on loopback, checks it against the mirror's
checksums.txt and uploads the binary to a real host, which cannot reach the mirror."""

from __future__ import annotations

import hashlib
import io
import tarfile

import pytest
from loopback_http import serve

from meshctl.core import receptor as R
from meshctl.core.engine import Engine, EngineSettings
from meshctl.core.plugins import create_plugin_manager
from meshctl.core.topology import parse_topology
from meshctl.core.transport import SSHOptions
from meshctl.plugins.base_node import binary as B

pytestmark = pytest.mark.integration

VERSION = "1.6.9"
# A receptor stand-in: the download, verification and upload are under test, not receptor.
PAYLOAD = b'#!/bin/sh\n[ "$1" = --version ] && echo "receptor version 1.6.9"\n'
PREFIX = "/receptor/releases/download"


def release_files(sums_digest: str | None = None) -> dict[str, bytes]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("receptor")
        info.size, info.mode = len(PAYLOAD), 0o755
        tar.addfile(info, io.BytesIO(PAYLOAD))
    data, name = buf.getvalue(), B.tarball_name(VERSION, "amd64")
    digest = sums_digest or hashlib.sha256(data).hexdigest()
    return {f"{PREFIX}/v{VERSION}/{name}": data, f"{PREFIX}/v{VERSION}/checksums.txt": f"{digest}  {name}\n".encode()}


@pytest.fixture
def mirror():
    """(files, base URL, requested paths) of a mirror on 127.0.0.1, shut down afterwards."""
    files: dict[str, bytes] = release_files()
    requests: list[str] = []

    with serve(files, requests) as root:
        yield files, f"{root}{PREFIX}/", requests


@pytest.fixture
def no_receptor_on_ops(minilab, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # not the user's receptor cache
    minilab.exec("ops", "rm", "-f", R.BINARY)
    yield
    minilab.exec("ops", "rm", "-f", R.BINARY)


def engine_for(minilab, release_url: str):
    plugins = create_plugin_manager(autoload=False)
    text = f"""\
mesh: mirror
defaults:
  ssh: {{user: root, key: {minilab.key}}}
receptor: {{start: false, install: release, version: "{VERSION}", release_url: "{release_url}"}}
nodes:
  - name: ops01
    role: execution
    address: {minilab.ip('ops')}
    listener: {{port: 27199}}
"""
    topo = parse_topology(text, str(minilab.workdir / "mesh-mirror.yml"), plugins)
    # Only the binary: the rest of a node is provisioned in test_provision.
    only = EngineSettings(op_filter=lambda op: op.id == "receptor-binary")
    return Engine(topo, plugins, ssh=SSHOptions(known_hosts=minilab.known_hosts), settings=only), topo.node("ops01")


def test_release_from_a_mirror_reaches_the_host(minilab, mirror, no_receptor_on_ops):
    files, base, requests = mirror
    engine, node = engine_for(minilab, base)
    (first,) = engine.apply([node])
    assert first.status == "changed", first.error
    (change,) = first.changes
    assert change.summary == f"install receptor {VERSION} from {base.rstrip('/')}/v{VERSION}/" \
                             f"receptor_{VERSION}_linux_amd64.tar.gz"
    assert sorted(requests) == sorted(files)  # tarball and checksums.txt, from this machine
    assert minilab.exec("ops", "cat", R.BINARY).stdout.encode() == PAYLOAD
    assert minilab.exec("ops", "stat", "-c", "%a %U", R.BINARY).stdout.split() == ["755", "root"]
    assert minilab.exec("ops", R.BINARY, "--version").stdout == "receptor version 1.6.9\n"

    requests.clear()
    (second,) = engine.apply([node])
    assert second.status == "ok" and second.changes == [], [c.summary for c in second.changes]
    assert requests == []  # the installed version answers: nothing downloaded


def test_a_mirror_with_a_wrong_checksum_leaves_the_host_untouched(minilab, mirror, no_receptor_on_ops):
    files, base, _ = mirror
    files.update(release_files(sums_digest="0" * 64))
    engine, node = engine_for(minilab, base)
    (res,) = engine.apply([node])
    assert res.status == "failed"
    assert f"does not match {'0' * 64} expected by {base}v{VERSION}/checksums.txt; refusing it" in res.error
    assert minilab.exec("ops", "test", "-e", R.BINARY, check=False).returncode != 0
