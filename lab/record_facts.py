"""Re-record the facts under src/meshctl/testing/data/facts/ from a real lab host.

Starts one fresh lab host, runs `meshctl facts` (debian12-fresh.json), provisions
it, runs `meshctl facts` again (debian12-provisioned.json), and removes the host.
Run as root after changing what the built-in plugins lay down:
    python lab/record_facts.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lab"))

import labkit  # noqa: E402

DATA = ROOT / "src" / "meshctl" / "testing" / "data" / "facts"
NODE = "exec01.example.com"


def meshctl(*args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "meshctl", *args], capture_output=True, text=True,
                       cwd=ROOT, timeout=900)
    if r.returncode != 0:
        raise SystemExit(f"meshctl {args[0]} failed (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def main() -> int:
    wd = ROOT / "lab" / ".work" / "record"
    wd.mkdir(parents=True, exist_ok=True)
    env = labkit.prepare_host(wd)
    image = labkit.build_base_image(wd, env)
    key, pub = labkit.ssh_keypair(wd)
    (subnet,) = labkit.free_subnets(1, env=env)
    ip = subnet.rsplit(".", 1)[0] + ".10"
    labkit.create_network("rec-net", subnet, env=env)
    try:
        labkit.start_host("rec-exec01", image, [("rec-net", ip)], pub, env=env)
        labkit.wait_for_ssh(ip, key, env=env)
        (wd / "known_hosts").write_text(f"{ip} {labkit.host_key('rec-exec01', env=env)}\n")
        (wd / "ssh_config").write_text(f"Host {NODE}\n  HostName {ip}\n  User root\n  IdentityFile {key}\n")
        from labkit.image import cache_dir
        from wheels import ensure_wheelhouse

        wheels = ensure_wheelhouse(cache_dir() / "wheels")
        mesh = wd / "mesh.yml"  # the recorded topology, with this machine's wheelhouse path
        mesh.write_text((DATA / "mesh.yml").read_text() + f"python: {{wheelhouse: {wheels}}}\n")
        ca = wd / "ca"  # mesh.yml names ca/ relative to itself
        if ca.is_symlink():
            ca.unlink()
        ca.symlink_to(DATA / "ca")
        args = ["-f", str(mesh), "--ssh-config", str(wd / "ssh_config"),
                "--known-hosts", str(wd / "known_hosts"), "--limit", NODE]
        for name, provision_first in (("debian12-fresh.json", False), ("debian12-provisioned.json", True)):
            if provision_first:
                meshctl("provision", *args)
            facts = json.loads(meshctl("facts", *args).stdout)[NODE]
            (DATA / name).write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n")
            print(f"wrote {DATA / name}")
    finally:
        labkit.remove_hosts(["rec-exec01"], env=env)
        labkit.remove_network("rec-net", env=env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
