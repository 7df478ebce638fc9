"""Transport failures against local sockets only (loopback): each names its cause."""

from __future__ import annotations

import socket
import threading

from meshctl.core.engine import Engine
from meshctl.core.topology import parse_topology
from meshctl.core.transport import SSHOptions


def run_against(plugins, tmp_path, port: int, timeout: float = 2.0):
    text = f"""\
mesh: t
nodes:
  - name: n1
    role: execution
    address: 127.0.0.1
    listener: {{port: 27199}}
    ssh: {{user: root, port: {port}, connect_timeout: {timeout}}}
"""
    topo = parse_topology(text, "mesh.yml", plugins)
    engine = Engine(topo, plugins, ssh=SSHOptions(known_hosts=tmp_path / "kh"))
    (res,) = engine.plan(topo.nodes)
    return res


def test_refused(plugins, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    res = run_against(plugins, tmp_path, port)
    assert (res.status, res.cause) == ("unreachable", "refused")
    assert f"127.0.0.1:{port}" in res.error


def test_silent_listener_is_a_timeout_not_a_hang(plugins, tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    accepted: list[socket.socket] = []
    t = threading.Thread(target=lambda: accepted.append(srv.accept()[0]), daemon=True)
    t.start()
    try:
        res = run_against(plugins, tmp_path, port, timeout=1.5)
    finally:
        for c in accepted:
            c.close()
        srv.close()
    assert (res.status, res.cause) == ("unreachable", "timeout"), res.error
    assert "no SSH banner" in res.error
    assert res.duration < 10


def test_not_ssh_at_all(plugins, tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def answer():
        c, _ = srv.accept()
        c.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")
        c.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        res = run_against(plugins, tmp_path, port)
    finally:
        srv.close()
    assert res.status == "unreachable" and res.cause in ("ssh", "timeout"), res.error
