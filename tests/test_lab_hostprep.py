"""Host preparation (lab/labkit/hostprep.py): the programs the lab runs are checked, a missing
one is named with its Debian package, and the packages come from lab/packages.txt."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from labkit import hostprep
from labkit.errors import LabError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_programs(tmp_path, monkeypatch) -> Path:
    """PATH and the extra search directories point at one empty directory."""
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setattr(hostprep, "SEARCH_DIRS", (str(empty),))
    return empty


def _add_program(bin_dir: Path, name: str) -> None:
    exe = bin_dir / name
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


def test_missing_program_is_one_line_naming_program_and_package(no_programs):
    for name in hostprep.REQUIRED_TOOLS:
        if name != "iptables":
            _add_program(no_programs, name)
    with pytest.raises(LabError) as exc:
        hostprep.check_programs()
    msg = str(exc.value)
    assert "\n" not in msg
    assert "iptables (package iptables)" in msg
    assert "netavark" not in msg.split(";")[0]  # only the missing program is listed
    assert "apt-get install -y --no-install-recommends " in msg
    assert msg.split("--no-install-recommends ", 1)[1].split() == hostprep.read_packages()


def test_every_missing_program_is_named(no_programs):
    with pytest.raises(LabError) as exc:
        hostprep.check_programs()
    msg = str(exc.value)
    assert "\n" not in msg
    for name, pkg in hostprep.REQUIRED_TOOLS.items():
        assert f"{name} (package {pkg})" in msg


def test_helpers_outside_path_are_found(no_programs, tmp_path, monkeypatch):
    # netavark lives in /usr/lib/podman, iptables in /usr/sbin: neither is on a user's PATH.
    helpers = tmp_path / "podman-helpers"
    helpers.mkdir()
    _add_program(helpers, "netavark")
    monkeypatch.setattr(hostprep, "SEARCH_DIRS", (str(no_programs), str(helpers)))
    assert hostprep.find_program("netavark") == str(helpers / "netavark")
    assert hostprep.find_program("aardvark-dns") is None


def test_non_executable_file_does_not_count(no_programs):
    (no_programs / "iptables").write_text("#!/bin/sh\n")
    assert hostprep.find_program("iptables") is None


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/etc/debian_version").exists(),
                    reason="prepare_host checks root and Debian before the programs")
def test_prepare_host_stops_before_writing_anything(no_programs, tmp_path):
    workdir = tmp_path / "work"
    with pytest.raises(LabError, match=r"missing programs for the lab: podman \(package podman\)"):
        hostprep.prepare_host(workdir)
    assert not workdir.exists()


def test_every_program_maps_to_a_listed_package():
    listed = set(hostprep.read_packages())
    assert hostprep.PACKAGES_TXT == ROOT / "lab" / "packages.txt"
    assert set(hostprep.REQUIRED_TOOLS.values()) - listed == set()
    # The failure this table was written for: netavark without iptables.
    assert hostprep.REQUIRED_TOOLS["iptables"] == "iptables"


def test_read_packages_skips_comments(tmp_path):
    f = tmp_path / "packages.txt"
    f.write_text("# header\npodman\n\n  iptables  # netavark calls it\n#runc\n")
    assert hostprep.read_packages(f) == ["podman", "iptables"]


def test_install_script_reads_the_same_packages():
    out = subprocess.run(
        [sys.executable, "-c", "import install_host_packages as m; print(' '.join(m.PACKAGES))"],
        cwd=ROOT / "lab", capture_output=True, text=True, timeout=30, check=True,
    ).stdout.split()
    assert out == hostprep.read_packages()
    assert "iptables" in out


def _not_installed(packages: list[str]) -> list[str]:
    out = []
    for pkg in packages:
        r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg],
                           capture_output=True, text=True, timeout=30, check=False)
        if not r.stdout.startswith("ii"):
            out.append(pkg)
    return out


@pytest.fixture
def lab_packages_installed() -> None:
    if shutil.which("dpkg-query") is None:
        pytest.skip("not a Debian machine")
    todo = _not_installed(sorted(set(hostprep.REQUIRED_TOOLS.values())))
    if todo:
        why = f"lab packages not installed: {' '.join(todo)} (python3 lab/install_host_packages.py)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def test_this_machine_has_every_program(lab_packages_installed):
    hostprep.check_programs()


def test_table_names_the_package_dpkg_says_ships_each_program(lab_packages_installed):
    for name, pkg in hostprep.REQUIRED_TOOLS.items():
        path = os.path.realpath(hostprep.find_program(name))  # iptables is an alternatives link
        owner = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True,
                               timeout=30, check=True).stdout.split(":", 1)[0]
        assert owner == pkg, f"{name} ({path}) is shipped by {owner}, the table says {pkg}"
