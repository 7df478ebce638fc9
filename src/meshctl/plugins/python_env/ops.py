"""What python_env plans on a node: facts read without starting an interpreter on
warm runs, the virtualenv, its pinned packages and the uploaded wheelhouse."""

from __future__ import annotations

import json
import posixpath
import shlex
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from meshctl.plugin import Change, Cmd, Fact, NoChange, Operation, PlanResult, glob_fact
from meshctl.plugins.python_env.model import (
    BASE_DIR,
    VENV,
    VENV_PYTHON,
    Requirement,
    normalize_name,
    same_version,
)

_PACKAGES_PY = (
    "import json, importlib.metadata as m; "
    'print(json.dumps({d.metadata["Name"]: d.version for d in m.distributions() if d.metadata["Name"]}))'
)
_VERSION_PY = 'import sys; print("%d.%d.%d" % sys.version_info[:3])'


def parse_packages(output: str, rc: int) -> dict[str, Any]:
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


def packages_fact() -> Fact:
    # The dist-info directory names say name and version: no interpreter start on
    # every warm run (that was most of an execution node's fact-gathering time).
    cmd = (f"for d in {VENV}/lib/python3*/site-packages/*.dist-info; do "
           '[ -d "$d" ] || continue; d=${d##*/}; echo "${d%.dist-info}"; done')
    return Fact(key=f"pip-packages:{VENV}", command=cmd, kind="pip-packages", parser=parse_packages)


def _parse_venv(output: str, rc: int) -> dict[str, Any]:
    kv = dict(line.partition("=")[::2] for line in output.splitlines() if "=" in line)
    return {"exists": kv.get("exists") == "1", "python": kv.get("venv", "").strip(),
            "interpreter": kv.get("interp", "").strip()}


def venv_fact(interpreter: str) -> Fact:
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
    return Fact(key=f"venv:{VENV}:{interpreter}", command=cmd, kind="venv", parser=_parse_venv)


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _parse_listing(output: str, rc: int) -> dict[str, Any]:
    return {"files": sorted(posixpath.basename(line) for line in output.splitlines() if line.strip())}


def listing_fact(directory: str) -> Fact:
    """Every entry of ``directory``, dot files included (like ``ls -A``)."""
    f = glob_fact(f"ls:{directory}", directory, "*", ".[!.]*", "..?*")
    return Fact(key=f.key, command=f.command, kind="listing", parser=_parse_listing)


# -- operations ----------------------------------------------------------------

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

    def facts(self, manager: str) -> list[Fact]:
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

    def facts(self, manager: str) -> list[Fact]:
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

    def facts(self, manager: str) -> list[Fact]:
        return [listing_fact(self.path)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        stale = [f for f in facts[listing_fact(self.path).key]["files"] if f not in self.keep]
        if not stale:
            return NoChange(self, "nothing stale")
        paths = " ".join(shlex.quote(posixpath.join(self.path, f)) for f in stale)
        shown = ", ".join(stale[:5]) + (f" and {len(stale) - 5} more" if len(stale) > 5 else "")
        return Change(self, f"remove {len(stale)} stale file(s): {shown}", [Cmd(f"rm -rf -- {paths}")])
