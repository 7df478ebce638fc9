"""registry_auth: sections, credential sources, and plans from facts (secrets masked)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys

import pytest
from seed import edge

from meshctl.core.engine import Engine, build_operations, plan_operations
from meshctl.core.errors import MeshctlError, TopologyError
from meshctl.core.ops import Change, NoChange
from meshctl.core.topology import parse_topology
from meshctl.core.types import OSRelease
from meshctl.plugins import registry_auth as RA
from meshctl.plugins.registry_auth import sources as RS

SECRET = "pa55-w0rd-NEVER-SHOWN"


def mesh(tmp_path, registries: str) -> str:
    ca = tmp_path / "ca.crt"
    from cryptography.hazmat.primitives import serialization

    from meshctl.core import pki as C

    _, cert = C.create_ca("reg CA", "ecdsa-p256")
    ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return edge(sections=f"registries:\n{registries.replace('CA', str(ca))}\n")


REG = """\
  - host: reg.example.com:5000
    username: builder
    password_env: MESHCTL_TEST_REG_PW
    ca_file: CA
    prepull: [reg.example.com:5000/ansible/ee:2.17]
  - host: mirror.example.com
    insecure: true
    mirror_of: quay.io
"""


@pytest.fixture
def env_pw(monkeypatch):
    monkeypatch.setenv("MESHCTL_TEST_REG_PW", SECRET)


def registry_ops(plugins, tmp_path, text=REG, node="exec01.example.com"):
    topo = parse_topology(mesh(tmp_path, text), str(tmp_path / "mesh.yml"), plugins)
    RS._cred_cache.clear()
    eng = Engine(topo, plugins)
    ctx = eng.context(topo.node(node), OSRelease("debian", "12"))
    ops = [o for o in build_operations(plugins, ctx) if o.id.startswith(
        ("authjson:", "prepull:", "registries:", "warn:", "file:/etc/containers/certs.d",
         "file:/etc/containers/registries.conf.d/meshctl"))]
    return topo, ops


def fresh_facts(ops):
    facts = {}
    for op in ops:
        for f in op.facts("apt"):
            if f.key.startswith("file:"):
                facts[f.key] = {"kind": "absent"}
            elif f.key.startswith("authjson:"):
                facts[f.key] = {"exists": False, "hashes": {}, "managed": []}
            elif f.key.startswith("ls:"):
                facts[f.key] = {"lines": []}
            else:
                facts[f.key] = {"rc": 1}
    return facts


def test_fresh_node_plan_masks_credentials(plugins, tmp_path, env_pw):
    _, ops = registry_ops(plugins, tmp_path)
    planned = plan_operations(ops, fresh_facts(ops), "apt")
    by = {p.op.id: p for p in planned}
    auth = by["authjson:/home/awx/.config/containers/auth.json"]
    assert isinstance(auth, Change) and auth.secret
    assert auth.summary == "auth.json: reg.example.com:5000 (credentials masked): set reg.example.com:5000"
    wanted = json.loads(auth.commands[0].stdin)
    assert base64.b64decode(wanted["reg.example.com:5000"]).decode() == f"builder:{SECRET}"
    assert SECRET not in auth.commands[0].line  # the secret travels on stdin, not the command line
    assert by["file:/etc/containers/certs.d/reg.example.com:5000/ca.crt"].summary == "create"
    dropin = by["file:/etc/containers/registries.conf.d/meshctl-mirror.example.com.conf"]
    assert 'prefix = "quay.io"' in dropin.op.content and 'location = "mirror.example.com"' in dropin.op.content
    assert by["warn:insecure:mirror.example.com"].warning
    assert by["prepull:reg.example.com:5000/ansible/ee:2.17"].summary == "pull"


def test_up_to_date_auth_is_no_change_and_foreign_entries_are_kept(plugins, tmp_path, env_pw):
    _, ops = registry_ops(plugins, tmp_path)
    facts = fresh_facts(ops)
    auth = base64.b64encode(f"builder:{SECRET}".encode()).decode()
    key = "authjson:/home/awx/.config/containers/auth.json"
    facts[key] = {"exists": True, "mode": "600", "owner": "awx", "managed": ["reg.example.com:5000"],
                  "hashes": {"reg.example.com:5000": hashlib.sha256(auth.encode()).hexdigest(),
                             "someone-elses.example.com": "x"}}
    (res,) = [p for p in plan_operations(ops, facts, "apt") if p.op.id == key]
    assert isinstance(res, NoChange) and "(credentials masked) up to date" in res.reason
    # A registry dropped from mesh.yml: only meshctl's own entry goes.
    facts[key]["managed"].append("old.example.com")
    (res,) = [p for p in plan_operations(ops, facts, "apt") if p.op.id == key]
    assert isinstance(res, Change) and res.summary.endswith("remove old.example.com")
    # A changed password: the stored hash no longer matches.
    facts[key]["managed"] = ["reg.example.com:5000"]
    facts[key]["hashes"]["reg.example.com:5000"] = "0" * 64
    (res,) = [p for p in plan_operations(ops, facts, "apt") if p.op.id == key]
    assert res.summary.endswith("set reg.example.com:5000")


def test_hop_nodes_get_no_registry_files(plugins, tmp_path, env_pw):
    _, ops = registry_ops(plugins, tmp_path, node="hop01.example.com")
    assert ops == []


def test_password_sources(plugins, tmp_path, monkeypatch):
    pw = tmp_path / "pw"
    pw.write_text("from-file\n")
    topo = parse_topology(mesh(tmp_path, ""), str(tmp_path / "mesh.yml"), plugins)
    reg = RA.Registry(host="r.example.com", username="u", password_file="pw")  # relative to mesh.yml
    assert RA.meshctl_registry_credentials(reg, topo).password == "from-file"
    cmd = f"{sys.executable} -c 'print(\"from-command\")'"
    reg = RA.Registry(host="r.example.com", username="u", password_command=cmd)
    assert RA.meshctl_registry_credentials(reg, topo).password == "from-command"
    reg = RA.Registry(host="r.example.com", username="u", password_command=f"{sys.executable} -c 'import sys; print(\"{SECRET}\"); sys.exit(3)'")
    with pytest.raises(MeshctlError) as info:
        RA.meshctl_registry_credentials(reg, topo)
    assert "exited 3" in str(info.value) and SECRET not in str(info.value)
    monkeypatch.delenv("NOPE_PW", raising=False)
    reg = RA.Registry(host="r.example.com", username="u", password_env="NOPE_PW")
    with pytest.raises(MeshctlError, match="NOPE_PW is not set"):
        RA.meshctl_registry_credentials(reg, topo)


def test_a_plugin_can_supply_credentials_first(tmp_path, env_pw):
    import types

    from meshctl.core.hookspecs import hookimpl
    from meshctl.core.plugins import create_plugin_manager
    from meshctl.core.types import RegistryCredentials

    vault = types.ModuleType("vault")
    vault.meshctl_registry_credentials = hookimpl(
        lambda registry, node: RegistryCredentials(registry.username, "from-vault"))
    plugins = create_plugin_manager(autoload=False, extra=[("vault", vault)])
    _, ops = registry_ops(plugins, tmp_path)
    (auth,) = [o for o in ops if o.id.startswith("authjson:")]
    assert base64.b64decode(auth.wanted["reg.example.com:5000"]).decode() == "builder:from-vault"


@pytest.mark.parametrize("entry,message", [
    ("  - host: r.example.com\n    username: u\n", "username given without password_env"),
    ("  - host: r.example.com\n    password_env: X\n", "a password needs a username"),
    ("  - host: r.example.com\n    username: u\n    password_env: X\n    password_file: f\n", "give one password source"),
    ("  - host: r.example.com\n    prepull: [quay.io/ansible/ee:1]\n", "is not on r.example.com"),
    ("  - host: 'r.example.com:99999'\n", "must be HOST or HOST:PORT"),
    ("  - host: r.example.com\n  - host: r.example.com\n", "registry listed twice: r.example.com"),
    ("  - host: r.example.com\n    ca_file: /nonexistent/ca.crt\n", "/nonexistent/ca.crt: no such registry ca_file"),
])
def test_bad_entries_are_located_errors(plugins, tmp_path, entry, message):
    with pytest.raises(TopologyError) as info:
        parse_topology(mesh(tmp_path, entry), "mesh.yml", plugins)
    text = info.value.render()
    assert message in text and "mesh.yml:" in text, text


def test_plaintext_password_is_accepted_with_a_warning(plugins, tmp_path):
    topo = parse_topology(mesh(tmp_path, f"  - host: r.example.com\n    username: u\n    password: {SECRET}\n"),
                          "mesh.yml", plugins)
    (w,) = [w for w in topo.warnings if "password" in str(w)]
    assert "plaintext password" in str(w) and SECRET not in str(w)
    assert SECRET not in repr(RA.registries(topo)[0])


def test_merge_script_runs_for_real(tmp_path):
    """The on-node merge, run here: foreign entries kept, ours set, dropped ones removed,
    the file gone when only meshctl's entries were in it."""
    import getpass
    import subprocess

    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {"other.example.com": {"auth": "b3RoZXI6eA=="}}}))
    me = getpass.getuser()
    cmd = ["sh", "-c", RA.merge_script(), "meshctl-authjson", str(path), me]
    r = subprocess.run(cmd, input=json.dumps({"reg.example.com": "YTpi"}), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    data = json.loads(path.read_text())
    assert data["auths"] == {"other.example.com": {"auth": "b3RoZXI6eA=="}, "reg.example.com": {"auth": "YTpi"}}
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    fact = RA.auth_fact(str(path))

    def gather() -> tuple[dict, str]:
        out = subprocess.run(["sh", "-c", fact.command], capture_output=True, text=True, timeout=30)
        return fact.parse(out.stdout, out.returncode), out.stdout

    # Right after the merge the fact answers from the managed file (no Python)...
    absent = RA.auth_fact(str(tmp_path / "none.json"))
    out = subprocess.run(["sh", "-c", absent.command], capture_output=True, text=True, timeout=30).stdout
    assert out == "@absent\n" and absent.parse(out, 0) == {"exists": False, "hashes": {}, "managed": []}
    cached, raw = gather()
    assert raw.startswith("@cached ") and "YTpi" not in raw
    assert cached == {"exists": True, "mode": "600", "owner": me, "managed": ["reg.example.com"],
                      "hashes": {"reg.example.com": RA.digest("YTpi")}}
    # ...and once someone else changed auth.json, by reading it (the same answer for ours).
    data["auths"]["late.example.com"] = {"auth": "bGF0ZTp5"}
    path.write_text(json.dumps(data))
    read, raw = gather()
    assert not raw.startswith("@cached ") and read["managed"] == ["reg.example.com"]
    assert read["hashes"]["reg.example.com"] == cached["hashes"]["reg.example.com"]
    assert set(read["hashes"]) == {"other.example.com", "reg.example.com", "late.example.com"}

    r = subprocess.run(cmd, input="{}", capture_output=True, text=True, timeout=30)
    assert json.loads(path.read_text())["auths"] == {"other.example.com": {"auth": "b3RoZXI6eA=="},
                                                      "late.example.com": {"auth": "bGF0ZTp5"}}
    path.write_text(json.dumps({"auths": {}}))
    (tmp_path / "auth.json.meshctl-managed").write_text("reg.example.com\n")
    r = subprocess.run(cmd, input="{}", capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and not path.exists() and "removed" in r.stdout


def test_auth_fact_inside_the_batch_script(tmp_path):
    """The fact's heredoc and case run inside the batch's command substitution."""
    import subprocess

    from meshctl.core import facts as F
    from meshctl.core import factscript

    path = tmp_path / "auth.json"
    path.write_text(json.dumps({"auths": {"other.example.com": {"auth": "b3RoZXI6eA=="}}}))
    fact = RA.auth_fact(str(path))
    script, boundary = factscript.batch_script([fact, F.file_fact(str(path), content=False)])
    out = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=30).stdout
    got = factscript.parse_batch([fact, F.file_fact(str(path), content=False)], out, boundary)
    assert got[fact.key]["hashes"] == {"other.example.com": RA.digest("b3RoZXI6eA==")}
    assert got[fact.key]["managed"] == [] and got[f"file:{path}"]["kind"] == "file"


# -- hostile values: the drop-in is TOML, and read back as TOML ---------------------------

EVIL_MIRROR = 'quay.io"\n[[registry]]\nlocation = "evil.example.com'


def test_drop_in_is_toml_that_reads_back_as_the_registry():
    import tomllib

    reg = RA.Registry(host="mirror.example.com:5000", insecure=True, mirror_of="quay.io")
    conf = tomllib.loads(RA.drop_in(reg))
    assert conf == {"registry": [{"prefix": "quay.io", "location": "quay.io",
                                  "mirror": [{"location": "mirror.example.com:5000", "insecure": True}]}]}
    conf = tomllib.loads(RA.drop_in(RA.Registry(host="r.example.com", insecure=True)))
    assert conf == {"registry": [{"location": "r.example.com", "insecure": True}]}


def test_drop_in_of_an_unvalidated_hostile_value_adds_no_registry():
    """Should a value get past validation (model_construct skips it), the writer still
    keeps it one string: exactly one [[registry]], holding the value as given."""
    import tomllib

    reg = RA.Registry.model_construct(host="mirror.example.com", insecure=False, mirror_of=EVIL_MIRROR,
                                      prepull=[], username=None)
    conf = tomllib.loads(RA.drop_in(reg))
    assert len(conf["registry"]) == 1 and conf["registry"][0]["prefix"] == EVIL_MIRROR


@pytest.mark.parametrize("entry,where,message", [
    ('  - host: m.example.com\n    mirror_of: "quay.io\\"\\n[[registry]]\\nlocation = \\"evil"\n',
     "registries[0].mirror_of", "is not a registry location"),
    ("  - host: m.example.com\n    mirror_of: 'quay.io/ansible/../x'\n", "registries[0].mirror_of",
     "is not a registry location"),
    ("  - host: m.example.com\n    mirror_of: 'https://quay.io'\n", "registries[0].mirror_of",
     "is not a registry location"),
    ("  - host: m.example.com\n    mirror_of: 'quay.io:0'\n", "registries[0].mirror_of",
     "is not a registry location"),
    ('  - host: "r.example.com\\"\\ninsecure = true"\n', "registries[0].host", "must be HOST or HOST:PORT"),
    # A trailing newline: "$" in a regular expression would let it through.
    ('  - host: "r.example.com\\n"\n', "registries[0].host", "must be HOST or HOST:PORT"),
    ('  - host: m.example.com\n    mirror_of: "quay.io\\n"\n', "registries[0].mirror_of", "is not a registry location"),
    ('  - host: r.example.com\n    prepull: ["r.example.com/ee:1\\n"]\n', "registries[0].prepull[0]",
     "is not an image reference"),
    ("  - host: r.example.com\n    prepull:\n      - r.example.com/ee:1\n      - 'r.example.com/EE:latest'\n",
     "registries[0].prepull[1]", "is not an image reference"),
    ('  - host: r.example.com\n    prepull: ["r.example.com/ee:1\\n- evil"]\n', "registries[0].prepull[0]",
     "is not an image reference"),
    ("  - host: r.example.com\n    prepull: ['r.example.com/ee@sha256:abc']\n", "registries[0].prepull[0]",
     "is not an image reference"),
    ("  - host: r.example.com\n    prepull: ['r.example.com/ee:-x']\n", "registries[0].prepull[0]",
     "is not an image reference"),
])
def test_registry_values_have_a_grammar(plugins, tmp_path, entry, where, message):
    with pytest.raises(TopologyError) as info:
        parse_topology(mesh(tmp_path, entry), "mesh.yml", plugins)
    lines = info.value.render().strip().splitlines()
    (line,) = [ln for ln in lines if message in ln]
    assert re.match(rf"^mesh\.yml:\d+:\d+: .*{re.escape(where)}: ", line), lines
    assert "\n" not in line and "evil\n" not in info.value.render()


@pytest.mark.parametrize("image", [
    "r.example.com/ee", "r.example.com/ansible/awx-ee:24.6.1", "r.example.com/a_b/c__d/e-f.g:v1",
    "r.example.com/ee@sha256:" + "a" * 64, "r.example.com/ee:1.0@sha256:" + "0" * 64,
])
def test_good_image_references_pass(plugins, tmp_path, image):
    topo = parse_topology(mesh(tmp_path, f"  - host: r.example.com\n    prepull: ['{image}']\n"), "mesh.yml",
                          plugins)
    assert RA.registries(topo)[0].prepull == [image]


@pytest.mark.parametrize("location", ["quay.io", "docker.io/library", "mirror.example.com:5000/ns/sub",
                                      "[2001:db8::1]:5000", "localhost:5000"])
def test_good_mirror_locations_pass(plugins, tmp_path, location):
    topo = parse_topology(mesh(tmp_path, f"  - host: m.example.com\n    mirror_of: '{location}'\n"), "mesh.yml",
                          plugins)
    assert RA.registries(topo)[0].mirror_of == location


def test_on_node_scripts_refuse_a_fifo_auth_json(tmp_path):
    """A FIFO where auth.json (or its managed list) should be: the fact and the merge
    end at once with a message, never wait for a writer."""
    import getpass
    import os
    import subprocess

    path = tmp_path / "auth.json"
    os.mkfifo(path)
    os.mkfifo(tmp_path / "auth.json.meshctl-managed")
    fact = RA.auth_fact(str(path))
    out = subprocess.run(["sh", "-c", fact.command], capture_output=True, text=True, timeout=30)
    assert fact.parse(out.stdout, out.returncode)["error"] == f"{path} is not a regular file"
    cmd = ["sh", "-c", RA.merge_script(), "meshctl-authjson", str(path), getpass.getuser()]
    r = subprocess.run(cmd, input="{}", capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and r.stderr == f"meshctl: auth.json: {path} is not a regular file\n", r.stderr
