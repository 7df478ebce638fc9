"""The command line as a user meets it: exit codes, messages, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from seed import EDGE

DATA = Path(__file__).parent / "data"


def meshctl(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, MESHCTL_DISABLE_PLUGIN_AUTOLOAD="1")
    r = subprocess.run([sys.executable, "-m", "meshctl", *args], capture_output=True, text=True,
                       cwd=cwd, env=env, timeout=120)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    return r


@pytest.fixture
def mesh(tmp_path):
    p = tmp_path / "mesh.yml"
    p.write_text(EDGE)
    return p


def test_validate_ok_and_default_file(mesh):
    r = meshctl("validate", cwd=mesh.parent)
    assert r.returncode == 0 and "mesh.yml: valid (3 nodes, 2 managed)" in r.stdout


@pytest.mark.parametrize("content,code,message", [
    (None, 2, "no such topology file (use -f FILE)"),
    ("mesh: [\n", 2, "mesh.yml:2:1: YAML syntax error"),
    (b"\xff\xfe", 2, "not UTF-8 text"),
    ("", 2, "the topology must be a mapping with 'mesh' and 'nodes'; got empty"),
])
def test_bad_files_are_clean_errors(tmp_path, content, code, message):
    p = tmp_path / "mesh.yml"
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content)
    r = meshctl("validate", "-f", str(p), cwd=tmp_path)
    assert r.returncode == code
    assert message in r.stderr, r.stderr


def test_limit_errors(mesh):
    r = meshctl("plan", "-f", str(mesh), "--limit", "nope")
    assert r.returncode == 2 and "--limit: unknown node(s): nope" in r.stderr
    r = meshctl("plan", "-f", str(mesh), "--limit", "awx-task")
    assert r.returncode == 2 and "not managed by meshctl: awx-task" in r.stderr


def test_unknown_plugin_module_and_command(mesh):
    r = meshctl("-p", "no_such_module_zz", "validate", "-f", str(mesh))
    assert r.returncode == 3 and "cannot load plugin module 'no_such_module_zz'" in r.stderr
    r = meshctl("frobnicate")
    assert r.returncode == 2 and "No such command 'frobnicate'" in r.stderr


def test_version():
    from meshctl import __version__

    assert meshctl("version").stdout.strip() == f"meshctl {__version__}"
    assert meshctl("--version").stdout.strip() == f"meshctl, version {__version__}"


def test_graph_dot_and_mermaid_via_cli(mesh, tmp_path):
    dot = meshctl("graph", "-f", str(mesh))
    assert dot.returncode == 0
    assert '"hop01.example.com" -> "awx-task"' in dot.stdout
    assert '"exec01.example.com" -> "hop01.example.com"' in dot.stdout
    mer = meshctl("graph", "-f", str(mesh), "--format", "mermaid")
    assert mer.stdout.startswith("---\ntitle:") or "flowchart LR" in mer.stdout
    out = tmp_path / "g.svg"
    svg = meshctl("graph", "-f", str(mesh), "--format", "svg", "--out", str(out))
    if svg.returncode == 0:
        assert out.read_bytes().lstrip().startswith((b"<?xml", b"<svg"))
    else:
        assert "graphviz" in svg.stderr


def test_import_aap_inventory_round_trips_through_validate(tmp_path):
    r = meshctl("import", "aap-inventory", str(DATA / "aap" / "reference.ini"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "mesh.yml"
    out.write_text(r.stdout)
    v = meshctl("validate", "-f", str(out))
    assert v.returncode == 0, v.stderr


def test_import_aap_inventory_errors_name_file_and_line():
    bad = DATA / "aap" / "errors" / "unknown-peer.ini"
    r = meshctl("import", "aap-inventory", str(bad))
    assert r.returncode == 2
    assert f"{bad}:" in r.stderr and "error:" in r.stderr


def test_plugins_json_lists_builtins():
    r = meshctl("plugins", "-o", "json")
    names = [p["name"] for p in json.loads(r.stdout)]
    assert names[:4] == ["core", "os_debian", "os_rhel", "base_node"]
