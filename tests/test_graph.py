"""Diagrams of a topology: dot (checked by our own reader and by graphviz itself),
SVG through the real ``dot`` program, and Mermaid."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from seed import edge

from meshctl.core.errors import MeshctlError, UsageError
from meshctl.core.graph import (
    LEGEND_PREFIX,
    dot_quote,
    mermaid_text,
    render_dot,
    render_mermaid,
    render_svg,
)
from meshctl.core.plugins import create_plugin_manager
from meshctl.core.topology import Topology, parse_topology

# The seed with what the diagrams must show: a ws listener (its protocol on the edge
# label), instance groups, a node with an address and no listener, a hybrid node.
MESH = edge(
    {"    listener: {port: 27199}\n": "    listener: {port: 443, protocol: ws}\n",
     "    ssh: {host: 192.0.2.10, via: hop01.example.com}\n":
         "    ssh: {host: 192.0.2.10, via: hop01.example.com}\n    instance_groups: [edge]\n"},
    nodes="""\
  - name: exec@site-2.example.com
    role: execution
    address: exec2.example.com
    listener: false
    peers: [hop01.example.com, awx-task]
  - name: hybrid-1
    role: hybrid
    managed: false
    address: hybrid1.example.com
    listener: {port: 27200}
    peers: [hop01.example.com]
""")

HAVE_DOT = shutil.which("dot") is not None
needs_dot = pytest.mark.skipif(not HAVE_DOT, reason="graphviz 'dot' is not installed")


@pytest.fixture
def topo() -> Topology:
    return parse_topology(MESH, "mesh.yml", create_plugin_manager(autoload=False))


# -- a small reader for the dot we write (one statement a line) ---------------

_ID = r'"((?:[^"\\]|\\.)*)"'
_NODE_RE = re.compile(rf"^\s*{_ID} \[(.*)\];$")
_EDGE_RE = re.compile(rf"^\s*{_ID} -> {_ID} \[(.*)\];$")
_ATTR_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^,\s]+)')


def _unquote(text: str) -> str:
    return text.replace('\\"', '"')


def _attrs(text: str) -> dict[str, str]:
    return {k: _unquote(v[1:-1]) if v.startswith('"') else v for k, v in _ATTR_RE.findall(text)}


def parse_dot(text: str) -> tuple[list[tuple[str, dict[str, str]]], list[tuple[str, str, dict[str, str]]]]:
    nodes, edges = [], []
    for line in text.splitlines():
        if m := _EDGE_RE.match(line):
            edges.append((_unquote(m.group(1)), _unquote(m.group(2)), _attrs(m.group(3))))
        elif m := _NODE_RE.match(line):
            nodes.append((_unquote(m.group(1)), _attrs(m.group(2))))
    return nodes, edges


def expected_edges(topo: Topology) -> list[tuple[str, str]]:
    return [(n.name, p) for n in topo.nodes for p in n.peers]


# -- dot ------------------------------------------------------------------------


def test_dot_declares_every_node_once_with_its_role_shape(topo: Topology) -> None:
    nodes, _ = parse_dot(render_dot(topo))
    real = [(name, attrs) for name, attrs in nodes if not name.startswith(LEGEND_PREFIX)]
    assert [name for name, _ in real] == [n.name for n in topo.nodes]
    by_name = dict(real)
    assert by_name["awx-task"]["shape"] == "doubleoctagon"
    assert by_name["hybrid-1"]["shape"] == "octagon"
    assert by_name["hop01.example.com"]["shape"] == "diamond"
    assert by_name["exec01.example.com"]["shape"] == "ellipse"
    for node in topo.nodes:
        attrs = by_name[node.name]
        assert attrs["shape"] == topo.role_of(node).dot_shape
        assert attrs["style"] == ("solid" if node.managed else "dashed")
        assert attrs["label"].split("\\n")[0] == node.name


def test_dot_labels_show_listener_address_and_groups(topo: Topology) -> None:
    by_name = dict(parse_dot(render_dot(topo))[0])
    assert by_name["awx-task"]["label"].split("\\n") == [
        "awx-task", "control (unmanaged)", "awx.example.com", "listens :27199"]
    assert "listens :443/ws" in by_name["hop01.example.com"]["label"].split("\\n")
    assert "groups: edge" in by_name["exec01.example.com"]["label"].split("\\n")
    assert "no listener" in by_name["exec@site-2.example.com"]["label"].split("\\n")


def test_dot_edges_go_from_dialer_to_listener_labelled_with_port(topo: Topology) -> None:
    _, edges = parse_dot(render_dot(topo))
    assert [(a, b) for a, b, _ in edges] == expected_edges(topo)
    labels = {(a, b): attrs["label"] for a, b, attrs in edges}
    assert labels[("hop01.example.com", "awx-task")] == "27199"
    # The protocol shows when it is not tcp; the port is the target's listener.
    assert labels[("exec01.example.com", "hop01.example.com")] == "443/ws"
    assert labels[("exec@site-2.example.com", "awx-task")] == "27199"


def test_dot_title_legend_and_determinism(topo: Topology) -> None:
    text = render_dot(topo)
    assert text.startswith('digraph "mesh edge" {\n')
    assert 'label="mesh: edge"' in text.splitlines()[1]
    legend = [n for n, _ in parse_dot(text)[0] if n.startswith(LEGEND_PREFIX)]
    roles = [r[len(LEGEND_PREFIX):] for r in legend]
    assert {"control", "hop", "execution", "hybrid", "unmanaged"} <= set(roles)
    assert render_dot(topo) == text
    again = parse_topology(MESH, "mesh.yml", create_plugin_manager(autoload=False))
    assert render_dot(again) == text


def test_dot_quote_escapes_quotes_and_backslashes() -> None:
    assert dot_quote("a.b@c-d") == '"a.b@c-d"'
    assert dot_quote('say "hi"') == '"say \\"hi\\""'
    # A trailing backslash must not escape the closing quote.
    assert dot_quote("x\\") == '"x\\\\"'
    assert dot_quote("two\nlines") == '"two\\nlines"'


def _graphviz_json(text: str) -> dict:
    proc = subprocess.run(["dot", "-Tjson0"], input=text.encode(), capture_output=True,
                          timeout=60, check=True)
    return json.loads(proc.stdout)


@needs_dot
def test_graphviz_reads_the_same_graph(topo: Topology) -> None:
    """A second implementation (graphviz itself) parses our dot to the same structure."""
    data = _graphviz_json(render_dot(topo))
    objects = data["objects"]
    names = {o["_gvid"]: o["name"] for o in objects}
    real = [o for o in objects if "shape" in o and not o["name"].startswith(LEGEND_PREFIX)]
    assert sorted(o["name"] for o in real) == sorted(n.name for n in topo.nodes)
    for o in real:
        assert o["shape"] == topo.role_of(topo.node(o["name"])).dot_shape
    edges = [(names[e["tail"]], names[e["head"]]) for e in data.get("edges", [])]
    assert sorted(edges) == sorted(expected_edges(topo))
    assert data["label"] == "mesh: edge"


@needs_dot
def test_graphviz_keeps_ids_with_quotes() -> None:
    quoted = dot_quote('a"b')
    text = f"digraph {{ {quoted} -> {dot_quote('c.d@e-f')}; }}"
    names = sorted(o["name"] for o in _graphviz_json(text)["objects"])
    assert names == ['a"b', "c.d@e-f"]


# -- svg ------------------------------------------------------------------------


@needs_dot
def test_render_svg_is_valid_svg_with_every_node(topo: Topology) -> None:
    svg = render_svg(topo)
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    titles = {t.text for t in root.iter("{http://www.w3.org/2000/svg}title")}
    for node in topo.nodes:
        assert node.name in titles
    assert "hop01.example.com->awx-task" in titles  # edges are titled tail->head


def _fake_dot(tmp_path: Path, body: str) -> str:
    script = tmp_path / "dot"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(tmp_path)


def test_render_svg_without_graphviz_says_how_to_install(
    topo: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no dot
    with pytest.raises(UsageError) as exc:
        render_svg(topo)
    message = str(exc.value)
    assert "graphviz" in message
    assert "apt-get install graphviz" in message and "dnf install graphviz" in message


def test_render_svg_times_out(topo: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _fake_dot(tmp_path, "exec sleep 10") + os.pathsep + "/usr/bin:/bin")
    with pytest.raises(MeshctlError, match="did not finish within 0.3s"):
        render_svg(topo, timeout=0.3)


def test_render_svg_reports_dot_failure(
    topo: Topology, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", _fake_dot(tmp_path, "cat >/dev/null; echo 'syntax error in line 3' >&2; exit 1")
                       + os.pathsep + "/usr/bin:/bin")
    with pytest.raises(MeshctlError, match=r"exit 1\): syntax error in line 3"):
        render_svg(topo)


# -- mermaid ----------------------------------------------------------------------

_M_NODE_RE = re.compile(r'^  (n\d+)(\{\{|\[\[|\{|\(|\[)"([^"]*)"(\}\}|\]\]|\}|\)|\])$')
_M_EDGE_RE = re.compile(r'^  (n\d+) -->\|"([^"]*)"\| (n\d+)$')


def test_mermaid_nodes_edges_and_shapes(topo: Topology) -> None:
    text = render_mermaid(topo)
    lines = text.splitlines()
    assert lines[:4] == ["---", 'title: "mesh: edge"', "---", "flowchart LR"]
    nodes = [m.groups() for line in lines if (m := _M_NODE_RE.match(line))]
    assert [n[0] for n in nodes] == [f"n{i}" for i in range(len(topo.nodes))]
    ids = {}
    shapes = {"control": "{{", "hybrid": "[[", "hop": "{", "execution": "("}
    for (mid, opening, label, _closing), node in zip(nodes, topo.nodes, strict=True):
        assert label.split("<br/>")[0] == node.name
        assert opening == shapes[node.role]
        ids[mid] = node.name
    edges = [m.groups() for line in lines if (m := _M_EDGE_RE.match(line))]
    assert [(ids[a], ids[b]) for a, _, b in edges] == expected_edges(topo)
    assert {(ids[a], ids[b]): port for a, port, b in edges}[
        ("exec01.example.com", "hop01.example.com")] == "443/ws"
    # Unmanaged nodes are dashed through a class.
    assert "  class n0,n4,legend_unmanaged unmanaged;" in lines
    assert render_mermaid(topo) == text


def test_mermaid_ids_never_contain_node_names(topo: Topology) -> None:
    for line in render_mermaid(topo).splitlines():
        if m := _M_EDGE_RE.match(line):
            assert re.fullmatch(r"n\d+", m.group(1)) and re.fullmatch(r"n\d+", m.group(3))


def test_mermaid_text_escapes_syntax() -> None:
    assert mermaid_text('a"b#<c>') == "a#quot;b#35;#lt;c#gt;"
