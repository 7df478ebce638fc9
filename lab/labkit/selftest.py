"""End-to-end check of labkit: `PYTHONPATH=lab python -m labkit.selftest` (as root).

Builds the image, starts three hosts on two networks (A, and B which is internal), and proves:
ssh works with pinned host keys, `ssh -J` through the multi-homed host reaches the B-only host,
the A-only host cannot reach the B-only host, host keys differ, nested-podman devices are 0666.
Everything it creates is named with --prefix and removed at the end, also on failure.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from labkit.errors import LabError
from labkit.hostprep import podman, prepare_host, run
from labkit.hosts import (
    Host,
    assert_lab_address,
    create_network,
    free_subnets,
    host_key,
    remove_hosts,
    remove_network,
    remove_prefixed,
    ssh_keypair,
    start_host,
    wait_for_ssh,
)
from labkit.image import build_base_image, image_status

DEFAULT_WORKDIR = Path(__file__).resolve().parents[1] / ".work" / "selftest"


class Timings:
    def __init__(self) -> None:
        self.items: list[tuple[str, float]] = []

    @contextmanager
    def step(self, label: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.items.append((label, time.monotonic() - started))
            print(f"  {label}: {self.items[-1][1]:.2f} s", flush=True)


def check(condition: bool, what: str) -> None:
    if not condition:
        raise LabError(f"selftest: {what}")
    print(f"ok: {what}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labkit.selftest")
    parser.add_argument("--prefix", default="labkit-selftest")
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)
    prefix: str = args.prefix
    t = Timings()
    total = time.monotonic()

    with t.step("prepare host"):
        env = prepare_host(args.workdir)
    status = image_status(env)
    with t.step(f"base image ({status})"):
        image = build_base_image(args.workdir, env)
    remove_prefixed(prefix, env=env)  # leftovers of a run killed before its teardown
    key, pubkey = ssh_keypair(args.workdir)

    net_a, net_b = f"{prefix}-neta", f"{prefix}-netb"
    names = {"a": f"{prefix}-a", "multi": f"{prefix}-multi", "iso": f"{prefix}-iso"}
    hosts: dict[str, Host] = {}
    try:
        sub_a, sub_b = (ipaddress.ip_network(s) for s in free_subnets(2, env=env))
        with t.step("create networks"):
            create_network(net_a, str(sub_a), env=env)
            create_network(net_b, str(sub_b), internal=True, env=env)
        layout = {
            "a": [(net_a, str(sub_a[10]))],
            "multi": [(net_a, str(sub_a[11])), (net_b, str(sub_b[11]))],
            "iso": [(net_b, str(sub_b[12]))],
        }
        with t.step("start 3 hosts and wait for ssh"):
            for role, nets in layout.items():
                with t.step(f"  podman run {names[role]}"):
                    hosts[role] = start_host(names[role], image, nets, pubkey, env=env,
                                             nested_podman=role == "multi")
            for host in hosts.values():
                with t.step(f"  ssh ready {host.name}"):
                    state = wait_for_ssh(host.address, key, timeout=60, env=env)
                print(f"     systemd on {host.name}: {state}")

        multi_a, multi_b = hosts["multi"].addresses[net_a], hosts["multi"].addresses[net_b]
        iso_b, a_ip = hosts["iso"].address, hosts["a"].address

        keys = {role: host_key(h.name, env=env) for role, h in hosts.items()}
        check(len(set(keys.values())) == len(keys), "every host has its own ssh host key")
        ssh_config = _write_ssh_config(args.workdir, key, hosts, keys)

        for ip in (multi_a, iso_b):
            assert_lab_address(ip)
        with t.step("ssh -J multi iso hostname"):
            out = run(["ssh", "-F", str(ssh_config), "-J", f"root@{multi_a}",
                       f"root@{iso_b}", "hostname"], timeout=30).stdout.strip()
        check(out == names["iso"], f"ssh -J root@{multi_a} root@{iso_b} reaches {out}")

        # Pinning is real: a known_hosts naming another host's key must be refused.
        wrong = args.workdir / "known_hosts.wrong"
        wrong.write_text(f"{a_ip} {keys['iso']}\n")
        assert_lab_address(a_ip)
        proc = run(["ssh", "-F", str(ssh_config), "-o", f"UserKnownHostsFile={wrong}",
                    f"root@{a_ip}", "true"], check=False, timeout=30)
        check(proc.returncode != 0 and "HOST IDENTIFICATION HAS CHANGED" in proc.stderr,
              "ssh refuses a host whose key does not match the pinned one")

        # Isolation must be tested from a container: the machine holds every gateway.
        def tcp_from(role: str, ip: str) -> bool:
            probe = f"</dev/tcp/{ip}/22"
            return podman("exec", hosts[role].name, "timeout", "3", "bash", "-c", probe,
                          env=env, check=False, timeout=20).returncode == 0

        check(tcp_from("a", multi_a), f"A-only host reaches multi-homed host on A ({multi_a})")
        check(tcp_from("multi", iso_b), f"multi-homed host reaches B-only host ({iso_b})")
        check(not tcp_from("a", iso_b), f"A-only host cannot reach B-only host ({iso_b})")
        check(not tcp_from("a", multi_b), f"A-only host cannot reach multi's B side ({multi_b})")

        modes = podman("exec", hosts["multi"].name, "stat", "-c", "%a", "/dev/net/tun",
                       "/dev/fuse", env=env, timeout=20).stdout.split()
        check(modes == ["666", "666"], f"nested-podman host has /dev/net/tun, /dev/fuse 0666 ({modes})")
    finally:
        with t.step("teardown"):
            try:
                remove_hosts(names.values(), env=env)
                for net in (net_a, net_b):
                    remove_network(net, env=env)
            except LabError as exc:  # report, but do not hide the error that got us here
                print(f"teardown failed: {exc}", file=sys.stderr)
    print(f"selftest passed in {time.monotonic() - total:.1f} s")
    return 0


def _write_ssh_config(
    workdir: Path, key: Path, hosts: dict[str, Host], keys: dict[str, str]
) -> Path:
    """An ssh_config (used for the jump host too, unlike -o options) with pinned host keys."""
    known = workdir / "known_hosts"
    known.write_text("".join(
        f"{ip} {keys[role]}\n" for role, h in hosts.items() for ip in h.addresses.values()
    ))
    config = workdir / "ssh_config"
    config.write_text(
        "Host *\n"
        "  User root\n"
        f"  IdentityFile {key}\n"
        "  IdentitiesOnly yes\n"
        "  BatchMode yes\n"
        "  StrictHostKeyChecking yes\n"
        f"  UserKnownHostsFile {known}\n"
        "  GlobalKnownHostsFile /dev/null\n"
        "  ConnectTimeout 5\n"
        "  LogLevel ERROR\n"
    )
    return config


if __name__ == "__main__":
    try:
        sys.exit(main())
    except LabError as exc:
        print(f"selftest FAILED: {exc}", file=sys.stderr)
        sys.exit(1)
