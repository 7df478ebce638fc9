"""A loopback stand-in for the AWX 24.6.1 API, built from the recordings in
../shared/awx/24.6.1 (next to the repository): every recorded request gets the recorded
status and body (tests/test_awx_standin.py replays them all), state changes only the way
the recordings show, and anything they do not cover answers 501.

    with awx_standin() as awx:           # basic auth awx.auth, API root awx.api
        ...client POSTs /instances/, /instance_groups/N/instances/, PATCHes peers...
        awx.run_health_check("exec01.example", outcome="ready")   # the enqueued task
        ...client PATCHes {"node_state": "deprovisioning"}...
        awx.run_removal("exec02.example")                          # the removal task
        before = len(awx.calls)
        ...client syncs again...
        assert not [c for c in awx.calls[before:] if c.method not in ("GET", "OPTIONS")]

Install bundles: real AWX mints a new key and cert on every GET; the stand-in serves the
same recorded bytes (bundles/<host>_install_bundle.tar.gz, or ``bundles=`` given to
awx_standin) on every GET, and a 501 for a host with none."""

from __future__ import annotations

import contextlib
import copy
import http.server
import ipaddress
import json
import threading
from collections.abc import Iterator
from pathlib import Path

from . import rules
from .model import Clock, Mesh
from .server import Call, Handler, basic_header

RECORDINGS = Path(__file__).resolve().parents[2].parent / "shared" / "awx" / "24.6.1"
USER = "admin"  # NOTES: createsuperuser admin; the password was never recorded
PASSWORD = "standin-password"
STATIC = {"002": "002-config", "003": "003-api-root", "004": "004-me", "006": "006-instances-options",
          "066": "066-instance-exec01-options"}  # fmt: skip


def recorded(name: str) -> dict:
    return json.loads((RECORDINGS / "recorded" / f"{name}.json").read_text())


class StandIn:
    """The handle ``awx_standin()`` yields."""

    def __init__(self, heartbeat: bool, bundles: dict[str, bytes] | None) -> None:
        self.clock = Clock()
        self.mesh = Mesh(self.clock)
        self.calls: list[Call] = []
        self.auth = (USER, PASSWORD)
        self.basic = basic_header(USER, PASSWORD)
        self.static = {key: recorded(name)["response_body"] for key, name in STATIC.items()}
        found = sorted((RECORDINGS / "bundles").glob("*_install_bundle.tar.gz"))
        self.bundles = {p.name.removesuffix("_install_bundle.tar.gz"): p.read_bytes() for p in found}
        self.bundles.update(bundles or {})
        self.url = ""
        if heartbeat:
            self.run_heartbeat()

    @property
    def api(self) -> str:
        return self.url + "/api/v2/"

    def writes(self) -> list[Call]:
        """Calls that could change AWX (everything but GET and OPTIONS)."""
        return [c for c in self.calls if c.method not in ("GET", "OPTIONS", "HEAD")]

    def _find(self, hostname: str):
        inst = next((i for i in self.mesh.instances.values() if i.hostname == hostname), None)
        if inst is None:
            raise KeyError(f"no instance {hostname!r} in the stand-in")
        return inst

    def instance(self, hostname: str) -> dict:
        """The instance as GET /instances/N/ would show it."""
        with self.mesh.lock:
            return copy.deepcopy(self.mesh.instance_json(self._find(hostname), "detail"))

    def run_heartbeat(self) -> None:
        """The control node's own health check: ready, capacity 241 (012, 058)."""
        with self.mesh.lock:
            rules.run_heartbeat(self.mesh)

    def run_health_check(self, hostname: str, outcome: str = "unavailable", **facts) -> None:
        """Run the health-check task a POST .../health_check/ enqueued. "unavailable" is
        the recorded outcome with no receptor socket (900, 114). "ready" (a real mesh) is
        NOT recorded: node_state ready, errors "", last_seen set, and ``facts`` (version,
        cpu, memory, cpu_capacity, mem_capacity) as given, defaulting to the control
        node's recorded values; capacity follows from them."""
        known = {
            "version": "24.6.1",
            "cpu": "2.0",
            "memory": 25275990016,
            "cpu_capacity": 8,
            "mem_capacity": 241,
        }
        if set(facts) - set(known):
            raise TypeError(f"unknown health facts: {sorted(set(facts) - set(known))}")
        with self.mesh.lock:
            rules.run_health_task(
                self.mesh,
                self._find(hostname),
                outcome,
                known | facts if outcome == "ready" else {},
            )

    def run_removal(self, hostname: str) -> None:
        """The removal task a PATCH to deprovisioning enqueued (902); no jobs to wait for."""
        with self.mesh.lock:
            rules.run_removal(self.mesh, self._find(hostname))

    def receptor_config(self) -> list[dict]:
        """The control node's receptor.conf as write_receptor_config() writes it (901):
        the starter, then a tcp-peer per address with peers_from_control_nodes."""
        task = json.loads(
            (RECORDINGS / "recorded" / "901-task-write_receptor_config.json").read_text()
        )
        with self.mesh.lock:
            peers = [{"tcp-peer": {"address": self.mesh.address_json(a)["full_address"], "tls": "tlsclient"}}
                     for a in self.mesh.addresses.values() if a.peers_from_control_nodes]  # fmt: skip
        return task["starter_config"] + peers


@contextlib.contextmanager
def awx_standin(*, heartbeat: bool = True, bundles: dict[str, bytes] | None = None,
                timeout: float = 10.0) -> Iterator[StandIn]:  # fmt: skip
    """Serve a fresh stand-in on 127.0.0.1 in a thread; stop it on exit. ``heartbeat``
    False keeps the control node as recorded before 012 (installed, capacity 0)."""
    if not (RECORDINGS / "recorded").is_dir():
        raise FileNotFoundError(f"no AWX recordings at {RECORDINGS}")
    standin = StandIn(heartbeat, bundles)
    handler = type("BoundHandler", (Handler,), {"standin": standin, "timeout": timeout})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    host, port = server.server_address[:2]
    assert ipaddress.ip_address(host).is_loopback, host
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    standin.url = f"http://{host}:{port}"
    try:
        yield standin
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=timeout)
        if thread.is_alive():
            raise RuntimeError("the AWX stand-in did not stop")
