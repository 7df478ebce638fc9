"""``meshctl status`` and ``diagnose``: how receptorctl's output is collected on a node
and judged here. The shell part runs for real in ``sh``, with a stand-in receptorctl
that writes what receptorctl 1.6.9 writes (JSON on stdout, a warning on stderr)."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import textwrap
from pathlib import Path

import pytest
from seed import EDGE

from meshctl.core import receptor as R
from meshctl.core.topology import parse_topology
from meshctl.plugins.base_node import diagnose as D
from meshctl.plugins.base_node import status as S

# Printed by receptorctl 1.6.9 (cli.py) whenever receptor's Version differs from its own.
WARNING = "Warning: receptorctl and receptor are different versions, they may not be compatible"
STATUS = {
    "NodeID": "exec01.example.com",
    "Version": "v1.4.8",
    "SystemCPUCount": 2,
    "SystemMemoryMiB": 3915,
    "Connections": [{"NodeID": "hop01.example.com", "Cost": 1}],
    "RoutingTable": {"awx-task": "hop01.example.com", "hop01.example.com": "hop01.example.com"},
    "Advertisements": [
        {"NodeID": "awx-task", "ConnType": 2, "WorkCommands": None},
        {"NodeID": "exec01.example.com", "ConnType": 2,
         "WorkCommands": [{"WorkType": "ansible-runner", "Secure": True}]},
        {"NodeID": "hop01.example.com", "ConnType": 2, "WorkCommands": None},
    ],
}
USER = "awx"


@pytest.fixture
def node(plugins):
    return parse_topology(EDGE, "mesh.yml", plugins).node("exec01.example.com")


@pytest.fixture
def receptorctl(tmp_path):
    """(socket path, stand-in receptorctl path, fn to set what it prints and its exit code)."""
    sock = tmp_path / "receptor.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))  # `[ -S ... ]` wants a real socket
    tool = tmp_path / "receptorctl"

    def behave(stdout: str, stderr: str, rc: int = 0) -> None:
        tool.write_text(f"#!/bin/sh\nprintf '%s' {shlex.quote(stderr)} >&2\n"
                        f"printf '%s' {shlex.quote(stdout)}\nexit {rc}\n")
        tool.chmod(0o755)

    yield sock, tool, behave
    server.close()


def run_on_this_machine(script: str, sock: Path, tool: Path) -> str:
    """The node's script with the receptor paths pointed at the stand-ins (and no
    runuser: it needs root), run by sh with stderr merged as the SSH channel does."""
    script = (script.replace(R.SOCKET, str(sock)).replace(" receptorctl --socket", f" {tool} --socket")
              .replace(f"runuser -u {USER} -- ", ""))
    r = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=60)
    return r.stdout + r.stderr


def status_lines(script: str, *sections: str) -> str:
    """Only these sections of the status script (the others read this machine)."""
    return "\n".join(line for line in script.splitlines()
                     if any(line.startswith(f"printf '%s {name}\\n'") for name in sections)) + "\n"


def diagnose_lines(node) -> str:
    """The diagnose script's mesh-status parts and its end marker."""
    return "\n".join(line for line in D.script(node.name, USER, True).splitlines()
                     if "mesh-status" in line or line.startswith("printf '%s end")) + "\n"


def mesh_check(checks):
    (found,) = [(ok, detail) for name, ok, detail in checks if name == "mesh"]
    return found


def as_receptorctl_prints(status: dict) -> str:
    return json.dumps(status, indent=4, sort_keys=True) + "\n"  # receptorctl's print_json


def test_version_warning_on_stderr_does_not_break_the_json(node, receptorctl):
    sock, tool, behave = receptorctl
    behave(as_receptorctl_prints(STATUS), WARNING + "\n")
    script = S.script(node.name, USER, True, 27199)
    out = run_on_this_machine(status_lines(script, "mesh", "end"), sock, tool)
    sections = S.parse(out)
    assert json.loads(sections["mesh"]) == STATUS  # stdout alone
    checks, info = S.evaluate(sections, node=node, start=True, warn_days=30)
    ok, detail = mesh_check(checks)
    assert ok, detail
    assert detail == f"3 known nodes, routes to 2 (receptorctl: {WARNING})"
    assert info["mesh"] == {"routes": ["awx-task", "hop01.example.com"],
                            "known_nodes": ["awx-task", "exec01.example.com", "hop01.example.com"],
                            "warnings": [WARNING]}


def test_no_socket_means_no_mesh_check(node, receptorctl, tmp_path):
    _sock, tool, behave = receptorctl
    behave("{}", "")
    script = S.script(node.name, USER, True, 27199)
    out = run_on_this_machine(status_lines(script, "mesh", "end"), tmp_path / "absent.sock", tool)
    assert S.parse(out)["mesh"] == "nosocket"
    checks, _ = S.evaluate(S.parse(out), node=node, start=True, warn_days=30)
    assert "mesh" not in [name for name, _, _ in checks]


def test_a_failing_receptorctl_reports_its_error_line_and_exit_code(node, receptorctl):
    sock, tool, behave = receptorctl
    trace = textwrap.dedent("""\
        Traceback (most recent call last):
          File "/opt/meshctl/venv/bin/receptorctl", line 8, in <module>
            sys.exit(run())
        ValueError: Socket path does not exist: /var/run/receptor/receptor.sock
        """)
    behave("", trace, rc=1)
    script = S.script(node.name, USER, True, 27199)
    out = run_on_this_machine(status_lines(script, "mesh", "end"), sock, tool)
    checks, info = S.evaluate(S.parse(out), node=node, start=True, warn_days=30)
    assert mesh_check(checks) == (False, "receptorctl status failed (exit 1): "
                                         "ValueError: Socket path does not exist: /var/run/receptor/receptor.sock")
    assert "mesh" not in info


@pytest.mark.parametrize(("stdout", "stderr", "rc", "expected"), [
    # The warning is not the cause: the line after it is.
    ("", f"{WARNING}\nError: permission denied\n", "1", "receptorctl status failed (exit 1): Error: permission denied"),
    # Coloured when stderr is a terminal: the escapes are dropped.
    ("not json", f"\x1b[35m{WARNING}\x1b[0m\n", "0", f"receptorctl status failed: {WARNING}"),
    ("", "", "124", "receptorctl status failed (exit 124): no answer within 15 s"),
    ("partial {", "", "1", "receptorctl status failed (exit 1): partial {"),
])
def test_mesh_check_failures(stdout, stderr, rc, expected):
    ok, detail, info = S.mesh_check(stdout, stderr, rc)
    assert (ok, detail, info) == (False, expected, None)


def test_coloured_warning_is_shown_plain_on_a_healthy_node():
    ok, detail, info = S.mesh_check(as_receptorctl_prints(STATUS), f"\x1b[35m{WARNING}\x1b[0m\n", "0")
    assert ok and detail.endswith(f"(receptorctl: {WARNING})") and info["warnings"] == [WARNING]
    ok, detail, info = S.mesh_check(as_receptorctl_prints(STATUS), "", "0")
    assert (ok, detail, info["warnings"]) == (True, "3 known nodes, routes to 2", [])


def test_diagnose_keeps_the_mesh_status_json_and_its_stderr_apart(node, receptorctl):
    sock, tool, behave = receptorctl
    behave(as_receptorctl_prints(STATUS), WARNING + "\n")
    files = D.split(run_on_this_machine(diagnose_lines(node), sock, tool))
    assert json.loads(files["mesh-status.json"]) == STATUS
    assert files["mesh-status.stderr.txt"] == WARNING + "\n"


def test_diagnose_without_a_socket_says_so(node, receptorctl, tmp_path):
    _sock, tool, behave = receptorctl
    behave("{}", "")
    files = D.split(run_on_this_machine(diagnose_lines(node), tmp_path / "absent.sock", tool))
    assert files["mesh-status.json"].strip() == ""
    assert files["mesh-status.stderr.txt"] == "no control socket\n"
