"""The Vagrant lab backend (lab/vagrant_backend.py): what it renders, checked by parsing the
Vagrantfile, by meshctl's own topology validation, by OpenSSH (ssh -G) and, when installed,
by Vagrant itself (`vagrant validate`, offline, no hypervisor needed)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import vagrant_backend as vb

from meshctl.core.plugins import create_plugin_manager
from meshctl.core.topology import parse_topology

PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOr8c0ffeeTestKeyOnly0000000000000000000000 lab@test"

EXPECTED = {  # name -> (box, {network: ip}) as default_spec promises
    "hop01": ("rockylinux/9", {"ctl": "192.168.61.11", "edge": "192.168.63.11"}),
    "exec01": ("almalinux/9", {"ctl": "192.168.61.12", "isolated": "192.168.62.12"}),
    "exec02": ("rockylinux/9", {"edge": "192.168.63.13"}),
    "target01": ("debian/bookworm64", {"isolated": "192.168.62.14"}),
    "registry01": ("debian/bookworm64", {"ctl": "192.168.61.15"}),
    "awx01": ("rockylinux/9", {"ctl": "192.168.61.16"}),
}


@pytest.fixture
def spec(tmp_path) -> vb.LabSpec:
    return vb.default_spec(tmp_path / "id_ed25519", PUBKEY)


@pytest.fixture(scope="module")
def vagrant_env(tmp_path_factory) -> dict[str, str]:
    """Environment for real vagrant runs: required on CI, skipped elsewhere when missing."""
    if shutil.which("vagrant") is None:
        if os.environ.get("CI"):
            pytest.fail("vagrant is not installed but CI is set: the Debian package 'vagrant' "
                        "must be installed (lab/packages.txt)")
        pytest.skip("vagrant is not installed (apt-get install --no-install-recommends vagrant)")
    # A private VAGRANT_HOME: validation must not depend on (or write to) the user's ~/.vagrant.d.
    return {**os.environ, "VAGRANT_HOME": str(tmp_path_factory.mktemp("vagrant-home"))}


def parse_vagrantfile(text: str) -> dict[str, dict]:
    """What each `config.vm.define` block says: box, cpus/memory per provider, NICs."""
    out: dict[str, dict] = {}
    for m in re.finditer(r"^  config\.vm\.define '([^']+)' do \|node\|\n(.*?)^  end$", text, re.S | re.M):
        name, body = m.groups()
        assert name not in out, f"{name} defined twice"
        nics = []
        for chunk in re.findall(r'node\.vm\.network "private_network",(.*?)(?=\n    node\.vm\.)', body, re.S):
            nics.append({
                "ip": re.search(r"ip: '([^']+)'", chunk).group(1),
                "netmask": re.search(r"netmask: '([^']+)'", chunk).group(1),
                "libvirt_net": re.search(r"libvirt__network_name: '([^']+)'", chunk).group(1),
                "intnet": (re.search(r"virtualbox__intnet: '([^']+)'", chunk) or [None, None])[1],
                "forward_none": 'libvirt__forward_mode: "none"' in chunk,
            })
        providers = dict(re.findall(r'node\.vm\.provider "(\w+)" do \|\w+\|\n(.*?)\n    end', body, re.S))
        out[name] = {
            "boxes": re.findall(r"node\.vm\.box = '([^']+)'", body),
            "nics": nics,
            "other_networks": len(re.findall(r"node\.vm\.network", body)) - len(nics),
            "resources": {p: (int(re.search(r"\.cpus = (\d+)", b).group(1)),
                              int(re.search(r"\.memory = (\d+)", b).group(1)))
                          for p, b in providers.items()},
            "provisioners": re.findall(r'node\.vm\.provision "([\w-]+)"', body),
        }
    return out


# --- the Vagrantfile ----------------------------------------------------------------------------

def test_every_host_is_defined_once_with_its_box_addresses_and_resources(spec):
    text = vb.render_vagrantfile(spec)
    assert re.findall(r"config\.vm\.define '([^']+)'", text) == list(EXPECTED)
    vms = parse_vagrantfile(text)
    assert set(vms) == set(EXPECTED)
    for name, (box, nets) in EXPECTED.items():
        vm = vms[name]
        assert vm["boxes"] == [box], name
        assert [n["ip"] for n in vm["nics"]] == list(nets.values()), name
        assert [n["libvirt_net"] for n in vm["nics"]] == [f"meshlab-{n}" for n in nets], name
        assert all(n["netmask"] == "255.255.255.0" for n in vm["nics"])
        assert vm["other_networks"] == 0, f"{name}: a network that is not a private_network"
        want = (spec.vm(name).cpus, spec.vm(name).memory)
        assert vm["resources"] == {"virtualbox": want, "libvirt": want}, name
        assert vm["provisioners"][0] == "lab-key", name


def test_networks_are_isolated_per_provider(spec):
    vms = parse_vagrantfile(vb.render_vagrantfile(spec))
    for vm in vms.values():
        for nic in vm["nics"]:
            net = nic["libvirt_net"].removeprefix("meshlab-")
            if net == "ctl":  # host-only / NAT: the controller reaches it
                assert nic["intnet"] is None and not nic["forward_none"]
            else:  # VM-only on both providers
                assert nic["intnet"] == f"meshlab-{net}" and nic["forward_none"], nic


def test_exec02_only_on_edge_and_target01_only_on_isolated(spec):
    vms = parse_vagrantfile(vb.render_vagrantfile(spec))
    assert [n["libvirt_net"] for n in vms["exec02"]["nics"]] == ["meshlab-edge"]
    assert [n["libvirt_net"] for n in vms["target01"]["nics"]] == ["meshlab-isolated"]
    # Who shares a segment with exec02: only its jump host.
    on_edge = sorted(name for name, vm in vms.items()
                     if any(n["libvirt_net"] == "meshlab-edge" for n in vm["nics"]))
    assert on_edge == ["exec02", "hop01"]


def test_vagrantfile_documents_logins_and_the_management_nic_caveat(spec):
    text = vb.render_vagrantfile(spec)
    assert 'config.vm.synced_folder ".", "/vagrant", disabled: true' in text
    assert "management NIC" in text and "exec02" in text.split("management NIC")[1]
    assert "ssh.via" in text and "become: true" in text
    assert text.count(PUBKEY) == 1  # one Ruby constant, handed to the provisioner by env


def test_render_accepts_the_dict_form_and_is_deterministic(spec):
    as_dict = dataclasses.asdict(spec)
    assert vb.render_vagrantfile(as_dict) == vb.render_vagrantfile(spec) == vb.render_vagrantfile(spec)
    assert vb.render_mesh_yml(as_dict) == vb.render_mesh_yml(spec)


@pytest.mark.parametrize("change, message", [
    (lambda s: dataclasses.replace(s, vms=s.vms + (dataclasses.replace(s.vms[0]),)), "duplicate VM names"),
    (lambda s: dataclasses.replace(s, vms=(dataclasses.replace(s.vms[0], networks={"ctl": "10.0.0.5"}),)
                                   + s.vms[1:]), "not a usable VM address in ctl"),
    (lambda s: dataclasses.replace(s, vms=(dataclasses.replace(s.vms[0], networks={"ctl": "192.168.61.1"}),)
                                   + s.vms[1:]), "not a usable VM address"),
    (lambda s: dataclasses.replace(s, vms=(dataclasses.replace(s.vms[0], networks={"wan": "10.0.0.5"}),)
                                   + s.vms[1:]), "unknown network 'wan'"),
    (lambda s: dataclasses.replace(s, vms=s.vms[:2] + (dataclasses.replace(s.vms[2], ssh_via=None),)
                                   + s.vms[3:]), "exec02: only on isolated networks: set ssh_via"),
    (lambda s: dataclasses.replace(s, vms=s.vms[:2] + (dataclasses.replace(s.vms[2], ssh_via="exec01"),)
                                   + s.vms[3:]), "shares no network with its jump host exec01"),
    (lambda s: dataclasses.replace(s, ssh_pubkey="not a key"), "ssh_pubkey"),
    (lambda s: dataclasses.replace(s, vms=(dataclasses.replace(s.vms[0], box="rocky 9"),) + s.vms[1:]),
     "box 'rocky 9'"),
])
def test_inconsistent_specs_are_refused_before_rendering(spec, change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        vb.render_vagrantfile(change(spec))


def test_ruby_literals_cannot_break_out(spec):
    assert vb._ruby_str("a'b\\c#{x}") == "'a\\'b\\\\c#{x}'"  # single quotes: no interpolation
    with pytest.raises(ValueError):
        vb._ruby_str("two\nlines")
    ruby = shutil.which("ruby")  # vagrant's Debian package brings it
    if ruby:
        tricky = "it's a \\ #{`id`} test"
        out = subprocess.run([ruby, "-e", f"print {vb._ruby_str(tricky)}"], capture_output=True,
                             text=True, timeout=30, check=True).stdout
        assert out == tricky


# --- mesh.yml ----------------------------------------------------------------------------------

def test_mesh_yml_validates_and_matches_the_podman_lab_topology(spec):
    text = vb.render_mesh_yml(spec)
    topo = parse_topology(text, "mesh.yml", create_plugin_manager(autoload=False))
    assert [(n.name, n.role, n.managed) for n in topo.nodes] == [
        ("hop01", "hop", True), ("exec01", "execution", True), ("exec02", "execution", True),
        ("awx01", "control", True)]
    import lab as podman_lab  # the podman lab is the reference topology

    expected = {h.name: (h.peers, h.from_control) for h in podman_lab.lab_hosts() if h.role}
    assert {n.name: (n.peers, n.peers_from_control_nodes) for n in topo.nodes} == expected
    for n in topo.managed_nodes:
        assert (n.ssh.user, n.ssh.become, n.ssh.key) == ("vagrant", True, spec.ssh_key)
        assert n.address == EXPECTED[n.name][1][next(iter(EXPECTED[n.name][1]))]
        assert n.listener_port == (None if n.role == "control" else 27199)
    exec02 = topo.node("exec02")
    assert (exec02.ssh.via, exec02.ssh.host) == ("hop01", "192.168.63.13")
    assert [g.name for g in topo.via_chain(exec02)] == ["hop01"]
    assert topo.node("hop01").ssh.via is None and topo.node("exec01").ssh.via is None
    receptor = topo.sections["receptor"]
    assert (receptor.start, receptor.install) == (True, "release")  # VMs have internet: the pinned release
    assert topo.warnings == []


# --- what the verification gets --------------------------------------------------------------

def test_inventory_has_the_shape_lab_verify_reads(spec, tmp_path):
    inv = vb.inventory(spec, ssh_config=tmp_path / "lab_ssh_config", mesh_yml=tmp_path / "mesh.yml",
                       registry={"hostport": "192.168.61.15:5000", "ca": str(tmp_path / "ca.crt")})
    json.dumps(inv)  # it is written as JSON
    assert inv["ssh_config"] == str(tmp_path / "lab_ssh_config")
    assert inv["mesh_yml"] == str(tmp_path / "mesh.yml")
    assert {n: (h["role"], h["mesh"]) for n, h in inv["hosts"].items()} == {
        "hop01": ("hop", True), "exec01": ("execution", True), "exec02": ("execution", True),
        "target01": (None, False), "registry01": (None, False), "awx01": ("control", True)}
    assert {n: h["networks"] for n, h in inv["hosts"].items()} == {n: e[1] for n, e in EXPECTED.items()}
    assert inv["target"] == {"name": "target01", "address": "192.168.62.14"}
    assert inv["registry"]["hostport"] == "192.168.61.15:5000"


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH client not installed")
def test_lab_ssh_config_reaches_hidden_hosts_only_through_jump_hosts(spec, tmp_path):
    cfg = tmp_path / "lab_ssh_config"
    cfg.write_text(vb.render_lab_ssh_config(spec, tmp_path / "id_ed25519", tmp_path / "known_hosts"))

    def resolved(host: str) -> dict[str, str]:
        out = subprocess.run(["ssh", "-G", "-F", str(cfg), host], capture_output=True, text=True,
                             timeout=30, check=True).stdout
        return dict(line.split(" ", 1) for line in out.splitlines() if " " in line)

    want = {"hop01": ("192.168.61.11", None), "exec01": ("192.168.61.12", None),
            "exec02": ("192.168.63.13", "hop01"), "target01": ("192.168.62.14", "exec01"),
            "registry01": ("192.168.61.15", None)}
    for host, (ip, jump) in want.items():
        r = resolved(host)
        assert (r["hostname"], r.get("proxyjump")) == (ip, jump), host
        assert r["user"] == "root" and r["stricthostkeychecking"] in ("accept-new", "false")
        assert r["userknownhostsfile"] == str(tmp_path / "known_hosts")


# --- vagrant itself ------------------------------------------------------------------------------

def write_stub(bindir: Path, name: str, script: str) -> None:
    path = bindir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_missing_vagrant_says_what_to_install(tmp_path):
    env = {"PATH": str(tmp_path)}  # nothing on it
    with pytest.raises(vb.VagrantUnavailable, match="not installed.*apt-get install vagrant"):
        vb.detect_provider(env=env)
    (tmp_path / "Vagrantfile").write_text("Vagrant.configure('2') do |c| end\n")
    with pytest.raises(vb.VagrantUnavailable, match="'vagrant' is not installed"):
        vb.validate_vagrantfile(tmp_path / "Vagrantfile", env=env)


def test_no_usable_provider_is_a_clear_error(tmp_path):
    write_stub(tmp_path, "vagrant", 'echo "No plugins installed."\n')
    with pytest.raises(vb.VagrantUnavailable) as info:
        vb.detect_provider(env={"PATH": str(tmp_path)})
    msg = str(info.value)
    assert "no provider is usable" in msg and "vagrant-libvirt plugin is not installed" in msg
    assert "VirtualBox (VBoxManage) is not installed" in msg and "apt-get install" in msg
    with pytest.raises(vb.VagrantUnavailable, match="not supported"):
        vb.detect_provider("docker", env={"PATH": str(tmp_path)})


def test_a_usable_provider_is_picked(tmp_path):
    write_stub(tmp_path, "vagrant", 'echo "vagrant-libvirt (0.11.2, system)"\n')
    write_stub(tmp_path, "VBoxManage", "exit 0\n")
    env = {"PATH": str(tmp_path)}
    assert vb.detect_provider("virtualbox", env=env) == "virtualbox"
    assert vb.detect_provider(env={**env, "VAGRANT_DEFAULT_PROVIDER": "virtualbox"}) == "virtualbox"
    # libvirt first when it can run (it needs /dev/kvm).
    assert vb.detect_provider(env=env) == ("libvirt" if Path("/dev/kvm").exists() else "virtualbox")


def test_vagrant_validates_the_rendered_vagrantfile(spec, tmp_path, vagrant_env):
    path = tmp_path / "Vagrantfile"
    path.write_text(vb.render_vagrantfile(spec))
    vb.validate_vagrantfile(path, env=vagrant_env)


def test_vagrant_validates_quotes_in_the_key_and_extra_exec_nodes(tmp_path, vagrant_env):
    spec = vb.default_spec(tmp_path / "k", PUBKEY + " it's mine \\o/", extra_exec=2)
    path = tmp_path / "Vagrantfile.custom"  # any file name works
    path.write_text(vb.render_vagrantfile(spec))
    vb.validate_vagrantfile(path, env=vagrant_env)
    assert [v.name for v in spec.vms][-2:] == ["exec03", "exec04"]


def test_a_broken_vagrantfile_raises_with_vagrants_message(spec, tmp_path, vagrant_env):
    path = tmp_path / "Vagrantfile"
    path.write_text(vb.render_vagrantfile(spec).replace(
        "node.vm.hostname = 'exec02'", "node.vm.hostname = 'exec02'\n    node.vm.bogus_setting = 1"))
    with pytest.raises(vb.VagrantError, match="shouldn't exist: bogus_setting"):
        vb.validate_vagrantfile(path, env=vagrant_env)
    path.write_text("Vagrant.configure('2') do |config|\n  config.vm.box = \n")
    with pytest.raises(vb.VagrantError, match="syntax error"):
        vb.validate_vagrantfile(path, env=vagrant_env)


# --- the run's control flow (a stub vagrant: no VM, no network traffic) --------------------------

STUB_VAGRANT = """\
echo "$*" >> "$STUB_LOG"
case "$1" in
  plugin) echo "No plugins installed." ;;
  validate) echo "Vagrantfile validated successfully." ;;
  up) echo "Bringing machine 'hop01' up..."; exit "${STUB_UP_RC:-0}" ;;
  ssh-config) echo "The provider for this Vagrant-managed machine is reporting that it"; exit 1 ;;
  destroy) echo "==> hop01: Destroying VM..." ;;
esac
"""


@pytest.fixture
def stub_vagrant(tmp_path, monkeypatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    write_stub(bindir, "vagrant", STUB_VAGRANT)
    write_stub(bindir, "VBoxManage", "exit 0\n")
    log = tmp_path / "vagrant-calls.log"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STUB_LOG", str(log))
    monkeypatch.delenv("VAGRANT_DEFAULT_PROVIDER", raising=False)
    return log


needs_ssh_keygen = pytest.mark.skipif(shutil.which("ssh-keygen") is None,
                                      reason="the run makes its lab key with ssh-keygen (openssh-client)")


def calls(log: Path) -> list[str]:
    return [line.split(" --no-color")[0] for line in log.read_text().splitlines()]


@needs_ssh_keygen
def test_a_failed_up_is_reported_by_step_and_the_vms_are_destroyed(stub_vagrant, tmp_path, monkeypatch):
    monkeypatch.setenv("STUB_UP_RC", "1")
    work = tmp_path / "work"
    with pytest.raises(vb.VagrantError, match=r"step .vagrant up \(virtualbox\). failed.*exit 1"):
        vb.run_vagrant_lab(work, keep=False, log=lambda _msg: None)
    assert calls(stub_vagrant) == ["plugin list", "validate --ignore-provider",
                                   "up --provider=virtualbox --provision", "destroy -f"]
    # What `vagrant up` read was written first, with a fresh lab key.
    assert (work / "Vagrantfile").exists() and (work / "mesh.yml").exists()
    assert (work / "id_ed25519.pub").read_text().strip() in (work / "Vagrantfile").read_text()
    assert "Bringing machine" in (work / "logs" / "vagrant-up.log").read_text()


@needs_ssh_keygen
def test_keep_leaves_the_vms_and_says_how_to_reach_them(stub_vagrant, tmp_path):
    messages: list[str] = []
    with pytest.raises(vb.LabError, match=r"step 'vagrant ssh-config' failed.*reporting"):
        vb.run_vagrant_lab(tmp_path / "work", keep=True, log=messages.append)
    assert "destroy -f" not in calls(stub_vagrant)
    assert any("lab_ssh_config" in m and "--backend vagrant down" in m for m in messages)


def test_no_provider_means_nothing_is_created(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    write_stub(bindir, "vagrant", 'echo "No plugins installed."\n')
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.delenv("VAGRANT_DEFAULT_PROVIDER", raising=False)
    with pytest.raises(vb.VagrantUnavailable, match="no provider is usable"):
        vb.run_vagrant_lab(tmp_path / "work", log=lambda _msg: None)
    assert not (tmp_path / "work").exists()
