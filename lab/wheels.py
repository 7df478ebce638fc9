"""A wheelhouse for meshctl's node virtualenv, made on this machine.

Lab containers cannot use PyPI (their trust store lacks the machine's CA), and
air-gapped sites cannot either: both get their packages as a local directory of
wheels that meshctl uploads (``python.wheelhouse`` in mesh.yml). This module fills
such a directory from PyPI, for a target Python and Linux x86_64:

    python lab/wheels.py ~/.cache/meshctl-lab/wheels

First choice is ``pip download --only-binary=:all:`` for the target platform (no
build, works for any target Python). A dependency published only as an sdist makes
that fail; then the set is made with ``pip wheel``, which builds the missing ones
here, so it needs this machine's Python to be the target version. (For the default
pins every dependency has a wheel: ansible-runner, receptorctl, pexpect,
ptyprocess, packaging, python-daemon, lockfile, PyYAML, python-dateutil, tzdata,
click; no build happens.)

A finished directory carries a marker naming its requirement set; a call with the
same set returns at once. A changed set replaces the directory atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from meshctl.plugins.python_env import DEFAULT_ANSIBLE_RUNNER, DEFAULT_RECEPTORCTL, normalize_name

sys.path.insert(0, str(Path(__file__).resolve().parent))
from labkit.locks import locked  # noqa: E402

MARKER = ".meshctl-wheelhouse.json"
PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "any")
RECIPE_VERSION = 1  # bump when the way the set is made changes


class WheelhouseError(RuntimeError):
    """The wheelhouse could not be made; the message has pip's last lines."""


def requirement_set(ansible_runner: str, receptorctl: str, extra: Sequence[str] = ()) -> list[str]:
    return [f"ansible-runner=={ansible_runner}", f"receptorctl=={receptorctl}", *extra]


def wheelhouse_key(requirements: Sequence[str], python_version: str) -> str:
    recipe = {"requirements": sorted(requirements), "python": python_version,
              "platforms": PLATFORMS, "version": RECIPE_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()


def _cached(dest: Path, key: str) -> bool:
    try:
        marker = json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("key") == key and all((dest / f).is_file() for f in marker.get("files", []))


def _pip(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "--no-input",
           "--progress-bar", "off", "--timeout", "60", "--retries", "3"]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise WheelhouseError(f"pip {args[0]} did not finish within {timeout:.0f}s") from None


def _tail(r: subprocess.CompletedProcess[str], n: int = 12) -> str:
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if "is ignored: it is neither" not in ln]
    return "\n".join(lines[-n:])


def _no_wheel(r: subprocess.CompletedProcess[str]) -> bool:
    text = r.stdout + r.stderr
    return "No matching distribution found" in text or "Could not find a version that satisfies" in text


def _download(tmp: Path, reqs: list[str], python_version: str, timeout: float) -> subprocess.CompletedProcess[str]:
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    return _pip(["download", "--only-binary=:all:", "--python-version", python_version, *platforms,
                 "-d", str(tmp), *reqs], timeout)


def _build(tmp: Path, reqs: list[str], python_version: str, timeout: float) -> None:
    here = "{}.{}".format(*sys.version_info[:2])
    if here != python_version or not sys.platform.startswith("linux") or os.uname().machine != "x86_64":
        raise WheelhouseError(f"some package has no wheel for Python {python_version} on x86_64 Linux, and "
                              f"building it needs that Python here (this is {here} on {os.uname().machine})")
    # Wheels where they exist, a local build for sdist-only packages (tagged
    # linux_x86_64, which pip on a Linux x86_64 node of the same Python accepts).
    r = _pip(["wheel", "--prefer-binary", "-w", str(tmp), *reqs], timeout)
    if r.returncode != 0:
        raise WheelhouseError(f"pip wheel failed (exit {r.returncode}):\n{_tail(r)}")


def _missing_pins(files: list[str], reqs: list[str]) -> list[str]:
    have = {(normalize_name(f.split("-")[0]), f.split("-")[1]) for f in files}
    out = []
    for req in reqs:
        name, _, version = req.partition("==")
        if version and (normalize_name(name), version) not in have:
            out.append(req)
    return out


def _swap(tmp: Path, dest: Path) -> None:
    """Replace ``dest`` by ``tmp`` so a reader never sees a half-filled directory."""
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{os.getpid()}")
        os.rename(dest, old)
    os.rename(tmp, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def ensure_wheelhouse(dest: Path, python_version: str = "3.11", ansible_runner: str = DEFAULT_ANSIBLE_RUNNER,
                      receptorctl: str = DEFAULT_RECEPTORCTL, *, extra: Sequence[str] = (),
                      timeout: float = 300.0) -> Path:
    """Fill ``dest`` with wheels for the pins and all their dependencies (for
    ``python_version`` on Linux x86_64) unless it already holds exactly that set.
    Returns ``dest``. ``timeout`` bounds each pip run (and the wait for another run's lock)."""
    dest = Path(dest).expanduser()
    reqs = requirement_set(ansible_runner, receptorctl, extra)
    key = wheelhouse_key(reqs, python_version)
    if _cached(dest, key):
        print(f"wheelhouse: {dest} is current ({' '.join(reqs)}, Python {python_version})")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with locked(dest, timeout, WheelhouseError):
        if _cached(dest, key):  # filled by a parallel run while we waited
            return dest
        start = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
        tmp.chmod(0o755)  # mkdtemp makes it 0700; the cache is not secret
        try:
            r = _download(tmp, reqs, python_version, timeout)
            how = "downloaded"
            if r.returncode != 0:
                if not _no_wheel(r):
                    raise WheelhouseError(f"pip download failed (exit {r.returncode}):\n{_tail(r)}")
                errors = [ln for ln in _tail(r).splitlines() if ln.startswith("ERROR")]
                print("wheelhouse: not everything has a wheel, building here:\n" + "\n".join(errors))
                for f in tmp.iterdir():
                    f.unlink()
                _build(tmp, reqs, python_version, timeout)
                how = "downloaded/built"
            files = sorted(p.name for p in tmp.glob("*.whl"))
            missing = _missing_pins(files, reqs)
            if missing:
                raise WheelhouseError(f"pip finished but {tmp} lacks wheels for {', '.join(missing)}")
            (tmp / MARKER).write_text(json.dumps({
                "key": key, "requirements": reqs, "python": python_version, "platforms": PLATFORMS,
                "how": how, "files": files}, indent=1) + "\n")
            _swap(tmp, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        total = sum((dest / f).stat().st_size for f in files)
        print(f"wheelhouse: {how} {len(files)} wheels ({total / 1e6:.1f} MB) into {dest} "
              f"in {time.monotonic() - start:.1f}s:")
        for f in files:
            print(f"  {f}")
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", type=Path, nargs="?", default=Path("~/.cache/meshctl-lab/wheels"))
    ap.add_argument("--python-version", default="3.11")
    ap.add_argument("--ansible-runner", default=DEFAULT_ANSIBLE_RUNNER)
    ap.add_argument("--receptorctl", default=DEFAULT_RECEPTORCTL)
    ap.add_argument("--extra", action="append", default=[], help="another requirement (NAME==VERSION)")
    args = ap.parse_args(argv)
    try:
        ensure_wheelhouse(args.dest, args.python_version, args.ansible_runner, args.receptorctl, extra=args.extra)
    except WheelhouseError as exc:
        print(f"wheelhouse: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
