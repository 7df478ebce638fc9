"""Property tests: every writer of generated text, fed thousands of hostile strings,
read back by the real parser of its format (PyYAML, graphviz ``dot``) or, for
Mermaid, by a strict grammar of exactly the lines graph.py emits."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hostile import hostile_strings
from seed import edge
from test_cli import meshctl

from meshctl.core import graph as G
from meshctl.core.plugins import create_plugin_manager
from meshctl.core.receptor import scalar
from meshctl.core.topology import Topology, parse_topology
from meshctl.core.writers import yaml_scalar, yaml_string

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' is not installed")

# The seed, hop01 a ws listener.
MESH = edge({"    listener: {port: 27199}\n": "    listener: {port: 443, protocol: ws}\n"})


def hostile_topology(strings: list[str]) -> Topology:
    """A valid topology whose labels then carry hostile text (validation would stop
    most of it; the writers must not depend on that)."""
    topo = parse_topology(MESH, "mesh.yml", create_plugin_manager(autoload=False))
    for i, node in enumerate(topo.nodes):
        node.address = strings[(3 * i) % len(strings)]
        node.instance_groups = [strings[(3 * i + 1) % len(strings)], strings[(3 * i + 2) % len(strings)]]
    topo.mesh = strings[-1]
    return topo


def chunks(strings: list[str], size: int = 7):
    for i in range(0, len(strings), size):
        yield strings[i:i + size] or [""]


# -- receptor.conf's YAML scalar (receptor.py is tested here, not changed) ---------------



def test_receptor_scalar_round_trips_through_pyyaml():
    checked = 0
    for s in hostile_strings(seed=1, count=4000):
        written = scalar(s)
        assert len(written.splitlines()) == 1, repr(written)
        assert yaml.safe_load(written) == s, (s, written)
        # In a mapping and a list, as receptor.conf.j2 uses it.
        assert yaml.safe_load(f"- k: {written}\n  j: 1\n") == [{"k": s, "j": 1}], (s, written)
        checked += 1
    assert checked > 2000


def test_receptor_scalar_round_trips_characters_outside_the_bmp():
    assert yaml.safe_load(scalar("\U0001F600")) == "\U0001F600"


def test_receptor_scalar_keeps_a_trailing_newline():
    assert yaml.safe_load(f"k: {scalar('end' + chr(10))}\n") == {"k": "end\n"}


def test_receptor_scalar_quotes_a_trailing_colon():
    assert yaml.safe_load(f"k: {scalar('X:')}\n") == {"k": "X:"}


# -- the one YAML scalar writer, for PyYAML (imported mesh.yml) and yaml.v2 (receptor.conf) --

@pytest.mark.parametrize("go", [False, True], ids=["pyyaml", "go"])
def test_yaml_scalar_round_trips_in_block_and_flow_context(go):
    strings = hostile_strings(seed=8, count=4000)
    plain = 0
    for s in strings:
        w = yaml_scalar(s, go=go)
        assert len(w.splitlines()) == 1 and "\n" not in w, repr(w)
        # As the AAP emitter and receptor.conf.j2 use it: a mapping value, a block list
        # item and an item of a flow list (peers: [a, b]).
        assert yaml.safe_load(f"k: {w}\nj: 1\n") == {"k": s, "j": 1}, (s, w)
        assert yaml.safe_load(f"- {w}\n- j\n") == [s, "j"], (s, w)
        assert yaml.safe_load(f"k: [{w}, {w}]\n") == {"k": [s, s]}, (s, w)
        plain += w == s
    assert plain > 20  # the property covers plain output too, not only quoted


def test_yaml_scalar_plain_text_and_what_it_quotes():
    for value in ("exec1.example.com", "10.0.0.11", "fe80::1", "/home/me/.ssh/site b key", "~/.ssh/id", "a@b"):
        assert yaml_scalar(value) == value
    for value in ("yes", "27199", "1.5", "2001-01-01", "null", "~", "a: b", "a #b", "a,b", "[x]", "x:", " x",
                  "-x", "@x", "a\n"):
        assert yaml_scalar(value).startswith('"'), value
    # receptor.conf: yaml.v2 reads Go numbers (0x1f, 1_000) and anything starting with a digit is quoted.
    assert yaml_scalar("10.0.0.11", go=True) == '"10.0.0.11"'
    assert yaml_scalar("exec1:27199", go=True) == "exec1:27199"
    assert yaml_scalar(27199) == "27199" and yaml_scalar(True) == "true" and yaml_scalar(None) == "null"


# -- the YAML string writer (Mermaid front matter) ----------------------------------------

def test_yaml_string_round_trips_through_pyyaml():
    for s in hostile_strings(seed=2, count=4000):
        written = yaml_string(s)
        assert len(written.splitlines()) == 1, repr(written)
        assert yaml.safe_load(f"title: {written}\n") == {"title": s}, (s, written)


# -- DOT -------------------------------------------------------------------------------------

def _dot_json(text: str) -> dict:
    proc = subprocess.run(["dot", "-Tjson0"], input=text.encode(), capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout)


def test_dot_quote_is_one_line_without_raw_controls():
    for s in hostile_strings(seed=3, count=4000):
        q = G.dot_quote(s)
        assert q.startswith('"') and q.endswith('"') and q.isprintable(), repr(q)
        # Inside, a quote is always escaped and a backslash never escapes the closing quote.
        assert re.fullmatch(r'"(?:[^"\\]|\\.)*"', q), repr(q)


@needs_dot
def test_graphviz_reads_one_node_per_hostile_id_and_label():
    strings = hostile_strings(seed=4, count=1500)
    ids = list(dict.fromkeys(G.dot_quote(s) for s in strings))  # distinct as written
    body = "".join(f"  {q} [label={G.dot_quote(s)}];\n" for q, s in zip(ids, strings, strict=False))
    objects = _dot_json("digraph {\n" + body + "}\n")["objects"]
    assert len(objects) == len(ids)
    # graphviz keeps an ID as written, less the escaped quotes (and renames IDs starting
    # with "%", its own anonymous names; receptor node ids never start so).
    assert (sorted(o["name"] for o in objects if not o["name"].startswith("%"))
            == sorted(n for q in ids if not (n := q[1:-1].replace('\\"', '"')).startswith("%")))


@needs_dot
def test_render_dot_of_a_hostile_topology_has_its_nodes_and_edges():
    for batch in chunks(hostile_strings(seed=5, count=350)):
        topo = hostile_topology(batch)
        data = _dot_json(G.render_dot(topo))
        real = [o for o in data["objects"] if "shape" in o and not o["name"].startswith(G.LEGEND_PREFIX)]
        assert sorted(o["name"] for o in real) == sorted(n.name for n in topo.nodes), batch
        assert len(data.get("edges", [])) == 2, batch
        canon = subprocess.run(["dot", "-Tcanon"], input=G.render_dot(topo).encode(), capture_output=True,
                               timeout=60)
        assert canon.returncode == 0, canon.stderr.decode()


# -- Mermaid: a strict grammar of the lines graph.py writes ---------------------------------

_ENTITY = r"#(?:\d+|quot|lt|gt|amp);"
_LABEL = rf'"((?:[^"#<>\[\](){{}}|;`&%]|{_ENTITY}|<br/>)*)"'
_SHAPE = r"(\{\{|\[\[|\{|\(|\[)"
_CLOSE = {"{{": "}}", "[[": "]]", "{": "}", "(": ")", "[": "]"}
_NODE = re.compile(rf"  (n\d+){_SHAPE}{_LABEL}(\}}\}}|\]\]|\}}|\)|\])")
_LEGEND_NODE = re.compile(rf"    (legend_[A-Za-z0-9_]+){_SHAPE}{_LABEL}(\}}\}}|\]\]|\}}|\)|\])")
_EDGE = re.compile(rf"  (n\d+) -->(?:\|{_LABEL}\|)? (n\d+)")
_CLASS = re.compile(r"  class (?:n\d+|legend_[A-Za-z0-9_]+)(?:,(?:n\d+|legend_[A-Za-z0-9_]+))* unmanaged;")
_FIXED = {'  subgraph legend["legend"]', "    direction LR", "  end",
          "  classDef unmanaged stroke-dasharray: 5 5;", "flowchart LR", "---"}


def _decode(label: str) -> list[str]:
    named = {"quot": '"', "lt": "<", "gt": ">", "amp": "&"}

    def one(m: re.Match) -> str:
        code = m.group(1)
        return named[code] if code in named else chr(int(code))

    return [re.sub(r"#(\d+|quot|lt|gt|amp);", one, part) for part in label.split("<br/>")]


def parse_mermaid(text: str) -> tuple[str, list[tuple[str, list[str]]], list[tuple[str, str]]]:
    """(title, nodes as (id, label lines), edges as (id, id)); AssertionError on any line
    outside the grammar, so one line can never declare two things."""
    assert text.endswith("\n") and text.splitlines() == text[:-1].split("\n"), "a line break other than \\n"
    lines = text[:-1].split("\n")
    assert lines[0] == "---" and lines[2] == "---" and lines[3] == "flowchart LR", lines[:4]
    assert lines[1].startswith("title: ")
    title = yaml.safe_load(lines[1])["title"]
    nodes, edges = [], []
    for line in lines[4:]:
        assert line.isprintable(), repr(line)
        if m := _NODE.fullmatch(line):
            assert _CLOSE[m.group(2)] == m.group(4), line
            nodes.append((m.group(1), _decode(m.group(3))))
        elif m := _EDGE.fullmatch(line):
            edges.append((m.group(1), m.group(3)))
        elif m := _LEGEND_NODE.fullmatch(line):
            assert _CLOSE[m.group(2)] == m.group(4), line
        else:
            assert line in _FIXED or _CLASS.fullmatch(line), repr(line)
    return title, nodes, edges


def test_mermaid_text_escapes_every_syntax_character_and_reads_back():
    for s in hostile_strings(seed=6, count=4000):
        text = G.mermaid_text(s)
        assert re.fullmatch(_LABEL, f'"{text}"') and "<br/>" not in text, repr(text)
        assert _decode(text) == [s], repr(s)


def test_render_mermaid_of_a_hostile_topology_declares_exactly_its_nodes():
    for batch in chunks(hostile_strings(seed=7, count=1400)):
        topo = hostile_topology(batch)
        title, nodes, edges = parse_mermaid(G.render_mermaid(topo))
        assert title == "mesh: " + topo.mesh
        assert [i for i, _ in nodes] == [f"n{k}" for k in range(len(topo.nodes))]
        assert [lines for _, lines in nodes] == [G._node_lines(n) for n in topo.nodes]
        assert edges == [("n1", "n0"), ("n2", "n1")]


def test_graph_of_a_mesh_yml_with_hostile_instance_groups(tmp_path: Path):
    """End to end: instance group names reach the labels from mesh.yml as written."""
    group = 'g\\"]\\n  n9[\\"evil\\"]\\n%%{init: {}}%%\\u2028x\\0'  # YAML escapes, in a "..." scalar
    (tmp_path / "mesh.yml").write_text(MESH.replace("    peers: [hop01.example.com]\n",
                                                    f'    peers: [hop01.example.com]\n    instance_groups: ["{group}"]\n'))
    r = meshctl("graph", "--format", "mermaid", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    _title, nodes, _edges = parse_mermaid(r.stdout)
    assert len(nodes) == 3
    assert nodes[2][1][-1] == "groups: " + yaml.safe_load(f'"{group}"')
    if shutil.which("dot"):
        r = meshctl("graph", "--format", "dot", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        assert len([o for o in _dot_json(r.stdout)["objects"] if "shape" in o
                    and not o["name"].startswith(G.LEGEND_PREFIX)]) == 3


# -- shell: every value meshctl puts on a host's command line goes through one quoter ------

def test_shell_quoting_round_trips_through_a_real_shell():
    import subprocess

    from meshctl.core.ops import _q

    # A shell word cannot carry NUL; every other byte must come back exactly, as one argument.
    values = [s for s in hostile_strings(seed=3, count=600) if "\x00" not in s]
    script = "".join(f"printf '%s\\0' {_q(s)}\n" for s in values)
    out = subprocess.run(["sh", "-c", script], capture_output=True, timeout=60, check=True).stdout
    assert out.split(b"\0")[:-1] == [s.encode("utf-8", "surrogatepass") for s in values]


# -- the AAP importer's mesh.yml emitter ---------------------------------------------------

def test_aap_emitter_writes_hostile_values_that_read_back_as_themselves():
    from meshctl.plugins.import_aap.emit import MeshNode, emit
    from meshctl.plugins.import_aap.ini import Inventory

    strings = hostile_strings(seed=9, count=2800)
    for batch in chunks(strings, 7):
        s = (batch * 7)[:7]
        inv = Inventory(s[0])  # the file name goes into the first comment
        inv.group("all", 0)
        node = MeshNode("exec1", "execution", 1, address=s[1], ssh={"key": s[2], "port": 22, "become": True},
                        peers=[s[3], "hop1"], instance_groups=[s[4], s[5]], comments=[s[6]])
        hop = MeshNode("hop1", "hop", 2, listener={"port": 443, "protocol": "ws"})
        text, lines = emit(inv, [node, hop], {"user": s[5]}, "m")
        assert len(lines) == len(text.splitlines())
        assert yaml.safe_load(text) == {
            "mesh": "m",
            "defaults": {"ssh": {"user": s[5]}, "listener": {"port": 27199, "protocol": "tcp"}},
            "nodes": [{"name": "exec1", "role": "execution", "address": s[1], "peers": [s[3], "hop1"],
                       "ssh": {"key": s[2], "port": 22, "become": True}, "instance_groups": [s[4], s[5]]},
                      {"name": "hop1", "role": "hop", "listener": {"port": 443, "protocol": "ws"}}],
        }, batch


def test_aap_import_of_a_hostile_key_path_and_file_name(tmp_path):
    from meshctl.plugins.import_aap import aap_inventory_to_yaml

    values = [s for s in hostile_strings(seed=10, count=300) if s.strip() and "\x00" not in s]
    for i, s in enumerate(values):
        # A file name may hold anything but "/" and NUL (and what the file system cannot
        # encode): it goes into a comment.
        name = s.replace("/", "_")[:100].encode("utf-8", "replace").decode() or "x"
        inv = tmp_path / f"{i}-{name}.ini"
        key = s.strip()
        # A quoted INI value is a Python literal: repr() escapes every line break in it.
        inv.write_text("[automationcontroller]\nctrl1\n[execution_nodes]\nexec1\n"
                       f"[execution_nodes:vars]\nansible_ssh_private_key_file={key!r}\n")
        parsed = yaml.safe_load(aap_inventory_to_yaml(inv))
        assert parsed["defaults"]["ssh"]["key"] == key, (s, key)
        assert [n["name"] for n in parsed["nodes"]] == ["ctrl1", "exec1"]
