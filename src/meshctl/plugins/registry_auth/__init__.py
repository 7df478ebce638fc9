"""Container registries for execution nodes: the awx user's auth.json (merged
with entries meshctl does not manage), trust for private CAs, insecure and mirror
drop-ins, and pre-pulled Execution Environment images.

Passwords come from the environment, a file or a command (or a plugin's secret
store through ``meshctl_registry_credentials``); they reach the node only on the
apply script's stdin and never appear in plans, logs or errors.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import subprocess
import threading
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, Field, RootModel, field_validator, model_validator

from meshctl.core import facts as F
from meshctl.core import files
from meshctl.core.errors import MeshctlError, UsageError
from meshctl.core.hookspecs import hookimpl
from meshctl.core.ops import Change, Cmd, Directory, File, NoChange, Operation, PlanResult
from meshctl.core.topology import StrictModel, resolve_path, valid_address
from meshctl.core.types import NodeContext, RegistryCredentials, TopologySection
from meshctl.core.writers import toml_comment, toml_table

# Used with fullmatch: "$" also matches before a trailing newline.
_HOSTPORT = re.compile(r"(?P<host>\[[0-9a-fA-F:]+\]|[^:/\s]+)(?::(?P<port>\d{1,5}))?")
# The OCI distribution reference grammar (github.com/distribution/reference):
# path components, tag and digest. The host part is checked with _HOSTPORT.
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LOCATION_PATH = re.compile(rf"(?:/{_PATH_COMPONENT})*")
_IMAGE_TAIL = re.compile(rf"(?P<path>{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?"
                         r"(?:@(?:sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}))?")
_NAME_MAX = 255  # distribution caps the repository name (host and path)
CERTS_D = "/etc/containers/certs.d"
CONF_D = "/etc/containers/registries.conf.d"
MANAGED_MARK = ".meshctl-managed"


def valid_hostport(value: str) -> bool:
    """``HOST`` or ``HOST:PORT``: a hostname, IPv4 or [IPv6] address, port 1-65535."""
    m = _HOSTPORT.fullmatch(value)
    if not m or not valid_address(m.group("host").strip("[]")):
        return False
    return not m.group("port") or 1 <= int(m.group("port")) <= 65535


def valid_location(value: str) -> bool:
    """``HOST[:PORT][/PATH]``: a registry, or a namespace in one (registries.conf prefix)."""
    host, slash, path = value.partition("/")
    return (valid_hostport(host) and bool(_LOCATION_PATH.fullmatch(slash + path))
            and len(value) <= _NAME_MAX and not value.endswith("/"))


def image_reference_problem(value: str) -> str | None:
    """Why ``value`` is not a fully qualified image reference
    ``HOST[:PORT]/NAME[:TAG][@sha256:HEX]``; None when it is one."""
    host, _, tail = value.partition("/")
    m = _IMAGE_TAIL.fullmatch(tail)
    if not valid_hostport(host) or not m:
        return (f"prepull image {value!r} is not an image reference (HOST[:PORT]/NAME[:TAG][@sha256:HEX]; "
                "lower-case name)")
    if len(host) + 1 + len(m.group("path")) > _NAME_MAX:
        return f"prepull image {value!r}: the name is longer than {_NAME_MAX} characters"
    return None


def _image_reference(value: str) -> str:
    problem = image_reference_problem(value)
    if problem:
        raise ValueError(problem)
    return value


ImageReference = Annotated[str, AfterValidator(_image_reference)]


class Registry(StrictModel):
    """One entry of ``registries:``."""

    host: str = Field(description="registry host[:port], as image names spell it")
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    password_command: str | None = None
    password: str | None = Field(default=None, repr=False)
    ca_file: str | None = None
    insecure: bool = False
    mirror_of: str | None = None
    prepull: list[ImageReference] = Field(default_factory=list)

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        if not valid_hostport(value):
            raise ValueError(f"host {value!r} must be HOST or HOST:PORT")
        return value

    @field_validator("mirror_of")
    @classmethod
    def _mirror_of(cls, value: str | None) -> str | None:
        if value is not None and not valid_location(value):
            raise ValueError(f"mirror_of {value!r} is not a registry location (HOST[:PORT][/PATH], "
                             "as image names start)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Registry:
        sources = [s for s in ("password_env", "password_file", "password_command", "password")
                   if getattr(self, s) is not None]
        if len(sources) > 1:
            raise ValueError(f"give one password source, not {' and '.join(sources)}")
        if sources and not self.username:
            raise ValueError("a password needs a username")
        if self.username and not sources:
            raise ValueError("username given without password_env, password_file or password_command")
        for image in self.prepull:
            if not image.startswith(self.host + "/") and not (self.mirror_of and image.startswith(self.mirror_of + "/")):
                raise ValueError(f"prepull image {image!r} is not on {self.host} (name it fully: {self.host}/...)")
        return self

    @property
    def has_credentials(self) -> bool:
        return self.username is not None

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]", "_", self.host)


class Registries(RootModel[list[Registry]]):
    @model_validator(mode="after")
    def _unique(self) -> Registries:
        hosts = [r.host for r in self.root]
        dupes = sorted({h for h in hosts if hosts.count(h) > 1})
        if dupes:
            raise ValueError(f"registry listed twice: {', '.join(dupes)}")
        return self


def registries(topo: Any) -> list[Registry]:
    section = topo.sections.get("registries")
    return list(section.root) if section is not None else []


@hookimpl
def meshctl_register_topology_sections(register):
    register(TopologySection("registries", Registries, "mesh", "container registries for execution nodes"))


# -- credentials -----------------------------------------------------------------

@hookimpl(trylast=True)
def meshctl_registry_credentials(registry: Registry, topology: Any) -> RegistryCredentials | None:
    """The built-in sources: password_env, password_file, password_command, password."""
    if not registry.has_credentials:
        return None
    if registry.password_env is not None:
        value = os.environ.get(registry.password_env)
        if value is None:
            raise MeshctlError(f"registry {registry.host}: environment variable {registry.password_env} is not set")
    elif registry.password_file is not None:
        path = resolve_path(topology, registry.password_file)
        try:
            # The safe reader: a FIFO would block open(), /dev/zero would fill memory.
            value = files.read_text(path, "registry password_file", files.SECRET_LIMIT).rstrip("\n")
        except UsageError as exc:
            raise MeshctlError(f"registry {registry.host}: {exc}") from None
    elif registry.password_command is not None:
        try:
            r = subprocess.run(shlex.split(registry.password_command), capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise MeshctlError(f"registry {registry.host}: password_command failed to run: {exc}") from None
        if r.returncode != 0:
            # Its output may hold the secret: say only that it failed.
            raise MeshctlError(f"registry {registry.host}: password_command exited {r.returncode}")
        value = r.stdout.splitlines()[0] if r.stdout else ""
    else:
        value = registry.password or ""
    return RegistryCredentials(registry.username or "", value)


_cred_cache: dict[tuple[int, str], RegistryCredentials | None] = {}
_cred_lock = threading.Lock()


def credentials(plugins: Any, topo: Any, registry: Registry, node: Any) -> RegistryCredentials | None:
    """Resolved once per run and registry (a password command runs once)."""
    key = (id(topo), registry.host)
    with _cred_lock:
        if key not in _cred_cache:
            creds = plugins.registry_credentials(registry, node, topo)
            if creds is None and registry.has_credentials:
                raise MeshctlError(f"registry {registry.host}: no plugin supplied credentials")
            _cred_cache[key] = creds
        return _cred_cache[key]


# -- validation --------------------------------------------------------------------

@hookimpl
def meshctl_validate_topology(topology, report):
    for i, reg in enumerate(registries(topology)):
        base = ("registries", i)
        if reg.password is not None:
            report(base + ("password",), f"registry {reg.host}: plaintext password in the topology file; "
                   "prefer password_env, password_file or password_command", "warning")
        if reg.password_env is not None and reg.password_env not in os.environ:
            report(base + ("password_env",), f"registry {reg.host}: environment variable {reg.password_env} "
                   "is not set")
        if reg.password_file is not None:
            p = resolve_path(topology, reg.password_file)
            found = files.secret_file_problem(p, "registry password_file")
            if found is not None:
                report(base + ("password_file",), f"registry {reg.host}: {found[1]}", found[0])
            if (found is None or found[0] != "error") and not os.access(p, os.R_OK):
                report(base + ("password_file",), f"registry {reg.host}: cannot read password_file {p}")
        if reg.ca_file is not None:
            p = resolve_path(topology, reg.ca_file)
            try:
                data = _ca_file(p)
            except UsageError as exc:
                report(base + ("ca_file",), f"registry {reg.host}: {exc}")
                continue
            if b"-----BEGIN CERTIFICATE-----" not in data:
                report(base + ("ca_file",), f"registry {reg.host}: ca_file {p} is not a PEM certificate")
        if reg.insecure:
            report(base + ("insecure",), f"registry {reg.host}: insecure: true turns off TLS verification for it",
                   "warning")


def _ca_file(path: Any) -> bytes:
    return files.read_bytes(path, "registry ca_file", files.SECRET_LIMIT)


# -- operations ----------------------------------------------------------------------

def _auth_value(creds: RegistryCredentials) -> str:
    return base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def _digest(auth: str) -> str:
    return hashlib.sha256(auth.encode()).hexdigest()


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
for py in /opt/meshctl/venv/bin/python /usr/bin/python3 /usr/libexec/platform-python; do [ -x "$py" ] && break; done
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


def auth_fact(path: str) -> F.Fact:
    cmd = "set -- " + shlex.quote(path) + "\n" + _AUTH_FACT
    return F.Fact(key=f"authjson:{path}", command=cmd, kind="authjson", parser=_parse_auth)


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
for py in /opt/meshctl/venv/bin/python /usr/bin/python3 /usr/libexec/platform-python; do [ -x "$py" ] && break; done
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

    def __post_init__(self) -> None:
        self.id = self.id or f"authjson:{self.path}"
        self.description = self.description or f"{self.path} (registry credentials)"
        self.secret = True

    def facts(self, manager: str) -> list[F.Fact]:
        return [auth_fact(self.path)]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        have = facts[f"authjson:{self.path}"]
        names = ", ".join(sorted(self.wanted)) or "none"
        stale = sorted(set(have.get("managed") or []) - set(self.wanted))
        differs = [h for h, a in self.wanted.items() if (have.get("hashes") or {}).get(h) != _digest(a)]
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
        return Change(self, summary, lambda: [Cmd(f"sh -c {shlex.quote(_MERGE)} meshctl-authjson "
                                                  f"{shlex.quote(self.path)} {shlex.quote(self.owner)}",
                                                  stdin=json.dumps(self.wanted))])


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

    def facts(self, manager: str) -> list[F.Fact]:
        return [
            F.glob_fact("ls:registries.conf.d", CONF_D, "meshctl-*.conf"),
            F.glob_fact("ls:certs.d", CERTS_D, f"*/{MANAGED_MARK}"),
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

    def facts(self, manager: str) -> list[F.Fact]:
        return [F.command_fact(f"runuser -l {shlex.quote(self.user)} -c "
                               f"{shlex.quote('podman image exists ' + shlex.quote(self.image))}")]

    def plan(self, facts: dict[str, Any], changed: set[str], manager: str) -> PlanResult:
        key = f"rc:runuser -l {shlex.quote(self.user)} -c " \
              f"{shlex.quote('podman image exists ' + shlex.quote(self.image))}"
        if facts[key]["rc"] == 0 and "authjson" not in changed:
            return NoChange(self, "present")
        pull = "podman pull --quiet " + shlex.quote(self.image)  # quoted here: dash has no printf %q
        args = " ".join(shlex.quote(a) for a in (self.user, self.image, self.registry, pull))
        return Change(self, "pull", [Cmd(f"sh -c {shlex.quote(_PULL)} meshctl-pull {args}")])


@hookimpl
def meshctl_registry_files(ctx: NodeContext):
    regs = registries(ctx.topology)
    if ctx.node.role != "execution" or not ctx.node.managed:
        return None
    from meshctl.core.receptor import receptor_settings as settings
    from meshctl.core.topology import resolve_path

    s = settings(ctx)
    plugins = ctx.topology.plugins
    ops: list[Any] = []
    keep_confs, keep_certs, wanted = [], [], {}
    for reg in regs:
        if reg.ca_file:
            d = f"{CERTS_D}/{reg.host}"
            keep_certs.append(d)
            ops += [Directory(path=CERTS_D, mode="0755"), Directory(path=d, mode="0755", category="registries"),
                    File(path=f"{d}/ca.crt", content=_ca_file(resolve_path(ctx.topology, reg.ca_file)),
                         mode="0644", category="registries"),
                    File(path=f"{d}/{MANAGED_MARK}", content=f"# {reg.host}: managed by meshctl\n",
                         category="registries")]
        if reg.insecure or reg.mirror_of:
            path = f"{CONF_D}/meshctl-{reg.slug}.conf"
            keep_confs.append(path)
            ops.append(File(path=path, content=drop_in(reg), category="registries"))
        if reg.insecure:
            ops.append(Warn(id=f"warn:insecure:{reg.host}", description=f"registry {reg.host}",
                            message=f"WARNING: TLS verification is off for registry {reg.host} (insecure: true)"))
        creds = credentials(plugins, ctx.topology, reg, ctx.node)
        if creds is not None:
            wanted[reg.host] = _auth_value(creds)
    ops = _dedupe(ops)
    ops.append(PruneManaged(keep_confs=keep_confs, keep_certs=keep_certs))
    # Always planned: with no registries left it removes what meshctl once added.
    ops.append(AuthJson(path=f"{s.home}/.config/containers/auth.json", owner=s.user, wanted=wanted,
                        notify=["authjson"]))
    for reg in regs:
        for image in reg.prepull:
            ops.append(Prepull(image=image, registry=reg.host, user=s.user))
    return ops


def _dedupe(ops: list[Any]) -> list[Any]:
    seen, out = set(), []
    for op in ops:
        if op.id not in seen:
            seen.add(op.id)
            out.append(op)
    return out


def _drop_in(reg: Registry) -> str:
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


@hookimpl
def meshctl_removal_operations(ctx: NodeContext, purge_user: bool):
    if ctx.node.role != "execution" or not ctx.node.managed:
        return None
    from meshctl.core.ops import Command
    from meshctl.core.receptor import receptor_settings as settings

    s = settings(ctx)
    ops: list[Any] = [
        PruneManaged(notify=["cmd:certs.d-rmdir"]),
        # meshctl made certs.d for its CAs; it goes only if nothing else is left in it.
        Command(id="cmd:certs.d-rmdir", command=f"rmdir {CERTS_D} 2>/dev/null || true", only_when_notified=True,
                description=f"{CERTS_D} (if empty)"),
    ]
    if not purge_user:  # otherwise the user's home goes, auth.json with it
        ops.append(AuthJson(path=f"{s.home}/.config/containers/auth.json", owner=s.user, wanted={}))
    return ops


@hookimpl
def meshctl_known_secrets(topology, node):
    out: list[str] = []
    plugins = topology.plugins
    for reg in registries(topology):
        try:
            creds = credentials(plugins, topology, reg, node)
        except Exception:  # a missing password must not stop a diagnosis
            continue
        if creds is not None:
            out += [creds.password, _auth_value(creds)]
    return out
