"""Run a real ansible-runner job on an execution node the way AWX's control node does,
with receptor replaced by SSH:

    ansible-runner transmit PDD -p ping.yml        (here, the "control node")
      | ssh NODE runuser -u awx -- ansible-runner worker    (the execution node's work-command)
      | ansible-runner process PDD                 (here: events, status, artifacts)

The worker runs the play in the EE with rootless podman as the node's service user, with
the process-isolation settings AWX sends (podman, --user=root, slirp4netns with IPv6, a
pull policy). Nothing secret is on a command line: the SSH private key for the target
travels inside the transmit stream (env/ssh_key), exactly as AWX sends a machine credential.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from labkit.errors import LabError  # noqa: E402
from labkit.registry import RegistryInfo  # noqa: E402

SERVICE_USER = "awx"
NODE_RUNNER = "/opt/meshctl/venv/bin/ansible-runner"
JOB_TIMEOUT = 600.0  # whole pipeline: transmit + worker (pull, play) + process
KILL_WAIT = 10.0
SSH_CHECK_TIMEOUT = 30.0
STDOUT_TAIL_LINES = 25
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
# AWX: container_options = ['--user=root'] + DEFAULT_CONTAINER_RUN_OPTIONS
# (['--network', 'slirp4netns:enable_ipv6=true']) + ['--pull=<EE pull policy>'].
AWX_CONTAINER_OPTIONS = ("--user=root", "--network", "slirp4netns:enable_ipv6=true")
# What a systemd service with User=awx gets (receptor's unit): no login shell, no
# XDG_RUNTIME_DIR; podman finds /run/user/UID itself (linger keeps it).
NODE_ENV_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PING_PLAYBOOK = """\
- name: meshlab ping
  hosts: all
  gather_facts: true
  tasks:
    - name: ping
      ansible.builtin.ping:
"""


@dataclass(frozen=True)
class JobResult:
    """What `ansible-runner process` left in the artifacts of one job."""

    node: str
    ident: str
    status: str  # runner's: successful, failed, timeout, canceled, error
    rc: int | None
    events: int  # job_events/*.json
    facts: dict[str, Any] = field(repr=False)  # target's ansible_facts from the setup task
    ok: int = 0  # hosts in playbook_on_stats["ok"]
    failed: int = 0  # hosts in ["failures"]
    unreachable: int = 0  # hosts in ["dark"]
    stdout_tail: str = field(default="", repr=False)
    duration_s: float = 0.0
    artifact_dir: Path | None = None
    notes: tuple[str, ...] = ()

    @property
    def hostname(self) -> str | None:
        return self.facts.get("ansible_hostname")

    @property
    def default_ipv4(self) -> str | None:
        """None for a host without a default route (target01 on the internal network)."""
        return (self.facts.get("ansible_default_ipv4") or {}).get("address")

    @property
    def ipv4_addresses(self) -> list[str]:
        return list(self.facts.get("ansible_all_ipv4_addresses") or [])


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    """Create with `mode` from the start: env/ssh_key is never world-readable, not even briefly."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), mode)
        fh.write(text)


def make_private_data_dir(
    pdd: Path, target_ip: str, image_ref: str, key_path: Path, *,
    pull: str = "missing", job_timeout: int = 300,
) -> None:
    """Lay out runner's private data dir: project/ping.yml, inventory/hosts, env/*."""
    for sub in ("project", "inventory", "env"):
        (pdd / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    pdd.chmod(0o700)
    _write(pdd / "project" / "ping.yml", PING_PLAYBOOK, 0o644)
    _write(pdd / "inventory" / "hosts",
           # auto_silent: interpreter discovery as usual, without its warning in the output.
           f"target01 ansible_host={target_ip} ansible_user=root "
           "ansible_python_interpreter=auto_silent\n", 0o644)
    # Runner feeds it to ssh-agent inside the EE (through a fifo); it is never an argument.
    _write(pdd / "env" / "ssh_key", key_path.read_text())
    _write(pdd / "env" / "envvars", json.dumps({"ANSIBLE_HOST_KEY_CHECKING": "False"}) + "\n")
    settings = {
        "process_isolation": True,
        "process_isolation_executable": "podman",
        "container_image": image_ref,
        # --pull=missing (AWX's "only pull if not present"): the pre-pulled image is used
        # as is, and a node without it pulls with its own auth.json + certs.d.
        "container_options": [*AWX_CONTAINER_OPTIONS, f"--pull={pull}"],
        # The worker kills the play itself after this long (a bound on the node's side).
        "job_timeout": job_timeout,
    }
    _write(pdd / "env" / "settings", json.dumps(settings, indent=1) + "\n", 0o644)


def as_service_user(command: str, user: str = SERVICE_USER) -> str:
    """A remote shell command running `command` as `user` with the environment receptor's
    systemd unit (User=awx) would give it, from / (root's cwd is not the user's)."""
    return (f"cd / && home=$(getent passwd {user} | cut -d: -f6) && "
            f'exec runuser -u {user} -- env -i HOME="$home" USER={user} LOGNAME={user} '
            f"SHELL=/bin/sh PATH={NODE_ENV_PATH} LANG=C.UTF-8 {command}")


def _ssh_base(ssh_config: Path, node: str) -> list[str]:
    # ControlMaster=no: reuse the lab's master if one is up, never leave a new one behind.
    return ["ssh", "-F", str(ssh_config), "-o", "BatchMode=yes", "-o", "ControlMaster=no",
            "-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=4", node]


def _local_runner() -> str:
    """ansible-runner of this Python's environment (the nox/test venv), else PATH's."""
    beside = Path(sys.executable).parent / "ansible-runner"
    found = str(beside) if beside.exists() else shutil.which("ansible-runner")
    if not found:
        raise LabError("ansible-runner not found: install the test extra (pip install -e .[test])")
    return found


def _node_registry_notes(ssh_config: Path, node: str, hostport: str) -> list[str]:
    """Say which of the node's registry files (meshctl's job) are missing; a pull without
    them fails with 'authentication required' / 'unknown authority'."""
    script = (f'h=$(getent passwd {SERVICE_USER} | cut -d: -f6); '
              f'test -s "$h/.config/containers/auth.json" || echo "no $h/.config/containers/auth.json"; '
              f"test -s /etc/containers/certs.d/{hostport}/ca.crt || "
              f"echo 'no /etc/containers/certs.d/{hostport}/ca.crt'")
    try:
        r = subprocess.run([*_ssh_base(ssh_config, node), script], capture_output=True, text=True,
                           timeout=SSH_CHECK_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return [f"{node}: registry file check timed out"]
    return [f"{node}: {line}" for line in r.stdout.splitlines() if line.strip()]


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Kill the processes this job started, by PID, and reap them."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=KILL_WAIT)


def _pipeline(cmds: list[list[str]], out: IO[bytes], err: list[IO[bytes]],
              timeout: float) -> tuple[list[int | None], bool]:
    """cmds[0] | cmds[1] | ... > out; returns (exit codes, timed out)."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        stdin: Any = subprocess.DEVNULL
        for i, cmd in enumerate(cmds):
            last = i == len(cmds) - 1
            p = subprocess.Popen(cmd, stdin=stdin, stdout=out if last else subprocess.PIPE,
                                 stderr=err[i])
            if i:
                stdin.close()  # only the next process holds the pipe: a dead reader gives EPIPE
            stdin = p.stdout
            procs.append(p)
        deadline = time.monotonic() + timeout
        for p in procs:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        return [p.returncode for p in procs], False
    except subprocess.TimeoutExpired:
        _stop(procs)
        return [p.returncode for p in procs], True
    except BaseException:
        _stop(procs)
        raise


def _read_events(artifact_dir: Path) -> list[dict[str, Any]]:
    events = []
    for path in (artifact_dir / "job_events").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            events.append(json.loads(path.read_text()))
    return sorted(events, key=lambda e: e.get("counter", 0))


def _facts(events: list[dict[str, Any]], host: str) -> dict[str, Any]:
    """ansible_facts from the fact-gathering task's runner_on_ok event for `host`."""
    for e in events:
        data = e.get("event_data") or {}
        if e.get("event") == "runner_on_ok" and data.get("host") == host:
            facts = (data.get("res") or {}).get("ansible_facts")
            if data.get("task_action", "").endswith(("gather_facts", "setup")) and facts:
                return facts
    return {}


def _stats(events: list[dict[str, Any]]) -> dict[str, int]:
    for e in reversed(events):
        if e.get("event") == "playbook_on_stats":
            d = e.get("event_data") or {}
            return {"ok": len(d.get("ok") or {}), "failed": len(d.get("failures") or {}),
                    "unreachable": len(d.get("dark") or {})}
    return {"ok": 0, "failed": 0, "unreachable": 0}


def _tail(path: Path, n: int = STDOUT_TAIL_LINES) -> str:
    """The last n non-blank lines, without the callback's ANSI colours."""
    try:
        text = ANSI_RE.sub("", path.read_text(errors="replace"))
    except OSError:
        return ""
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-n:])


def run_job(
    workdir: Path,
    node: str,
    target_ip: str,
    image_ref: str,
    ssh_config: Path,
    key_path: Path,
    registry: RegistryInfo | None,
    *,
    timeout: float = JOB_TIMEOUT,
    pull: str = "missing",
) -> JobResult:
    """Run project/ping.yml against target01 (target_ip) in image_ref on execution node
    `node` (a Host of ssh_config), via transmit | ssh worker | process. key_path: the
    private key target01's root accepts (sent in the stream as env/ssh_key).

    Registry credentials: runner could be given `container_auth_data` per job (AWX does
    that, writing a temporary auth.json on the node); deliberately not done here. The point
    is that meshctl prepares the node (~awx/.config/containers/auth.json and
    /etc/containers/certs.d/<host:port>/ca.crt), so podman's own config must do. `registry`
    is only used to check that image_ref lives there and to note missing node files.

    Returns a JobResult also when the play fails (status "failed"); a pipeline that ran
    out of `timeout` is killed (our three processes, and the job's container on the node)
    and reported as status "timeout". Logs: workdir/job-<ident>/*.log.
    """
    notes: list[str] = []
    if registry is not None:
        if not image_ref.startswith(registry.hostport + "/"):
            raise LabError(f"image {image_ref} is not in registry {registry.hostport}")
        notes += _node_registry_notes(ssh_config, node, registry.hostport)
    ident = f"meshlab-{node}-{uuid.uuid4().hex[:8]}"
    jobdir = workdir.resolve() / f"job-{ident}"
    pdd = jobdir / "pdd"
    jobdir.mkdir(parents=True, mode=0o700)
    make_private_data_dir(pdd, target_ip, image_ref, key_path, pull=pull,
                          job_timeout=max(30, int(timeout) - 60))
    runner = _local_runner()
    # --delete: the worker removes its copy of the job (with the key) when it ends.
    worker = as_service_user(f"{NODE_RUNNER} worker --private-data-dir=/tmp/{ident} --delete")
    cmds = [
        [runner, "transmit", str(pdd), "-p", "ping.yml", "--ident", ident],
        [*_ssh_base(ssh_config, node), worker],
        [runner, "process", str(pdd), "--ident", ident],
    ]
    start = time.monotonic()
    logs = [jobdir / f"{n}.log" for n in ("transmit", "worker", "process")]
    try:
        with contextlib.ExitStack() as stack:
            errs = [stack.enter_context(p.open("wb")) for p in logs]
            out = stack.enter_context((jobdir / "stdout.log").open("wb"))
            codes, timed_out = _pipeline(cmds, out, errs, timeout)
    finally:
        # The stream already carried it; no copy of the key stays in the job dir.
        (pdd / "env" / "ssh_key").unlink(missing_ok=True)
    duration = time.monotonic() - start
    if timed_out:
        # The worker's podman container outlives a killed ssh: remove it by its runner name.
        cleanup = as_service_user(f"podman rm -f -t 0 --ignore ansible_runner_{ident}")
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run([*_ssh_base(ssh_config, node), cleanup], capture_output=True,
                           timeout=SSH_CHECK_TIMEOUT, stdin=subprocess.DEVNULL, check=False)
        notes.append(f"pipeline killed after {timeout:.0f}s (exit codes {codes})")
    elif codes[0] or codes[2]:  # the worker's exit code is the play's rc: not news
        notes.append("exit codes transmit/worker/process: " + "/".join(map(str, codes)))
    artifact_dir = pdd / "artifacts" / ident
    events = _read_events(artifact_dir)
    status_file, rc_file = artifact_dir / "status", artifact_dir / "rc"
    status = "timeout" if timed_out else (
        status_file.read_text().strip() if status_file.exists() else "error")
    rc: int | None = None
    with contextlib.suppress(OSError, ValueError):
        rc = int(rc_file.read_text().strip())
    stdout_file = artifact_dir / "stdout"
    tail = _tail(stdout_file if stdout_file.exists() else jobdir / "stdout.log")
    if status == "error":
        notes.append("worker stderr: " + _tail(logs[1], 8))
    return JobResult(node=node, ident=ident, status=status, rc=rc, events=len(events),
                     facts=_facts(events, "target01"), **_stats(events), stdout_tail=tail,
                     duration_s=duration, artifact_dir=artifact_dir, notes=tuple(notes))


def pull_on_node(ssh_config: Path, node: str, image_ref: str, timeout: float = 300.0) -> float:
    """`podman pull` image_ref as the service user on node (uses the node's auth.json and
    certs.d, nothing passed); returns seconds taken. Raises LabError with podman's message."""
    start = time.monotonic()
    cmd = as_service_user(f"podman pull --quiet {shlex.quote(image_ref)}")
    try:
        r = subprocess.run([*_ssh_base(ssh_config, node), cmd], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{node}: podman pull {image_ref} took over {timeout:.0f}s") from exc
    if r.returncode != 0:
        raise LabError(f"{node}: podman pull {image_ref} failed (exit {r.returncode}): "
                       f"{r.stderr.strip()[-800:]}")
    return time.monotonic() - start
