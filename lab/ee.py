"""A small Execution Environment (EE) image for lab jobs, built on this machine.

    image = build_ee_image(workdir, env)          # localhost/meshlab-ee:<ansible-core version>
    ref = push_ee(lab.registry, image, env)       # <registry host:port>/ansible/ee:<version>

What is in it: the lab's Debian 12 base image (python3, openssh-client for ssh, ssh-agent
and ssh-add: runner wraps the play in `ssh-agent sh -c 'ssh-add KEY && ansible-playbook ...'`)
plus ansible-core and its dependencies in a virtualenv at /opt/ee, first on PATH.

Why a virtualenv and not `pip install --break-system-packages`: Debian's python3 stays as
its packages left it (PEP 668), and the venv needs no extra Debian package: it is made with
`python3 -m venv --without-pip` (no python3-venv/ensurepip) and filled by running pip
straight from its wheel file. The build therefore needs no network at all: the wheels are
downloaded on the machine (lab containers cannot use PyPI, see lab-notes.md) and cached in
the lab cache dir, keyed by the requirement set.

A build is skipped when `localhost/meshlab-ee:<version>` carries the recipe hash label
(base image ID + requirements + build script), as for the other lab images.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from labkit.errors import LabError  # noqa: E402
from labkit.hostprep import podman  # noqa: E402
from labkit.image import RECIPE_LABEL, _image_id, _image_label, _logged, cache_dir  # noqa: E402
from labkit.locks import locked  # noqa: E402
from labkit.registry import RegistryInfo, push_image  # noqa: E402

BASE_IMAGE = "localhost/meshctl-lab-debian12:latest"
EE_REPO = "localhost/meshlab-ee"
REMOTE_REPO = "ansible/ee"
# Newest 2.17 (the last ansible-core line whose controller runs on Python 3.10-3.12 and still
# talks to old targets' Python 3.7+). Pinned exactly: the tag and the cache key name it.
DEFAULT_ANSIBLE_CORE = "2.17.14"
# Run from its wheel file to install the rest; never installed into the EE itself.
PIP = "pip==24.3.1"
PYTHON_VERSION = "3.11"  # Debian 12's python3
# Debian 12 has glibc 2.36: manylinux_2_28 wheels run there too (newer cryptography ships those).
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64", "any")
# Bump when the image changes in a way EE_SETUP/the Containerfile below do not show.
EE_RECIPE_VERSION = 1

DOWNLOAD_TIMEOUT = 300.0
BUILD_TIMEOUT = 600.0
LOCK_TIMEOUT = 300.0
MARKER = ".meshlab-ee-wheels.json"

EE_SETUP = """\
set -eu
# What runner and ansible's ssh connection need inside the container.
for tool in ssh ssh-agent ssh-add sh; do
  command -v "$tool" >/dev/null || { echo "EE base lacks $tool" >&2; exit 1; }
done
python3 -m venv --without-pip /opt/ee
pip_whl=$(ls /tmp/ee-wheels/pip-*.whl)
# pip runs from its wheel (a supported mode); --no-index: nothing comes from the network.
/opt/ee/bin/python "$pip_whl/pip" install --no-index --find-links /tmp/ee-wheels \\
  --no-cache-dir --disable-pip-version-check --no-warn-script-location "ansible-core==$1"
rm -rf /tmp/ee-wheels /root/.cache
/opt/ee/bin/ansible-playbook --version
"""


def requirements(ansible_core: str) -> list[str]:
    return [f"ansible-core=={ansible_core}", PIP]


def _wheels_key(ansible_core: str) -> str:
    recipe = {"requirements": requirements(ansible_core), "python": PYTHON_VERSION,
              "platforms": PLATFORMS}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def ee_recipe_hash(base_id: str, ansible_core: str) -> str:
    recipe = {"base": base_id, "wheels": _wheels_key(ansible_core), "setup": EE_SETUP,
              "containerfile": _containerfile("BASE", ansible_core, "LABEL"),
              "version": EE_RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _containerfile(base_id: str, ansible_core: str, label: str) -> str:
    return (
        f"FROM {base_id}\n"
        "COPY wheels/ /tmp/ee-wheels/\n"
        "COPY setup.sh /tmp/ee-setup.sh\n"
        f"RUN sh /tmp/ee-setup.sh {ansible_core} && rm /tmp/ee-setup.sh\n"
        # Runner passes the container only the job's variables (--env-file): PATH and a UTF-8
        # locale (ansible-core refuses to start without one) must come from the image.
        "ENV PATH=/opt/ee/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        "ENV LANG=C.UTF-8 LC_ALL=C.UTF-8\n"
        # The base boots systemd; an EE runs one command and stops on SIGTERM.
        "STOPSIGNAL SIGTERM\n"
        'CMD ["ansible-playbook", "--version"]\n'
        f"LABEL {RECIPE_LABEL}={label}\n"
    )


def _wheels_complete(dest: Path, key: str) -> bool:
    try:
        marker = json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("key") == key and all((dest / f).is_file() for f in marker.get("files", []))


def ensure_ee_wheels(ansible_core: str, log: Path, timeout: float = DOWNLOAD_TIMEOUT) -> Path:
    """Wheels for ansible-core (+ deps) and pip, for Python 3.11 on x86_64 Linux, in the lab
    cache (cache_dir()/ee-wheels-<key>); downloaded once, then reused."""
    key = _wheels_key(ansible_core)
    dest = cache_dir() / f"ee-wheels-{key[:16]}"
    if _wheels_complete(dest, key):
        return dest
    with locked(dest, LOCK_TIMEOUT):
        if _wheels_complete(dest, key):  # filled by a parallel run while we waited
            return dest
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        try:
            platforms = [a for p in PLATFORMS for a in ("--platform", p)]
            # --only-binary: nothing is built here, so the set fits the target, not this machine.
            _logged([sys.executable, "-m", "pip", "download", "--only-binary=:all:",
                     "--python-version", PYTHON_VERSION, *platforms, "--disable-pip-version-check",
                     "--no-input", "--progress-bar", "off", "--timeout", "60", "--retries", "3",
                     "-d", str(tmp), *requirements(ansible_core)],
                    env=None, log=log, step="pip download (EE wheels)", timeout=timeout)
            files = sorted(p.name for p in tmp.glob("*.whl"))
            names = {f.split("-")[0].lower() for f in files}
            if not {"ansible_core", "pip"} <= names:
                raise LabError(f"pip download left no ansible-core/pip wheel in {tmp}; see {log}")
            (tmp / MARKER).write_text(json.dumps({"key": key, "requirements": requirements(ansible_core),
                                                  "files": files}, indent=1) + "\n")
            tmp.chmod(0o755)  # mkdtemp makes 0700; the cache is not secret
            shutil.rmtree(dest, ignore_errors=True)  # an incomplete earlier attempt
            os.rename(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return dest


def ee_tag(ansible_core: str) -> str:
    return f"{EE_REPO}:{ansible_core}"


def build_ee_image(
    workdir: Path,
    env: Mapping[str, str],
    base_image: str = BASE_IMAGE,
    ansible_core: str = DEFAULT_ANSIBLE_CORE,
) -> str:
    """Build (or reuse) localhost/meshlab-ee:<ansible_core>; returns that reference.

    ansible_core must be an exact version ("2.17.14"): it is the tag and the cache key.
    The build log is workdir/ee-image-build.log.
    """
    if not all(part.isdigit() for part in ansible_core.split(".")) or ansible_core.count(".") != 2:
        raise LabError(f"ansible_core must be an exact X.Y.Z version, not {ansible_core!r}")
    ref = ee_tag(ansible_core)
    base_id = _image_id(base_image, env)
    if base_id is None:
        raise LabError(f"base image {base_image} not found (build_base_image first)")
    want = ee_recipe_hash(base_id, ansible_core)
    if _image_label(ref, env) == want:
        return ref
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "ee-image-build.log"
    log.write_text("")  # one build per log
    wheels = ensure_ee_wheels(ansible_core, log)
    old_id = _image_id(ref, env)
    with tempfile.TemporaryDirectory(prefix="meshlab-ee-build-", dir=workdir) as ctx_name:
        ctx = Path(ctx_name)
        shutil.copytree(wheels, ctx / "wheels", ignore=shutil.ignore_patterns(MARKER))
        (ctx / "setup.sh").write_text(EE_SETUP)
        # FROM the base by ID: the hash above names exactly that base.
        (ctx / "Containerfile").write_text(_containerfile(base_id, ansible_core, want))
        _logged(["podman", "build", "--pull=never", "--layers=false", "-t", ref,
                 "-f", str(ctx / "Containerfile"), str(ctx)],
                env=env, log=log, step="podman build (EE)", timeout=BUILD_TIMEOUT)
    if _image_label(ref, env) != want:
        raise LabError(f"podman build: {ref} lacks label {RECIPE_LABEL}={want}; see {log}")
    if old_id and old_id != _image_id(ref, env):
        podman("rmi", old_id, env=env, check=False)  # superseded; kept if a container uses it
    return ref


def push_ee(info: RegistryInfo, image: str, env: Mapping[str, str]) -> str:
    """Push `image` to the lab registry as <host:port>/ansible/ee:<its tag>; returns that ref.

    Credentials and CA go through labkit.push_image (0600 authfile, --cert-dir: nothing
    secret on a command line)."""
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else "latest"
    return push_image(info, image, f"{REMOTE_REPO}:{tag}", env=env)


def main(argv: list[str] | None = None) -> int:
    """python lab/ee.py [ANSIBLE_CORE]: build the EE image (no push) and print its reference."""
    import labkit

    args = sys.argv[1:] if argv is None else argv
    work = HERE / ".work" / "lab"
    try:
        env = labkit.prepare_host(work)
        start = time.monotonic()
        ref = build_ee_image(work, env, ansible_core=args[0] if args else DEFAULT_ANSIBLE_CORE)
    except (LabError, subprocess.SubprocessError) as exc:
        print(f"ee: {exc}", file=sys.stderr)
        return 1
    print(f"ee: {ref} ready in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
