"""docs/plugins.md documents every hook with its exact signature, and the example
plugin it shows is byte for byte the one in examples/ (datasette's habit)."""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshctl.core import hookspecs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import hookref  # noqa: E402
from hookref import render_signature  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "plugins.md"
EXAMPLES = ROOT / "examples"
EXAMPLE = EXAMPLES / "meshctl-plugin-example"

HOOKS = sorted(name for name in vars(hookspecs) if name.startswith("meshctl_"))


@dataclass
class Section:
    level: int
    title: str
    lines: list[str]


@dataclass
class Fence:
    info: str
    content: str


_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^(```+)(.*)$")


def parse(markdown: str) -> tuple[list[Section], list[Fence]]:
    """Headings (outside code fences) with the lines under them, and all fences.

    A section's lines run to the next heading of any level; enough here because
    hook subsections have no sub-headings.
    """
    sections: list[Section] = [Section(0, "", [])]
    fences: list[Fence] = []
    fence: tuple[str, str, list[str]] | None = None
    for line in markdown.splitlines():
        sections[-1].lines.append(line)
        if fence is not None:
            marker, info, body = fence
            if line.strip() == marker:
                fences.append(Fence(info, "\n".join(body) + "\n"))
                fence = None
            else:
                body.append(line)
            continue
        m = _FENCE.match(line)
        if m:
            fence = (m.group(1), m.group(2).strip(), [])
            continue
        m = _HEADING.match(line)
        if m:
            sections[-1].lines.pop()
            sections.append(Section(len(m.group(1)), m.group(2), []))
    assert fence is None, "unclosed code fence in docs/plugins.md"
    return sections, fences


def fences_in(lines: list[str]) -> list[Fence]:
    return parse("\n".join(lines))[1]


def hook_sections(markdown: str) -> dict[str, Section]:
    return {s.title: s for s in parse(markdown)[0]}


def documentation_problems(markdown: str) -> list[str]:
    """Everything wrong with the hook reference of ``markdown`` (empty when fine)."""
    sections = hook_sections(markdown)
    problems = []
    for name in HOOKS:
        fn = getattr(hookspecs, name)
        section = sections.get(name)
        if section is None:
            problems.append(f"{name}: no heading")
            continue
        want = render_signature(fn)
        if not any(f.content.strip() == want for f in fences_in(section.lines)):
            problems.append(f"{name}: no code block with exactly {want!r}")
        if fn.meshctl_spec["firstresult"] and "firstresult" not in "\n".join(section.lines):
            problems.append(f"{name}: is firstresult but its section does not say so")
    for title in sections:
        if title.startswith("meshctl_") and title not in HOOKS:
            problems.append(f"{title}: documented but not a hook in meshctl.core.hookspecs")
    return problems


@pytest.fixture(scope="module")
def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def test_hooks_exist():
    # Guards the parametrisation below against an empty list (renamed module...).
    assert "meshctl_node_operations" in HOOKS and len(HOOKS) >= 10


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_documented_with_exact_signature(doc_text, hook):
    section = hook_sections(doc_text).get(hook)
    assert section is not None, f"docs/plugins.md has no heading {hook!r}"
    want = render_signature(getattr(hookspecs, hook))
    blocks = [f.content.strip() for f in fences_in(section.lines)]
    assert want in blocks, f"section {hook} has no code block {want!r}; blocks: {blocks}"
    # The docstring must be explained, not only the signature repeated.
    prose = [ln for ln in section.lines if ln.strip() and not ln.startswith(("```", "def "))]
    assert len(" ".join(prose)) > 150


def test_no_documentation_problems(doc_text):
    assert documentation_problems(doc_text) == []


def test_checker_catches_missing_hook_and_wrong_signature(doc_text):
    # The checker itself must fail on a doc that lost a hook or has a stale signature.
    without = doc_text.replace("### meshctl_register_roles\n", "### register roles\n")
    assert documentation_problems(without) == ["meshctl_register_roles: no heading"]
    stale = doc_text.replace(
        "def meshctl_register_commands(cli: click.Group) -> None",
        "def meshctl_register_commands(cli: click.Group)",
    )
    assert documentation_problems(stale) == [
        "meshctl_register_commands: no code block with exactly "
        "'def meshctl_register_commands(cli: click.Group) -> None'"
    ]
    extra = doc_text + "\n### meshctl_made_up\n"
    assert documentation_problems(extra) == [
        "meshctl_made_up: documented but not a hook in meshctl.core.hookspecs"
    ]


def test_render_signature_keeps_source_annotations():
    assert render_signature(hookspecs.meshctl_registry_credentials) == (
        "def meshctl_registry_credentials(registry: Any, node: Any, topology: Topology) -> RegistryCredentials | None"
    )

    def f(a, b: int = 3) -> None: ...

    assert render_signature(f) == "def f(a, b: int = 3) -> None"


def test_required_sections_present(doc_text):
    titles = {s.title for s in parse(doc_text)[0]}
    for title in ("Concepts", "Loading and selecting plugins", "A complete example",
                  "Writing operations", "Hook reference"):
        assert title in titles
    for needle in ("[project.entry-points.meshctl]", "MESHCTL_DISABLE_PLUGIN_AUTOLOAD=1",
                   "-p no:", "MESHCTL_TRACE_HOOKS=1", "meshctl plugins", "secret=True",
                   "firstresult", "registered twice"):
        assert needle in doc_text, needle


def _example_files() -> dict[str, str]:
    files = {}
    for path in sorted(EXAMPLE.rglob("*")):
        rel = path.relative_to(EXAMPLES)
        # Build and bytecode litter is not part of the example.
        if path.is_dir() or any(
            part == "__pycache__" or part == "build" or part.endswith(".egg-info")
            for part in rel.parts
        ):
            continue
        files[rel.as_posix()] = path.read_text(encoding="utf-8")
    return files


def test_docs_show_the_example_plugin_verbatim(doc_text):
    shown = {}
    for fence in parse(doc_text)[1]:
        m = re.search(r'title="([^"]+)"', fence.info)
        if m and m.group(1).startswith("meshctl-plugin-example/"):
            shown[m.group(1)] = fence.content
    files = _example_files()
    assert set(files) == {
        "meshctl-plugin-example/pyproject.toml",
        "meshctl-plugin-example/meshctl_plugin_example.py",
        "meshctl-plugin-example/tests/test_motd.py",
    }
    # Every file of the package is shown, and shown exactly.
    assert set(shown) == set(files)
    for name, content in files.items():
        assert shown[name] == content, f"docs/plugins.md shows a stale copy of {name}"


# -- docs/objects.md: the objects hooks receive ------------------------------------

OBJECTS_DOC = ROOT / "docs" / "objects.md"


def public_members(cls) -> set[str]:
    import dataclasses

    names = {f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")}
    names |= {n for n, v in vars(cls).items() if not n.startswith("_")
              and (callable(v) or isinstance(v, property))}
    return names | {n for n in getattr(cls, "__annotations__", {}) if not n.startswith("_")
                    and n in vars(cls)}


def undocumented_members(markdown: str) -> list[str]:
    from meshctl.plugin import Node, NodeContext, Operation, Topology

    sections = hook_sections(markdown)
    missing = []
    for cls in (NodeContext, Topology, Node, Operation):
        text = "\n".join(sections[cls.__name__].lines) if cls.__name__ in sections else ""
        missing += [f"{cls.__name__}.{n}" for n in sorted(public_members(cls)) if f"`{n}" not in text]
    return missing


def test_objects_page_documents_every_public_member():
    assert undocumented_members(OBJECTS_DOC.read_text(encoding="utf-8")) == []


def test_objects_check_sees_a_missing_member():
    text = OBJECTS_DOC.read_text(encoding="utf-8").replace("| `via_chain(node)` |", "| via |")
    assert undocumented_members(text) == ["Topology.via_chain"]


# -- the hook reference is generated from the hookspec docstrings ---------------------

def test_hook_reference_is_generated_from_the_docstrings(doc_text):
    assert hookref.splice(doc_text, hookref.render(hookspecs)) == doc_text, (
        "docs/plugins.md's hook reference is stale: run python scripts/hookref.py")


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_docstring_has_prose_an_example_and_a_version(hook):
    paragraphs, example, since = hookref.parse_docstring(getattr(hookspecs, hook))
    ast.parse(example)  # the example is Python, not pseudo-code
    assert since and len(" ".join(paragraphs)) > 150


def test_a_hook_without_example_is_refused():
    def meshctl_bare(register) -> None:
        """Does something, at length enough to pass for prose but shows no example.

        Since meshctl 0.1.
        """

    with pytest.raises(ValueError, match="meshctl_bare: its docstring lacks Example::"):
        hookref.parse_docstring(meshctl_bare)
