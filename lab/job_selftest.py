"""Prove that an execution node runs real jobs: build + push the EE, then run ping.yml
through exec01 (must succeed, with target01's facts) and through exec02 (edge only: must
fail with target01 unreachable).

    python lab/job_selftest.py        # assumes a lab is up: python lab/lab.py --keep

From lab.py: ``job_selftest.selftest(lab)`` with its Lab object (uses lab.work, lab.env,
lab.registry, lab.ips, lab.key); returns the timings and raises LabError on a failure.

Registry files on the nodes (~awx/.config/containers/auth.json, /etc/containers/certs.d/
HOST:PORT/ca.crt) are meshctl's job; until its registry support is on a node, this script
puts the missing ones there itself and says so.

Standalone, the registry password of the running lab is unknown (lab.py keeps it in memory
only), so the script adds its own user, `meshlab-selftest` with a fresh password, to the
registry's htpasswd (through stdin). The lab's own user keeps working.
"""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import labkit  # noqa: E402
from ee import build_ee_image, push_ee  # noqa: E402
from job import SERVICE_USER, JobResult, _ssh_base, as_service_user, pull_on_node, run_job  # noqa: E402
from labkit.errors import LabError  # noqa: E402
from labkit.image import _image_id  # noqa: E402
from labkit.registry import RegistryInfo, make_htpasswd, registry_check  # noqa: E402

PREFIX = "meshlab-"
WORK = HERE / ".work" / "lab"
RUN_NODE, EDGE_NODE, TARGET = "exec01", "exec02", "target01"
SSH_TIMEOUT = 60.0
LOAD_TIMEOUT = 300.0
SELFTEST_USER = "meshlab-selftest"
HTPASSWD_IN = "/etc/docker/registry/htpasswd"


class LabLike(Protocol):
    work: Path
    env: dict[str, str]
    registry: RegistryInfo | None
    ips: dict[str, dict[str, str]]
    key: Path | None


@dataclass
class StandaloneLab:
    """What selftest needs of lab.py's Lab, read from a running lab's files."""

    work: Path
    env: dict[str, str]
    registry: RegistryInfo | None
    ips: dict[str, dict[str, str]]
    key: Path | None


# --- node preparation (meshctl's job once its registry support lands) -------------------------

_MERGE_AUTH = f"""\
import base64, json, os, pwd, sys
pw = pwd.getpwnam({SERVICE_USER!r})
path = os.path.join(pw.pw_dir, ".config/containers/auth.json")
new = json.load(sys.stdin)
try:
    with open(path) as fh:
        cur = json.load(fh)
except (OSError, ValueError):
    cur = {{}}
auths = cur.setdefault("auths", {{}})


def user(entry):
    return base64.b64decode(entry.get("auth", "")).decode(errors="replace").split(":")[0]


# Keep another user's entry (meshctl's); refresh our own if its password changed.
stale = {{h: e for h, e in new["auths"].items()
         if h not in auths or (user(auths[h]) == user(e) and auths[h] != e)}}
if not stale:
    print("present")
    sys.exit(0)
auths.update(stale)
os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
os.write(fd, (json.dumps(cur, indent=2) + "\\n").encode())
os.fchown(fd, pw.pw_uid, pw.pw_gid)
os.close(fd)
os.replace(path + ".tmp", path)
print("written")
"""


def _ssh(ssh_config: Path, node: str, command: str, stdin: str | bytes | None = None,
         timeout: float = SSH_TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    data = stdin.encode() if isinstance(stdin, str) else stdin
    try:
        return subprocess.run([*_ssh_base(ssh_config, node), command], input=data,
                              capture_output=True, timeout=timeout, check=False,
                              stdin=None if data is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{node}: ssh command timed out after {timeout:.0f}s") from exc


def ensure_node_registry_files(ssh_config: Path, node: str, info: RegistryInfo) -> list[str]:
    """Put the registry's entry into the service user's auth.json and its CA into
    /etc/containers/certs.d/HOST:PORT/ unless present; returns what was hand-placed."""
    placed = []
    # The credentials go through stdin; the remote script merges, never replaces other entries.
    r = _ssh(ssh_config, node, f"python3 -c {shlex.quote(_MERGE_AUTH)}", info.authfile_json())
    if r.returncode != 0:
        raise LabError(f"{node}: writing auth.json failed: {r.stderr.decode()[-500:]}")
    if r.stdout.decode().strip() == "written":
        placed.append("auth.json")
    d = f"/etc/containers/certs.d/{info.hostport}"
    r = _ssh(ssh_config, node, f"test -s {d}/ca.crt && echo present || "
             f"{{ install -d -m 0755 {d} && cat > {d}/ca.crt && chmod 0644 {d}/ca.crt && echo written; }}",
             info.ca_cert_path.read_bytes())
    if r.returncode != 0:
        raise LabError(f"{node}: writing {d}/ca.crt failed: {r.stderr.decode()[-500:]}")
    if r.stdout.decode().strip() == "written":
        placed.append(f"{d}/ca.crt")
    return placed


def node_reaches(ssh_config: Path, node: str, hostport: str) -> bool:
    host, port = hostport.rsplit(":", 1)
    r = _ssh(ssh_config, node, f"timeout 3 bash -c '</dev/tcp/{host}/{port}'")
    return r.returncode == 0


def node_image_id(ssh_config: Path, node: str, ref: str) -> str | None:
    """The ID of ref in the service user's storage on node, None if absent."""
    r = _ssh(ssh_config, node, as_service_user(
        f"podman image inspect --format '{{{{.Id}}}}' {shlex.quote(ref)}"))
    return r.stdout.decode().strip() or None if r.returncode == 0 else None


def load_on_node(ssh_config: Path, node: str, local_image: str, ref: str,
                 env: Mapping[str, str]) -> None:
    """Side-load local_image into the service user's storage on node, tagged ref (for a node
    that cannot reach the registry, like an edge site fed by a mirror or a tarball)."""
    save = subprocess.Popen(["podman", "save", "--format", "oci-archive", local_image],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**env})
    load = as_service_user(f"sh -c {shlex.quote(f'podman load -q && podman tag {local_image} {ref}')}")
    try:
        r = subprocess.run([*_ssh_base(ssh_config, node), load], stdin=save.stdout,
                           capture_output=True, timeout=LOAD_TIMEOUT, check=False)
        assert save.stdout is not None
        save.stdout.close()
        save.wait(timeout=30)
    except subprocess.TimeoutExpired as exc:
        save.kill()
        save.wait(timeout=30)
        raise LabError(f"{node}: image side-load took over {LOAD_TIMEOUT:.0f}s") from exc
    if save.returncode != 0 or r.returncode != 0:
        raise LabError(f"{node}: side-loading {local_image} failed: save exit {save.returncode}, "
                       f"load exit {r.returncode}: {r.stderr.decode()[-500:]}")


# --- the self-test ----------------------------------------------------------------------------

def _describe(r: JobResult) -> str:
    return (f"status={r.status} rc={r.rc} events={r.events} ok={r.ok} failed={r.failed} "
            f"unreachable={r.unreachable} hostname={r.hostname} default_ipv4={r.default_ipv4} "
            f"ipv4s={r.ipv4_addresses} {r.duration_s:.1f}s")


def selftest(lab: LabLike, log: Callable[[str], None] = print) -> dict[str, float]:
    """Build/push the EE, pull it on exec01, run the job through exec01 and exec02."""
    if lab.registry is None or lab.key is None:
        raise LabError("selftest needs a lab that is up (registry and SSH key)")
    ssh_config = lab.work / "ssh_config"
    target_ip = lab.ips[TARGET]["isolated"]
    t: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], object]) -> object:
        t0 = time.monotonic()
        out = fn()
        t[name] = time.monotonic() - t0
        return out

    image = str(timed("build EE", lambda: build_ee_image(lab.work, lab.env)))
    ref = str(timed("push EE", lambda: push_ee(lab.registry, image, lab.env)))  # type: ignore[arg-type]
    log(f"    EE {image} -> {ref} (build {t['build EE']:.1f}s, push {t['push EE']:.1f}s)")

    for node in (RUN_NODE, EDGE_NODE):
        placed = ensure_node_registry_files(ssh_config, node, lab.registry)
        if placed:
            log(f"    {node}: hand-placed {', '.join(placed)} (meshctl registry support not on it yet)")
    t[f"pull {RUN_NODE}"] = pull_on_node(ssh_config, RUN_NODE, ref)
    log(f"    {RUN_NODE}: podman pull as {SERVICE_USER} {t[f'pull {RUN_NODE}']:.1f}s")
    if node_reaches(ssh_config, EDGE_NODE, lab.registry.hostport):
        t[f"pull {EDGE_NODE}"] = pull_on_node(ssh_config, EDGE_NODE, ref)
    elif node_image_id(ssh_config, EDGE_NODE, ref) == _image_id(image, lab.env):
        log(f"    {EDGE_NODE}: cannot reach {lab.registry.hostport}; has {ref} already")
    else:  # edge network: no route to the registry on ctl
        timed(f"side-load {EDGE_NODE}", lambda: load_on_node(ssh_config, EDGE_NODE, image, ref, lab.env))
        log(f"    {EDGE_NODE}: cannot reach {lab.registry.hostport}; image side-loaded "
            f"{t[f'side-load {EDGE_NODE}']:.1f}s")

    problems = []
    jobs = lab.work / "jobs"
    shutil.rmtree(jobs, ignore_errors=True)  # keep the last run's artifacts only
    for node in (RUN_NODE, EDGE_NODE):
        r = run_job(jobs, node, target_ip, ref, ssh_config, lab.key, lab.registry)
        t[f"job {node}"] = r.duration_s
        log(f"    job via {node}: {_describe(r)}")
        for note in r.notes:
            log(f"      note: {note}")
        if node == RUN_NODE:
            # Lab hosts are named after their containers; target01 has no default route
            # (internal network), so its address is checked among all of its addresses.
            good = (r.status == "successful" and r.rc == 0 and r.ok == 1 and r.failed == 0
                    and r.hostname == PREFIX + TARGET and target_ip in r.ipv4_addresses)
        else:
            good = r.status == "failed" and r.unreachable == 1 and r.ok == 0
        if not good:
            problems.append(f"job via {node}: {_describe(r)}; stdout tail:\n{r.stdout_tail}")
    if problems:
        raise LabError("\n".join(problems))
    return t


# --- standalone: adopt a running lab ----------------------------------------------------------

def _adopt_lab_addresses(env: Mapping[str, str]) -> None:
    """Let labkit contact the running lab's containers (it only talks to hosts it started)."""
    from labkit import hosts

    names = [n for n in labkit.podman("ps", "--format", "{{.Names}}", env=env).stdout.split()
             if n.startswith(PREFIX)]
    if not names:
        raise LabError("no lab is up (start one with: python lab/lab.py --keep)")
    for name in names:
        label = labkit.podman("inspect", "--format", '{{index .Config.Labels "io.meshctl.lab"}}',
                              name, env=env).stdout.strip()
        if label != "1":
            continue  # not made by labkit
        for ip in hosts._container_addresses(name, env).values():
            hosts._ASSIGNED[ip] = name


def _selftest_registry(inv: dict, env: Mapping[str, str]) -> RegistryInfo:
    """A RegistryInfo for the running registry with this script's own user added."""
    host, port = inv["registry"]["hostport"].rsplit(":", 1)
    ca = Path(inv["registry"]["ca"])
    name = PREFIX + "registry01"
    password = secrets.token_urlsafe(24)
    line = make_htpasswd(SELFTEST_USER, password)
    # Replace our old line, keep everyone else's; the hash goes through stdin.
    script = (f'f={HTPASSWD_IN}; line=$(cat); {{ grep -v "^{SELFTEST_USER}:" "$f" || true; '
              f'printf "%s\\n" "$line"; }} > "$f.new" && chown --reference="$f" "$f.new" '
              f'&& chmod 0600 "$f.new" && mv "$f.new" "$f"')
    labkit.podman("exec", "-i", name, "sh", "-c", script, env=env, input=line, timeout=30)
    info = RegistryInfo(name=name, host=host, port=int(port), username=SELFTEST_USER,
                        password=password, ca_cert_path=ca, htpasswd_path=ca.parent.parent / "htpasswd",
                        secrets_dir=ca.parent.parent)
    # distribution reads htpasswd at start: restart it unless it already took the new user.
    if registry_check(info) != {"unauthenticated": 401, "authenticated": 200}:
        labkit.podman("exec", name, "systemctl", "restart", "docker-registry.service", env=env, timeout=60)
        from labkit.registry import _wait_ready

        _wait_ready(info, 60.0, env)
    return info


def standalone_lab() -> StandaloneLab:
    inv = json.loads((WORK / "inventory.json").read_text())
    env = labkit.prepare_host(WORK)
    _adopt_lab_addresses(env)
    ips = {name: h["networks"] for name, h in inv["hosts"].items()}
    return StandaloneLab(work=WORK, env=env, registry=_selftest_registry(inv, env), ips=ips,
                         key=WORK / "id_ed25519")


def main() -> int:
    start = time.monotonic()
    try:
        timings = selftest(standalone_lab())
    except LabError as exc:
        print(f"job_selftest: FAILED: {exc}", file=sys.stderr)
        return 1
    print("job_selftest: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items())
          + f"; total {time.monotonic() - start:.1f}s")
    print("job_selftest: PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
