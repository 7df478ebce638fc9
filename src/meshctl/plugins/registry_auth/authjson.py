"""The service user's containers auth.json, merged on the node: the registries
meshctl manages are set, everyone else's entries are kept."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any

from meshctl.plugin import Change, Cmd, Fact, NoChange, Operation, PlanResult, Topology
from meshctl.plugins.registry_auth.sources import digest

#: Interpreters the node scripts try, the first one there wins; a plugin's (meshctl's
#: virtualenv, see :func:`pythons`) comes before these.
SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/libexec/platform-python")


def pythons(topology: Topology) -> tuple[str, ...]:
    """The interpreters to try on the topology's nodes: a registered ``python`` node
    tool first, then the system's."""
    own = topology.tool("python")
    return ((own,) if own.startswith("/") else ()) + SYSTEM_PYTHONS


def _with_pythons(script: str, candidates: tuple[str, ...]) -> str:
    return script.replace("@PYTHONS@", " ".join(shlex.quote(p) for p in candidates))


def merge_script(candidates: tuple[str, ...] = SYSTEM_PYTHONS) -> str:
    """The auth.json merge, run as ``sh -c SCRIPT NAME PATH OWNER`` with the wanted
    entries (host -> base64 auth) as JSON on stdin."""
    return _with_pythons(_MERGE, candidates)


# On the node, auth.json and its managed list are read non-blocking and only when
# regular files: a FIFO there would otherwise hang the run. No single quote here
# (the merge runs as python -c '...').
_NODE_READ = """
import stat
def read(p):
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(p + " is not a regular file")
        chunks, size = [], 0
        while size <= 8 << 20:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
            size += len(b)
        if size > 8 << 20:
            raise OSError(p + " is larger than 8 MiB")
        return b"".join(chunks).decode("utf-8")
    finally:
        os.close(fd)
"""

# The merge leaves the digest of the auth.json it wrote, and the digests of the
# credentials it set, in the managed file. While auth.json still has that digest
# those are the answer: no interpreter start on a warm run. Any other content
# (a `podman login` since, an older meshctl) is read with Python.
_AUTH_FACT = r"""
f=$1; m="$f.meshctl-managed"; hit=
if [ ! -e "$f" ] && [ ! -e "$m" ]; then
    hit=absent
elif [ -f "$f" ] && [ -f "$m" ] && [ -r "$m" ]; then
    d=$(sha256sum < "$f" 2>/dev/null); d=${d%% *}
    while IFS= read -r l; do [ "$l" = "#sha256 $d" ] && hit=cached; done < "$m"
fi
if [ "$hit" = absent ]; then
    echo "@absent"
elif [ "$hit" = cached ]; then
    echo "@cached $(stat -c '%a %U' -- "$f")"
    cat -- "$m"
else
for py in @PYTHONS@; do [ -x "$py" ] && break; done
"$py" - "$1" <<'PYEOF'
import hashlib, json, os, pwd, sys
@READ@
path = sys.argv[1]
out = {"exists": os.path.exists(path), "hashes": {}, "managed": []}
try:
    st = os.stat(path)
    out["mode"] = format(st.st_mode & 0o777, "o")
    out["owner"] = pwd.getpwuid(st.st_uid).pw_name
    data = json.loads(read(path))
    for host, entry in (data.get("auths") or {}).items():
        out["hashes"][host] = hashlib.sha256(str(entry.get("auth", "")).encode()).hexdigest()
except FileNotFoundError:
    pass
except OSError as exc:
    out["error"] = str(exc) if "regular file" in str(exc) or "larger than" in str(exc) else type(exc).__name__
except Exception as exc:
    out["error"] = type(exc).__name__
try:
    out["managed"] = [l.strip() for l in read(path + ".meshctl-managed").splitlines() if l.strip() and l[0] != "#"]
except OSError:
    pass
print(json.dumps(out))
PYEOF
fi
""".replace("@READ@", _NODE_READ)


def auth_fact(path: str, pythons: tuple[str, ...] = SYSTEM_PYTHONS) -> Fact:
    cmd = "set -- " + shlex.quote(path) + "\n" + _with_pythons(_AUTH_FACT, pythons)
    return Fact(key=f"authjson:{path}", command=cmd, kind="authjson", parser=_parse_auth)


def _parse_auth(output: str, rc: int) -> dict[str, Any]:
    lines = output.strip().splitlines()
    if lines[:1] == ["@absent"]:
        return {"exists": False, "hashes": {}, "managed": []}
    for i, line in enumerate(lines):
        if line.startswith("@cached "):
            mode, _, owner = line[len("@cached "):].partition(" ")
            out: dict[str, Any] = {"exists": True, "mode": mode, "owner": owner, "hashes": {}, "managed": []}
            for entry in lines[i + 1:]:
                if entry.startswith("#auth "):
                    _tag, host, digest = (entry.split(" ") + ["", ""])[:3]
                    out["hashes"][host] = digest
                elif entry.strip() and not entry.startswith("#"):
                    out["managed"].append(entry.strip())
            return out
    for line in reversed(lines):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                break
    return {"exists": None, "error": output.strip()[-200:]}


# Run with python -c '...': the code must not contain a single quote.
_MERGE = r"""
for py in @PYTHONS@; do [ -x "$py" ] && break; done
"$py" -c '
import json, os, sys, tempfile
@READ@
path, owner = sys.argv[1], sys.argv[2]
want = json.load(sys.stdin)
try:
    data = json.loads(read(path))
except FileNotFoundError:
    data = {}
except OSError as exc:
    print("meshctl: auth.json: %s" % (exc.strerror or exc), file=sys.stderr)
    sys.exit(1)
auths = data.setdefault("auths", {})
try:
    before = [l.strip() for l in read(path + ".meshctl-managed").splitlines() if l.strip() and l[0] != "#"]
except OSError:
    before = []
for host in before:
    if host not in want:
        auths.pop(host, None)
for host, auth in want.items():
    auths[host] = {"auth": auth}
if not want and not auths and set(data) <= {"auths"}:
    # Nothing left but what meshctl put there: leave no file behind.
    for target in (path, path + ".meshctl-managed"):
        try:
            os.remove(target)
        except FileNotFoundError:
            pass
    print("auth.json: removed (it held only registries meshctl set)")
    sys.exit(0)
import hashlib, pwd
pw = pwd.getpwnam(owner)
text = json.dumps(data, indent=2) + "\n"
sha = lambda t: hashlib.sha256(t.encode()).hexdigest()
managed = "".join(h + "\n" for h in sorted(want))
managed += "".join("#auth %s %s\n" % (h, sha(want[h])) for h in sorted(want))
managed += "#sha256 %s\n" % sha(text)
for target, text in ((path, text), (path + ".meshctl-managed", managed)):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".meshctl.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chown(tmp, pw.pw_uid, pw.pw_gid)
    os.chmod(tmp, 0o600)
    os.replace(tmp, target)
print("auth.json: %d registr%s managed by meshctl" % (len(want), "y" if len(want) == 1 else "ies"))
' "$1" "$2"
""".replace("@READ@", _NODE_READ)


@dataclass
class AuthJson(Operation):
    """The service user's containers auth.json: meshctl's registries set, others kept,
    ones meshctl set before but no longer lists removed."""

    default_category = "registries"
    path: str = ""
    owner: str = "awx"
    wanted: dict[str, str] = field(default_factory=dict, repr=False)  # host -> base64(user:pass)
    pythons: tuple[str, ...] = SYSTEM_PYTHONS

    def __post_init__(self) -> None:
        self.id = self.id or f"authjson:{self.path}"
        self.description = self.description or f"{self.path} (registry credentials)"
        self.secret = True

    def facts(self, manager: str) -> list[Fact]:
        return [auth_fact(self.path, self.pythons)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        have = facts[f"authjson:{self.path}"]
        names = ", ".join(sorted(self.wanted)) or "none"
        stale = sorted(set(have.get("managed") or []) - set(self.wanted))
        differs = [h for h, a in self.wanted.items() if (have.get("hashes") or {}).get(h) != digest(a)]
        attrs = have.get("exists") and (have.get("mode") != "600" or have.get("owner") != self.owner)
        clean = not (differs or stale or attrs or have.get("error"))
        if clean and (have.get("exists") or not self.wanted) and set(have.get("managed") or []) == set(self.wanted):
            return NoChange(self, f"auth.json: {names} (credentials masked) up to date")
        notes = []
        if differs:
            notes.append("set " + ", ".join(differs))
        if stale:
            notes.append("remove " + ", ".join(stale))
        if attrs:
            notes.append("fix mode/owner")
        summary = f"auth.json: {names} (credentials masked)" + (f": {'; '.join(notes)}" if notes else "")
        return Change(self, summary, lambda: [Cmd(f"sh -c {shlex.quote(merge_script(self.pythons))} meshctl-authjson "
                                                  f"{shlex.quote(self.path)} {shlex.quote(self.owner)}",
                                                  stdin=json.dumps(self.wanted))])
