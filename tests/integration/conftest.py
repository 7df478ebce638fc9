"""A small lab of real sshd hosts (podman containers running systemd) shared by the
integration tests: ``hop`` on ctl+iso, ``node1`` on ctl, ``hidden`` and ``hidden2``
on the internal iso network only, ``ops`` on ctl for operation tests, ``fault1``-``fault3``
on ctl for fault tests."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _require_lab() -> None:
    missing = [t for t in ("podman", "debootstrap", "ssh-keygen") if not shutil.which(t)]
    why = None
    if os.geteuid() != 0:
        why = "integration tests need root (podman containers with systemd)"
    elif missing:
        why = f"integration tests need {', '.join(missing)} (see lab/packages.txt)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)  # CI must never pass by skipping the real tests
        pytest.skip(why)


@dataclass
class MiniLab:
    workdir: Path
    env: dict[str, str]
    key: Path
    known_hosts: Path
    ips: dict[str, dict[str, str]] = field(default_factory=dict)  # host -> net -> ip
    wheels: Path | None = None  # ansible-runner/receptorctl wheels: lab hosts cannot reach PyPI
    names: dict[str, str] = field(default_factory=dict)  # short -> container name

    def ip(self, host: str, net: str = "ctl") -> str:
        return self.ips[host][net]

    def exec(self, host: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        r = subprocess.run(["podman", "exec", self.names[host], *cmd], env={**os.environ, **self.env},
                           capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"{host}: {' '.join(cmd)} failed: {r.stderr}{r.stdout}")
        return r

    def write_mesh(self, path: Path, text: str) -> Path:
        path.write_text(text)
        return path

    def meshctl(self, *args: str, check_rc: int | None = 0, env: dict | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run([sys.executable, "-m", "meshctl", *args], capture_output=True, text=True,
                           timeout=900, env={**os.environ, "MESHCTL_DISABLE_PLUGIN_AUTOLOAD": "1", **(env or {})})
        assert "Traceback" not in r.stderr, r.stderr
        if check_rc is not None:
            assert r.returncode == check_rc, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
        return r

    def provision_json(self, *args: str, check_rc: int = 0) -> dict:
        r = self.meshctl(*args, "-o", "json", check_rc=check_rc)
        return json.loads(r.stdout)


HOSTS = {
    "hop": ["ctl", "iso"],
    "node1": ["ctl"],
    "hidden": ["iso"],
    "hidden2": ["iso"],
    "ops": ["ctl"],
    # Fresh hosts for test_faults_live.py (killed runs, a cut network, a full disk).
    "fault1": ["ctl"],
    "fault2": ["ctl"],
    "fault3": ["ctl"],
}


@pytest.fixture(scope="session")
def minilab():
    _require_lab()
    sys.path.insert(0, str(ROOT / "lab"))
    import labkit

    prefix = f"mt{os.getpid()}-"
    workdir = ROOT / "lab" / ".work" / f"tests-{os.getpid()}"
    workdir.mkdir(parents=True, exist_ok=True)
    env = labkit.prepare_host(workdir)
    image = labkit.build_base_image(workdir, env)
    key, pub = labkit.ssh_keypair(workdir)
    ctl, iso = labkit.free_subnets(2, env=env)
    lab = MiniLab(workdir=workdir, env=env, key=key, known_hosts=workdir / "known_hosts")
    from labkit.image import cache_dir
    from wheels import ensure_wheelhouse

    lab.wheels = ensure_wheelhouse(cache_dir() / "wheels")
    try:
        # Both reach Debian's mirror (execution nodes install podman) but not each
        # other: hidden hosts are reached only through hop (netavark isolate).
        labkit.create_network(prefix + "ctl", ctl, isolate=True, env=env)
        labkit.create_network(prefix + "iso", iso, isolate=True, env=env)
        base = {"ctl": ctl.rsplit(".", 1)[0], "iso": iso.rsplit(".", 1)[0]}
        lines = []
        for i, (short, nets) in enumerate(HOSTS.items()):
            name = prefix + short
            addrs = [(prefix + n, f"{base[n]}.{10 + i}") for n in nets]
            labkit.start_host(name, image, addrs, pub, env=env)
            lab.names[short] = name
            lab.ips[short] = {n: f"{base[n]}.{10 + i}" for n in nets}
        for short in HOSTS:
            labkit.wait_for_ssh(next(iter(lab.ips[short].values())), key, env=env)
            hk = labkit.host_key(lab.names[short], env=env)
            lines += [f"{ip} {hk}" for ip in lab.ips[short].values()]
        lab.known_hosts.write_text("\n".join(lines) + "\n")
        yield lab
    finally:
        labkit.remove_hosts([prefix + h for h in HOSTS], env=env)
        for n in ("ctl", "iso"):
            labkit.remove_network(prefix + n, env=env)
