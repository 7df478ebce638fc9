"""Declarative facts: a shell snippet plus a parser, batched into one remote script.

Every fact has a stable key (``file:/etc/receptor/receptor.conf``) and parses to a
JSON-able dict, so plans can be computed from recorded facts without a host.
"""

from __future__ import annotations

import base64
import secrets
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from meshctl.core.types import OSRelease

#: Files larger than this are compared by hash only (no diff in plans).
CONTENT_LIMIT = 256 * 1024

_PREAMBLE = r"""
_file() {
  if [ -d "$1" ]; then k=dir; elif [ -f "$1" ]; then k=file; elif [ -e "$1" ]; then k=other; else echo kind=absent; return 0; fi
  stat -L -c "kind=$k mode=%a owner=%U group=%G size=%s" "$1"
  if [ "$k" = file ]; then
    if [ -r "$1" ]; then sha256sum "$1" | cut -d' ' -f1 | sed 's/^/sha256=/'; fi
    if [ "$2" = 1 ] && [ "$(stat -L -c %s "$1")" -le %(limit)d ]; then echo content=; base64 "$1" | tr -d '\n'; echo; fi
  fi
}
"""


@dataclass(frozen=True)
class Fact:
    """One fact: ``key`` identifies it, ``command`` prints it, ``kind`` picks the
    parser (or ``parser(output, rc)`` when a plugin brings its own)."""

    key: str
    command: str
    kind: str
    parser: Callable[[str, int], dict[str, Any]] | None = None

    def parse(self, output: str, rc: int) -> dict[str, Any]:
        if self.parser is not None:
            return self.parser(output, rc)
        return PARSERS[self.kind](output, rc)


# Fact constructors are cached: thousands of nodes ask for the same paths.
@lru_cache(maxsize=4096)
def file_fact(path: str, content: bool = True) -> Fact:
    return Fact(
        key=f"file:{path}",
        command=f"_file {shlex.quote(path)} {1 if content else 0}",
        kind="file",
    )


@lru_cache(maxsize=1024)
def package_fact(name: str, manager: str) -> Fact:
    q = shlex.quote(name)
    if manager == "apt":
        cmd = f"dpkg-query -W -f='${{db:Status-Abbrev}}|${{Version}}\\n' {q} 2>/dev/null"
    else:
        cmd = f"rpm -q --whatprovides --qf '%{{VERSION}}-%{{RELEASE}}\\n' {q} 2>/dev/null"
    return Fact(key=f"package:{manager}:{name}", command=cmd, kind=f"package_{manager}")


@lru_cache(maxsize=256)
def user_fact(name: str) -> Fact:
    return Fact(key=f"user:{name}", command=f"getent passwd {shlex.quote(name)}", kind="passwd")


@lru_cache(maxsize=256)
def group_fact(name: str) -> Fact:
    return Fact(key=f"group:{name}", command=f"getent group {shlex.quote(name)}", kind="group")


@lru_cache(maxsize=256)
def service_fact(unit: str) -> Fact:
    q = shlex.quote(unit)
    return Fact(
        key=f"service:{unit}",
        command=f"echo enabled=$(systemctl is-enabled {q} 2>/dev/null); "
        f"echo active=$(systemctl is-active {q} 2>/dev/null)",
        kind="service",
    )


def command_fact(guard: str) -> Fact:
    """The exit code of a guard command (``unless``/``onlyif``), output discarded."""
    return Fact(key=f"rc:{guard}", command=f"( {guard} ) >/dev/null 2>&1; echo rc=$?", kind="rc")


def exists_fact(path: str) -> Fact:
    q = shlex.quote(path)
    return Fact(key=f"exists:{path}", command=f"if [ -e {q} ]; then echo rc=0; else echo rc=1; fi", kind="rc")


def _kv(output: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in output.splitlines():
        for part in line.split(" ") if not line.startswith("content=") else [line]:
            k, sep, v = part.partition("=")
            if sep:
                out[k] = v
    return out


def _parse_file(output: str, rc: int) -> dict[str, Any]:
    lines = output.splitlines()
    data: dict[str, Any] = {}
    content_next = False
    for line in lines:
        if content_next:
            data["content_b64"] = line.strip()
            content_next = False
            continue
        if line == "content=":
            content_next = True
            continue
        data.update(_kv(line))
    if "kind" not in data:
        data["kind"] = "unknown"
        data["error"] = output.strip()[-300:]
    if "size" in data:
        data["size"] = int(data["size"])
    return data


def _parse_package_apt(output: str, rc: int) -> dict[str, Any]:
    line = output.strip().splitlines()[0] if output.strip() else ""
    status, _, version = line.partition("|")
    installed = status.startswith("ii") or status.startswith("hi")
    return {"installed": installed, "version": version if installed else ""}


def _parse_package_dnf(output: str, rc: int) -> dict[str, Any]:
    line = output.strip().splitlines()[0] if output.strip() else ""
    installed = rc == 0 and bool(line) and "no package provides" not in line
    return {"installed": installed, "version": line if installed else ""}


def _parse_passwd(output: str, rc: int) -> dict[str, Any]:
    line = output.strip()
    if rc != 0 or not line:
        return {"exists": False}
    parts = line.split(":")
    if len(parts) < 7:
        return {"exists": False}
    return {"exists": True, "uid": int(parts[2]), "gid": int(parts[3]), "home": parts[5], "shell": parts[6]}


def _parse_group(output: str, rc: int) -> dict[str, Any]:
    line = output.strip()
    if rc != 0 or not line:
        return {"exists": False}
    parts = line.split(":")
    return {"exists": True, "gid": int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None}


def _parse_service(output: str, rc: int) -> dict[str, Any]:
    kv = _kv(output)
    return {"enabled": kv.get("enabled", ""), "active": kv.get("active", "")}


def _parse_rc(output: str, rc: int) -> dict[str, Any]:
    kv = _kv(output)
    try:
        return {"rc": int(kv.get("rc", rc))}
    except ValueError:
        return {"rc": rc}


PARSERS = {
    "file": _parse_file,
    "package_apt": _parse_package_apt,
    "package_dnf": _parse_package_dnf,
    "passwd": _parse_passwd,
    "group": _parse_group,
    "service": _parse_service,
    "rc": _parse_rc,
}


def unique(facts: Iterable[Fact]) -> list[Fact]:
    """One fact per key. When two operations ask for the same file, one with and one
    without its content, the content is not fetched (it may be a secret)."""
    seen: dict[str, Fact] = {}
    for f in facts:
        key = f.key
        if key not in seen or (f.kind == "file" and f.command[-1] == "0"):
            seen[key] = f
    return list(seen.values())


def batch_script(facts: list[Fact]) -> tuple[str, str]:
    """One shell script that prints every fact between boundary lines."""
    boundary = "@@meshctl-" + secrets.token_hex(8)
    parts = [_PREAMBLE.replace("%(limit)d", str(CONTENT_LIMIT))]
    for i, fact in enumerate(facts):
        parts.append(f"printf '%s\\n' '{boundary} {i}'")
        body = fact.command.rstrip().rstrip(";")
        group = f"{{\n{body}\n}}" if "\n" in body else f"{{ {body} ; }}"  # heredocs need their own lines
        parts.append(f"{group} </dev/null 2>&1; printf '\\n%s\\n' \"{boundary} rc $?\"")
    parts.append(f"printf '%s\\n' '{boundary} end'")
    return "\n".join(parts) + "\n", boundary


def parse_batch(facts: list[Fact], output: str, boundary: str) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    current: int | None = None
    buf: list[str] = []
    for line in output.splitlines():
        if line.startswith(boundary + " "):
            tag = line[len(boundary) + 1 :]
            if tag.startswith("rc ") and current is not None:
                rc = int(tag[3:]) if tag[3:].strip().isdigit() else 1
                fact = facts[current]
                results[fact.key] = fact.parse("\n".join(buf).strip("\n"), rc)
                current, buf = None, []
            elif tag.isdigit():
                current, buf = int(tag), []
            continue
        if current is not None:
            buf.append(line)
    missing = [f.key for f in facts if f.key not in results]
    if missing:
        raise ValueError(f"fact output incomplete; missing {missing[:3]}")
    return results


OS_SCRIPT = "cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release; echo '@@arch'; uname -m; echo '@@uid'; id -u"


def parse_os(output: str) -> OSRelease:
    text, _, rest = output.partition("@@arch")
    arch, _, _uid = rest.partition("@@uid")
    return OSRelease.parse(text, arch=arch.strip())


def decode_content(fact: dict[str, Any]) -> bytes | None:
    b64 = fact.get("content_b64")
    if b64 is None:
        return None
    return base64.b64decode(b64)
