"""Hostile input: FIFOs, devices, huge or sparse files, alias bombs, range bombs and
pathological values. Each must end quickly in one clean line naming the file, exit 2,
never a hang, a traceback or memory exhaustion. Run through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_topology import SEED

from meshctl.core.errors import UsageError
from meshctl.core.files import read_bytes, read_text

TIMEOUT = 60  # every run is bounded: a hang fails the test instead of the suite


def meshctl(*args: str, cwd: Path | None = None, timeout: float = TIMEOUT,
            **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, MESHCTL_DISABLE_PLUGIN_AUTOLOAD="1")
    r = subprocess.run([sys.executable, "-m", "meshctl", *args], capture_output=True, text=True,
                       cwd=cwd, env=env, timeout=timeout, **kw)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert "internal error" not in r.stderr, r.stderr
    return r


def one_line_error(r: subprocess.CompletedProcess, code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines, r.stderr
    assert len(lines[0]) < 400, lines[0][:400]
    return r.stderr


# -- the safe reader --------------------------------------------------------------


@pytest.fixture
def fifo(tmp_path):
    p = tmp_path / "pipe.yml"
    os.mkfifo(p)
    return p


def test_reader_refuses_fifo_without_blocking(fifo):
    with pytest.raises(UsageError, match=r"pipe\.yml: the topology file is a FIFO, not a regular file"):
        read_text(fifo, "topology file", 1 << 20)


def test_reader_refuses_directory_and_device(tmp_path):
    with pytest.raises(UsageError, match="is a directory, not a regular file"):
        read_bytes(tmp_path, "inventory", 1 << 20)
    with pytest.raises(UsageError, match="/dev/zero: the secret file is a character device"):
        read_bytes("/dev/zero", "secret file", 1 << 20)


def test_reader_caps_size_before_reading(tmp_path):
    sparse = tmp_path / "sparse.yml"
    with open(sparse, "wb") as fh:
        fh.truncate(4 << 30)  # 4 GiB of nothing: read whole it would exhaust memory
    with pytest.raises(UsageError, match=r"sparse\.yml: the topology file is larger than 1 MiB"):
        read_text(sparse, "topology file", 1 << 20)
    small = tmp_path / "small.txt"
    small.write_bytes(b"x" * 100)
    assert read_bytes(small, "file", 100) == b"x" * 100
    with pytest.raises(UsageError, match="larger than 99 bytes"):
        read_bytes(small, "file", 99)


def test_reader_caps_files_whose_size_lies():
    # /proc files report st_size 0; the cap must hold on what is read, not on fstat.
    with pytest.raises(UsageError, match="larger than 10 bytes"):
        read_bytes("/proc/self/status", "file", 10)


def test_reader_messages(tmp_path):
    with pytest.raises(UsageError, match=r"nope\.yml: no such topology file \(use -f FILE\)"):
        read_text(tmp_path / "nope.yml", "topology file", 10, missing="no such topology file (use -f FILE)")
    bad = tmp_path / "bad.yml"
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError, match=r"bad\.yml: not UTF-8 text"):
        read_text(bad, "topology file", 10)


@pytest.mark.parametrize("command", [
    ["validate", "-f", "{p}"],
    ["import", "aap-inventory", "{p}"],
])
def test_cli_fifo_is_refused_not_read(fifo, command):
    r = meshctl(*(a.replace("{p}", str(fifo)) for a in command), timeout=30)
    assert "is a FIFO, not a regular file" in one_line_error(r)


def test_cli_dev_zero_and_sparse(tmp_path):
    r = meshctl("validate", "-f", "/dev/zero")
    assert "/dev/zero: the topology file is a character device, not a regular file" in one_line_error(r)
    sparse = tmp_path / "big.ini"
    with open(sparse, "wb") as fh:
        fh.truncate(8 << 30)
    r = meshctl("import", "aap-inventory", str(sparse))
    assert f"{sparse}: the inventory file is larger than" in one_line_error(r)
    r = meshctl("validate", "-f", str(sparse))
    assert f"{sparse}: the topology file is larger than" in one_line_error(r)


def test_cli_topology_still_reads(tmp_path):
    (tmp_path / "mesh.yml").write_text(SEED)
    r = meshctl("validate", cwd=tmp_path)
    assert r.returncode == 0, r.stderr


def _tar(members: list[tuple[str, int]]) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, size in members:
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(b"\0" * size))
    return buf.getvalue()


def test_open_tar_bounds_members_and_unpacked_size():
    from meshctl.core.files import open_tar

    with open_tar(_tar([("a", 3), ("b", 4)]), "x.tar.gz") as tar:
        assert [m.name for m in tar.getmembers()] == ["a", "b"]
    with pytest.raises(UsageError, match=r"x\.tar\.gz: the bundle has more than 10 members"):
        open_tar(_tar([(f"m{i}", 0) for i in range(11)]), "x.tar.gz", members=10)
    # 8 MiB of zeros compress to a few KiB: the cap is on what it unpacks to.
    with pytest.raises(UsageError, match="unpacks to more than 1 MiB"):
        open_tar(_tar([("zeros", 8 << 20)]), "x.tar.gz", unpacked=1 << 20)
    with pytest.raises(UsageError, match="is not a tar archive"):
        open_tar(b"garbage" * 100, "x.tar.gz")


# -- YAML: alias bombs, huge and odd numbers ----------------------------------------

NODE_PORT = """\
mesh: edge
nodes:
  - name: awx-task
    role: control
    managed: false
    address: awx.example.com
    listener: {{port: 27199}}
  - name: exec01
    role: execution
    peers: [awx-task]
    ssh: {{port: {port}}}
"""


def _bomb(levels: int, width: int = 10) -> str:
    lines = ['a0: &a0 ["lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\nmesh: edge\nnodes: []\n"


def test_yaml_alias_bomb_is_refused(tmp_path):
    p = tmp_path / "bomb.yml"
    p.write_text(_bomb(9))  # 10**9 strings if expanded
    r = meshctl("validate", "-f", str(p), timeout=30)
    err = one_line_error(r)
    assert f"{p}:" in err and "aliases expand to more than" in err, err


@pytest.mark.parametrize("port,message", [
    ("9" * 5000, "nodes[1].ssh.port: integer of 5000 digits is too large"),
    ("-" + "9" * 5000, "nodes[1].ssh.port: integer of 5000 digits is too large"),
    ("0x" + "f" * 5000, "nodes[1].ssh.port: integer of 5000 digits is too large"),
])
def test_odd_numbers_are_located_errors(tmp_path, port, message):
    p = tmp_path / "mesh.yml"
    p.write_text(NODE_PORT.format(port=port))
    r = meshctl("validate", "-f", str(p))
    err = one_line_error(r)
    assert err.startswith(f"{p}:11:17: {message}"), err[:300]


def test_alias_to_a_merged_mapping_keeps_its_overrides():
    from meshctl.core import yamlpos

    # The alias used to re-read the flattened pairs as own keys: a false "duplicate
    # key" and the merged value instead of the override.
    loc, diags = yamlpos.load("x: &x {k: 1, j: 2}\nb: &b {<<: *x, k: 3}\nc: *b\n", "f.yml")
    assert diags == []
    assert loc.data["c"] == {"k": 3, "j": 2}

