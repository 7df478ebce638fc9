"""Reading an Ansible INI inventory: sections, host lines with their variables,
host ranges, and group arithmetic (membership, children, variable precedence).

Our own reader (no ansible dependency), following Ansible's INI inventory rules
closely enough for installer inventories: ``[group]``, ``[group:vars]``,
``[group:children]``, host lines ``name key=value key2="quoted value"``, host ranges
``exec[01:03].example.com``, ``#``/``;`` comment lines and hosts listed in several
groups. Every error names the inventory line (``FILE:LINE: message``).
"""

from __future__ import annotations

import ast
import itertools
import math
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from meshctl.plugin import UsageError
from meshctl.plugin import shorten as _q

_SECTION_RE = re.compile(r"^\[([^\]\s:]+)(?::([^\]\s]+))?\]\s*(?:[#;].*)?$")
_GROUP_NAME_RE = re.compile(r"^[^\s\[\]:=]+$")
# No "[" inside a range: each one starts at most one attempt, so search is linear.
_RANGE_RE = re.compile(r"\[([^\[\]:]*):([^\[\]:]*)(?::([^\[\]:]*))?\]")
# An unquoted value ends at an inline comment: whitespace then "#" or ";".
_INLINE_COMMENT_RE = re.compile(r"(?<=\s)[#;]")
#: Hosts one inventory may define (ranges included): far more than any mesh.
MAX_HOSTS = 10_000


@dataclass
class Var:
    value: Any  # str, or a list for receptor_peers='["a", "b"]'
    line: int


@dataclass
class Group:
    name: str
    line: int
    hosts: dict[str, int] = field(default_factory=dict)  # host -> line listed
    children: dict[str, int] = field(default_factory=dict)  # group -> line listed
    vars: dict[str, Var] = field(default_factory=dict)


@dataclass
class Host:
    name: str
    line: int  # first line mentioning it
    vars: dict[str, Var] = field(default_factory=dict)


@dataclass
class Inventory:
    file: str
    groups: dict[str, Group] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)  # in first-seen order

    def group(self, name: str, line: int) -> Group:
        if name not in self.groups:
            self.groups[name] = Group(name, line)
        return self.groups[name]

    def error(self, line: int, message: str) -> UsageError:
        return UsageError(f"{self.file}:{line}: {message}")


def _value(raw: str) -> Any:
    """A variable value the way Ansible's INI plugin reads it: Python literals
    (quoted strings, lists) are evaluated, anything else stays text."""
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return raw
    if isinstance(value, str | list):
        return value
    return raw  # keep numbers/bools as written; we convert where a type is needed


def _range_items(start: str, end: str, step_text: str | None, pattern: str, file: str,
                 line: int) -> range | list[str] | None:
    if step_text is not None and not (step_text.isascii() and step_text.isdigit() and len(step_text) <= 6):
        raise UsageError(f"{file}:{line}: bad host range step {_q(step_text)} in {_q(pattern)}")
    step = int(step_text) if step_text else 1
    if step < 1:
        raise UsageError(f"{file}:{line}: host range step must be at least 1 in {_q(pattern)}")
    # ASCII only: "²".isdigit() is true but int("²") fails.
    if (start.isascii() and end.isascii() and start.isdigit() and end.isdigit()
            and len(start) <= 18 and len(end) <= 18):
        return range(int(start), int(end) + 1, step)
    if len(start) == 1 and len(end) == 1 and start.isascii() and end.isascii() \
            and start.isalpha() and end.isalpha():
        return [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    return None


def _expand_ranges(pattern: str, file: str, line: int) -> list[str]:
    """``exec[01:03].x`` -> exec01.x, exec02.x, exec03.x (Ansible host ranges). The
    expansion is counted before it is built: at most :data:`MAX_HOSTS` names."""
    parts: list[list[str] | range] = []
    widths: list[int] = []
    pos = 0
    for match in _RANGE_RE.finditer(pattern):
        start, end, step_text = match.group(1), match.group(2), match.group(3)
        items = _range_items(start, end, step_text, pattern, file, line)
        if items is None:
            raise UsageError(f"{file}:{line}: bad host range [{_q(start)[1:-1]}:{_q(end)[1:-1]}] "
                             f"in {_q(pattern)}")
        if not items:
            raise UsageError(f"{file}:{line}: empty host range in {_q(pattern)}")
        parts += [[pattern[pos:match.start()]], items]
        widths += [0, len(start) if isinstance(items, range) and start.startswith("0") else 0]
        pos = match.end()
    if not parts:
        return [pattern]
    parts.append([pattern[pos:]])
    widths.append(0)
    if math.prod(len(p) for p in parts) > MAX_HOSTS:
        raise UsageError(f"{file}:{line}: host range {_q(pattern)} expands to more than "
                         f"{MAX_HOSTS} hosts")
    texts = [[str(i).zfill(w) if isinstance(i, int) else i for i in p] for p, w in zip(parts, widths, strict=True)]
    return ["".join(combo) for combo in itertools.product(*texts)]


def parse_ini(text: str, file: str) -> Inventory:
    inv = Inventory(file)
    inv.group("all", 0)
    group, kind = inv.group("ungrouped", 0), "hosts"
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            match = _SECTION_RE.match(line)
            if match is None:
                raise inv.error(lineno, f"cannot parse section header {_q(line)}")
            suffix = match.group(2)
            if suffix is not None and suffix not in ("vars", "children"):
                raise inv.error(lineno, f"unknown section type ':{suffix}' (expected :vars or :children)")
            kind = suffix or "hosts"
            group = inv.group(match.group(1), lineno)
            continue
        if kind == "vars":
            _parse_var_line(inv, group, line, lineno)
        elif kind == "children":
            name = line.split("#", 1)[0].split(";", 1)[0].strip()
            if not _GROUP_NAME_RE.match(name):
                raise inv.error(lineno, f"expected a group name in [{group.name}:children], got {_q(line)}")
            inv.group(name, lineno)
            group.children.setdefault(name, lineno)
        else:
            _parse_host_line(inv, group, line, lineno)
    return inv


def _parse_var_line(inv: Inventory, group: Group, line: str, lineno: int) -> None:
    key, sep, rest = line.partition("=")
    key, rest = key.strip(), rest.strip()
    if not sep or not key or " " in key:
        raise inv.error(lineno, f"expected key=value in [{group.name}:vars], got {_q(line)}")
    if rest[:1] not in ("'", '"', "["):
        # An unquoted value ends at an inline comment (" # ..."); a search, not a
        # split on r"\s+[#;]", which backtracks quadratically over long blanks.
        comment = _INLINE_COMMENT_RE.search(rest)
        if comment is not None:
            rest = rest[: comment.start()].rstrip()
    group.vars[key] = Var(_value(rest), lineno)


def _parse_host_line(inv: Inventory, group: Group, line: str, lineno: int) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise inv.error(lineno, f"cannot parse host line: {exc}") from None
    if not tokens:
        return
    pattern, assignments = tokens[0], tokens[1:]
    host_vars: dict[str, Var] = {}
    # "host:2222" sets the SSH port; more than one colon is an IPv6 address.
    name, sep, port = pattern.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        pattern = name
        host_vars["ansible_port"] = Var(port, lineno)
    for token in assignments:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise inv.error(lineno, f"expected key=value after host {_q(pattern)}, got {_q(token)}")
        host_vars[key] = Var(_value(value), lineno)
    for host_name in _expand_ranges(pattern, inv.file, lineno):
        host = inv.hosts.get(host_name)
        if host is None:
            if len(inv.hosts) >= MAX_HOSTS:
                raise inv.error(lineno, f"the inventory has more than {MAX_HOSTS} hosts")
            host = inv.hosts[host_name] = Host(host_name, lineno)
        host.vars.update(host_vars)
        group.hosts.setdefault(host_name, lineno)


# ---------------------------------------------------------------------------
# Group arithmetic


class Resolver:
    """Group membership, expansion and variable precedence, Ansible style:
    all:vars < parent groups < child groups (same depth: by name) < host vars."""

    def __init__(self, inv: Inventory):
        self.inv = inv
        self.parents: dict[str, set[str]] = {name: set() for name in inv.groups}
        for g in inv.groups.values():
            for child in g.children:
                self.parents[child].add(g.name)
        self.depth: dict[str, int] = {}
        for name in inv.groups:
            self._depth(name, [])
        # Memoized: peers and instance groups ask again for the same hosts and groups.
        self._groups_of: dict[str, set[str]] = {}
        self._hosts_of: dict[str, list[str]] = {}
        self._host_vars: dict[str, dict[str, Var]] = {}

    def _depth(self, name: str, stack: list[str]) -> int:
        if name in self.depth:
            return self.depth[name]
        if name in stack:
            cycle = " -> ".join([*stack[stack.index(name):], name])
            # stack[-1] is a child of ``name``: report the line listing it.
            line = self.inv.groups[name].children.get(stack[-1], 0)
            raise self.inv.error(line, f"group children form a cycle: {cycle}")
        parents = self.parents[name] - {"all"}
        if name == "all":
            d = 0
        else:
            d = 1 + max((self._depth(p, [*stack, name]) for p in parents), default=0)
        self.depth[name] = d
        return d

    def groups_of(self, host: str) -> set[str]:
        return _memo(self._groups_of, host, self._find_groups)

    def _find_groups(self, host: str) -> set[str]:
        found = {"all"}
        todo = [g.name for g in self.inv.groups.values() if host in g.hosts]
        while todo:
            name = todo.pop()
            if name not in found:
                found.add(name)
                todo.extend(self.parents[name])
        return found

    def hosts_of(self, group: str) -> list[str]:
        """Hosts in ``group`` and its children, recursively, in inventory order."""
        return _memo(self._hosts_of, group, self._find_hosts)

    def _find_hosts(self, group: str) -> list[str]:
        if group == "all":
            return list(self.inv.hosts)
        members: set[str] = set()
        seen: set[str] = set()
        todo = [group]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            g = self.inv.groups[name]
            members.update(g.hosts)
            todo.extend(g.children)
        return [h for h in self.inv.hosts if h in members]

    def host_vars(self, host: str) -> dict[str, Var]:
        if host not in self._host_vars:
            self._host_vars[host] = self._merge_vars(host)
        return self._host_vars[host]

    def _merge_vars(self, host: str) -> dict[str, Var]:
        merged: dict[str, Var] = {}
        for name in sorted(self.groups_of(host), key=lambda n: (self.depth[n], n)):
            merged.update(self.inv.groups[name].vars)
        merged.update(self.inv.hosts[host].vars)
        return merged


def first_of(values: dict[str, Var], names: tuple[str, ...]) -> Var | None:
    for name in names:
        if name in values:
            return values[name]
    return None


def text_of(var: Var | None) -> str | None:
    if var is None:
        return None
    return var.value.strip() if isinstance(var.value, str) else str(var.value)


def _memo(cache: dict, key: str, compute: Any) -> Any:
    # Group graphs are walked once per name however many hosts ask (large inventories).
    if key not in cache:
        cache[key] = compute(key)
    return cache[key]
