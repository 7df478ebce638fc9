"""Check the machine and write the podman configuration the lab needs.

Facts behind each step are in shared/reference/lab-notes.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from labkit.errors import LabError

# Program -> Debian package that ships it: only what runs on this machine (docker-registry runs
# inside a lab container). Checked as programs, since a package can be present while a program
# the lab needs is not (apt --no-install-recommends leaves out iptables, which netavark calls).
REQUIRED_TOOLS = {
    "podman": "podman",
    "runc": "runc",
    "netavark": "netavark",
    "aardvark-dns": "aardvark-dns",
    "iptables": "iptables",
    "debootstrap": "debootstrap",
    "newuidmap": "uidmap",
    "newgidmap": "uidmap",
    "fuse-overlayfs": "fuse-overlayfs",
    "slirp4netns": "slirp4netns",
    "htpasswd": "apache2-utils",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "openssl": "openssl",
}
# Searched after PATH: root's tools are in sbin, podman's helpers in its own directories.
SEARCH_DIRS = ("/usr/sbin", "/sbin", "/usr/lib/podman", "/usr/libexec/podman")
PACKAGES_TXT = Path(__file__).resolve().parents[1] / "packages.txt"


def read_packages(path: Path = PACKAGES_TXT) -> list[str]:
    """The Debian packages named in lab/packages.txt (one a line, # comments)."""
    names = []
    for line in path.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


def find_program(name: str) -> str | None:
    """Path of `name` on PATH or in SEARCH_DIRS, or None."""
    dirs = [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d]
    return shutil.which(name, path=os.pathsep.join([*dirs, *SEARCH_DIRS]))


def check_programs() -> None:
    """Raise a one-line LabError naming every missing program and the package that ships it."""
    missing = [f"{tool} (package {pkg})" for tool, pkg in REQUIRED_TOOLS.items() if find_program(tool) is None]
    if missing:
        raise LabError(
            f"missing programs for the lab: {', '.join(missing)}; install the lab's packages with: "
            f"apt-get install -y --no-install-recommends {' '.join(read_packages())}"
        )


# Without it every `podman run` fails here: no CAP_SYS_RESOURCE for crun's setrlimit, and
# crun refuses the hybrid cgroup layout.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

# Each systemd container takes ~10 inotify instances; the default 128 stops at ~20 hosts.
INOTIFY_SYSCTL = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_MIN = 8192

DEFAULT_TIMEOUT = 120.0


def prepare_host(workdir: Path) -> dict[str, str]:
    """Check root/Debian/tools, write workdir/containers.conf, raise the inotify limit.

    Returns the environment variables every podman call of the lab must get.
    """
    if os.geteuid() != 0:
        raise LabError("the lab needs root (system podman, debootstrap); run it as root")
    if not Path("/etc/debian_version").exists():
        raise LabError("the lab is written for Debian 12 hosts (/etc/debian_version not found)")
    check_programs()
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    _raise_inotify_limit()
    return {"CONTAINERS_CONF": str(conf.resolve())}


def _raise_inotify_limit() -> None:
    try:
        current = int(INOTIFY_SYSCTL.read_text())
    except (OSError, ValueError):
        return  # not Linux-like enough to matter; podman will say what is wrong
    if current < INOTIFY_MIN:
        try:
            INOTIFY_SYSCTL.write_text(f"{INOTIFY_MIN}\n")
        except OSError as exc:
            raise LabError(
                f"cannot raise fs.inotify.max_user_instances to {INOTIFY_MIN} ({exc}); "
                f"run: sysctl fs.inotify.max_user_instances={INOTIFY_MIN}"
            ) from exc


def run(
    cmd: list[str],
    *,
    env: Mapping[str, str] | None = None,
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    input: str | None = None,
    step: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a bounded time; on failure raise LabError with its stderr."""
    full_env = {**os.environ, **(env or {})}
    what = step or " ".join(cmd[:3])
    try:
        proc = subprocess.run(
            cmd,
            env=full_env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{what}: timed out after {timeout:.0f} s: {' '.join(cmd)}") from exc
    except OSError as exc:
        raise LabError(f"{what}: cannot run {cmd[0]}: {exc}") from exc
    if check and proc.returncode != 0:
        raise LabError(
            f"{what}: exit {proc.returncode}: {' '.join(cmd)}\n{proc.stderr.strip()}"
        )
    return proc


def podman(
    *args: str,
    env: Mapping[str, str],
    check: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    input: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `podman ARGS` with the lab environment (see prepare_host)."""
    return run(
        ["podman", *args], env=env, check=check, timeout=timeout, input=input,
        step=f"podman {args[0] if args else ''}".strip(),
    )
