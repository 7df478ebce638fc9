"""meshctl's Python virtualenv on every managed node: ``/opt/meshctl/venv`` with
pinned ``receptorctl`` (every node) and ``ansible-runner`` (nodes that run work),
and the ``ansible-runner worker`` work-command of those nodes.

Why a virtualenv: Debian 12+ refuses ``pip install`` into the system Python
(PEP 668) and the distribution package names differ per release (awx#13287,
awx#14247). Other plugins call the tools by absolute path, which this plugin
registers as node tools (``topology.tool("receptorctl")``), so nothing is linked
into ``/usr/local/bin``.

Packages come from PyPI (default), a private index (``index_url``) or, for
air-gapped sites, a local ``wheelhouse`` directory uploaded to every node and
installed with ``--no-index``.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from typing import Any

from meshctl.plugin import (
    Absent,
    Check,
    CheckResult,
    Directory,
    NodeContext,
    NodeTool,
    Operation,
    Topology,
    TopologySection,
    Upload,
    hookimpl,
)
from meshctl.plugins.python_env.model import (
    BASE_DIR,
    DEFAULT_ANSIBLE_RUNNER,
    DEFAULT_RECEPTORCTL,
    RECEPTORCTL,
    RUNNER,
    VENV,
    VENV_PYTHON,
    WHEEL_DIR,
    PythonSection,
    Requirement,
    local_wheels,
    needs_runner,
    normalize_name,
    requirements,
    same_version,
    settings,
    version_key,
    wheel_id,
    wheelhouse_path,
)
from meshctl.plugins.python_env.ops import (
    VENV_OP_ID,
    PipPackages,
    PruneDirectory,
    Virtualenv,
    listing_fact,
    packages_fact,
    parse_packages,
    venv_fact,
)

__all__ = [
    "BASE_DIR", "DEFAULT_ANSIBLE_RUNNER", "DEFAULT_RECEPTORCTL", "RECEPTORCTL", "RUNNER", "VENV", "VENV_OP_ID",
    "VENV_PYTHON", "WHEEL_DIR", "PipPackages", "PruneDirectory", "PythonSection", "Requirement", "Virtualenv",
    "listing_fact", "local_wheels", "needs_runner", "normalize_name", "packages_fact", "requirements",
    "same_version", "settings", "venv_fact", "wheelhouse_path",
]


@hookimpl
def meshctl_register_node_tools(register: Callable[[NodeTool], None]) -> None:
    register(NodeTool("receptorctl", RECEPTORCTL, BASE_DIR, "receptorctl in meshctl's virtualenv"))
    register(NodeTool("ansible-runner", RUNNER, BASE_DIR, "ansible-runner (on nodes that run work)"))
    register(NodeTool("python", VENV_PYTHON, BASE_DIR, "the virtualenv's Python"))


@hookimpl
def meshctl_receptor_config(ctx: NodeContext) -> list[dict[str, Any]] | None:
    if not ctx.topology.role_of(ctx.node).runs_work:
        return None
    # AWX signs every submit when its receptor has work-signing (awx-operator always
    # writes it), and receptor refuses a signature it does not expect; unsigned work
    # would also let any holder of a mesh certificate run code as the service user.
    # Off only with work_signing.verify: false (receptor.finalize_sections).
    return [{"work-command": {"worktype": "ansible-runner", "command": RUNNER, "params": "worker",
                              "allowruntimeparams": True, "verifysignature": True}}]


@hookimpl
def meshctl_register_topology_sections(register: Callable[[TopologySection], None]) -> None:
    register(TopologySection("python", PythonSection, scope="mesh",
                             description=f"pinned ansible-runner/receptorctl in {VENV}; "
                                         "PyPI, a private index or a local wheelhouse"))


@hookimpl
def meshctl_validate_topology(topology: Topology, report: Callable[..., None]) -> None:
    s = settings(topology)
    if s.wheelhouse and s.index_url:
        report(("python", "index_url"), "python: set either wheelhouse or index_url, not both")
    wh = wheelhouse_path(topology, s)
    if wh is None:
        return
    where = ("python", "wheelhouse")
    if not wh.exists():
        report(where, f"python.wheelhouse: directory {wh} does not exist "
                      "(a relative path is relative to the topology file)")
        return
    if not wh.is_dir():
        report(where, f"python.wheelhouse: {wh} is not a directory")
        return
    # Checked here so an air-gapped run fails before a host is touched.
    have: dict[str, set[tuple[tuple[int, ...], str]]] = {}
    for p in local_wheels(wh):
        name, version = wheel_id(p.name)
        have.setdefault(name, set()).add(version_key(version))
    work = any(needs_runner(topology, n) for n in topology.managed_nodes)
    missing = [r for r in requirements(s, work)
               if r.key not in have or (r.version and version_key(r.version) not in have[r.key])]
    if missing:
        specs = " ".join(shlex.quote(r.spec) for r in requirements(s, work))
        shown = ", ".join(f"{r.key.replace('-', '_')}-{r.version or '*'}-*.whl" for r in missing)
        report(where, f"python.wheelhouse: {wh} has no wheel for "
                      f"{', '.join(r.spec for r in missing)} (looked for {shown}); "
                      f"fill it with: pip download --only-binary=:all: -d {shlex.quote(str(wh))} {specs} "
                      "(plus --python-version X.Y --platform manylinux2014_x86_64 when the nodes' "
                      "Python or platform differs from this machine's)")


@hookimpl
def meshctl_node_operations(ctx: NodeContext) -> list[Operation] | None:
    if not ctx.node.managed:
        return None
    s = settings(ctx.topology)
    work = needs_runner(ctx.topology, ctx.node)
    ops: list[Operation] = [
        Directory(path=BASE_DIR, mode="0755"),
        Virtualenv(interpreter=ctx.os_family.python(ctx.os_release)),
    ]
    wh = wheelhouse_path(ctx.topology, s)
    wheel_dir = None
    if wh is not None:
        wheels = local_wheels(wh)
        wheel_dir = WHEEL_DIR
        ops.append(Directory(path=WHEEL_DIR, mode="0755"))
        ops.append(PruneDirectory(path=WHEEL_DIR, keep=frozenset(p.name for p in wheels)))
        # Unchanged wheels (same size and mtime) are not sent again.
        ops += [Upload(path=f"{WHEEL_DIR}/{p.name}", source=str(p), mode="0644", quick_check=True)
                for p in wheels]
    ops.append(PipPackages(wanted=requirements(s, work), unwanted=[] if work else ["ansible-runner"],
                           index_url=s.index_url, wheel_dir=wheel_dir))
    return ops


def _check_packages(ctx: NodeContext) -> CheckResult:
    """The venv holds the pinned versions (read-only: no ansible-runner run, which
    would write a uuid file into the ssh user's home)."""
    assert ctx.run is not None
    rc, out = ctx.run(packages_fact().command)
    have = parse_packages(out, rc)
    if not have:
        return CheckResult(False, f"{VENV} is missing or broken (run meshctl provision)")
    reqs = requirements(settings(ctx.topology), needs_runner(ctx.topology, ctx.node))
    bad = [f"{r} (have {have.get(r.key) or 'none'})" for r in reqs
           if r.key not in have or (r.version and not same_version(have[r.key], r.version))]
    if bad:
        return CheckResult(False, "not as pinned: " + ", ".join(bad))
    return CheckResult(True, ", ".join(f"{r.name} {have[r.key]}" for r in reqs))


@hookimpl
def meshctl_register_checks(register: Callable[[Check], None]) -> None:
    register(Check("python-packages", _check_packages,
                   description=f"{VENV} holds the pinned ansible-runner/receptorctl"))


@hookimpl
def meshctl_removal_operations(ctx: NodeContext, purge_user: bool):
    if not ctx.node.managed:
        return None
    return [Absent(path=BASE_DIR)]
