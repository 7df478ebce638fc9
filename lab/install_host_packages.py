"""Install the Debian packages in lab/packages.txt when running as root on Debian
and any is missing; otherwise say exactly what to install. Never fails the run:
the lab and the integration tests check their own prerequisites."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# As labkit.hostprep.read_packages; standalone so it runs with any python3 (no labkit imports).
PACKAGES = [
    name
    for line in (Path(__file__).with_name("packages.txt")).read_text().splitlines()
    if (name := line.split("#", 1)[0].strip())
]


def missing() -> list[str]:
    out = []
    for pkg in PACKAGES:
        r = subprocess.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", pkg],
                           capture_output=True, text=True, timeout=30)
        if not r.stdout.startswith("ii"):
            out.append(pkg)
    return out


def main() -> int:
    if not shutil.which("dpkg-query"):
        print(f"lab: not a Debian machine; install the equivalents of {' '.join(PACKAGES)} yourself",
              file=sys.stderr)
        return 0
    todo = missing()
    if not todo:
        return 0
    if os.geteuid() != 0:
        print(f"lab: missing packages; run as root: apt-get install -y {' '.join(todo)}", file=sys.stderr)
        return 0
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    print(f"lab: installing {' '.join(todo)}", file=sys.stderr)
    subprocess.run(["apt-get", "update", "-q"], env=env, check=False, timeout=600)
    r = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *todo],
                       env=env, check=False, timeout=1800)
    if r.returncode != 0:
        print("lab: apt-get install failed; integration tests will skip", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
