"""Networks and sshd hosts (podman containers running systemd) for the lab.

Every name is the caller's: give them all one prefix so teardown can go by name
(remove_prefixed). Traffic is only ever sent to loopback or to addresses that start_host
assigned in this process (see assert_lab_address).
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labkit.errors import LabError
from labkit.hostprep import podman, run

LAB_LABEL = "io.meshctl.lab=1"
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")

# Outer flags that let rootless/root podman run inside a host without --privileged.
NESTED_PODMAN_FLAGS = (
    "--cap-add", "SYS_ADMIN,NET_ADMIN",
    "--device", "/dev/fuse", "--device", "/dev/net/tun",
    "--security-opt", "seccomp=unconfined", "--security-opt", "unmask=ALL",
)

SSH_OPTIONS = (
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=3",
)

# Address -> container name, for every address start_host assigned in this process.
_ASSIGNED: dict[str, str] = {}


@dataclass(frozen=True)
class Host:
    name: str
    container_id: str
    addresses: dict[str, str] = field(default_factory=dict)  # network name -> IPv4 address

    @property
    def address(self) -> str:
        """The address on the first network given to start_host."""
        return next(iter(self.addresses.values()))


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise LabError(f"invalid lab object name {name!r} (letters, digits, _ . -)")


def assert_lab_address(ip: str) -> None:
    """Raise LabError unless ip is loopback or belongs to a host started by this process."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError as exc:
        raise LabError(f"not an IP address: {ip!r}") from exc
    if not addr.is_loopback and str(addr) not in _ASSIGNED:
        raise LabError(f"refusing to contact {ip}: not loopback nor a lab host started here")


# --- networks -------------------------------------------------------------------------------

def create_network(
    name: str, subnet: str, internal: bool = False, *, env: Mapping[str, str], isolate: bool = False
) -> None:
    """Create a bridge network. internal=True gives it no route out (an isolated
    segment); isolate=True keeps its route out (NAT, e.g. to a package mirror) but
    blocks traffic to and from the lab's other networks (netavark's isolate option)."""
    _check_name(name)
    net = ipaddress.ip_network(subnet)
    args = ["network", "create", "--label", LAB_LABEL, "--subnet", str(net)]
    if internal:
        args.append("--internal")
    if isolate:
        args += ["--opt", "isolate=true"]
    podman(*args, name, env=env)


def connect_network(container: str, network: str, ip: str, *, env: Mapping[str, str]) -> None:
    """Attach a running host to one more network with a fixed address."""
    _check_name(container)
    _check_name(network)
    podman("network", "connect", "--ip", ip, network, container, env=env)
    _ASSIGNED[str(ipaddress.ip_address(ip))] = container


def remove_network(name: str, *, env: Mapping[str, str]) -> None:
    """Remove a network if it exists (no -f: that would also remove containers on it)."""
    _check_name(name)
    if podman("network", "exists", name, env=env, check=False).returncode == 0:
        podman("network", "rm", name, env=env)


def free_subnets(
    count: int, *, env: Mapping[str, str], first: str = "10.89.231.0/24"
) -> list[str]:
    """Pick `count` /24s from `first` upwards that no podman network nor host route uses."""
    used: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    names = podman("network", "ls", "--format", "{{.Name}}", env=env).stdout.split()
    if names:
        for net in json.loads(podman("network", "inspect", *names, env=env).stdout):
            used += [ipaddress.ip_network(s["subnet"]) for s in net.get("subnets") or []]
    for route in json.loads(run(["ip", "-j", "-4", "route", "show"]).stdout or "[]"):
        if route.get("dst", "default") != "default":
            used.append(ipaddress.ip_network(route["dst"], strict=False))
    candidate = ipaddress.ip_network(first)
    found: list[str] = []
    for _ in range(256):  # bounded walk through the candidate /24s
        if not any(candidate.overlaps(u) for u in used):
            found.append(str(candidate))
            if len(found) == count:
                return found
        nxt = int(candidate.network_address) + candidate.num_addresses
        candidate = ipaddress.ip_network((nxt, candidate.prefixlen))
    raise LabError(f"no {count} free subnets found from {first}")


# --- keys -----------------------------------------------------------------------------------

def ssh_keypair(workdir: Path) -> tuple[Path, str]:
    """Return (private key path, public key line); the ed25519 key is generated once."""
    key = workdir / "id_ed25519"
    if not key.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "meshctl-lab", "-f", str(key)],
            timeout=30)
    return key, key.with_suffix(".pub").read_text().strip()


def host_key(host_name: str, *, env: Mapping[str, str]) -> str:
    """The host's ed25519 public key ("ssh-ed25519 AAAA..."), for a pinned known_hosts."""
    _check_name(host_name)
    proc = podman("exec", host_name, "cat", "/etc/ssh/ssh_host_ed25519_key.pub",
                  env=env, check=False, timeout=30)
    if proc.returncode != 0:
        raise LabError(f"{host_name}: no ed25519 host key yet (call after wait_for_ssh): "
                       f"{proc.stderr.strip()}")
    return " ".join(proc.stdout.split()[:2])


# --- hosts ----------------------------------------------------------------------------------

def start_host(
    name: str,
    image: str,
    networks: Sequence[tuple[str, str]],
    authorized_key: str,
    *,
    env: Mapping[str, str],
    nested_podman: bool = False,
) -> Host:
    """Start a systemd+sshd container with fixed addresses and root's authorized key."""
    _check_name(name)
    if not networks:
        raise LabError(f"{name}: at least one (network, address) is needed")
    key = authorized_key.strip()
    if "\n" in key or not key.startswith(("ssh-", "ecdsa-", "sk-")):
        raise LabError(f"{name}: authorized_key must be one public key line")
    args = ["run", "-d", "--pull=never", "--systemd=always", "--label", LAB_LABEL,
            "--name", name, "--hostname", name]
    want = {net: str(ipaddress.ip_address(ip)) for net, ip in networks}
    for net, ip in want.items():
        _check_name(net)
        if ip in _ASSIGNED:
            raise LabError(f"{name}: address {ip} already belongs to {_ASSIGNED[ip]}")
        # Several --network NET:ip=ADDR flags work for multi-homed hosts on podman 4.3.
        args += ["--network", f"{net}:ip={ip}"]
    if nested_podman:
        args += NESTED_PODMAN_FLAGS
    if podman("container", "exists", name, env=env, check=False).returncode == 0:
        raise LabError(f"{name}: a container of that name exists (leftover? remove_prefixed)")
    try:
        container_id = podman(*args, image, env=env).stdout.strip()
        # Written after start (not baked into the image): each test run brings its own key.
        podman("exec", "-i", name, "sh", "-c",
               "umask 077 && mkdir -p /root/.ssh && cat > /root/.ssh/authorized_keys",
               env=env, input=key + "\n", timeout=30)
        got = _container_addresses(name, env)
        if got != want:
            raise LabError(f"{name}: podman assigned {got}, asked for {want}")
    except BaseException:
        remove_hosts([name], env=env)  # also a container that `podman run` left created
        raise
    for ip in got.values():
        _ASSIGNED[ip] = name
    return Host(name=name, container_id=container_id, addresses=got)


def _container_addresses(name: str, env: Mapping[str, str]) -> dict[str, str]:
    out = podman("inspect", "--format", "{{json .NetworkSettings.Networks}}", name,
                 env=env, timeout=30).stdout
    return {net: info["IPAddress"] for net, info in (json.loads(out) or {}).items()}


def wait_for_ssh(
    host_ip: str, key_path: Path, timeout: float = 60.0, *, env: Mapping[str, str]
) -> str | None:
    """Wait until root can log in with key_path and systemd has finished booting.

    Returns systemd's state ("running" or "degraded"; None for a loopback target, which has
    no container to ask). Degraded hosts get their failed units printed to stderr.
    """
    assert_lab_address(host_ip)
    deadline = time.monotonic() + timeout
    max_tries = int(timeout / 0.2) + 10  # count bound besides the time bound

    def tries(what: str) -> Iterable[int]:
        for n in range(max_tries):
            if time.monotonic() > deadline:
                break
            yield n
        raise LabError(f"{host_ip}: {what} not ready within {timeout:.0f} s")

    for _ in tries("TCP port 22"):
        try:
            with socket.create_connection((host_ip, 22), timeout=1.0):
                break
        except OSError:
            time.sleep(0.2)
    for _ in tries("ssh login"):
        cmd = ["ssh", *SSH_OPTIONS, "-i", str(key_path), f"root@{host_ip}", "true"]
        try:
            if subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=10, check=False).returncode == 0:
                break
        except subprocess.TimeoutExpired:
            pass
        time.sleep(0.2)

    container = _ASSIGNED.get(str(ipaddress.ip_address(host_ip)))
    if container is None:
        return None
    budget = max(1, int(deadline - time.monotonic()))
    proc = podman("exec", container, "timeout", str(budget), "systemctl", "is-system-running",
                  "--wait", env=env, check=False, timeout=budget + 15)
    state = proc.stdout.strip()
    if state == "degraded":
        failed = podman("exec", container, "systemctl", "--failed", "--plain", "--no-legend",
                        env=env, check=False, timeout=30).stdout.strip()
        print(f"labkit: {container} is degraded; failed units:\n{failed}", file=sys.stderr)
    elif state != "running":
        raise LabError(f"{container}: systemd is {state or 'unknown'!r} after {timeout:.0f} s "
                       f"({proc.stderr.strip()})")
    return state


def remove_hosts(names: Iterable[str], *, env: Mapping[str, str]) -> None:
    """Remove the named containers at once (no graceful stop); missing ones are ignored."""
    names = list(names)
    for name in names:
        _check_name(name)
    if not names:
        return
    podman("rm", "-f", "-t", "0", "--ignore", *names, env=env, timeout=180)
    for ip in [ip for ip, owner in _ASSIGNED.items() if owner in names]:
        del _ASSIGNED[ip]


def remove_prefixed(prefix: str, *, env: Mapping[str, str]) -> None:
    """Remove every container, then every network, whose name starts with prefix.

    For leftovers of a run that was killed before its own teardown.
    """
    _check_name(prefix)
    if len(prefix) < 3:
        raise LabError(f"prefix {prefix!r} is too short to tear down by")
    containers = podman("ps", "-a", "--format", "{{.Names}}", env=env).stdout.split()
    remove_hosts([c for c in containers if c.startswith(prefix)], env=env)
    for net in podman("network", "ls", "--format", "{{.Name}}", env=env).stdout.split():
        if net.startswith(prefix):
            remove_network(net, env=env)
