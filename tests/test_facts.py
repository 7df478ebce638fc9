"""The batched fact script, run for real by a local sh against real files."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import subprocess

import pytest

from meshctl.core import facts as F
from meshctl.core import factscript


def run_batch(facts):
    script, boundary = factscript.batch_script(facts)
    out = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return factscript.parse_batch(facts, out.stdout, boundary)


def test_file_facts(tmp_path):
    f = tmp_path / "conf"
    f.write_text("line one\nline two\n")
    f.chmod(0o640)
    d = tmp_path / "dir"
    d.mkdir(mode=0o750)
    d.chmod(0o750)
    weird = tmp_path / "it's here"
    weird.write_bytes(b"\x00\x01binary")
    facts = [F.file_fact(str(f)), F.file_fact(str(d)), F.file_fact(str(tmp_path / "missing")),
             F.file_fact(str(weird))]
    got = run_batch(facts)
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    conf = got[f"file:{f}"]
    assert conf["kind"] == "file" and conf["mode"] == "640" and conf["owner"] == me and conf["group"] == group
    assert conf["sha256"] == hashlib.sha256(f.read_bytes()).hexdigest()
    assert F.decode_content(conf) == f.read_bytes()
    assert got[f"file:{d}"]["kind"] == "dir" and got[f"file:{d}"]["mode"] == "750"
    assert got[f"file:{tmp_path / 'missing'}"] == {"kind": "absent"}
    assert F.decode_content(got[f"file:{weird}"]) == b"\x00\x01binary"


def test_large_file_is_hashed_not_transferred(tmp_path):
    big = tmp_path / "big"
    big.write_bytes(b"x" * (F.CONTENT_LIMIT + 1))
    got = run_batch([F.file_fact(str(big))])[f"file:{big}"]
    assert got["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    assert "content_b64" not in got


def test_output_that_looks_like_markers_does_not_confuse_the_parser(tmp_path):
    tricky = tmp_path / "t"
    tricky.write_text("@@meshctl-0000 rc 0\nkind=absent\n")
    got = run_batch([F.file_fact(str(tricky)), F.command_fact("echo rc=7; exit 3")])
    assert F.decode_content(got[f"file:{tricky}"]) == tricky.read_bytes()
    assert got["rc:echo rc=7; exit 3"] == {"rc": 3}


def test_users_groups_commands_exist():
    got = run_batch([F.user_fact("root"), F.user_fact("no-such-user-xyz"), F.group_fact("root"),
                     F.group_fact("no-such-group-xyz"), F.exists_fact("/"), F.exists_fact("/nope"),
                     F.command_fact("true"), F.command_fact("false")])
    assert got["user:root"]["exists"] and got["user:root"]["uid"] == 0
    assert got["user:no-such-user-xyz"] == {"exists": False}
    assert got["group:root"]["exists"] and got["group:root"]["gid"] == 0
    assert got["group:no-such-group-xyz"] == {"exists": False}
    assert got["exists:/"] == {"rc": 0} and got["exists:/nope"] == {"rc": 1}
    assert got["rc:true"] == {"rc": 0} and got["rc:false"] == {"rc": 1}


def test_apt_package_fact_on_this_machine():
    got = run_batch([F.package_fact("coreutils", "apt"), F.package_fact("no-such-package-xyz", "apt")])
    assert got["package:apt:coreutils"]["installed"] is True
    assert got["package:apt:coreutils"]["version"]
    assert got["package:apt:no-such-package-xyz"] == {"installed": False, "version": ""}


def test_os_release_parsing():
    text = 'NAME="Rocky Linux"\nVERSION_ID="9.4"\nID="rocky"\nID_LIKE="rhel centos fedora"\nPRETTY_NAME="Rocky Linux 9.4 (Blue Onyx)"\n'
    rel = F.parse_os(text + "@@arch\nx86_64\n@@uid\n0\n")
    assert (rel.id, rel.version_id, rel.major, rel.arch) == ("rocky", "9.4", "9", "x86_64")
    assert rel.id_like == ("rhel", "centos", "fedora")


def test_unique_never_fetches_content_someone_marked_secret():
    facts = F.unique([F.file_fact("/etc/k"), F.file_fact("/etc/k", content=False), F.file_fact("/etc/k")])
    assert len(facts) == 1 and not F._wants_content(facts[0])


def _service_output(facts, show: str) -> dict:
    """Parse a recorded ``systemctl show`` answer as the batch would see it."""
    script, boundary = factscript.batch_script(facts)
    assert script.count("systemctl show") == 1
    out = f"{boundary} @@services\n{show}{boundary} @@services-end\n{boundary} end\n"
    return factscript.parse_batch(facts, out, boundary)


def test_service_facts_come_from_one_systemctl_call_in_argument_order():
    facts = [F.service_fact("receptor.service"), F.service_fact("sshd.service"), F.service_fact("nope.service"),
             F.service_state_fact("fw:nftables", "nftables.service")]
    # Recorded on Debian 12; sshd.service is an alias, so its block says Id=ssh.service.
    show = ("Id=receptor.service\nActiveState=inactive\nUnitFileState=enabled\n\n"
            "Id=ssh.service\nActiveState=active\nUnitFileState=enabled\n\n"
            "Id=nope.service\nActiveState=inactive\nUnitFileState=\n\n"
            "Id=nftables.service\nActiveState=active\nUnitFileState=enabled\n")
    got = _service_output(facts, show)
    assert got["service:receptor.service"] == {"enabled": "enabled", "active": "inactive"}
    assert got["service:sshd.service"] == {"enabled": "enabled", "active": "active"}
    assert got["service:nope.service"] == {"enabled": "", "active": "inactive"}
    assert got["fw:nftables"] == {"state": "active"}


def test_service_facts_without_systemd_or_with_a_refused_unit():
    facts = [F.service_fact("a.service"), F.service_fact("b@.service")]
    assert _service_output(facts, "") == {"service:a.service": {"enabled": "", "active": ""},
                                          "service:b@.service": {"enabled": "", "active": ""}}
    # One block fewer than units: blocks are matched by Id instead of by position.
    got = _service_output(facts, "Id=a.service\nActiveState=active\nUnitFileState=static\n")
    assert got["service:a.service"] == {"enabled": "static", "active": "active"}
    assert got["service:b@.service"] == {"enabled": "", "active": ""}


def test_os_script_runs_here():
    out = subprocess.run(["sh", "-c", F.OS_SCRIPT], capture_output=True, text=True, timeout=30, check=True).stdout
    rel = F.parse_os(out)
    with open("/etc/os-release") as fh:
        expected = F.parse_os(fh.read() + "@@arch\n" + os.uname().machine)
    assert rel == expected and rel.id and rel.arch == os.uname().machine


def test_glob_fact_lists_what_the_shell_matches(tmp_path):
    (tmp_path / "meshctl-a.conf").write_text("")
    (tmp_path / "meshctl-b.conf").write_text("")
    (tmp_path / "other.conf").write_text("")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / ".meshctl-managed").write_text("")
    (tmp_path / "meshctl-dangling.conf").symlink_to(tmp_path / "gone")
    fact = F.glob_fact("ls:x", str(tmp_path), "meshctl-*.conf", "*/.meshctl-managed")
    empty = F.glob_fact("ls:y", str(tmp_path / "missing dir"), "*")
    got = run_batch([fact, empty])
    assert got["ls:x"] == {"lines": sorted(str(tmp_path / n) for n in (
        "meshctl-a.conf", "meshctl-b.conf", "meshctl-dangling.conf", "d/.meshctl-managed"))}
    assert got["ls:y"] == {"lines": []}
    with pytest.raises(ValueError, match="unsupported pattern"):
        F.glob_fact("ls:z", "/etc", "$(reboot)")


def test_file_contents_without_tar_on_the_host(tmp_path):
    """A fresh host may lack tar (meshctl installs it): contents come one by one."""
    import shutil

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("find", "base64", "stat", "sha256sum"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    f = tmp_path / "conf"
    f.write_bytes(b"a|b\n\x00tail")
    facts = [F.file_fact(str(f)), F.file_fact(str(tmp_path / "missing"))]
    script, boundary = factscript.batch_script(facts)
    out = subprocess.run(["/bin/sh", "-s"], input=script, capture_output=True, text=True, timeout=60,
                         env={"PATH": str(bin_dir)})
    got = factscript.parse_batch(facts, out.stdout, boundary)
    assert F.decode_content(got[f"file:{f}"]) == f.read_bytes()
    assert got[f"file:{tmp_path / 'missing'}"] == {"kind": "absent"}


def test_host_cache_skips_content_and_memoized_facts_until_the_file_changes(tmp_path):
    """Second run: nothing fetched, nothing recomputed, the same facts. A changed
    file is read again. The memoized command writes a witness file when it runs."""
    from meshctl.core.hostcache import HostCache

    conf, key, witness = tmp_path / "conf", tmp_path / "key", tmp_path / "ran"
    conf.write_text("a = 1\n")
    key.write_text("KEY-1\n")
    derived = F.Fact(key="derived:key", command=f"echo ran >> {witness}; echo value=$(cat {key})", kind="x",
                     parser=lambda out, rc: {"value": out.strip()}, memo=str(key))
    facts = [F.file_fact(str(conf)), F.file_fact(str(key), content=False), derived]

    def gather():
        cache = HostCache(tmp_path / "cache", "mesh", "node1")
        script, boundary = factscript.batch_script(facts, cache)
        out = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=60).stdout
        got = factscript.parse_batch(facts, out, boundary, cache)
        factscript.remember(cache, facts, got)
        return got, out

    first, raw1 = gather()
    assert "tar|" in raw1 and witness.read_text() == "ran\n"
    second, raw2 = gather()
    assert second == first and witness.read_text() == "ran\n"  # not run again
    assert "tar|" not in raw2 and F.decode_content(second[f"file:{conf}"]) == b"a = 1\n"
    assert second["derived:key"] == {"value": "value=KEY-1"}

    conf.write_text("a = 2\n")
    key.write_text("KEY-2\n")
    third, raw3 = gather()
    assert "tar|" in raw3 and F.decode_content(third[f"file:{conf}"]) == b"a = 2\n"
    assert third["derived:key"] == {"value": "value=KEY-2"} and witness.read_text() == "ran\nran\n"


def test_host_cache_never_trusts_a_blob_that_does_not_match_its_digest(tmp_path):
    from meshctl.core.hostcache import HostCache

    conf = tmp_path / "conf"
    conf.write_text("real\n")
    cache = HostCache(tmp_path / "cache", "mesh", "node1")
    cache.remember_file(str(conf), b"real\n")
    cache.save()
    digest = cache.files[str(conf)]
    assert HostCache(tmp_path / "cache", "mesh", "node1").known_files() == {str(conf): digest}
    # A damaged blob, or none, is not "known": the content is fetched again.
    (tmp_path / "cache" / "blobs" / digest).write_bytes(b"tampered\n")
    assert HostCache(tmp_path / "cache", "mesh", "node1").known_files() == {}
    (tmp_path / "cache" / "blobs" / digest).unlink()
    assert HostCache(tmp_path / "cache", "mesh", "node1").known_files() == {}
    # A rewritten blob heals it.
    cache = HostCache(tmp_path / "cache", "mesh", "node1")
    cache.remember_file(str(conf), b"real\n")
    assert HostCache(tmp_path / "cache", "mesh", "node1").content(digest) == b"real\n"
