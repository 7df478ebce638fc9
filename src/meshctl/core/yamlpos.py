"""YAML loading that remembers where every key and value came from.

Validation errors must say FILE:LINE:COL, so we compose the YAML node graph with
libyaml (fast enough for 5,000-node topologies), build plain Python objects and a
map from value paths such as ``("nodes", 3, "peers", 0)`` to 1-based positions.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import yaml

from meshctl.core.errors import Diagnostic

try:  # libyaml when available; the pure-Python loader gives the same marks
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader

Path = tuple[Hashable, ...]

_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"

#: Values built again through aliases (``*a``) in one document. An alias costs one
#: line but expands to its whole anchor: ten nested ones make 10**10 values.
ALIAS_BUDGET = 100_000
#: Longer integers are no port, count or size; Python refuses to convert > 4300 digits.
_MAX_INT_CHARS = 40


class _AliasBomb(Exception):
    def __init__(self, node: yaml.Node):
        self.node = node


@dataclass
class _Walk:
    seen: set[int] = field(default_factory=set)  # ids of collection nodes built once
    expanded: int = 0
    merged: dict[int, int] = field(default_factory=dict)  # mapping id -> pairs merged in


@dataclass
class Located:
    """Parsed data plus the positions of its values and keys."""

    data: Any
    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: Path, key: bool = False) -> tuple[int, int]:
        """The closest known position for ``path`` (walking up to its parents)."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if not key and p in self.keys:
                return self.keys[p]
            p = p[:-1]
        return self.values.get((), (1, 1))

    def diag(self, path: Path, message: str, severity: str = "error", key: bool = False) -> Diagnostic:
        line, col = self.position(path, key=key)
        return Diagnostic(self.file, line, col, message, severity)


def load(text: str, file: str) -> tuple[Located | None, list[Diagnostic]]:
    """Parse ``text``; on a syntax error return no data and one located diagnostic."""
    loc = Located(data=None, file=file)
    diags: list[Diagnostic] = []
    loader = _Loader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = exc.problem or "invalid YAML"
            if exc.context:
                problem = f"{exc.context}: {problem}"
            return None, [Diagnostic(file, line, col, f"YAML syntax error: {problem}")]
        except yaml.YAMLError as exc:
            return None, [Diagnostic(file, 1, 1, f"YAML error: {exc}")]
        if root is None:
            loc.data = None
            return loc, diags
        try:
            loc.data = _build(root, (), loader, loc, diags, _Walk(), False)
        except _AliasBomb as bomb:
            line, col = _mark(bomb.node)
            return None, [Diagnostic(file, line, col, f"YAML aliases expand to more than "
                                     f"{ALIAS_BUDGET} values (an alias bomb?)")]
        return loc, diags
    finally:
        loader.dispose()


def _mark(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _int_problem(text: str) -> str | None:
    digits = text.lstrip("+-").replace("_", "")
    if digits[:2].lower() in ("0x", "0o", "0b"):
        digits = digits[2:]
    if len(text) > _MAX_INT_CHARS:
        return f"integer of {len(digits)} digits is too large"
    return None


def _build(node: yaml.Node, path: Path, loader: Any, loc: Located, diags: list[Diagnostic],
           walk: _Walk, reused: bool) -> Any:
    if reused:
        walk.expanded += 1
        if walk.expanded > ALIAS_BUDGET:
            raise _AliasBomb(node)
    elif isinstance(node, yaml.CollectionNode):
        # The composer hands an alias back as its anchor's node object: a second
        # visit is an expansion, and so is everything below it.
        reused = id(node) in walk.seen
        walk.seen.add(id(node))
    mark = node.start_mark
    loc.values[path] = (mark.line + 1, mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        merged = walk.merged.get(id(node))
        if merged is None:  # flattened once: an alias to it sees the merged pairs already
            own = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
            try:
                loader.flatten_mapping(node)  # resolves "<<" merge keys
            except yaml.MarkedYAMLError as exc:
                diags.append(loc.diag(path, f"YAML error: {exc.problem}"))
                return {}
            merged = walk.merged[id(node)] = len(node.value) - own
        out: dict[Any, Any] = {}
        # merged pairs come first; own keys may override them
        merged_keys: dict[Any, bool] = {}
        for idx, (key_node, value_node) in enumerate(node.value):
            key = key_node.value if key_node.tag == _STR else loader.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable) or isinstance(key, (list, dict)):
                line, col = _mark(key_node)
                diags.append(Diagnostic(loc.file, line, col, "mapping keys must be scalars"))
                continue
            if key in out and idx >= merged and merged_keys.get(key, False) is False:
                line, col = _mark(key_node)
                diags.append(Diagnostic(loc.file, line, col, f"duplicate key {key!r}"))
                continue
            merged_keys[key] = idx < merged
            loc.keys[path + (key,)] = _mark(key_node)
            out[key] = _build(value_node, path + (key,), loader, loc, diags, walk, reused)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, path + (i,), loader, loc, diags, walk, reused) for i, item in enumerate(node.value)
        ]
    tag = node.tag
    if tag == _STR:  # the common case, without the constructor's bookkeeping
        return node.value
    if tag == _BOOL:
        return node.value.lower() in ("yes", "true", "on")
    if tag == _NULL:
        return None
    if tag == _INT:
        problem = _int_problem(node.value)
        if problem is not None:
            diags.append(loc.diag(path, f"{_where(path)}{problem}"))
            return None
        if node.value.isascii() and node.value.isdigit():
            return int(node.value)
    try:
        return loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        diags.append(loc.diag(path, f"YAML error: {exc.problem}"))
    except (ValueError, OverflowError) as exc:  # e.g. a timestamp or float out of range
        diags.append(loc.diag(path, f"{_where(path)}{exc}"))
    return None


def _where(path: Path) -> str:
    """``nodes[1].ssh.port: `` (as topology messages start), or nothing at the top."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return f"{out}: " if out else ""
