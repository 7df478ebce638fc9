"""Execution nodes: packages, the awx user's rootless podman set-up, and
ansible-runner in meshctl's virtualenv, run as awx."""

from __future__ import annotations

import json

import yaml

VENV = "/opt/meshctl/venv"


def test_packages(xhost):
    for pkg in ("podman", "crun", "fuse-overlayfs", "slirp4netns", "uidmap", "openssl", "python3-venv"):
        assert xhost.package(pkg).is_installed, pkg


def test_subordinate_ids_and_linger(xhost):
    assert xhost.file("/etc/subuid").contains("^awx:100000:65536$")
    assert xhost.file("/etc/subgid").contains("^awx:100000:65536$")
    assert xhost.file("/var/lib/systemd/linger/awx").exists


def test_podman_config_written_for_awx(xhost):
    d = xhost.file("/home/awx/.config/containers")
    assert d.is_directory and (d.user, d.mode) == ("awx", 0o700)
    assert xhost.file("/home/awx/.config/containers/storage.conf").contains('^mount_program = "/usr/bin/fuse-overlayfs"$')
    assert xhost.file("/home/awx/.config/containers/containers.conf").contains('^runtime = "crun"$')
    assert xhost.file("/etc/containers/registries.conf.d/force-fully-qualified-images.conf").contains(
        r"^unqualified-search-registries = \[\]$")


def test_podman_works_as_awx(xhost):
    out = xhost.run("runuser -l awx -c 'podman info --format json'")
    assert out.rc == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["host"]["security"]["rootless"] is True
    assert info["store"]["graphDriverName"] == "overlay"
    assert info["host"]["ociRuntime"]["name"] == "crun"


def test_ansible_runner_worker_info_as_awx(xhost):
    out = xhost.run(f"runuser -u awx -- {VENV}/bin/ansible-runner worker --worker-info")
    assert out.rc == 0, out.stderr
    info = yaml.safe_load(out.stdout)
    assert info["errors"] == []
    assert info["cpu_count"] >= 1 and info["mem_in_bytes"] > 0
    assert info["runner_version"]


def test_work_command_uses_the_venv_runner(xhost):
    conf = yaml.safe_load(xhost.file("/etc/receptor/receptor.conf").content_string)
    wc = next(s["work-command"] for s in conf if "work-command" in s)
    assert wc["command"] == f"{VENV}/bin/ansible-runner" and wc["params"] == "worker"
    assert xhost.file(wc["command"]).is_file


def test_receptorctl_in_the_venv(host):
    assert host.run(f"{VENV}/bin/receptorctl --help").rc == 0


def test_hop_nodes_run_no_work(hhost):
    assert not hhost.package("podman").is_installed
    assert not hhost.file(f"{VENV}/bin/ansible-runner").exists
    assert not hhost.file("/etc/subuid").contains("^awx:")
