"""Hostile input: FIFOs, devices, huge or sparse files, alias bombs, range bombs and
pathological values. Each must end quickly in one clean line naming the file, exit 2,
never a hang, a traceback or memory exhaustion. Run through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from seed import EDGE, edge

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
    (tmp_path / "mesh.yml").write_text(EDGE)
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

def hop_ssh(ssh: str) -> str:
    """The seed with ``ssh: SSH`` on hop01 (nodes[1]), at line 14."""
    return edge({"    peers: [awx-task]\n": f"    peers: [awx-task]\n    ssh: {ssh}\n"})


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
    p.write_text(hop_ssh(f"{{port: {port}}}"))
    r = meshctl("validate", "-f", str(p))
    err = one_line_error(r)
    assert err.startswith(f"{p}:14:17: {message}"), err[:300]


def test_alias_to_a_merged_mapping_keeps_its_overrides():
    from meshctl.core import yamlpos

    # The alias used to re-read the flattened pairs as own keys: a false "duplicate
    # key" and the merged value instead of the override.
    loc, diags = yamlpos.load("x: &x {k: 1, j: 2}\nb: &b {<<: *x, k: 3}\nc: *b\n", "f.yml")
    assert diags == []
    assert loc.data["c"] == {"k": 3, "j": 2}


# -- AAP inventories: range bombs, slow parses, lines of the INI file ------------------

INVENTORY = """\
[automationcontroller]
ctrl1

[execution_nodes]
{line}
"""


def _inventory(tmp_path: Path, text: str, name: str = "inv.ini") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize("pattern", [
    "exec[0:9999999].example.com",  # one range of 10 million hosts
    "exec[0:99][0:99][0:99].example.com",  # nested: a million
    "exec[a:z][a:z][a:z][0:9]",  # letters too: 175,760
])
def test_aap_host_range_bombs_are_refused(tmp_path, pattern):
    p = _inventory(tmp_path, INVENTORY.format(line=pattern))
    r = meshctl("import", "aap-inventory", str(p), timeout=30)
    err = one_line_error(r)
    assert err.startswith(f"error: {p}:5: host range {pattern!r} expands to more than 10000 hosts"), err


def test_aap_host_ranges_total_is_bounded_too(tmp_path):
    lines = "\n".join(f"g{i}-[0:999]" for i in range(11))  # 11 x 1,000 hosts
    p = _inventory(tmp_path, INVENTORY.format(line=lines))
    r = meshctl("import", "aap-inventory", str(p), timeout=30)
    # ctrl1 plus ten lines of 1,000: line 14 is one host too many
    assert one_line_error(r).startswith(f"error: {p}:14: the inventory has more than 10000 hosts")


def test_aap_range_with_unicode_digits_is_an_error(tmp_path):
    p = _inventory(tmp_path, INVENTORY.format(line="exec[²:³]"))
    r = meshctl("import", "aap-inventory", str(p))
    assert one_line_error(r).startswith(f"error: {p}:5: bad host range [²:³]")


@pytest.mark.parametrize("text", [
    "[all:vars]\nfoo=a" + " " * 100_000 + "b\n" + INVENTORY.format(line="exec1"),
    INVENTORY.format(line="exec1" + "[" * 100_000),
    INVENTORY.format(line="exec1" + "[0:" * 50_000),
])
def test_aap_parser_is_linear(tmp_path, text):
    import time

    p = _inventory(tmp_path, text)
    start = time.monotonic()
    r = meshctl("import", "aap-inventory", str(p), timeout=30)
    assert time.monotonic() - start < 15
    assert r.returncode in (0, 2), r.stderr
    assert len(r.stderr) < 1000, r.stderr[:300]  # a message quotes a little, not 100 kB


@pytest.mark.parametrize("line,message", [
    ("exec1 ansible_port=²", "ansible_port must be a port number (1-65535), got '²'"),
    ("exec1:²", "ansible_port must be a port number (1-65535), got '²'"),
    ("exec1 ansible_port=２２", "ansible_port must be a port number (1-65535), got '２２'"),
    ("exec1 ansible_user='bad user'", "ansible_user 'bad user' is not a user name"),
    ("exec1 ansible_user=-oProxyCommand=x", "ansible_user '-oProxyCommand=x' is not a user name"),
    ("exec1 ansible_host='bad host'", "ansible_host 'bad host' is not a hostname or IP address"),
    ("exec1 ansible_host=-oProxyCommand=x", "ansible_host '-oProxyCommand=x' is not a hostname"),
    ("exec1 routable_hostname=a..b", "routable_hostname 'a..b' is not a hostname or IP address"),
    ("localhost", "node name 'localhost' is reserved by receptor"),
])
def test_aap_values_are_checked_at_the_ini_line(tmp_path, line, message):
    p = _inventory(tmp_path, INVENTORY.format(line=line))
    r = meshctl("import", "aap-inventory", str(p))
    err = one_line_error(r)
    assert err.startswith(f"error: {p}:5: {message}"), err
    assert "<converted" not in err


def test_aap_bom_does_not_shift_lines(tmp_path):
    p = tmp_path / "bom.ini"
    p.write_bytes(b"\xef\xbb\xbf" + INVENTORY.format(line="exec1 ansible_port=x").encode())
    r = meshctl("import", "aap-inventory", str(p))
    assert one_line_error(r).startswith(f"error: {p}:5: ansible_port must be a port number")
    p.write_bytes(b"\xef\xbb\xbf" + INVENTORY.format(line="exec1").encode())
    r = meshctl("import", "aap-inventory", str(p))
    assert r.returncode == 0 and "name: exec1" in r.stdout, r.stderr


@pytest.mark.parametrize("user", ['"root\\n"', "'bad user'", "-oProxyCommand=x", "'a;b'", "x" * 33])
def test_topology_ssh_user_is_a_user_name(tmp_path, user):
    p = tmp_path / "mesh.yml"
    p.write_text(hop_ssh(f"{{port: 22, user: {user}}}"))
    r = meshctl("validate", "-f", str(p))
    assert f"{p}:14:" in one_line_error(r) and "ssh.user: " in r.stderr and "is not a user name" in r.stderr


def test_topology_ssh_user_accepts_real_names(tmp_path, plugins):
    from meshctl.core.topology import parse_topology

    for user in ("cloud-user", "ec2_user", "john.doe", "alice@EXAMPLE.COM", "_svc"):
        parse_topology(hop_ssh(f"{{port: 22, user: {user}}}"), "m.yml", plugins)


# -- output files are written whole or not at all; messages print what they say --------


@pytest.fixture
def mesh(tmp_path):
    p = tmp_path / "mesh.yml"
    p.write_text(EDGE)
    return p


@pytest.mark.parametrize("command", [
    ["graph", "-f", "{mesh}", "--out", "{out}"],
    ["import", "aap-inventory", str(Path(__file__).parent / "data" / "aap" / "reference.ini"), "--out", "{out}"],
])
def test_output_into_a_missing_directory_is_a_usage_error(mesh, tmp_path, command):
    out = tmp_path / "no" / "such" / "dir" / "out.txt"
    r = meshctl(*(a.replace("{mesh}", str(mesh)).replace("{out}", str(out)) for a in command))
    assert f"{out}: cannot write: directory {out.parent} does not exist" in one_line_error(r)


def _limit_file_size(limit: int):
    def preexec() -> None:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG from write(), not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


@pytest.mark.parametrize("command", [
    ["graph", "-f", "{mesh}", "--format", "svg", "--out", "{out}"],
    ["import", "aap-inventory", str(Path(__file__).parent / "data" / "aap" / "reference.ini"), "--out", "{out}"],
])
def test_file_size_limit_leaves_the_old_file_whole(mesh, tmp_path, command):
    out = tmp_path / "out.txt"
    out.write_text("old content\n")
    args = [a.replace("{mesh}", str(mesh)).replace("{out}", str(out)) for a in command]
    r = meshctl(*args, preexec_fn=_limit_file_size(64))
    assert f"{out}: cannot write: File too large" in one_line_error(r, code=1)
    assert out.read_text() == "old content\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mesh.yml", "out.txt"]  # no temp file left


@pytest.mark.parametrize("name", ["[red]x[/red]", "a[/]b"])
def test_paths_with_brackets_are_printed_as_they_are(tmp_path, name):
    d = tmp_path / name  # "a[/]b" is a directory "a[" holding "]b"
    d.mkdir(parents=True)
    (d / "mesh.yml").write_text(EDGE)
    r = meshctl("validate", "-f", str(d / "mesh.yml"))
    assert r.returncode == 0, r.stderr
    assert f"{d / 'mesh.yml'}: valid" in r.stdout
    out = d / "out.yml"
    r = meshctl("import", "aap-inventory", str(Path(__file__).parent / "data" / "aap" / "reference.ini"),
                "--out", str(out))
    assert r.returncode == 0 and f"wrote {out}" in r.stderr, r.stderr


def test_messages_quote_a_long_value_not_all_of_it(tmp_path):
    p = tmp_path / "mesh.yml"
    p.write_text(EDGE.replace("mesh: edge", "mesh: " + "m" * 100_000))
    r = meshctl("validate", "-f", str(p))
    assert r.returncode == 2 and "mesh name 'mmmm" in r.stderr
    assert len(r.stderr) < 2500, len(r.stderr)


def test_unprintable_path_stays_on_one_line(tmp_path):
    p = tmp_path / "a\nb.yml"
    os.mkfifo(p)
    r = meshctl("validate", "-f", str(p))
    assert "'" in one_line_error(r) and "a\\nb.yml" in r.stderr and len(r.stderr.splitlines()) == 1


def test_scoped_ipv6_address_is_a_located_error(tmp_path):
    # A %scope names an interface of one machine: no certificate can carry it.
    p = tmp_path / "mesh.yml"
    p.write_text(EDGE.replace("ssh: {host: 192.0.2.10,", 'address: "fe80::1%eth0"\n    ssh: {host: 192.0.2.10,'))
    r = meshctl("validate", "-f", str(p))
    assert f"{p}:17:" in one_line_error(r) and "address 'fe80::1%eth0' is not a valid hostname" in r.stderr
