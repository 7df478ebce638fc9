"""Rooms with walls: a plugin imports core's public names and its own modules, never
another plugin nor a private name of core, and blocking one plugin leaves the
settings others read in place."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from meshctl.core.plugins import create_plugin_manager
from meshctl.core.topology import parse_topology

PLUGINS = Path(__file__).resolve().parent.parent / "src" / "meshctl" / "plugins"


EXAMPLES = PLUGINS.parent.parent.parent / "examples"


def crossings() -> list[str]:
    """Imports that cross a wall: a built-in plugin importing another plugin, or any
    plugin (built-in or example) importing meshctl's internals instead of meshctl.plugin."""
    out = []
    sources = [(f, f.relative_to(PLUGINS), f.relative_to(PLUGINS).parts[0]) for f in sorted(PLUGINS.rglob("*.py"))]
    sources += [(f, f.relative_to(EXAMPLES), None) for f in sorted(EXAMPLES.rglob("*.py")) if "tests" not in f.parts]
    for f, rel, own in sources:
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module]
                if node.module == "meshctl.plugins":
                    mods = [f"meshctl.plugins.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            else:
                continue
            for module in mods:
                where = f"{rel}:{node.lineno}"
                if module.startswith("meshctl.plugins.") and module.split(".")[2] != own:
                    out.append(f"{where} imports {module}")
                elif module == "meshctl.core" or module.startswith("meshctl.core."):
                    out.append(f"{where} imports {module} (use meshctl.plugin)")
    return out


def test_no_plugin_imports_another_plugin_or_meshctl_internals():
    assert crossings() == []


def test_the_wall_check_sees_a_crossing(tmp_path, monkeypatch):
    # The check itself must be able to fail.
    fake = tmp_path / "plugins" / "mine"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("from meshctl.plugins.os_rhel import parse_kv\n"
                                      "from meshctl.core.ops import _q\n")
    monkeypatch.setattr(sys.modules[__name__], "PLUGINS", tmp_path / "plugins")
    monkeypatch.setattr(sys.modules[__name__], "EXAMPLES", tmp_path / "examples")
    assert crossings() == ["mine/__init__.py:1 imports meshctl.plugins.os_rhel",
                           "mine/__init__.py:2 imports meshctl.core.ops (use meshctl.plugin)"]


@pytest.mark.parametrize("blocked,section", [("os_rhel", "firewall: {zone: internal}"),
                                             ("base_node", "receptor: {user: awx}")])
def test_blocking_a_plugin_keeps_the_shared_sections_known(blocked, section):
    text = (f"mesh: m\n{section}\nnodes:\n"
            "  - {name: e1, role: execution, listener: {port: 27199}}\n")
    plugins = create_plugin_manager(autoload=False, block={blocked})
    topo = parse_topology(text, "mesh.yml", plugins)
    assert topo.sections[section.split(":")[0]] is not None


def test_a_backend_missing_part_of_the_protocol_is_named_with_its_plugin(tmp_path):
    import types

    from meshctl.core.hookspecs import hookimpl
    from meshctl.core.types import CertBackend

    class Half:  # no sign_csr, supports_csr not a bool
        supports_csr = "yes"

        def trust_bundle(self):
            return b""

        def issue(self, node_id, addresses, key_type, days):
            return b"", b""

    mod = types.ModuleType("halfplugin")

    @hookimpl
    def meshctl_register_cert_backends(register):
        register(CertBackend("half", factory=lambda options, ctx: Half()))

    mod.meshctl_register_cert_backends = meshctl_register_cert_backends
    plugins = create_plugin_manager(autoload=False, extra=[("halfplugin", mod)])
    text = ("mesh: m\ncertificates: {backend: half}\nnodes:\n"
            "  - {name: e1, role: execution, listener: {port: 27199}}\n")
    from meshctl.core.errors import TopologyError

    with pytest.raises(TopologyError) as exc:
        parse_topology(text, "mesh.yml", plugins)
    (msg,) = [d.message for d in exc.value.diagnostics if d.severity == "error"]
    assert msg == ("certificate backend 'half' of plugin 'halfplugin' lacks supports_csr (a bool: True when it "
                   "signs CSRs made on the node), sign_csr() (see meshctl.plugin.CertificateBackend)")


SRC = PLUGINS.parent
#: A module a maintainer reads whole; past this it wants splitting (issue 13).
MAX_LINES = 450


def oversized(root: Path) -> list[str]:
    return [f"{f.relative_to(root)}: {n} lines" for f in sorted(root.rglob("*.py"))
            if (n := len(f.read_text().splitlines())) > MAX_LINES]


def test_no_module_is_over_the_size_limit():
    assert oversized(SRC) == []


def test_the_size_check_sees_a_big_module(tmp_path):
    (tmp_path / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert oversized(tmp_path) == [f"big.py: {MAX_LINES + 1} lines"]
