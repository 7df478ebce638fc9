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
    # Gathered together with the host's other file facts (_files_section); the
    # command only records whether the content is wanted.
    return Fact(key=f"file:{path}", command=f"content={1 if content else 0}", kind="file")


def _wants_content(f: Fact) -> bool:
    return f.command == "content=1"


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
        if key not in seen or (f.kind == "file" and not _wants_content(f)):
            seen[key] = f
    return list(seen.values())


_APT_ALL = "@@apt-packages"
_FILES = "@@files"


def _file_path(f: Fact) -> str:
    return f.key.split(":", 1)[1]


def _files_section(facts: list[Fact], boundary: str) -> list[str]:
    """All file facts in three processes plus one base64 per wanted content: on a
    warm run this dominates the hosts' work (fork per file per tool otherwise)."""
    paths = [_file_path(f) for f in facts]
    wanted = [_file_path(f) for f in facts if _wants_content(f)]
    q = " ".join(shlex.quote(p) for p in paths)
    lines = [
        f"printf '%s\\n' '{boundary} {_FILES}'",
        f"stat -L -c '%n|%F|%a|%U|%G|%s' -- {q} </dev/null 2>/dev/null",
        f"printf '%s\\n' '{boundary} {_FILES}-sha'",
        f"sha256sum -- {q} </dev/null 2>/dev/null",
        f"printf '%s\\n' '{boundary} {_FILES}-content'",
    ]
    if wanted:
        w = " ".join(shlex.quote(p) for p in wanted)
        lines.append(f"find {w} -maxdepth 0 -type f -size -{CONTENT_LIMIT + 1}c 2>/dev/null </dev/null | "
                     "while IFS= read -r f; do printf '%s|' \"$f\"; base64 -w0 \"$f\"; echo; done")
    lines.append(f"printf '%s\\n' '{boundary} {_FILES}-end'")
    return lines


def _file_results(facts: list[Fact], stat: list[str], sha: list[str], content: list[str],
                  results: dict[str, dict[str, Any]]) -> None:
    kinds = {"directory": "dir", "regular file": "file", "regular empty file": "file"}
    info: dict[str, dict[str, Any]] = {}
    for line in stat:
        parts = line.rsplit("|", 5)
        if len(parts) != 6:
            continue
        path, ftype, mode, owner, group, size = parts
        info[path] = {"kind": kinds.get(ftype, "other"), "mode": mode, "owner": owner, "group": group,
                      "size": int(size) if size.isdigit() else 0}
    for line in sha:
        digest, _, path = line.partition("  ")
        if path in info and info[path]["kind"] == "file":
            info[path]["sha256"] = digest.lstrip("\\")
    for line in content:
        path, sep, b64 = line.rpartition("|")
        if sep and path in info:
            info[path]["content_b64"] = b64.strip()
    for f in facts:
        results[f.key] = dict(info.get(_file_path(f), {"kind": "absent"}))


def batch_script(facts: list[Fact]) -> tuple[str, str]:
    """One shell script that prints every fact between boundary lines. apt package
    facts are answered by one dpkg-query for all of them (each call reads the whole
    package database)."""
    boundary = "@@meshctl-" + secrets.token_hex(8)
    parts: list[str] = []
    apt = [f.key.split(":", 2)[2] for f in facts if f.kind == "package_apt"]
    if apt:
        names = " ".join(shlex.quote(n) for n in apt)
        parts.append(f"printf '%s\\n' '{boundary} {_APT_ALL}'")
        parts.append(f"dpkg-query -W -f='${{Package}}|${{db:Status-Abbrev}}|${{Version}}\\n' {names} </dev/null 2>/dev/null"
                     f"; printf '%s\\n' '{boundary} {_APT_ALL}-end'")
    files = [f for f in facts if f.kind == "file"]
    if files:
        parts += _files_section(files, boundary)
    for i, fact in enumerate(facts):
        if fact.kind in ("package_apt", "file"):
            continue
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
    apt_lines: list[str] | None = None
    sections: dict[str, list[str]] = {}
    section: str | None = None
    for line in output.splitlines():
        if line.startswith(boundary + " "):
            tag = line[len(boundary) + 1 :]
            if tag.startswith(_FILES):
                if tag == _FILES + "-end":
                    _file_results([f for f in facts if f.kind == "file"], sections.get(_FILES, []),
                                  sections.get(_FILES + "-sha", []), sections.get(_FILES + "-content", []), results)
                    section = None
                else:
                    section = tag
                    sections[tag] = []
                continue
            if tag == _APT_ALL:
                apt_lines = []
            elif tag == _APT_ALL + "-end":
                _apt_results(facts, apt_lines or [], results)
                apt_lines = None
            elif tag.startswith("rc ") and current is not None:
                rc = int(tag[3:]) if tag[3:].strip().isdigit() else 1
                fact = facts[current]
                results[fact.key] = fact.parse("\n".join(buf).strip("\n"), rc)
                current, buf = None, []
            elif tag.isdigit():
                current, buf = int(tag), []
            continue
        if section is not None:
            sections[section].append(line)
        elif apt_lines is not None:
            apt_lines.append(line)
        elif current is not None:
            buf.append(line)
    missing = [f.key for f in facts if f.key not in results]
    if missing:
        raise ValueError(f"fact output incomplete; missing {missing[:3]}")
    return results


def _apt_results(facts: list[Fact], lines: list[str], results: dict[str, dict[str, Any]]) -> None:
    seen: dict[str, str] = {}
    for line in lines:
        name, _, rest = line.partition("|")
        seen[name.split(":", 1)[0]] = rest  # "name:arch" for multi-arch packages
    for f in facts:
        if f.kind == "package_apt":
            name = f.key.split(":", 2)[2]
            results[f.key] = _parse_package_apt(seen.get(name, ""), 0)


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
