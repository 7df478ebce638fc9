"""Gathering facts: every fact of a host in one shell script, answered between
boundary lines, and parsed back; with the host cache, content and memoized facts
the controller already has are not sent again."""

from __future__ import annotations

import base64
import hashlib
import io
import secrets
import shlex
import tarfile
from collections.abc import Iterable
from typing import Any

from meshctl.core.facts import (
    CONTENT_LIMIT,
    Fact,
    _file_path,
    _parse_package_apt,
    _wants_content,
    _wants_digest,
)

_APT_ALL = "@@apt-packages"
_FILES = "@@files"
_SERVICES = "@@services"
_BATCHED = ("package_apt", "file", "service")


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
