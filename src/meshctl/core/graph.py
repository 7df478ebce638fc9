"""Draw a topology: Graphviz dot, Mermaid and SVG (through the ``dot`` program).

Arrows go from the node that opens the connection (the one listing ``peers``) to the
node that listens, the way receptor traffic is established, and are labelled with the
listener's port. Shapes tell roles apart (each role declares its own); unmanaged
nodes (the controller) are dashed.
Output depends only on the topology (file order), so diagrams can be committed and
diffed.
"""

from __future__ import annotations

import shutil
import subprocess

from meshctl.core.errors import MeshctlError, UsageError
from meshctl.core.topology import Listener, Node, Topology
from meshctl.core.types import Role
from meshctl.core.writers import yaml_string

# Legend ids start with "_": a receptor node id must start with a letter or digit,
# so they can never collide with a real node.
LEGEND_PREFIX = "_legend_"
# Generated Mermaid ids are "n<digits>", so "legend_*" cannot clash with them.
MERMAID_LEGEND_PREFIX = "legend_"

DOT_TIMEOUT = 60.0


def _roles_in_order(topo: Topology) -> list[Role]:
    """Roles present in the topology, by their ``legend_order``, then by name."""
    present = {n.role for n in topo.nodes}
    return sorted((topo.role(r) for r in present), key=lambda r: (r.legend_order, r.name))


def listener_text(listener: Listener | None) -> str:
    """``27199`` for tcp, ``443/ws`` otherwise; empty without a listener."""
    if listener is None:
        return ""
    port = str(listener.port) if listener.port is not None else "?"
    proto = listener.protocol or "tcp"
    return port if proto == "tcp" else f"{port}/{proto}"


def _node_lines(node: Node) -> list[str]:
    lines = [node.name, node.role if node.managed else f"{node.role} (unmanaged)"]
    if node.address != node.name:
        lines.append(node.address)
    lines.append(f"listens :{listener_text(node.listener)}" if node.listener else "no listener")
    if node.instance_groups:
        lines.append("groups: " + ", ".join(node.instance_groups))
    return lines


def _edges(topo: Topology) -> list[tuple[Node, Node]]:
    """(dialer, listener) pairs in file order; peers that name no node are skipped
    (validation reports them; a diagram of a broken file should still draw)."""
    out = []
    for node in topo.nodes:
        for peer in node.peers:
            target = topo.get(peer)
            if target is not None:
                out.append((node, target))
    return out


# ---------------------------------------------------------------------------
# Graphviz


def dot_quote(text: str) -> str:
    """A double-quoted DOT string on one line. Backslashes are doubled so a trailing
    one cannot swallow the closing quote (nor join lines) and labels keep them
    literally; newlines become ``\\n``; other non-printable characters are shown as
    ``\\xNN``/``\\uNNNN`` text (graphviz stops at a NUL, and a raw CR or U+2028 would
    split the line for anything reading the file by lines)."""
    out = []
    for ch in text:
        if ch in _DOT_ESCAPES:
            out.append(_DOT_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\\\x{code:02x}" if code <= 0xFF else f"\\\\u{code:04x}" if code <= 0xFFFF
                       else f"\\\\U{code:08x}")
    return '"' + "".join(out) + '"'


_DOT_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n"}


def _dot_label(lines: list[str]) -> str:
    # Escape each line, then join with DOT's own line-break escape.
    return '"' + "\\n".join(dot_quote(line)[1:-1] for line in lines) + '"'


def _dot_attrs(attrs: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in attrs.items())


def render_dot(topo: Topology) -> str:
    """The topology as a Graphviz digraph (one statement a line)."""
    out = [
        f"digraph {dot_quote('mesh ' + topo.mesh)} {{",
        f"  graph [label={dot_quote('mesh: ' + topo.mesh)}, labelloc=t, fontsize=16, "
        'rankdir=LR, fontname="Helvetica"];',
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    for node in topo.nodes:
        attrs = {
            "label": _dot_label(_node_lines(node)),
            "shape": topo.role_of(node).dot_shape,
            "style": "dashed" if not node.managed else "solid",
        }
        out.append(f"  {dot_quote(node.name)} [{_dot_attrs(attrs)}];")
    for src, dst in _edges(topo):
        out.append(
            f"  {dot_quote(src.name)} -> {dot_quote(dst.name)} "
            f"[label={dot_quote(listener_text(dst.listener))}];"
        )
    out.extend(_dot_legend(topo))
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_legend(topo: Topology) -> list[str]:
    out = [
        "  subgraph cluster_legend {",
        '    label="legend"; style=dotted; fontsize=10;',
    ]
    for role in _roles_in_order(topo):
        out.append(f"    {dot_quote(LEGEND_PREFIX + role.name)} [label={dot_quote(role.name)}, "
                   f"shape={role.dot_shape}];")
    if any(not n.managed for n in topo.nodes):
        out.append(
            f"    {dot_quote(LEGEND_PREFIX + 'unmanaged')} "
            '[label="unmanaged", shape=box, style=dashed];'
        )
    out.append(
        f"    {dot_quote(LEGEND_PREFIX + 'arrow')} "
        '[label="arrow: dialer -> listener (port)", shape=plaintext];'
    )
    out.append("  }")
    return out


def render_svg(topo: Topology, timeout: float = DOT_TIMEOUT) -> bytes:
    """Run graphviz ``dot -Tsvg`` on :func:`render_dot`'s output."""
    exe = shutil.which("dot")
    if exe is None:
        raise UsageError(
            "the graphviz 'dot' program is not installed (or not on PATH); install graphviz "
            "(apt-get install graphviz / dnf install graphviz) or use the dot or mermaid format"
        )
    try:
        proc = subprocess.run(
            [exe, "-Tsvg"],
            input=render_dot(topo).encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise MeshctlError(f"graphviz dot did not finish within {timeout:g}s") from None
    except OSError as exc:
        raise UsageError(f"cannot run {exe}: {exc.strerror}") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip()
        raise MeshctlError(f"graphviz dot failed (exit {proc.returncode}): {detail}")
    return proc.stdout


# ---------------------------------------------------------------------------
# Mermaid


# Inside a quoted label: '"' ends it, '#' starts entity codes, '<', '>' and '&' are
# HTML once rendered, '`' starts a markdown string, '%' and '{' make "%%{init}%%"
# directives (found anywhere in the text), the rest is flowchart syntax.
_MERMAID_NAMED = {'"': "#quot;", "<": "#lt;", ">": "#gt;", "&": "#amp;"}
_MERMAID_SYNTAX = frozenset("#[](){}|;`%")


def mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label: syntax characters and everything not
    printable (line breaks of every kind, NUL) become entity codes (``#quot;``, ``#35;``),
    which Mermaid turns back into the characters when it draws."""
    out = []
    for ch in text:
        if ch in _MERMAID_NAMED:
            out.append(_MERMAID_NAMED[ch])
        elif ch in _MERMAID_SYNTAX or not ch.isprintable():
            out.append(f"#{ord(ch)};")
        else:
            out.append(ch)
    return "".join(out)


def _mermaid_label(lines: list[str]) -> str:
    return '"' + "<br/>".join(mermaid_text(line) for line in lines) + '"'


def render_mermaid(topo: Topology) -> str:
    """The topology as a Mermaid ``flowchart LR``. Node ids are generated (``n0``,
    ``n1``... in file order) because receptor ids may contain characters Mermaid
    treats as syntax; the real names are in the labels."""
    ids = {node.name: f"n{i}" for i, node in enumerate(topo.nodes)}
    out = [
        "---",
        f"title: {_yaml_title('mesh: ' + topo.mesh)}",
        "---",
        "flowchart LR",
    ]
    for node in topo.nodes:
        opening, closing = topo.role_of(node).mermaid_shape
        out.append(f"  {ids[node.name]}{opening}{_mermaid_label(_node_lines(node))}{closing}")
    for src, dst in _edges(topo):
        label = listener_text(dst.listener)
        arrow = f"-->|{_mermaid_label([label])}|" if label else "-->"
        out.append(f"  {ids[src.name]} {arrow} {ids[dst.name]}")
    out.extend(_mermaid_legend(topo))
    unmanaged = [ids[n.name] for n in topo.nodes if not n.managed]
    if unmanaged:
        out.append("  classDef unmanaged stroke-dasharray: 5 5;")
        out.append(f"  class {','.join([*unmanaged, MERMAID_LEGEND_PREFIX + 'unmanaged'])} unmanaged;")
    return "\n".join(out) + "\n"


def _mermaid_legend(topo: Topology) -> list[str]:
    prefix = MERMAID_LEGEND_PREFIX
    out = ['  subgraph legend["legend"]', "    direction LR"]
    for role in _roles_in_order(topo):
        opening, closing = role.mermaid_shape
        out.append(f"    {prefix}{_mermaid_id_part(role.name)}{opening}{_mermaid_label([role.name])}{closing}")
    if any(not n.managed for n in topo.nodes):
        out.append(f'    {prefix}unmanaged["unmanaged"]')
    out.append("  end")
    return out


def _mermaid_id_part(text: str) -> str:
    return "".join(c if c.isascii() and c.isalnum() else "_" for c in text)


def _yaml_title(text: str) -> str:
    # The front matter is YAML: one double-quoted line, whatever the text holds.
    return yaml_string(text)


__all__ = ["render_dot", "render_mermaid", "render_svg"]
