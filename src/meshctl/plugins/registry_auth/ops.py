"""Registry operations besides auth.json: warnings, pruning what meshctl made for
dropped registries, pre-pulled images and the registries.conf.d drop-ins."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

from meshctl.plugin import (
    Change,
    Cmd,
    Fact,
    NoChange,
    Operation,
    PlanResult,
    command_fact,
    glob_fact,
    toml_comment,
    toml_table,
)
from meshctl.plugins.registry_auth.model import CERTS_D, CONF_D, MANAGED_MARK, Registry


@dataclass
class Warn(Operation):
    """Only says something the user must know, in every plan."""

    message: str = ""

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        return NoChange(self, self.message, warning=True)


@dataclass
class PruneManaged(Operation):
    """Remove registry files meshctl made for registries no longer listed."""

    default_category = "registries"

    keep_confs: list[str] = field(default_factory=list)
    keep_certs: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.id = self.id or "registries:prune"
        self.description = self.description or "registry files of dropped registries"

    def facts(self, manager: str) -> list[Fact]:
        return [
            glob_fact("ls:registries.conf.d", CONF_D, "meshctl-*.conf"),
            glob_fact("ls:certs.d", CERTS_D, f"*/{MANAGED_MARK}"),
        ]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        confs = [p for p in facts["ls:registries.conf.d"]["lines"] if p not in self.keep_confs]
        certs = [p.rsplit("/", 1)[0] for p in facts["ls:certs.d"]["lines"]]
        certs = [d for d in certs if d not in self.keep_certs]
        if not confs and not certs:
            return NoChange(self, "nothing to remove")
        cmds = [Cmd(f"rm -f -- {shlex.quote(p)}") for p in confs]
        cmds += [Cmd(f"rm -rf -- {shlex.quote(d)}") for d in certs]
        return Change(self, "remove " + ", ".join(confs + certs), cmds)


_PULL = r"""
out=$(runuser -l "$1" -c "$4" 2>&1); rc=$?
if [ $rc -ne 0 ]; then
  printf '%s\n' "$out" | tail -n 5
  case "$out" in
    *x509*|*"unknown authority"*|*certificate*) echo "meshctl: registry $3 is not trusted on this node (unknown CA): set its ca_file";;
    *unauthorized*|*401*|*"authentication required"*) echo "meshctl: registry $3 rejected the credentials (HTTP 401)";;
    *"connection refused"*|*"no route to host"*|*"i/o timeout"*|*"no such host"*|*"network is unreachable"*) echo "meshctl: registry $3 is unreachable from this node";;
  esac
  exit $rc
fi
echo "pulled $2"
"""


@dataclass
class Prepull(Operation):
    """An Execution Environment image present in the service user's storage."""

    default_category = "registries"

    image: str = ""
    registry: str = ""
    user: str = "awx"

    def __post_init__(self) -> None:
        self.id = self.id or f"prepull:{self.image}"
        self.description = self.description or f"image {self.image} (as {self.user})"

    def facts(self, manager: str) -> list[Fact]:
        return [command_fact(f"runuser -l {shlex.quote(self.user)} -c "
                               f"{shlex.quote('podman image exists ' + shlex.quote(self.image))}")]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        key = f"rc:runuser -l {shlex.quote(self.user)} -c " \
              f"{shlex.quote('podman image exists ' + shlex.quote(self.image))}"
        if facts[key]["rc"] == 0 and "authjson" not in changed:
            return NoChange(self, "present")
        pull = "podman pull --quiet " + shlex.quote(self.image)  # quoted here: dash has no printf %q
        args = " ".join(shlex.quote(a) for a in (self.user, self.image, self.registry, pull))
        return Change(self, "pull", [Cmd(f"sh -c {shlex.quote(_PULL)} meshctl-pull {args}")])


def dedupe(ops: list[Any]) -> list[Any]:
    seen, out = set(), []
    for op in ops:
        if op.id not in seen:
            seen.add(op.id)
            out.append(op)
    return out


def drop_in(reg: Registry) -> str:
    """The registries.conf.d drop-in, every value through the TOML writer."""
    lines = [toml_comment(f"Managed by meshctl for registry {reg.host}.")]
    if reg.mirror_of:
        lines += toml_table(["registry"], {"prefix": reg.mirror_of, "location": reg.mirror_of}, array=True)
        mirror: dict[str, Any] = {"location": reg.host}
        if reg.insecure:
            mirror["insecure"] = True
        lines += [""] + toml_table(["registry", "mirror"], mirror, array=True)
    else:
        lines += toml_table(["registry"], {"location": reg.host, "insecure": True}, array=True)
    return "\n".join(lines) + "\n"
