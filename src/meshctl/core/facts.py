"""Declarative facts: a shell snippet plus a parser, batched into one remote script.

Every fact has a stable key (``file:/etc/receptor/receptor.conf``) and parses to a
JSON-able dict, so plans can be computed from recorded facts without a host.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import secrets
import shlex
import tarfile
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


_APT_ALL = "@@apt-packages"
_FILES = "@@files"
_SERVICES = "@@services"
_BATCHED = ("package_apt", "file", "service")


def _file_path(f: Fact) -> str:
    return f.key.split(":", 1)[1]


_NL = "_nl='\n'"  # a newline, to match whole lines of sha256sum's output


def _digest_is(path: str, digest: str) -> str:
    """A case pattern matching ``$_nl$_sums$_nl`` when ``path`` has ``digest``."""
    return f'*"$_nl"{shlex.quote(f"{digest}  {path}")}"$_nl"*'


def _files_section(facts: list[Fact], boundary: str, known: dict[str, str]) -> list[str]:
    """All file facts in a handful of processes: on a warm run this dominates the
    hosts' work (fork per file per tool otherwise). Content is fetched only for
    files whose digest differs from what the host cache (``known``) holds."""
    paths = [_file_path(f) for f in facts]
    wanted = [_file_path(f) for f in facts if _wants_content(f)]
    hashed = [_file_path(f) for f in facts if _wants_digest(f)]
    q = " ".join(shlex.quote(p) for p in paths)
    lines = [
        _NL,
        "_sums=",
        f"printf '%s\\n' '{boundary} {_FILES}'",
        f"stat -L -c '%n|%F|%a|%U|%G|%s|%Y' -- {q} </dev/null 2>/dev/null",
        f"printf '%s\\n' '{boundary} {_FILES}-sha'",
    ]
    if hashed:
        lines.append(f"_sums=$(sha256sum -- {' '.join(shlex.quote(p) for p in hashed)} </dev/null 2>/dev/null)")
        lines.append('printf \'%s\\n\' "$_sums"')
    lines.append(f"printf '%s\\n' '{boundary} {_FILES}-content'")
    if wanted:
        lines.append("set --")
        for p in wanted:
            qp = shlex.quote(p)
            if p in known and p in hashed:
                lines.append(f'case "$_nl$_sums$_nl" in ({_digest_is(p, known[p])}) ;; (*) set -- "$@" {qp} ;; esac')
            else:
                lines.append(f'set -- "$@" {qp}')
        small = f'find "$@" -maxdepth 0 -type f -size -{CONTENT_LIMIT + 1}c'
        # One tar for all contents (a base64 per file is a process per file); the
        # loop is for hosts without tar yet (it is among what meshctl installs).
        lines.append(f"if [ $# -eq 0 ]; then :; elif command -v tar >/dev/null 2>&1; then printf 'tar|'; "
                     f"{small} -print0 2>/dev/null </dev/null | "
                     "tar --null -T - -P --no-recursion -b 1 -cf - 2>/dev/null | base64 -w0; echo; "
                     f"else {small} 2>/dev/null </dev/null | "
                     "while IFS= read -r f; do printf '%s|' \"$f\"; base64 -w0 \"$f\"; echo; done; fi")
    lines.append(f"printf '%s\\n' '{boundary} {_FILES}-end'")
    return lines


def _contents(lines: list[str]) -> Iterable[tuple[str, bytes]]:
    for line in lines:
        if line.startswith("tar|"):
            try:
                with tarfile.open(fileobj=io.BytesIO(base64.b64decode(line[4:].strip())), mode="r:") as tar:
                    for member in tar:
                        fh = tar.extractfile(member) if member.isfile() else None
                        if fh is not None:
                            yield "/" + member.name.lstrip("/"), fh.read()
            except (tarfile.TarError, ValueError):
                continue
            continue
        path, sep, b64 = line.rpartition("|")
        if sep:
            try:
                yield path, base64.b64decode(b64.strip())
            except ValueError:
                continue


def _file_results(facts: list[Fact], stat: list[str], sha: list[str], content: list[str],
                  results: dict[str, dict[str, Any]], cache: Any = None) -> None:
    kinds = {"directory": "dir", "regular file": "file", "regular empty file": "file"}
    info: dict[str, dict[str, Any]] = {}
    for line in stat:
        parts = line.rsplit("|", 6)
        if len(parts) != 7:
            continue
        path, ftype, mode, owner, group, size, mtime = parts
        info[path] = {"kind": kinds.get(ftype, "other"), "mode": mode, "owner": owner, "group": group,
                      "size": int(size) if size.isdigit() else 0, "mtime": int(mtime) if mtime.isdigit() else 0}
    for line in sha:
        digest, _, path = line.partition("  ")
        if path in info and info[path]["kind"] == "file":
            info[path]["sha256"] = digest.lstrip("\\")
    for path, data in _contents(content):
        # A file rewritten between the hash and the read: no content, the hash decides.
        if path in info and info[path].get("sha256") == hashlib.sha256(data).hexdigest():
            info[path]["content_b64"] = base64.b64encode(data).decode()
    if cache is not None:  # what was not sent because the host cache has it
        for f in facts:
            entry = info.get(_file_path(f), {})
            if _wants_content(f) and "content_b64" not in entry and entry.get("sha256"):
                data = cache.content(entry["sha256"])
                if data is not None:
                    entry["content_b64"] = base64.b64encode(data).decode()
    for f in facts:
        results[f.key] = dict(info.get(_file_path(f), {"kind": "absent"}))


def _services_section(facts: list[Fact], boundary: str) -> list[str]:
    units = " ".join(shlex.quote(u) for u in dict.fromkeys(f.command for f in facts))
    return [f"printf '%s\\n' '{boundary} {_SERVICES}'",
            f"systemctl show -p Id,UnitFileState,ActiveState -- {units} </dev/null 2>/dev/null",
            f"printf '%s\\n' '{boundary} {_SERVICES}-end'"]


def _service_results(facts: list[Fact], lines: list[str], results: dict[str, dict[str, Any]]) -> None:
    """``systemctl show`` prints one block per unit, in argument order, blank-line
    separated (Id is the alias target, so the order is what identifies a block).
    ``is-enabled`` values: empty UnitFileState is what it prints for no unit file."""
    blocks: list[dict[str, str]] = [{}]
    for line in lines:
        if not line.strip():
            if blocks[-1]:
                blocks.append({})
            continue
        k, _, v = line.partition("=")
        blocks[-1][k] = v
    units = list(dict.fromkeys(f.command for f in facts))
    filled = [b for b in blocks if b]
    if len(filled) == len(units):
        state = dict(zip(units, filled, strict=True))
    else:  # a unit systemctl refused: fall back to names (an alias then reads as unknown)
        state = {b.get("Id", ""): b for b in filled}
    for f in facts:
        b = state.get(f.command, {})
        results[f.key] = f.parse(f"enabled={b.get('UnitFileState', '')}\nactive={b.get('ActiveState', '')}", 0)


_MEMO_HIT = "@@memo-hit"


def batch_script(facts: list[Fact], cache: Any = None) -> tuple[str, str]:
    """One shell script that prints every fact between boundary lines. apt package,
    file and service facts are each answered by one or a few processes for all of
    them: on a warm run the hosts' work is mostly process starts."""
    boundary = "@@meshctl-" + secrets.token_hex(8)
    parts: list[str] = []
    apt = [f.key.split(":", 2)[2] for f in facts if f.kind == "package_apt"]
    if apt:
        names = " ".join(shlex.quote(n) for n in apt)
        parts.append(f"printf '%s\\n' '{boundary} {_APT_ALL}'")
        parts.append(f"dpkg-query -W -f='${{Package}}|${{db:Status-Abbrev}}|${{Version}}\\n' {names} </dev/null 2>/dev/null"
                     f"; printf '%s\\n' '{boundary} {_APT_ALL}-end'")
    files = [f for f in facts if f.kind == "file"]
    known = cache.known_files() if cache is not None else {}
    memo = cache.memo_digests() if cache is not None else {}
    hashed = {_file_path(f) for f in files if _wants_digest(f)}
    if files:
        parts += _files_section(files, boundary, known)
    services = [f for f in facts if f.kind == "service"]
    if services:
        parts += _services_section(services, boundary)
    for i, fact in enumerate(facts):
        if fact.kind in _BATCHED:
            continue
        parts.append(f"printf '%s\\n' '{boundary} {i}'")
        body = fact.command.rstrip().rstrip(";")
        if fact.memo in hashed and memo.get(fact.key):
            # "(pattern)": inside $( ) a bare "pattern)" trips older shells.
            body = (f'case "$_nl$_sums$_nl" in ({_digest_is(fact.memo, memo[fact.key])}) echo {_MEMO_HIT} ;;\n'
                    f"(*)\n{body}\n;; esac")
        group = f"{{\n{body}\n}}" if "\n" in body else f"{{ {body} ; }}"  # heredocs need their own lines
        parts.append(f"{group} </dev/null 2>&1; printf '\\n%s\\n' \"{boundary} rc $?\"")
    parts.append(f"printf '%s\\n' '{boundary} end'")
    # Collected, then written at once: every small write would otherwise travel as
    # an SSH packet of its own (work for sshd and for paramiko's Python).
    body = "\n".join(parts)
    return f"_facts=$(\n{body}\n)\nprintf '%s\\n' \"$_facts\"\n", boundary


def parse_batch(facts: list[Fact], output: str, boundary: str, cache: Any = None) -> dict[str, dict[str, Any]]:
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
                                  sections.get(_FILES + "-sha", []), sections.get(_FILES + "-content", []), results,
                                  cache)
                    section = None
                else:
                    section = tag
                    sections[tag] = []
                continue
            if tag == _SERVICES:
                section = tag
                sections[tag] = []
            elif tag == _SERVICES + "-end":
                _service_results([f for f in facts if f.kind == "service"], sections.get(_SERVICES, []), results)
                section = None
            elif tag == _APT_ALL:
                apt_lines = []
            elif tag == _APT_ALL + "-end":
                _apt_results(facts, apt_lines or [], results)
                apt_lines = None
            elif tag.startswith("rc ") and current is not None:
                rc = int(tag[3:]) if tag[3:].strip().isdigit() else 1
                fact = facts[current]
                text = "\n".join(buf).strip("\n")
                if text == _MEMO_HIT and cache is not None and fact.key in cache.memo:
                    results[fact.key] = dict(cache.memo[fact.key]["value"])
                else:
                    results[fact.key] = fact.parse(text, rc)
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


def remember(cache: Any, facts: list[Fact], results: dict[str, dict[str, Any]]) -> None:
    """Keep what this run read in the host cache, for the next run to skip."""
    for f in facts:
        r = results.get(f.key, {})
        if f.kind == "file" and _wants_content(f) and r.get("content_b64") and r.get("sha256"):
            cache.remember_file(_file_path(f), base64.b64decode(r["content_b64"]))
        elif f.memo is not None and "error" not in r:
            digest = results.get(f"file:{f.memo}", {}).get("sha256")
            if digest:
                cache.remember_memo(f.key, digest, r)
    cache.save()
