"""The ``python:`` section and what it asks for: pinned requirements, versions
compared as pip does, the local wheelhouse."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, field_validator

from meshctl.plugin import Node, StrictModel, Topology, resolve_path

BASE_DIR = "/opt/meshctl"
VENV = f"{BASE_DIR}/venv"
VENV_PYTHON = f"{VENV}/bin/python"
RUNNER = f"{VENV}/bin/ansible-runner"
RECEPTORCTL = f"{VENV}/bin/receptorctl"
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


def version_key(version: str) -> tuple[tuple[int, ...], str]:
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
    return version_key(a) == version_key(b)


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


def needs_runner(topology: Topology, node: Node) -> bool:
    """Nodes that run work run ansible-runner worker; a controller runs transmit/process."""
    role = topology.role_of(node)
    return role.runs_work or role.needs_runner


def requirements(s: PythonSection, work: bool) -> list[Requirement]:
    """What a node gets: ansible-runner only where work runs (a hop node has none)."""
    reqs = [Requirement("ansible-runner", s.ansible_runner, f"ansible-runner=={s.ansible_runner}")] if work else []
    reqs.append(Requirement("receptorctl", s.receptorctl, f"receptorctl=={s.receptorctl}"))
    reqs += [_parse_requirement(e) for e in s.extra_packages]
    return reqs


def wheelhouse_path(topology: Topology, s: PythonSection) -> Path | None:
    return resolve_path(topology, s.wheelhouse) if s.wheelhouse else None


def local_wheels(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.whl") if p.is_file())


def wheel_id(filename: str) -> tuple[str, str]:
    """(normalized name, version) of a wheel file name (PEP 427: name-version-...-tags.whl)."""
    parts = filename[: -len(".whl")].split("-")
    return normalize_name(parts[0]), parts[1] if len(parts) > 1 else ""
