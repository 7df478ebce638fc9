"""Build the lab's base image: Debian 12 + systemd + sshd, nothing the product must add itself.

Two cached stages: the debootstrap rootfs tarball (slow, ~1 min; cached on disk by a hash of
its recipe) and the podman image built from it (fast; skipped when its recipe label matches).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from labkit.errors import LabError
from labkit.hostprep import podman

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
VARIANT = "minbase"
PACKAGES = (
    "systemd", "systemd-sysv", "libpam-systemd", "openssh-server", "python3", "sudo",
    "iproute2", "ca-certificates", "dbus",
)
# Bump when the way the rootfs is made changes (invalidates cached tarballs).
ROOTFS_RECIPE_VERSION = 2
# Bump when the image layer changes in a way its file contents below do not show.
IMAGE_RECIPE_VERSION = 1
RECIPE_LABEL = "io.meshctl.lab.recipe"

DEBOOTSTRAP_TIMEOUT = 900.0
IMPORT_TIMEOUT = 300.0
BUILD_TIMEOUT = 300.0

# Units that fail or hang in a container, or (apt timers) that would grab the dpkg lock at
# random times while the product is installing packages.
MASKED_UNITS = (
    "getty.target", "console-getty.service", "getty@tty1.service",
    "systemd-udevd.service", "systemd-udevd-control.socket", "systemd-udevd-kernel.socket",
    "systemd-udev-trigger.service", "systemd-udev-settle.service",
    "systemd-remount-fs.service", "systemd-modules-load.service", "systemd-firstboot.service",
    "systemd-journald-audit.socket", "dev-hugepages.mount", "sys-fs-fuse-connections.mount",
    "sys-kernel-config.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
    "apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service",
    "apt-daily-upgrade.service",
)

# Files copied into the image, by path inside it.
IMAGE_FILES: dict[str, str] = {
    "etc/ssh/sshd_config.d/10-lab.conf": """\
# Key-only logins, as on a hardened real host (first value wins in sshd_config).
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
""",
    # Debian generates host keys in openssh-server's postinst, i.e. once per image; every
    # container must get its own, so the image ships none and this makes them at boot.
    "etc/systemd/system/lab-ssh-hostkeys.service": """\
[Unit]
Description=Generate this host's SSH host keys
Before=ssh.service

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A
RemainAfterExit=yes

[Install]
WantedBy=ssh.service
""",
    # Stop jobs in a container rarely see their cgroup empty (cgroup v1): do not wait 90 s.
    "etc/systemd/system.conf.d/10-lab.conf": """\
[Manager]
DefaultTimeoutStopSec=10s
""",
    # Devices passed in for nested podman arrive 0600; rootless users need them.
    "etc/tmpfiles.d/lab-devices.conf": """\
z /dev/net/tun 0666 - - -
z /dev/fuse 0666 - - -
""",
}

SETUP_SCRIPT = f"""\
set -eu
rm -f /etc/ssh/ssh_host_*
# Empty machine-id: systemd makes a fresh one per container at boot.
: > /etc/machine-id
# Linger keeps user@0.service alive; without it its stop hangs on cgroup v1 and the next
# ssh login blocks ~2 minutes.
mkdir -p /var/lib/systemd/linger
touch /var/lib/systemd/linger/root
systemctl mask {" ".join(MASKED_UNITS)}
systemctl enable ssh.service lab-ssh-hostkeys.service
"""


def cache_dir() -> Path:
    """Where rootfs tarballs are kept between runs ($MESHCTL_LAB_CACHE or ~/.cache/meshctl-lab)."""
    override = os.environ.get("MESHCTL_LAB_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "meshctl-lab"


def rootfs_key() -> str:
    recipe = {"suite": SUITE, "variant": VARIANT, "packages": sorted(PACKAGES),
              "version": ROOTFS_RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def image_recipe_hash() -> str:
    recipe = {"rootfs": rootfs_key(), "files": IMAGE_FILES, "setup": SETUP_SCRIPT,
              "version": IMAGE_RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def image_status(env: Mapping[str, str], name: str = "meshctl-lab-debian12") -> str:
    """What build_base_image would do: "current" (nothing), "rootfs-cached" (import+build,
    seconds) or "cold" (debootstrap first, about a minute)."""
    if _image_label(f"localhost/{name}:latest", env) == image_recipe_hash():
        return "current"
    return "rootfs-cached" if _tarball_path().exists() else "cold"


def _tarball_path() -> Path:
    return cache_dir() / f"rootfs-{SUITE}-{rootfs_key()[:16]}.tar"


def build_base_image(
    workdir: Path, env: Mapping[str, str], name: str = "meshctl-lab-debian12"
) -> str:
    """Return a local image reference for the lab image, building only what is stale."""
    ref = f"localhost/{name}:latest"
    want = image_recipe_hash()
    if _image_label(ref, env) == want:
        return ref
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "image-build.log"
    log.write_text("")  # one build per log
    key = rootfs_key()
    tarball = _tarball_path()
    if not tarball.exists():
        _debootstrap_tarball(workdir, tarball)
    base = f"localhost/{name}-rootfs:{key[:16]}"
    if podman("image", "exists", base, env=env, check=False).returncode != 0:
        _logged(
            ["podman", "import",
             "--change", 'CMD ["/sbin/init"]',
             "--change", "STOPSIGNAL SIGRTMIN+3",
             "--change", "ENV container=podman",
             str(tarball), base],
            env=env, log=log, step="podman import", timeout=IMPORT_TIMEOUT,
        )
    old_id = _image_id(ref, env)
    with tempfile.TemporaryDirectory(prefix="labkit-build-", dir=workdir) as ctx_name:
        ctx = Path(ctx_name)
        for rel, text in IMAGE_FILES.items():
            dest = ctx / "root" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
            dest.chmod(0o644)
        (ctx / "setup.sh").write_text(SETUP_SCRIPT)
        (ctx / "Containerfile").write_text(
            f"FROM {base}\n"
            "COPY root/ /\n"
            "COPY setup.sh /tmp/lab-setup.sh\n"
            "RUN sh /tmp/lab-setup.sh && rm /tmp/lab-setup.sh\n"
            f"LABEL {RECIPE_LABEL}={want}\n"
        )
        # --pull=never: the base is local; never ask a registry.
        _logged(
            ["podman", "build", "--pull=never", "--layers=false", "-t", ref,
             "-f", str(ctx / "Containerfile"), str(ctx)],
            env=env, log=log, step="podman build", timeout=BUILD_TIMEOUT,
        )
    if _image_label(ref, env) != want:
        raise LabError(f"podman build: {ref} lacks label {RECIPE_LABEL}={want}; see {log}")
    if old_id and old_id != _image_id(ref, env):
        # The superseded image is now untagged; drop it unless a container still uses it.
        podman("rmi", old_id, env=env, check=False)
    return ref


def _image_label(ref: str, env: Mapping[str, str]) -> str | None:
    proc = podman("image", "inspect", "--format", f'{{{{ index .Labels "{RECIPE_LABEL}" }}}}',
                  ref, env=env, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _image_id(ref: str, env: Mapping[str, str]) -> str | None:
    proc = podman("image", "inspect", "--format", "{{.Id}}", ref, env=env, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def _debootstrap_tarball(workdir: Path, tarball: Path) -> None:
    log = workdir / "debootstrap.log"
    log.write_text("")
    tarball.parent.mkdir(parents=True, exist_ok=True)
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=workdir))
    try:
        started = time.monotonic()
        _logged(
            ["debootstrap", f"--variant={VARIANT}", f"--include={','.join(PACKAGES)}",
             SUITE, str(rootfs), MIRROR],
            env=None, log=log, step="debootstrap", timeout=DEBOOTSTRAP_TIMEOUT,
        )
        with log.open("a") as fh:
            fh.write(f"debootstrap took {time.monotonic() - started:.1f} s\n")
        # Host keys made by openssh-server's postinst would be shared by every container.
        # The .debs and package lists debootstrap leaves are 100 MB a real host would not
        # have as-is: the product must run `apt-get update` itself, as on any fresh host.
        for pattern in ("etc/ssh/ssh_host_*", "var/cache/apt/archives/*.deb",
                        "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
            for path in rootfs.glob(pattern):
                path.unlink()
        partial = tarball.with_name(tarball.name + f".partial-{os.getpid()}")
        try:
            _logged(
                ["tar", "-C", str(rootfs), "--numeric-owner", "--one-file-system",
                 "-cpf", str(partial), "."],
                env=None, log=log, step="tar rootfs", timeout=IMPORT_TIMEOUT,
            )
            os.replace(partial, tarball)  # atomic: a cached tarball is always complete
        finally:
            partial.unlink(missing_ok=True)
    finally:
        _remove_rootfs(rootfs)


def _remove_rootfs(rootfs: Path) -> None:
    """Delete a debootstrap target, never following a mount left behind by a failed run."""
    for mount in sorted(_mounts_under(rootfs), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, timeout=30,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if leftover := _mounts_under(rootfs):
        raise LabError(f"not deleting {rootfs}: still mounted: {', '.join(leftover)}")
    shutil.rmtree(rootfs, ignore_errors=True)


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve())
    with open("/proc/self/mounts") as fh:
        points = [line.split()[1].replace("\\040", " ") for line in fh]
    return [p for p in points if p == prefix or p.startswith(prefix + "/")]


def _logged(
    cmd: list[str], *, env: Mapping[str, str] | None, log: Path, step: str, timeout: float
) -> None:
    """Run cmd with its output appended to log; raise LabError naming the step and the log."""
    with log.open("a") as fh:
        fh.write(f"\n=== {step}: {' '.join(cmd)}\n")
        fh.flush()
        # Own session: on timeout the whole tree (debootstrap's chroot'ed dpkg etc.) is ended.
        proc = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            raise LabError(f"{step} timed out after {timeout:.0f} s; log: {log}") from exc
    if returncode != 0:
        raise LabError(f"{step} failed (exit {returncode}); log: {log}")
