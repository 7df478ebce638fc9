"""No import cycle between meshctl.core modules, not even through an import inside a
function (a lazy import hides a cycle; it does not remove it). Imports under
``if TYPE_CHECKING:`` are for annotations only and do not count."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "src" / "meshctl" / "core"
PACKAGE = "meshctl.core"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(CORE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, here: str, is_package: bool) -> set[str]:
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package this module is in
                pkg = here.split(".") if is_package else here.split(".")[:-1]
                pkg = pkg[: len(pkg) - (node.level - 1)]
                base = ".".join(pkg + ([base] if base else []))
            found.add(base)
            # "from meshctl.core import facts" imports the module meshctl.core.facts
            found.update(f"{base}.{a.name}" for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(root: Path | None = None) -> dict[str, set[str]]:
    """Module -> the core modules it imports, at any depth of the file."""
    root = root or CORE
    files = {_module_name(f) if root == CORE else _name_under(root, f): f for f in sorted(root.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        targets = _imports(tree, name, path.name == "__init__.py")
        graph[name] = {t for t in targets if t in files and t != name}
    return graph


def _name_under(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([PACKAGE, *parts])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan), each as a
    sorted list: one entry per tangle, however many paths run through it."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def strong(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            strong(v)
    return sorted(out)


def test_no_import_cycle_between_core_modules():
    assert cycles(import_graph()) == []


def test_the_cycle_check_sees_a_lazy_cycle_and_ignores_type_checking(tmp_path):
    # The check itself must be able to fail: a lazy import closing a loop counts,
    # an annotation-only import does not.
    (tmp_path / "a.py").write_text("from meshctl.core import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from meshctl.core.a import x\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\n"
                                   "from meshctl.core import a\n"
                                   "if TYPE_CHECKING:\n    from meshctl.core import c2\n")
    (tmp_path / "c2.py").write_text("from .c import y\n")
    graph = import_graph(tmp_path)
    assert graph["meshctl.core.b"] == {"meshctl.core.a"}
    assert "meshctl.core.c2" not in graph["meshctl.core.c"]
    assert cycles(graph) == [["meshctl.core.a", "meshctl.core.b"]]
