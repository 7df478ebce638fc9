"""The lab on virtual machines (Vagrant): RHEL-family execution and hop nodes for users who
have a hypervisor (libvirt or VirtualBox) and internet access.

Same topology as the podman lab (lab/lab.py): networks ctl (reachable from this machine),
isolated and edge (VM-only); hop01 (ctl+edge, hop), exec01 (ctl+isolated, execution),
exec02 (edge only, execution, reached over SSH only through hop01), target01 (isolated only,
a plain host for jobs), registry01 (ctl, a private container registry).

    python lab/lab.py --backend vagrant [--keep]     up -> provision -> verify -> provision
                                                     (0 changed) -> destroy
    python lab/lab.py --backend vagrant down         vagrant destroy -f

Logins: the lab key is authorized for ``vagrant`` (passwordless sudo: meshctl logs in as
vagrant with ``become: true``, i.e. ``sudo -n``, as on a real RHEL host with cloud-user) and
for root (the testinfra verification, like the podman lab, reads root-only files).

Caveat: Vagrant adds a management NIC to every VM (see the Vagrantfile header). exec02 is
therefore reachable from this machine through it (VirtualBox: a port forward on 127.0.0.1;
libvirt: the shared vagrant-libvirt network, which also connects the VMs to each other).
meshctl still reaches exec02 only via hop01 because mesh.yml says ``ssh: {via: hop01}``
with exec02's edge address, and the verification's ssh_config does the same (ProxyJump).
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import jinja2
import yaml

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # labkit lives next to this file
    sys.path.insert(0, str(HERE))

from labkit.errors import LabError  # noqa: E402

WORK = HERE / ".work" / "vagrant"
TEMPLATES = HERE / "templates"
PROVIDERS = ("libvirt", "virtualbox")
MESH_ROLES = ("hop", "execution", "control")

VALIDATE_TIMEOUT = 120.0
UP_TIMEOUT = 3600.0  # first run downloads the boxes (~0.5-1 GB each)
DESTROY_TIMEOUT = 900.0
SHORT_TIMEOUT = 120.0  # ssh-config, plugin list, one ssh command
MESHCTL_TIMEOUT = 1800.0
VERIFY_TIMEOUT = 1800.0
REGISTRY_READY_TIMEOUT = 90.0

INSTALL_HINT = (
    "The Vagrant lab needs Vagrant and a hypervisor provider. Debian/Ubuntu with KVM: "
    "apt-get install vagrant vagrant-libvirt libvirt-daemon-system qemu-system-x86 "
    "(and /dev/kvm; add your user to the libvirt group). Or install VirtualBox and Vagrant "
    "from https://developer.hashicorp.com/vagrant/install. The podman lab needs neither: "
    "python lab/lab.py"
)

_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_BOX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+._-]*$")
_PUBKEY_RE = re.compile(r"^(ssh-[a-z0-9-]+|ecdsa-sha2-nistp\d+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+=*( [^\r\n]*)?$")


class VagrantUnavailable(Exception):
    """``vagrant`` or a usable provider is missing; the message says what to install."""


class VagrantError(LabError):
    """A vagrant command failed; the message carries vagrant's own output."""


# --- the spec ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class NetSpec:
    """A lab network. ``isolated``: VM-only (no route out, not for the controller)."""

    name: str
    subnet: str
    isolated: bool = False

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet)


@dataclass(frozen=True)
class VMSpec:
    """One VM. ``networks`` maps network name -> static IPv4 address, in NIC order; the first
    is the node's address in mesh.yml. ``role``: a mesh role (hop, execution) or None for a
    plain host. ``ssh_via``: the VM the controller jumps through (it must share a network)."""

    name: str
    box: str
    cpus: int
    memory: int  # MiB
    networks: dict[str, str]
    role: str | None = None
    peers: tuple[str, ...] = ()
    ssh_via: str | None = None
    packages: tuple[str, ...] = ()
    purpose: str = ""
    from_control: bool = False  # peers_from_control_nodes: the control VM dials it
    box_version: str | None = None

    @property
    def mesh(self) -> bool:
        return self.role in MESH_ROLES

    @property
    def address(self) -> str:
        return next(iter(self.networks.values()))


@dataclass(frozen=True)
class LabSpec:
    """Everything the Vagrantfile and mesh.yml are rendered from."""

    networks: tuple[NetSpec, ...]
    vms: tuple[VMSpec, ...]
    ssh_key: str  # private key path (mesh.yml defaults.ssh.key)
    ssh_pubkey: str  # its public key line (authorized in every VM)
    name: str = "meshlab"  # prefix of provider-side names (VM, networks)
    mesh: str = "meshlab"
    ssh_user: str = "vagrant"
    listener_port: int = 27199
    control_node: str = "awx-task"
    control_address: str = "awx-task.meshlab.test"
    # VMs with internet can install the pinned release; set False (and install
    # none) to lay everything down without starting receptor.
    receptor_start: bool = True

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabSpec:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown spec keys: {', '.join(sorted(unknown))}")
        values = dict(data)
        values["networks"] = tuple(n if isinstance(n, NetSpec) else NetSpec(**n)
                                   for n in data.get("networks", ()))
        vms = []
        for v in data.get("vms", ()):
            if not isinstance(v, VMSpec):
                v = dict(v)
                v["networks"] = dict(v.get("networks", {}))
                v["peers"] = tuple(v.get("peers", ()))
                v["packages"] = tuple(v.get("packages", ()))
                v = VMSpec(**v)
            vms.append(v)
        values["vms"] = tuple(vms)
        return cls(**values)

    def vm(self, name: str) -> VMSpec:
        for v in self.vms:
            if v.name == name:
                return v
        raise KeyError(name)

    def net(self, name: str) -> NetSpec:
        for n in self.networks:
            if n.name == name:
                return n
        raise KeyError(name)

    def ssh_address(self, vm: VMSpec) -> str:
        """The address the controller's SSH client dials (through ssh_via when set)."""
        if vm.ssh_via:
            via = self.vm(vm.ssh_via)
            shared = [n for n in vm.networks if n in via.networks]
            return vm.networks[shared[0]]
        return next(ip for n, ip in vm.networks.items() if not self.net(n).isolated)

    def check(self) -> None:
        """Raise ValueError listing every inconsistency (names, addresses, jumps, peers)."""
        problems: list[str] = []
        nets = {n.name: n for n in self.networks}
        if len(nets) != len(self.networks):
            problems.append("duplicate network names")
        for n in self.networks:
            if not _NAME_RE.match(n.name):
                problems.append(f"network name {n.name!r} must match {_NAME_RE.pattern}")
            try:
                if n.network.prefixlen > 29:
                    problems.append(f"network {n.name}: {n.subnet} is too small")
            except ValueError as exc:
                problems.append(f"network {n.name}: {exc}")
        for a in self.networks:
            for b in self.networks:
                with contextlib.suppress(ValueError):
                    if a.name < b.name and a.network.overlaps(b.network):
                        problems.append(f"networks {a.name} and {b.name} overlap")
        if not any(not n.isolated for n in self.networks):
            problems.append("no network is reachable from the controller (all isolated)")
        if not _PUBKEY_RE.match(self.ssh_pubkey.strip()):
            problems.append("ssh_pubkey is not one OpenSSH public key line")
        if not self.ssh_key:
            problems.append("ssh_key (private key path) is empty")
        names = [v.name for v in self.vms]
        by_name = {v.name: v for v in self.vms}
        if len(set(names)) != len(names):
            problems.append("duplicate VM names")
        if self.control_node in by_name:
            problems.append(f"{self.control_node!r} is the unmanaged control node, not a VM")
        seen_ips: dict[str, str] = {}
        for v in self.vms:
            where = f"VM {v.name}"
            if not _NAME_RE.match(v.name):
                problems.append(f"{where}: name must match {_NAME_RE.pattern}")
            if not _BOX_RE.match(v.box):
                problems.append(f"{where}: box {v.box!r} is not 'owner/name'")
            if v.cpus < 1 or v.memory < 256:
                problems.append(f"{where}: needs cpus >= 1 and memory >= 256 MiB")
            if not v.networks:
                problems.append(f"{where}: has no network")
            for pkg in v.packages:
                if not _PACKAGE_RE.match(pkg):
                    problems.append(f"{where}: bad package name {pkg!r}")
            for net_name, ip in v.networks.items():
                net = nets.get(net_name)
                if net is None:
                    problems.append(f"{where}: unknown network {net_name!r}")
                    continue
                try:
                    addr = ipaddress.IPv4Address(ip)
                    hosts = net.network
                except ValueError as exc:
                    problems.append(f"{where}: {exc}")
                    continue
                # .1 is the hypervisor host's address on every provider network.
                if addr not in hosts or addr in (hosts.network_address, hosts.broadcast_address,
                                                 hosts.network_address + 1):
                    problems.append(f"{where}: {ip} is not a usable VM address in {net_name} {net.subnet}")
                if ip in seen_ips:
                    problems.append(f"{where}: {ip} is also used by {seen_ips[ip]}")
                seen_ips[ip] = v.name
            if v.role is not None and not v.mesh:
                problems.append(f"{where}: role {v.role!r} is not one of {', '.join(MESH_ROLES)} (or None)")
            if not v.mesh and v.peers:
                problems.append(f"{where}: only mesh nodes have peers")
            for p in v.peers:
                target = by_name.get(p)
                if p != self.control_node and (target is None or not target.mesh):
                    problems.append(f"{where}: peer {p!r} is not a mesh node")
            if v.ssh_via:
                via = by_name.get(v.ssh_via)
                if via is None or via.ssh_via or via is v:
                    problems.append(f"{where}: ssh_via {v.ssh_via!r} must be another VM reached directly")
                elif not set(v.networks) & set(via.networks):
                    problems.append(f"{where}: shares no network with its jump host {v.ssh_via}")
                elif v.mesh and not via.mesh:
                    problems.append(f"{where}: a mesh node's jump host must be a mesh node (ssh.via)")
            elif v.networks and all(nets[n].isolated for n in v.networks if n in nets):
                problems.append(f"{where}: only on isolated networks: set ssh_via")
        if problems:
            raise ValueError("invalid lab spec:\n  " + "\n  ".join(problems))


NETWORKS = (
    # 192.168.56.0/21 is what VirtualBox allows for host-only networks without configuration.
    NetSpec("ctl", "192.168.61.0/24", isolated=False),
    NetSpec("isolated", "192.168.62.0/24", isolated=True),
    NetSpec("edge", "192.168.63.0/24", isolated=True),
)


def default_spec(
    ssh_key: str | Path = "~/.ssh/id_ed25519",
    ssh_pubkey: str | None = None,
    extra_exec: int = 0,
) -> LabSpec:
    """The podman lab's topology on RHEL-family boxes (Debian for the two helper hosts).

    ``ssh_pubkey`` defaults to the content of ``<ssh_key>.pub`` when that file exists.
    """
    key = str(ssh_key)
    if ssh_pubkey is None:
        pub = Path(os.path.expanduser(key) + ".pub")
        ssh_pubkey = pub.read_text().strip() if pub.exists() else ""

    def ips(index: int, *nets: str) -> dict[str, str]:
        out = {}
        for n in nets:
            base = next(x for x in NETWORKS if x.name == n).network.network_address
            out[n] = str(base + 11 + index)
        return out

    vms = [
        VMSpec("hop01", "rockylinux/9", 1, 1024, ips(0, "ctl", "edge"), role="hop",
               peers=("exec02",), from_control=True, purpose="hop node (ctl + edge)"),
        VMSpec("exec01", "almalinux/9", 2, 2048, ips(1, "ctl", "isolated"), role="execution",
               peers=("hop01",), from_control=True, purpose="execution node (ctl + isolated)"),
        VMSpec("exec02", "rockylinux/9", 2, 2048, ips(2, "edge"), role="execution",
               ssh_via="hop01",
               purpose="execution node on edge only: reached through hop01"),
        VMSpec("target01", "debian/bookworm64", 1, 512, ips(3, "isolated"), ssh_via="exec01",
               packages=("python3",), purpose="plain host that jobs target (isolated only)"),
        VMSpec("registry01", "debian/bookworm64", 1, 768, ips(4, "ctl"),
               packages=("docker-registry", "apache2-utils", "python3"),
               purpose="private container registry (configured over SSH after boot)"),
        VMSpec("awx01", "rockylinux/9", 1, 1024, ips(5, "ctl"), role="control",
               purpose="control node meshctl provisions (as awx-operator sets up AWX's receptor)"),
    ]
    for i in range(extra_exec):
        vms.append(VMSpec(f"exec{i + 3:02d}", "rockylinux/9", 2, 2048, ips(6 + i, "ctl"),
                          role="execution", peers=("hop01",), purpose="extra execution node"))
    return LabSpec(networks=NETWORKS, vms=tuple(vms), ssh_key=key, ssh_pubkey=ssh_pubkey)


def _coerce(spec: LabSpec | Mapping[str, Any]) -> LabSpec:
    lab = spec if isinstance(spec, LabSpec) else LabSpec.from_dict(spec)
    lab.check()
    return lab


# --- rendering --------------------------------------------------------------------------------

def _ruby_str(value: object) -> str:
    """A single-quoted Ruby literal: no interpolation, only \\ and ' to escape."""
    text = str(value)
    if "\n" in text or "\r" in text:
        raise ValueError(f"multi-line value not allowed in the Vagrantfile: {text!r}")
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _jinja() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        autoescape=False,  # Ruby, not HTML: values go through the rb filter instead
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["rb"] = _ruby_str
    return env


def render_vagrantfile(spec: LabSpec | Mapping[str, Any]) -> str:
    """The Vagrantfile for ``spec`` (a LabSpec or its dict form)."""
    lab = _coerce(spec)
    networks = []
    for n in lab.networks:
        if n.isolated:
            how = "isolated: VM-only (VirtualBox internal network, libvirt forward_mode none)"
        else:
            how = "reachable from this machine (VirtualBox host-only, libvirt NAT network)"
        networks.append({"name": n.name, "subnet": n.subnet, "describe": how})
    vms = []
    for v in lab.vms:
        nics = [{"net": net, "ip": ip, "isolated": lab.net(net).isolated,
                 "netmask": str(lab.net(net).network.netmask),
                 "provider_name": f"{lab.name}-{net}"} for net, ip in v.networks.items()]
        summary = v.purpose or (v.role or "host")
        if v.ssh_via:
            summary += f"; ssh via {v.ssh_via}"
        vms.append({"name": v.name, "box": v.box, "box_version": v.box_version, "cpus": v.cpus,
                    "memory": v.memory, "nics": nics, "packages": list(v.packages),
                    "provider_name": f"{lab.name}-{v.name}", "summary": summary})
    hidden = [v.name for v in lab.vms if v.ssh_via and v.mesh] or ["hidden hosts"]
    return _jinja().get_template("Vagrantfile.j2").render(
        networks=networks, vms=vms, pubkey=lab.ssh_pubkey.strip(), hidden=hidden)


def render_mesh_yml(spec: LabSpec | Mapping[str, Any]) -> str:
    """mesh.yml for the Vagrant lab: the podman lab's nodes, logged in as vagrant + sudo."""
    lab = _coerce(spec)
    nodes: list[dict[str, Any]] = []
    for v in lab.vms:
        if not v.mesh:
            continue
        node: dict[str, Any] = {"name": v.name, "role": v.role, "address": v.address,
                                "peers": list(v.peers)}
        if v.role == "control":
            node.update(managed=True, listener=False)
        if v.from_control:
            node["peers_from_control_nodes"] = True
        if v.ssh_via:
            node["ssh"] = {"via": v.ssh_via, "host": lab.ssh_address(v)}
        nodes.append(node)
    doc = {
        "mesh": lab.mesh,
        "defaults": {
            "ssh": {"user": lab.ssh_user, "key": lab.ssh_key, "become": True},
            "listener": {"port": lab.listener_port, "protocol": "tcp"},
        },
        "receptor": {"start": lab.receptor_start, "install": "release" if lab.receptor_start else "none"},
        "nodes": nodes,
    }
    header = (
        "# Generated by lab/vagrant_backend.py for the Vagrant lab.\n"
        f"# meshctl logs in as {lab.ssh_user} (passwordless sudo in Vagrant boxes; become: true)\n"
        "# on each node's lab address; nodes with ssh.via are reached only through that node.\n"
    )
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)


def render_lab_ssh_config(spec: LabSpec, key: Path, known_hosts: Path) -> str:
    """ssh_config for the verification (and for humans): root with the lab key on the lab
    addresses, hosts behind a jump host through ProxyJump, host keys pinned in known_hosts
    (the mesh nodes' keys are the ones meshctl recorded)."""
    lines = ["# Generated by lab/vagrant_backend.py: the lab as the verification sees it.", ""]
    for v in spec.vms:
        lines += [
            f"Host {v.name}",
            f"  HostName {spec.ssh_address(v)}",
            "  User root",
            f"  IdentityFile {key}",
            "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {known_hosts}",
            # Fresh VMs have new keys and no trusted channel tells us them first.
            "  StrictHostKeyChecking accept-new",
            "  HashKnownHosts no",
            "  BatchMode yes",
            "  ConnectTimeout 10",
        ]
        if v.ssh_via:
            lines.append(f"  ProxyJump {v.ssh_via}")
        lines.append("")
    return "\n".join(lines)


def inventory(spec: LabSpec, *, ssh_config: Path, mesh_yml: Path,
              registry: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The MESHLAB_INVENTORY document lab/verify reads (same shape as the podman lab's)."""
    target = next((v for v in spec.vms if v.name == "target01"), None)
    doc: dict[str, Any] = {
        "backend": "vagrant",
        "ssh_config": str(ssh_config),
        "mesh_yml": str(mesh_yml),
        "hosts": {v.name: {"role": v.role, "mesh": v.mesh, "networks": dict(v.networks)}
                  for v in spec.vms},
    }
    if target is not None:
        doc["target"] = {"name": target.name, "address": target.address}
    if registry is not None:
        doc["registry"] = dict(registry)
    return doc


# --- running commands -------------------------------------------------------------------------

def _kill_group(proc: subprocess.Popen) -> None:
    # vagrant runs ruby, VBoxManage, ssh...: end the whole group we started, not just vagrant.
    for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _run(
    cmd: Sequence[str],
    *,
    step: str,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    echo: bool = False,
    log: Path | None = None,
    check: bool = True,
    error: type[LabError] = LabError,
) -> subprocess.CompletedProcess[str]:
    """Run cmd in its own process group with a hard time bound. ``echo`` streams the output
    (stdout and stderr merged) to this terminal while it runs; ``log`` keeps a copy. A non-zero
    exit raises ``error`` with the command's output when ``check``."""
    try:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=None if env is None else dict(env), text=True,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT if echo else subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        raise LabError(f"{step}: cannot run {cmd[0]}: {exc}") from exc
    try:
        if echo:
            chunks: list[str] = []

            def pump() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    chunks.append(line)
                    sys.stdout.write("    " + line)
                    sys.stdout.flush()

            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            proc.wait(timeout=timeout)
            reader.join(timeout=10)
            out, err = "".join(chunks), ""
        else:
            out, err = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise error(f"{step}: no result after {timeout:.0f} s, stopped it: "
                    f"{shlex.join(cmd)}") from None
    except KeyboardInterrupt:
        _kill_group(proc)  # its own session: the terminal's Ctrl-C never reached it
        raise
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {shlex.join(cmd)}\n--- output\n{out}\n--- stderr\n{err}")
    result = subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)
    if check and proc.returncode != 0:
        detail = (err.strip() + "\n" + out.strip()).strip()[-3000:]
        raise error(f"{step} failed (exit {proc.returncode}): {detail}")
    return result


def _vagrant_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env["VAGRANT_CHECKPOINT_DISABLE"] = "1"  # no version check over the network; faster
    return env


def _vagrant_bin(env: Mapping[str, str]) -> str:
    found = shutil.which("vagrant", path=env.get("PATH", os.defpath))
    if found is None:
        raise VagrantUnavailable("'vagrant' is not installed (not found on PATH). " + INSTALL_HINT)
    return found


def validate_vagrantfile(path: Path, *, timeout: float = VALIDATE_TIMEOUT,
                         env: Mapping[str, str] | None = None) -> None:
    """``vagrant validate --ignore-provider`` on ``path`` (offline, no hypervisor needed).

    Raises VagrantUnavailable without vagrant, VagrantError with vagrant's message when the
    file is invalid. Vagrant keeps a .vagrant/ directory next to the file.
    """
    path = Path(path).resolve()
    venv = _vagrant_env(env)
    # Vagrant looks for its file in the working directory; this also allows other file names.
    venv["VAGRANT_VAGRANTFILE"] = path.name
    vagrant = _vagrant_bin(venv)
    _run([vagrant, "validate", "--ignore-provider", "--no-color"], step=f"vagrant validate {path}",
         timeout=timeout, cwd=path.parent, env=venv, error=VagrantError)


def detect_provider(preferred: str | None = None, *, env: Mapping[str, str] | None = None) -> str:
    """The provider to use: ``preferred`` (or $VAGRANT_DEFAULT_PROVIDER) if usable, else the
    first usable of libvirt, virtualbox. Raises VagrantUnavailable saying what to install."""
    venv = _vagrant_env(env)
    vagrant = _vagrant_bin(venv)
    path = venv.get("PATH", os.defpath)
    want = preferred or venv.get("VAGRANT_DEFAULT_PROVIDER") or None
    if want is not None and want not in PROVIDERS:
        raise VagrantUnavailable(f"provider {want!r} is not supported by the lab's Vagrantfile "
                                 f"(it configures {' and '.join(PROVIDERS)})")
    plugins = _run([vagrant, "plugin", "list", "--no-color"], step="vagrant plugin list",
                   timeout=SHORT_TIMEOUT, env=venv, check=False).stdout
    why: dict[str, str] = {}
    if "vagrant-libvirt" not in plugins:
        why["libvirt"] = "the vagrant-libvirt plugin is not installed"
    elif not Path("/dev/kvm").exists():
        why["libvirt"] = "/dev/kvm is missing (no hardware virtualization)"
    if not (shutil.which("VBoxManage", path=path) or shutil.which("vboxmanage", path=path)):
        why["virtualbox"] = "VirtualBox (VBoxManage) is not installed"
    usable = [p for p in PROVIDERS if p not in why]
    if want is not None:
        if want in usable:
            return want
        raise VagrantUnavailable(f"provider {want} is not usable: {why[want]}. {INSTALL_HINT}")
    if usable:
        return usable[0]
    reasons = "; ".join(f"{p}: {r}" for p, r in why.items())
    raise VagrantUnavailable(f"vagrant is installed but no provider is usable ({reasons}). {INSTALL_HINT}")


# --- the run ----------------------------------------------------------------------------------

@dataclass
class VagrantLabResult:
    provider: str
    first: dict[str, Any]
    second: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


class _Steps:
    def __init__(self, log: Callable[[str], None]):
        self.log = log
        self.timings: dict[str, float] = {}
        self.current = ""

    @contextlib.contextmanager
    def __call__(self, name: str):
        self.current = name
        self.log(f"==> {name}")
        t0 = time.monotonic()
        yield
        self.timings[name] = time.monotonic() - t0
        self.log(f"    {name}: {self.timings[name]:.1f}s")


def _ssh(cfg: Path, host: str, remote: str, *, step: str, input: str | None = None) -> str:
    return _run(["ssh", "-F", str(cfg), host, remote], step=step, timeout=SHORT_TIMEOUT,
                input=input).stdout


def configure_registry(vm: VMSpec, workdir: Path, cfg: Path) -> dict[str, str]:
    """Give registry01 (docker-registry from its box provisioner) the podman lab's setup:
    TLS from a lab CA and bcrypt htpasswd auth; wait for 401 without / 200 with credentials.
    Returns the inventory's "registry" entry. The password goes over stdin only."""
    import base64
    import secrets
    import ssl

    from labkit import registry as R  # the podman lab's certificates and config, shared

    ip = vm.address  # registry01 is on ctl only: the controller reaches it directly
    secrets_dir = workdir / "registry"
    (secrets_dir / "ca").mkdir(parents=True, exist_ok=True)
    secrets_dir.chmod(0o700)
    ca_pem, cert_pem, key_pem = R.make_certificates(ip, vm.name)
    ca_path = secrets_dir / "ca" / "ca.crt"
    ca_path.write_bytes(ca_pem)
    user, password = "meshlab", secrets.token_urlsafe(24)
    # Kept for a later meshctl registry section; created 0600 from the start.
    fd = os.open(secrets_dir / "password", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    # A new directory (tls/) must let the service user in: umask 077 alone would lock it out.
    put = ("d=\"$(dirname {p})\"; [ -d \"$d\" ] || install -d -m 0750 -g docker-registry \"$d\"; "
           "umask 077 && cat > {p} && chown docker-registry:docker-registry {p} && chmod {m} {p}")
    for path, content, mode in ((f"{R.CONF_DIR}/config.yml", R.CONFIG_YML, "0644"),
                                (R.CERT_IN, cert_pem.decode(), "0644"),
                                (R.KEY_IN, key_pem.decode(), "0600")):
        _ssh(cfg, vm.name, put.format(p=shlex.quote(path), m=mode), input=content,
             step=f"{vm.name}: write {path}")
    htp = shlex.quote(R.HTPASSWD_IN)
    _ssh(cfg, vm.name, f"umask 077 && htpasswd -iBn {user} > {htp} "
         f"&& chown docker-registry:docker-registry {htp}", input=password + "\n",
         step=f"{vm.name}: htpasswd")
    _ssh(cfg, vm.name, f"install -d -o docker-registry -g docker-registry -m 0750 {R.STORAGE_DIR} "
         f"&& systemctl enable {R.SERVICE} && systemctl restart {R.SERVICE}",
         step=f"{vm.name}: start {R.SERVICE}")
    ctx = ssl.create_default_context(cafile=str(ca_path))
    # No proxy: a lab address must never be sent to an http(s)_proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                         urllib.request.HTTPSHandler(context=ctx))
    token = base64.b64encode(f"{user}:{password}".encode()).decode()

    def status(auth: bool) -> int:
        req = urllib.request.Request(f"https://{ip}:{R.REGISTRY_PORT}/v2/")
        if auth:
            req.add_header("Authorization", f"Basic {token}")
        try:
            with opener.open(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            exc.close()
            return int(exc.code)

    deadline, last = time.monotonic() + REGISTRY_READY_TIMEOUT, "no answer"
    while time.monotonic() < deadline:
        try:
            got = (status(False), status(True))
            if got == (401, 200):
                return {"hostport": f"{ip}:{R.REGISTRY_PORT}", "ca": str(ca_path)}
            last = f"statuses {got}"
        except (urllib.error.URLError, OSError) as exc:
            last = str(getattr(exc, "reason", exc))
        time.sleep(1)
    raise LabError(f"registry on {vm.name} not ready within {REGISTRY_READY_TIMEOUT:.0f} s ({last}); "
                   f"see: ssh -F {cfg} {vm.name} journalctl -u {R.SERVICE}")


def _meshctl(workdir: Path, *args: str, log: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "meshctl", *args, "-o", "json", "-f", str(workdir / "mesh.yml"),
           "--ssh-config", str(workdir / "ssh_config"), "--accept-new-host-keys",
           "--known-hosts", str(workdir / "known_hosts")]
    r = _run(cmd, step="meshctl " + args[0], timeout=MESHCTL_TIMEOUT, log=log, check=False,
             env={**os.environ, "MESHCTL_DISABLE_PLUGIN_AUTOLOAD": "1"})
    try:
        result = json.loads(r.stdout)
    except json.JSONDecodeError:
        raise LabError(f"meshctl {args[0]} gave no JSON (exit {r.returncode}): "
                       f"{r.stderr.strip()[-2000:]}") from None
    bad = [h for h in result["hosts"] if h["status"] in ("failed", "unreachable")]
    if bad:
        raise LabError("; ".join(f"{h['node']}: {h.get('cause', h['status'])}: {h['error']}" for h in bad))
    return result


def write_lab_files(spec: LabSpec, workdir: Path) -> None:
    """Vagrantfile and mesh.yml (everything `vagrant up` and meshctl need from us)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "Vagrantfile").write_text(render_vagrantfile(spec))
    (workdir / "mesh.yml").write_text(render_mesh_yml(spec))


def run_vagrant_lab(
    workdir: Path,
    keep: bool = False,
    *,
    spec: LabSpec | None = None,
    provider: str | None = None,
    extra_exec: int = 0,
    up_timeout: float = UP_TIMEOUT,
    log: Callable[[str], None] = print,
) -> VagrantLabResult:
    """vagrant up -> meshctl provision -> pytest lab/verify -> provision again (must report 0
    changed) -> vagrant destroy -f (also after a failure; never with keep).

    Raises VagrantUnavailable before creating anything when vagrant or a provider is missing,
    LabError (VagrantError for vagrant's own failures) naming the failed step otherwise.
    """
    from labkit.hosts import ssh_keypair

    workdir = Path(workdir).resolve()
    provider = detect_provider(provider)
    steps = _Steps(log)
    key, pub = ssh_keypair(workdir)
    spec = spec or default_spec(key, pub, extra_exec=extra_exec)
    spec.check()
    write_lab_files(spec, workdir)
    validate_vagrantfile(workdir / "Vagrantfile")
    logs = workdir / "logs"
    venv = _vagrant_env()
    vagrant = _vagrant_bin(venv)
    lab_cfg, known_hosts = workdir / "lab_ssh_config", workdir / "known_hosts"
    # New VMs have new host keys: keys of an earlier lab at the same addresses would be "changed".
    known_hosts.unlink(missing_ok=True)
    try:
        with steps(f"vagrant up ({provider})"):
            _run([vagrant, "up", f"--provider={provider}", "--provision", "--no-color"],
                 step="vagrant up", error=VagrantError, timeout=up_timeout, cwd=workdir,
                 env=venv, echo=True, log=logs / "vagrant-up.log")
        with steps("vagrant ssh-config"):
            out = _run([vagrant, "ssh-config", "--no-color"], step="vagrant ssh-config",
                       error=VagrantError, timeout=SHORT_TIMEOUT, cwd=workdir, env=venv).stdout
            (workdir / "ssh_config").write_text(out)
            lab_cfg.write_text(render_lab_ssh_config(spec, Path(spec.ssh_key).expanduser(), known_hosts))
        registry = None
        reg_vm = next((v for v in spec.vms if v.name == "registry01"), None)
        if reg_vm is not None:
            with steps("configure registry"):
                registry = configure_registry(reg_vm, workdir, lab_cfg)
        inv = inventory(spec, ssh_config=lab_cfg, mesh_yml=workdir / "mesh.yml", registry=registry)
        (workdir / "inventory.json").write_text(json.dumps(inv, indent=2) + "\n")
        with steps("meshctl provision #1"):
            first = _meshctl(workdir, "provision", log=logs / "provision-1.log")
            _log_hosts(first, log)
        with steps("testinfra verify"):
            env = {**os.environ, "MESHLAB_INVENTORY": str(workdir / "inventory.json"),
                   "MESHCTL_DISABLE_PLUGIN_AUTOLOAD": "1"}
            verify = HERE / "verify"
            r = _run([sys.executable, "-m", "pytest", str(verify), "-p", "no:cacheprovider", "-q",
                      "-o", "addopts=", "--rootdir", str(verify), f"--junitxml={logs / 'verify.xml'}"],
                     step="pytest lab/verify", timeout=VERIFY_TIMEOUT, cwd=verify, env=env,
                     echo=True, check=False)
            if r.returncode != 0:
                raise LabError(f"testinfra verification failed (exit {r.returncode}); "
                               f"see the output above and {logs / 'verify.xml'}")
        with steps("meshctl provision #2"):
            second = _meshctl(workdir, "provision", log=logs / "provision-2.log")
            _log_hosts(second, log)
            changed = {h["node"]: h["changed"] for h in second["hosts"] if h["changed"]}
            if changed:
                raise LabError(f"second provision changed something: {changed}")
        return VagrantLabResult(provider, first, second, steps.timings)
    except LabError as exc:
        raise type(exc)(f"step '{steps.current}' failed: {exc}\n(logs: {logs})") from exc
    finally:
        if keep:
            log(how_to_ssh(workdir, spec))
        else:
            # Also after a failure: VMs left behind hold GBs of RAM. Never mask the real error.
            with steps("vagrant destroy"):
                try:
                    _run([vagrant, "destroy", "-f", "--no-color"], step="vagrant destroy",
                         error=VagrantError, timeout=DESTROY_TIMEOUT, cwd=workdir, env=venv,
                         log=logs / "vagrant-destroy.log")
                except LabError as exc:
                    log(f"    {exc}\n    remove the VMs with: python lab/lab.py --backend vagrant down")


def _log_hosts(result: Mapping[str, Any], log: Callable[[str], None]) -> None:
    for h in result["hosts"]:
        log(f"    {h['node']:<10} {h['status']:<11} changed={h['changed']:<3} "
            f"round_trips={h['round_trips']} {h['duration_s']:.1f}s")


def how_to_ssh(workdir: Path, spec: LabSpec) -> str:
    names = " ".join(v.name for v in spec.vms)
    return (f"lab is up. ssh in with: ssh -F {workdir / 'lab_ssh_config'} <host>   (hosts: {names})\n"
            f"  or: cd {workdir} && vagrant ssh <host>   (Vagrant's own management NIC)\n"
            f"meshctl: meshctl plan -f {workdir / 'mesh.yml'} --ssh-config {workdir / 'ssh_config'} "
            f"--known-hosts {workdir / 'known_hosts'}\n"
            f"remove it with: python lab/lab.py --backend vagrant down")


def destroy(workdir: Path = WORK) -> None:
    """vagrant destroy -f for the lab in workdir (nothing to do without a Vagrantfile)."""
    if not (workdir / "Vagrantfile").exists():
        return
    venv = _vagrant_env()
    _run([_vagrant_bin(venv), "destroy", "-f", "--no-color"], step="vagrant destroy",
         error=VagrantError, timeout=DESTROY_TIMEOUT, cwd=workdir, env=venv, echo=True)


def main(args: argparse.Namespace) -> int:
    """Entry point for ``lab.py --backend vagrant`` (args: action, keep, exec_nodes)."""
    if args.action == "down":
        try:
            destroy(WORK)
        except LabError as exc:
            print(f"lab: {exc}", file=sys.stderr)
            return 1
        print("lab: removed")
        return 0
    t0 = time.monotonic()
    try:
        result = run_vagrant_lab(WORK, keep=args.keep, extra_exec=getattr(args, "exec_nodes", 0))
    except LabError as exc:
        print(f"lab: {exc}", file=sys.stderr)
        print("lab: FAILED")
        return 1
    print("lab: " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items())
          + f"; total {time.monotonic() - t0:.1f}s")
    print("lab: PASSED")
    return 0
