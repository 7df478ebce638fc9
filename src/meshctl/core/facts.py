"""Declarative facts: a shell snippet plus a parser, batched into one remote script.

Every fact has a stable key (``file:/etc/receptor/receptor.conf``) and parses to a
JSON-able dict, so plans can be computed from recorded facts without a host.
"""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from meshctl.core.types import OSRelease

#: Files larger than this are compared by hash only (no diff in plans).
CONTENT_LIMIT = 256 * 1024



@dataclass(frozen=True)
class Fact:
    """One fact: ``key`` identifies it, ``command`` prints it, ``kind`` picks the
    parser (or ``parser(output, rc)`` when a plugin brings its own)."""

    key: str
    command: str
    kind: str
    parser: Callable[[str, int], dict[str, Any]] | None = None
    #: A file whose content alone decides this fact (a key for its public half):
    #: while its sha256 is the one the value was computed at, the controller's host
    #: cache answers and the command does not run. Only for values that are no secret.
    memo: str | None = None

    def parse(self, output: str, rc: int) -> dict[str, Any]:
        if self.parser is not None:
            return self.parser(output, rc)
        return PARSERS[self.kind](output, rc)


# Fact constructors are cached: thousands of nodes ask for the same paths.
@lru_cache(maxsize=4096)
def file_fact(path: str, content: bool = True, digest: bool = True) -> Fact:
    """Kind, mode, owner, group, size and mtime of ``path``; its sha256 unless
    ``digest`` is false (hashing big files on every run costs); its content too
    when ``content`` (small files only; never for secrets)."""
    # Gathered together with the host's other file facts (_files_section); the
    # command only records what is wanted.
    return Fact(key=f"file:{path}", command=f"content={int(content)} digest={int(digest or content)}", kind="file")


def _wants_content(f: Fact) -> bool:
    return "content=1" in f.command.split()


def _wants_digest(f: Fact) -> bool:
    return "digest=0" not in f.command.split()


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
    # Answered with the host's other service facts by one systemctl call
    # (_services_section); the command is the unit name.
    return Fact(key=f"service:{unit}", command=unit, kind="service")


def service_state_fact(key: str, unit: str) -> Fact:
    """``state=active|inactive`` of a unit, under a key of the caller's choosing,
    gathered in the same systemctl call as the service facts."""
    return Fact(key=key, command=unit, kind="service",
                parser=lambda out, rc: {"state": "active" if _kv(out).get("active") == "active" else "inactive"})


def command_fact(guard: str) -> Fact:
    """The exit code of a guard command (``unless``/``onlyif``), output discarded."""
    return Fact(key=f"rc:{guard}", command=f"( {guard} ) >/dev/null 2>&1; echo rc=$?", kind="rc")


def exists_fact(path: str) -> Fact:
    q = shlex.quote(path)
    return Fact(key=f"exists:{path}", command=f"if [ -e {q} ]; then echo rc=0; else echo rc=1; fi", kind="rc")


_GLOB = re.compile(r"[A-Za-z0-9_.*?!\[\]/-]+")


def glob_fact(key: str, directory: str, *patterns: str) -> Fact:
    """The paths matching shell ``patterns`` under ``directory``, sorted, one per
    line: ``{"lines": [...]}``. The shell expands them itself (ls would be a
    process per listing on every run)."""
    bad = [p for p in patterns if not _GLOB.fullmatch(p)]
    if bad:
        raise ValueError(f"glob_fact: unsupported pattern {bad[0]!r}")
    d = shlex.quote(directory.rstrip("/") or "/")
    globs = " ".join(f"{d}/{p}" for p in patterns)
    cmd = f"for p in {globs}; do if [ -e \"$p\" ] || [ -L \"$p\" ]; then printf '%s\\n' \"$p\"; fi; done"
    return Fact(key=key, command=cmd, kind="lines", parser=_parse_lines)


def _parse_lines(output: str, rc: int) -> dict[str, Any]:
    return {"lines": sorted(ln for ln in output.splitlines() if ln.strip())}


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


def _file_path(f: Fact) -> str:
    return f.key.split(":", 1)[1]


def unique(facts: Iterable[Fact]) -> list[Fact]:
    """One fact per key. When two operations ask for the same file, one with and one
    without its content, the content is not fetched (it may be a secret); the
    digest is when either wants it."""
    seen: dict[str, Fact] = {}
    for f in facts:
        prev = seen.get(f.key)
        if prev is None:
            seen[f.key] = f
        elif f.kind == "file":  # the digest when anyone wants it
            seen[f.key] = file_fact(_file_path(f), content=_wants_content(prev) and _wants_content(f),
                                    digest=_wants_digest(prev) or _wants_digest(f))
    return list(seen.values())


# Shell builtins but uname: each process start is a noticeable part of a warm run.
OS_SCRIPT = ("f=/etc/os-release; [ -r $f ] || f=/usr/lib/os-release; "
             "while IFS= read -r l || [ -n \"$l\" ]; do printf '%s\\n' \"$l\"; done < $f; "
             "echo '@@arch'; uname -m")


def parse_os(output: str) -> OSRelease:
    text, _, rest = output.partition("@@arch")
    arch, _, _uid = rest.partition("@@uid")
    return OSRelease.parse(text, arch=arch.strip())


def decode_content(fact: dict[str, Any]) -> bytes | None:
    b64 = fact.get("content_b64")
    if b64 is None:
        return None
    return base64.b64decode(b64)
