"""meshctl's Python virtualenv on every managed node: ``/opt/meshctl/venv`` with
pinned ``receptorctl`` (every node) and ``ansible-runner`` (nodes that run work).

Why a virtualenv: Debian 12+ refuses ``pip install`` into the system Python
(PEP 668) and the distribution package names differ per release (awx#13287,
awx#14247). Other code calls the tools by absolute path (``receptor.RUNNER``,
``receptor.RECEPTORCTL``), so nothing is linked into ``/usr/local/bin``.

Packages come from PyPI (default), a private index (``index_url``) or, for
air-gapped sites, a local ``wheelhouse`` directory uploaded to every node and
installed with ``--no-index``.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator

from meshctl.core import facts as F
from meshctl.core import receptor as R
from meshctl.core.hookspecs import hookimpl
from meshctl.core.ops import Change, Cmd, Directory, NoChange, Operation, PlanResult, Upload
from meshctl.core.topology import StrictModel, Topology
from meshctl.core.types import Check, CheckResult, NodeContext, TopologySection

BASE_DIR = posixpath.dirname(R.VENV)  # /opt/meshctl
VENV = R.VENV
VENV_PYTHON = f"{VENV}/bin/python"
WHEEL_DIR = f"{BASE_DIR}/wheels"
DEFAULT_ANSIBLE_RUNNER = "2.4.3"
DEFAULT_RECEPTORCTL = "1.6.9"

# PEP 440 public versions, exact (no ranges: a pin is what makes nodes alike, receptor#1227).
_VERSION = r"[0-9]+(?:\.[0-9]+)*(?:(?:a|b|rc)[0-9]+)?(?:\.post[0-9]+)?(?:\.dev[0-9]+)?"
_VERSION_RE = re.compile(rf"^{_VERSION}$")
_REQUIREMENT_RE = re.compile(
    rf"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)(?P<extras>\[[A-Za-z0-9._, -]+\])?"
    rf"(?:==(?P<version>{_VERSION}))?$"
)


def normalize_name(name: str) -> str:
    """PEP 503 project name: ``Ansible_Runner`` and ``ansible-runner`` are one project."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _version_key(version: str) -> tuple[tuple[int, ...], str]:
    # "2.4" and "2.4.0" are the same release for pip; compare them as equal so a
    # short pin does not plan a reinstall on every run.
    m = re.match(r"^([0-9]+(?:\.[0-9]+)*)(.*)$", version.strip().lower())
    if not m:
        return (), version.strip().lower()
    release = [int(p) for p in m.group(1).split(".")]
    while len(release) > 1 and release[-1] == 0:
        release.pop()
    return tuple(release), m.group(2)


def same_version(a: str, b: str) -> bool:
    return _version_key(a) == _version_key(b)


def _check_pin(value: str) -> str:
    if not _VERSION_RE.match(value):
        raise ValueError(f"{value!r} is not an exact version like {DEFAULT_ANSIBLE_RUNNER} "
                         "(meshctl installs pinned versions, not ranges)")
    return value


def _check_requirement(value: str) -> str:
    m = _REQUIREMENT_RE.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} must be NAME or NAME==VERSION (e.g. 'pywinrm==0.5.0')")
    if normalize_name(m.group("name")) in ("ansible-runner", "receptorctl"):
        raise ValueError(f"{value!r}: set python.ansible_runner / python.receptorctl instead")
    return value.strip()


class PythonSection(StrictModel):
    """``python:`` in mesh.yml: the packages of meshctl's virtualenv and where they come from."""

    ansible_runner: Annotated[str, AfterValidator(_check_pin)] = DEFAULT_ANSIBLE_RUNNER
    receptorctl: Annotated[str, AfterValidator(_check_pin)] = DEFAULT_RECEPTORCTL
    #: A local directory of wheels (relative to mesh.yml), uploaded to the nodes.
    wheelhouse: str | None = Field(default=None, min_length=1)
    #: A private package index (PEP 503 "simple" URL).
    index_url: str | None = None
    extra_packages: list[Annotated[str, AfterValidator(_check_requirement)]] = Field(default_factory=list)

    @field_validator("index_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        # The value is not echoed: an index URL may carry a token.
        if value is None:
            return value
        if any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError("must be one URL without spaces or control characters")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value


def settings(topology: Topology) -> PythonSection:
    return topology.sections.get("python") or PythonSection()


@dataclass(frozen=True)
class Requirement:
    name: str  # as written (shown to users)
    version: str | None  # None: any version
    spec: str  # what pip gets

    @property
    def key(self) -> str:
        return normalize_name(self.name)

    def __str__(self) -> str:
        return f"{self.name} {self.version}" if self.version else self.name


def _parse_requirement(text: str) -> Requirement:
    m = _REQUIREMENT_RE.match(text)
    assert m is not None  # validated by the model
    return Requirement(m.group("name"), m.group("version"), text)


def needs_runner(topology: Topology, role: str) -> bool:
    """Execution nodes run ansible-runner worker; a controller runs transmit/process."""
    roles = topology.plugins.roles() if topology.plugins is not None else {}
    found = roles.get(role)
    return (found.runs_work or found.needs_runner) if found is not None else role == "execution"


def requirements(s: PythonSection, work: bool) -> list[Requirement]:
    """What a node gets: ansible-runner only where work runs (a hop node has none)."""
    reqs = [Requirement("ansible-runner", s.ansible_runner, f"ansible-runner=={s.ansible_runner}")] if work else []
    reqs.append(Requirement("receptorctl", s.receptorctl, f"receptorctl=={s.receptorctl}"))
    reqs += [_parse_requirement(e) for e in s.extra_packages]
    return reqs


def wheelhouse_path(topology: Topology, s: PythonSection) -> Path | None:
    if not s.wheelhouse:
        return None
    p = Path(s.wheelhouse).expanduser()
    return p if p.is_absolute() else Path(topology.file).resolve().parent / p


def local_wheels(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.whl") if p.is_file())


def _wheel_id(filename: str) -> tuple[str, str]:
    """(normalized name, version) of a wheel file name (PEP 427: name-version-...-tags.whl)."""
    parts = filename[: -len(".whl")].split("-")
    return normalize_name(parts[0]), parts[1] if len(parts) > 1 else ""


# ---------------------------------------------------------------------------
# Facts

_PACKAGES_PY = (
    "import json, importlib.metadata as m; "
    'print(json.dumps({d.metadata["Name"]: d.version for d in m.distributions() if d.metadata["Name"]}))'
)
_VERSION_PY = 'import sys; print("%d.%d.%d" % sys.version_info[:3])'


def _parse_packages(output: str, rc: int) -> dict[str, Any]:
    """name -> version of what the venv holds; {} when the venv is absent or broken.
    Reads JSON ({name: version}) or dist-info directory names (name-version)."""
    lines = output.strip().splitlines()
    for line in reversed(lines):
        try:
            data = json.loads(line)
        except ValueError:
            continue
        if isinstance(data, dict):
            return {normalize_name(str(k)): str(v) for k, v in data.items()}
    out = {}
    for line in lines:
        name, sep, version = line.strip().partition("-")  # wheel names escape "-" in names as "_"
        if sep and version:
            out[normalize_name(name)] = version
    return out


def packages_fact() -> F.Fact:
    # The dist-info directory names say name and version: no interpreter start on
    # every warm run (that was most of an execution node's fact-gathering time).
    cmd = (f"for d in {VENV}/lib/python3*/site-packages/*.dist-info; do "
           '[ -d "$d" ] || continue; d=${d##*/}; echo "${d%.dist-info}"; done')
    return F.Fact(key=f"pip-packages:{VENV}", command=cmd, kind="pip-packages", parser=_parse_packages)


def _parse_venv(output: str, rc: int) -> dict[str, Any]:
    kv = dict(line.partition("=")[::2] for line in output.splitlines() if "=" in line)
    return {"exists": kv.get("exists") == "1", "python": kv.get("venv", "").strip(),
            "interpreter": kv.get("interp", "").strip()}


def venv_fact(interpreter: str) -> F.Fact:
    """Does the venv exist, which Python made it, which Python is the interpreter now.
    Read from pyvenv.cfg and the interpreter's resolved name (``python3.11``): no
    interpreter starts on a warm run. Only an unversioned name is asked for its version."""
    v, i, code = shlex.quote(VENV), shlex.quote(interpreter), shlex.quote(_VERSION_PY)
    cmd = (f"if [ -e {v} ]; then echo exists=1; fi; "
           f"if [ -x {shlex.quote(VENV_PYTHON)} ] && [ -r {v}/pyvenv.cfg ]; then "
           f"while IFS=' =' read -r k val; do [ \"$k\" = version ] && echo \"venv=$val\"; done < {v}/pyvenv.cfg; fi; "
           f"p=$(readlink -f {i}); case \"${{p##*/}}\" in "
           "python3.[0-9]*|platform-python3.[0-9]*) echo \"interp=${p##*python}\" ;; "
           f"*) echo \"interp=$({i} -I -S -c {code} 2>/dev/null)\" ;; esac")
    return F.Fact(key=f"venv:{VENV}:{interpreter}", command=cmd, kind="venv", parser=_parse_venv)


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _parse_listing(output: str, rc: int) -> dict[str, Any]:
    return {"files": sorted(posixpath.basename(line) for line in output.splitlines() if line.strip())}


def listing_fact(directory: str) -> F.Fact:
    """Every entry of ``directory``, dot files included (like ``ls -A``)."""
    f = F.glob_fact(f"ls:{directory}", directory, "*", ".[!.]*", "..?*")
    return F.Fact(key=f.key, command=f.command, kind="listing", parser=_parse_listing)


# ---------------------------------------------------------------------------
# Operations

VENV_OP_ID = f"venv:{VENV}"
# The venv and what pip puts in it must be readable and runnable by awx: root's umask
# may be 077 or 027 (CIS). In a subshell, so the rest of the apply script keeps its own.
UMASK = "umask 022;"


@dataclass
class Virtualenv(Operation):
    """``<interpreter> -m venv``, (re)created when absent, broken (its python does not
    run, or pip is missing: what a failed earlier attempt leaves) or built from
    another Python than the interpreter the OS plugin names."""

    default_category = "python packages"
    interpreter: str = "/usr/bin/python3"

    def __post_init__(self) -> None:
        self.id = self.id or VENV_OP_ID
        self.description = self.description or f"virtualenv {VENV}"

    def facts(self, manager: str) -> list[F.Fact]:
        return [venv_fact(self.interpreter), packages_fact()]

    def command(self) -> Cmd:
        v, i = shlex.quote(VENV), shlex.quote(self.interpreter)
        # A failed `-m venv` (Debian without python3-venv) leaves a venv without pip:
        # remove it so the next run starts clean rather than from a half-made venv.
        # venv hides ensurepip's output, so a full disk reads as "exit status 1": say it.
        low = (f"df -Pk {shlex.quote(BASE_DIR)} 2>/dev/null | awk 'NR==2 && $4 < 65536 "
               "{print \"meshctl: only \" $4 \" KiB free on \" $6}'")
        return Cmd(f"({UMASK} rm -rf {v}; {i} -m venv {v}) || {{ _rc=$?; rm -rf {v}; {low}; (exit $_rc); }}")

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        f = facts[venv_fact(self.interpreter).key]
        have, want = f["python"], f["interpreter"]
        if not f["exists"]:
            return Change(self, f"create with {self.interpreter}", [self.command()])
        if not have:
            why = "its python does not run"
        elif _minor(have) != _minor(want):  # a patch release keeps a venv working
            why = f"python {have}, {self.interpreter} is {want or 'not installed yet'}"
        elif "pip" not in facts[packages_fact().key]:
            why = "pip is missing"
        else:
            return NoChange(self, f"python {have}")
        return Change(self, f"recreate with {self.interpreter} ({why})", [self.command()])


def _pip(args: str, env: str = "") -> str:
    # PIP_ROOT_USER_ACTION: silence the root warning; as an env var because pip < 22.1
    # (Ubuntu 22.04's venv) rejects the option.
    return f"({UMASK} {env}PIP_ROOT_USER_ACTION=ignore {VENV_PYTHON} -m pip --disable-pip-version-check {args})"


@dataclass
class PipPackages(Operation):
    """Pinned packages in the venv. Planned from the installed versions; a fresh
    (re)created venv gets everything."""

    default_category = "python packages"
    wanted: list[Requirement] = field(default_factory=list)
    #: Packages that must not be there (ansible-runner on a hop node).
    unwanted: list[str] = field(default_factory=list)
    index_url: str | None = None
    wheel_dir: str | None = None  # install offline from here (--no-index)

    def __post_init__(self) -> None:
        self.id = self.id or f"pip:{VENV}"
        self.description = self.description or f"python packages in {VENV}"
        # An index URL may carry a token: keep it out of displayed diffs.
        if self.index_url and urlsplit(self.index_url).username:
            self.secret = True

    def facts(self, manager: str) -> list[F.Fact]:
        return [packages_fact()]

    def install_cmd(self) -> Cmd:
        specs = " ".join(shlex.quote(r.spec) for r in self.wanted)
        if self.wheel_dir:
            return Cmd(_pip(f"install -q --no-index --find-links {shlex.quote(self.wheel_dir)} {specs}"))
        args = f"install -q --timeout 60 --retries 3 {specs}"
        if self.index_url:
            # Through stdin, not argv: a token in the URL must not show in `ps`.
            return Cmd(_pip(args, env='PIP_INDEX_URL="$(cat)" '), stdin=self.index_url + "\n")
        return Cmd(_pip(args))

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        have: dict[str, str] = facts[packages_fact().key]
        fresh = VENV_OP_ID in changed
        todo: list[str] = []
        for r in self.wanted:
            got = None if fresh else have.get(r.key)
            if got is None:
                todo.append(str(r))
            elif r.version and not same_version(got, r.version):
                todo.append(f"{r} (have {got})")
        drop = [] if fresh else [n for n in self.unwanted if normalize_name(n) in have]
        if not todo and not drop:
            shown = [f"{r.name} {have[r.key]}" for r in self.wanted]
            return NoChange(self, ", ".join(shown) + " installed")
        notes, cmds = [], []
        if todo:
            notes.append("install " + ", ".join(todo) + (" (new virtualenv)" if fresh else ""))
            # Every pin in one resolver run, so the set stays consistent.
            cmds.append(self.install_cmd())
        if drop:
            notes.append("remove " + ", ".join(f"{n} {have[normalize_name(n)]}" for n in drop))
            cmds.append(Cmd(_pip("uninstall -y -q " + " ".join(shlex.quote(n) for n in drop))))
        return Change(self, "; ".join(notes), cmds)


@dataclass
class PruneDirectory(Operation):
    """Remove what a meshctl-owned directory holds beyond ``keep`` (wheels no longer
    in the local wheelhouse), so pip cannot pick a stale one."""

    path: str = ""
    keep: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        self.id = self.id or f"prune:{self.path}"
        self.description = self.description or f"{self.path}/ (stale files)"

    def facts(self, manager: str) -> list[F.Fact]:
        return [listing_fact(self.path)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        stale = [f for f in facts[listing_fact(self.path).key]["files"] if f not in self.keep]
        if not stale:
            return NoChange(self, "nothing stale")
        paths = " ".join(shlex.quote(posixpath.join(self.path, f)) for f in stale)
        shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        return Change(self, f"remove {len(stale)} stale file(s): {shown}", [Cmd(f"rm -rf -- {paths}")])


# ---------------------------------------------------------------------------
# Hooks


@hookimpl
def meshctl_register_topology_sections(register: Callable[[TopologySection], None]) -> None:
    register(TopologySection("python", PythonSection, scope="mesh",
                             description="pinned ansible-runner/receptorctl in /opt/meshctl/venv; "
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
        name, version = _wheel_id(p.name)
        have.setdefault(name, set()).add(_version_key(version))
    work = any(needs_runner(topology, n.role) for n in topology.managed_nodes)
    missing = [r for r in requirements(s, work)
               if r.key not in have or (r.version and _version_key(r.version) not in have[r.key])]
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
    work = needs_runner(ctx.topology, ctx.node.role)
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
    have = _parse_packages(out, rc)
    if not have:
        return CheckResult(False, f"{VENV} is missing or broken (run meshctl provision)")
    reqs = requirements(settings(ctx.topology), needs_runner(ctx.topology, ctx.node.role))
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
    from meshctl.core.ops import Absent

    if not ctx.node.managed:
        return None
    return [Absent(path="/opt/meshctl")]
