"""The python_env plugin: meshctl's venv planned from facts (no host), and the
``python:`` section's validation (wheelhouse checked before any host is touched)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from seed import edge

from meshctl.core import factscript
from meshctl.core.engine import Engine, plan_operations
from meshctl.core.errors import TopologyError
from meshctl.core.ops import Change, NoChange, Upload
from meshctl.core.plugins import BUILTIN_PLUGINS, create_plugin_manager
from meshctl.core.topology import load_topology, parse_topology
from meshctl.core.types import NodeContext, OSFamily, OSRelease
from meshctl.plugins import python_env as P
from meshctl.plugins.python_env import ops as PO

DEBIAN12 = OSRelease("debian", "12", (), "Debian GNU/Linux 12 (bookworm)", "x86_64")
PINS = {"ansible-runner": "2.4.3", "receptorctl": "1.6.9"}
DEPS = ["pexpect-4.9.0-py2.py3-none-any.whl", "pyyaml-6.0.2-cp311-cp311-manylinux_2_17_x86_64.whl"]


def make_plugins():
    # Once the core lists python_env among its built-ins, registering it again would clash.
    builtin = "meshctl.plugins.python_env" in BUILTIN_PLUGINS
    return create_plugin_manager(autoload=False, extra=[] if builtin else [("python_env", P)])


def mesh(python: str = "", extra_nodes: str = "") -> str:
    """The seed with a ``python:`` section (its first key at line 3) and more nodes."""
    return edge(sections=textwrap.dedent(python), nodes=textwrap.indent(textwrap.dedent(extra_nodes), "  "))


def plan(topo_text: str, node: str, facts: dict[str, Any], file: str = "mesh.yml",
         family: OSFamily | None = None) -> list[Change | NoChange]:
    plugins = make_plugins()
    topo = parse_topology(topo_text, file, plugins)
    ctx = Engine(topo, plugins).context(topo.node(node), DEBIAN12)
    if family is not None:
        ctx = NodeContext(node=ctx.node, topology=topo, os_release=DEBIAN12, os_family=family)
    ops = P.meshctl_node_operations(ctx)
    return plan_operations(ops, facts, ctx.os_family.package_manager)


def host_facts(installed: dict[str, str] | None, venv: str = "3.11.2", interp: str = "3.11.2",
               interpreter: str = "/usr/bin/python3", wheels: list[str] | None = None) -> dict[str, Any]:
    """Facts as the fact commands print them on a host (run through the real parsers)."""
    if installed is None:  # no venv at all
        venv_out, pkg_out = f"venv=\ninterp={interp}", ""
    else:
        import json

        venv_out = f"exists=1\nvenv={venv}\ninterp={interp}"
        pkg_out = json.dumps({"pip": "23.0.1", **installed})
    facts: dict[str, Any] = {
        P.venv_fact(interpreter).key: P.venv_fact(interpreter).parse(venv_out, 0),
        P.packages_fact().key: P.packages_fact().parse(pkg_out, 0 if pkg_out else 127),
        f"file:{P.BASE_DIR}": {"kind": "dir", "mode": "755", "owner": "root", "group": "root"}
        if installed is not None else {"kind": "absent"},
    }
    if wheels is not None:
        facts[f"file:{P.WHEEL_DIR}"] = {"kind": "dir", "mode": "755", "owner": "root", "group": "root"}
        facts[P.listing_fact(P.WHEEL_DIR).key] = P.listing_fact(P.WHEEL_DIR).parse("\n".join(wheels), 0)
    return facts


def changes(planned: list[Change | NoChange]) -> dict[str, str]:
    return {p.op.id: p.summary for p in planned if isinstance(p, Change)}


def commands(planned: list[Change | NoChange], op_id: str) -> list[str]:
    (change,) = [p for p in planned if isinstance(p, Change) and p.op.id == op_id]
    return [c.line for c in change.commands]


# ---------------------------------------------------------------------------
# Plans


def test_fresh_execution_node_creates_the_venv_and_installs_both_pins():
    planned = plan(mesh(), "exec01.example.com", host_facts(None))
    assert changes(planned) == {
        "dir:/opt/meshctl": "create",
        "venv:/opt/meshctl/venv": "create with /usr/bin/python3",
        "pip:/opt/meshctl/venv": "install ansible-runner 2.4.3, receptorctl 1.6.9 (new virtualenv)",
    }
    (venv,) = commands(planned, "venv:/opt/meshctl/venv")
    assert "/usr/bin/python3 -m venv /opt/meshctl/venv" in venv
    (pip,) = commands(planned, "pip:/opt/meshctl/venv")
    assert pip.startswith("(umask 022; PIP_ROOT_USER_ACTION=ignore /opt/meshctl/venv/bin/python -m pip "
                          "--disable-pip-version-check install -q")
    assert pip.endswith(" ansible-runner==2.4.3 receptorctl==1.6.9)")
    assert "--no-index" not in pip and "--index-url" not in pip


def test_matching_pins_plan_no_change():
    planned = plan(mesh(), "exec01.example.com", host_facts(dict(PINS, pyyaml="6.0.2")))
    assert changes(planned) == {}
    (pip,) = [p for p in planned if p.op.id == "pip:/opt/meshctl/venv"]
    assert pip.reason == "ansible-runner 2.4.3, receptorctl 1.6.9 installed"
    venv = next(p for p in planned if p.op.id == "venv:/opt/meshctl/venv")
    assert venv.reason == "python 3.11.2"


def test_version_drift_names_old_and_new():
    planned = plan(mesh(), "exec01.example.com", host_facts({"ansible-runner": "2.3.6", "receptorctl": "1.6.9"}))
    assert changes(planned) == {"pip:/opt/meshctl/venv": "install ansible-runner 2.4.3 (have 2.3.6)"}
    # Every pin goes to pip in one run, so the resolver sees the whole set.
    assert commands(planned, "pip:/opt/meshctl/venv")[0].endswith("ansible-runner==2.4.3 receptorctl==1.6.9)")


def test_a_missing_package_and_other_pins_from_the_topology():
    section = """\
    python:
      ansible_runner: "2.4.0"
      receptorctl: "1.5.4"
      extra_packages: ["pywinrm==0.5.0", "jmespath"]
    """
    planned = plan(mesh(section), "exec01.example.com", host_facts({"ansible-runner": "2.4.0", "jmespath": "1.0.1"}))
    assert changes(planned) == {"pip:/opt/meshctl/venv": "install receptorctl 1.5.4, pywinrm 0.5.0"}
    assert commands(planned, "pip:/opt/meshctl/venv")[0].endswith(
        "ansible-runner==2.4.0 receptorctl==1.5.4 pywinrm==0.5.0 jmespath)")
    planned = plan(mesh(section), "exec01.example.com", host_facts(
        {"Ansible_Runner": "2.4.0", "receptorctl": "1.5.4", "pywinrm": "0.5.0", "jmespath": "1.0.1"}))
    assert changes(planned) == {}
    assert planned[-1].reason == "ansible-runner 2.4.0, receptorctl 1.5.4, pywinrm 0.5.0, jmespath 1.0.1 installed"


def test_hop_node_gets_receptorctl_only_and_loses_ansible_runner():
    planned = plan(mesh(), "hop01.example.com", host_facts(None))
    assert changes(planned)["pip:/opt/meshctl/venv"] == "install receptorctl 1.6.9 (new virtualenv)"
    assert "ansible-runner" not in commands(planned, "pip:/opt/meshctl/venv")[0]

    assert changes(plan(mesh(), "hop01.example.com", host_facts({"receptorctl": "1.6.9"}))) == {}
    # A former execution node turned hop: its ansible-runner goes.
    planned = plan(mesh(), "hop01.example.com", host_facts(dict(PINS)))
    assert changes(planned) == {"pip:/opt/meshctl/venv": "remove ansible-runner 2.4.3"}
    (cmd,) = commands(planned, "pip:/opt/meshctl/venv")
    assert cmd.endswith("-m pip --disable-pip-version-check uninstall -y -q ansible-runner)")


def test_unmanaged_nodes_get_nothing():
    extra = """\
    - name: awx
      role: control
      managed: false
    """
    plugins = make_plugins()
    topo = parse_topology(mesh(extra_nodes=extra), "mesh.yml", plugins)
    ctx = Engine(topo, plugins).context(topo.node("awx"), DEBIAN12)
    assert P.meshctl_node_operations(ctx) is None


@pytest.mark.parametrize(("venv", "interp", "installed", "why"), [
    ("3.9.18", "3.11.2", PINS, "python 3.9.18, /usr/bin/python3 is 3.11.2"),
    ("", "3.11.2", {}, "its python does not run"),
    ("3.9.18", "", PINS, "python 3.9.18, /usr/bin/python3 is not installed yet"),
    ("3.11.2", "3.11.2", {"pip": None}, "pip is missing"),
])
def test_broken_or_foreign_venv_is_recreated_and_refilled(venv, interp, installed, why):
    facts = host_facts(dict(installed), venv=venv, interp=interp)
    if installed == {"pip": None}:  # a venv made without ensurepip (no python3-venv)
        facts[P.packages_fact().key] = {}
    got = changes(plan(mesh(), "exec01.example.com", facts))
    assert got["venv:/opt/meshctl/venv"] == f"recreate with /usr/bin/python3 ({why})"
    assert got["pip:/opt/meshctl/venv"] == "install ansible-runner 2.4.3, receptorctl 1.6.9 (new virtualenv)"


def test_the_os_family_names_the_interpreter():
    el = OSFamily("rhel", lambda r: True, "dnf", python=lambda r: f"/usr/bin/python3.{11 if r.major else 9}")
    facts = host_facts(dict(PINS), interpreter="/usr/bin/python3.11")
    assert changes(plan(mesh(), "exec01.example.com", facts, family=el)) == {}
    facts = host_facts(dict(PINS), venv="3.9.18", interp="3.11.9", interpreter="/usr/bin/python3.11")
    planned = plan(mesh(), "exec01.example.com", facts, family=el)
    assert changes(planned)["venv:/opt/meshctl/venv"] == (
        "recreate with /usr/bin/python3.11 (python 3.9.18, /usr/bin/python3.11 is 3.11.9)")
    assert commands(planned, "venv:/opt/meshctl/venv") == [
        "(umask 022; rm -rf /opt/meshctl/venv; /usr/bin/python3.11 -m venv /opt/meshctl/venv) "
        "|| { _rc=$?; rm -rf /opt/meshctl/venv; df -Pk /opt/meshctl 2>/dev/null | awk 'NR==2 && $4 < 65536 "
        '{print "meshctl: only " $4 " KiB free on " $6}\'; (exit $_rc); }']


def test_private_index_url_travels_on_stdin_not_argv():
    url = "https://deploy:s3cret@pypi.internal.example/simple/"
    planned = plan(mesh(f"python: {{index_url: '{url}'}}\n"), "exec01.example.com", host_facts(None))
    (change,) = [p for p in planned if p.op.id == "pip:/opt/meshctl/venv"]
    (cmd,) = change.commands
    assert "s3cret" not in cmd.line and cmd.line.startswith('(umask 022; PIP_INDEX_URL="$(cat)" ')
    assert cmd.stdin == url + "\n"
    assert change.secret and "s3cret" not in change.summary


def test_venv_and_pip_commands_set_umask_022_first():
    """Under root's umask 077 (CIS) the venv would be root-only and awx could not run
    ansible-runner. Every command that makes files in the venv sets 022 first, in a
    subshell that ends after the venv or pip call."""
    fresh = plan(mesh(), "exec01.example.com", host_facts(None))
    (venv,) = commands(fresh, "venv:/opt/meshctl/venv")
    assert venv.startswith("(umask 022; rm -rf /opt/meshctl/venv; ")
    assert " -m venv /opt/meshctl/venv) || { " in venv  # the failure cleanup follows the subshell
    wanted = P.requirements(P.PythonSection(), True)
    pips = [*commands(fresh, "pip:/opt/meshctl/venv"),
            P.PipPackages(wanted=wanted, wheel_dir=P.WHEEL_DIR).install_cmd().line,
            P.PipPackages(wanted=wanted, index_url="https://pypi.internal.example/simple/").install_cmd().line,
            # uninstall too: pip writes there (RECORD, caches)
            *commands(plan(mesh(), "hop01.example.com", host_facts(dict(PINS))), "pip:/opt/meshctl/venv")]
    for line in pips:
        assert line.startswith("(umask 022; ") and line.endswith(")") and line.count(" -m pip ") == 1, line


def _probe_wheel(directory: Path) -> Path:
    """A minimal pure-Python wheel with a console script (like ansible-runner's)."""
    import base64
    import hashlib
    import zipfile

    files = {
        "umask_probe/__init__.py": "def main():\n    print('probe ok')\n",
        "umask_probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: umask-probe\nVersion: 1.0\n",
        "umask_probe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                           "Tag: py3-none-any\n",
        "umask_probe-1.0.dist-info/entry_points.txt": "[console_scripts]\numask-probe = umask_probe:main\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files["umask_probe-1.0.dist-info/RECORD"] = "\n".join([*record, "umask_probe-1.0.dist-info/RECORD,,"]) + "\n"
    path = directory / "umask_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return path


def test_commands_under_root_umask_077_leave_a_venv_everyone_can_run(tmp_path):
    """The planned venv and pip commands, run by sh with umask 077 (a CIS host's root
    shell) in a scratch directory instead of /opt/meshctl: every file is readable and
    every directory and script usable by others, and the shell's own umask is kept."""
    venv = tmp_path / "venv"
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _probe_wheel(wheels)
    create = P.Virtualenv(interpreter=sys.executable).command().line
    install = P.PipPackages(wanted=[P.Requirement("umask-probe", "1.0", "umask-probe==1.0")],
                            wheel_dir=str(wheels)).install_cmd().line
    script = "\n".join(["umask 077", create, install, "umask"]).replace(P.VENV, str(venv))
    assert P.VENV not in script
    r = subprocess.run(["sh", "-ec", script], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "0077"  # the subshells did not change it
    private = [str(p) for p in [venv, *venv.rglob("*")] if not p.is_symlink()
               and (p.stat().st_mode & 0o004 == 0 or (p.is_dir() and p.stat().st_mode & 0o001 == 0))]
    assert private == []
    for tool in ("python", "pip", "umask-probe"):
        assert (venv / "bin" / tool).stat().st_mode & 0o001, tool
    assert subprocess.run([str(venv / "bin" / "umask-probe")], capture_output=True, text=True,
                          timeout=60).stdout == "probe ok\n"


def test_short_pins_compare_equal_to_installed_versions():
    assert P.same_version("2.4", "2.4.0") and P.same_version("1.6.9", "1.6.9")
    assert not P.same_version("2.4.3", "2.4.30") and not P.same_version("2.4.0rc1", "2.4.0")
    section = "python: {ansible_runner: '2.4'}\n"
    assert changes(plan(mesh(section), "exec01.example.com", host_facts({"ansible-runner": "2.4.0", "receptorctl": "1.6.9"}))) == {}


# ---------------------------------------------------------------------------
# Wheelhouse


def wheelhouse(tmp_path: Path, names: list[str]) -> Path:
    wh = tmp_path / "wheels"
    wh.mkdir()
    for name in names:
        (wh / name).write_bytes(name.encode())
    return wh


FULL = ["ansible_runner-2.4.3-py3-none-any.whl", "receptorctl-1.6.9-py3-none-any.whl", *DEPS]


def test_wheelhouse_uploads_prunes_and_installs_offline(tmp_path):
    wh = wheelhouse(tmp_path, FULL)
    (wh / "notes.txt").write_text("not a wheel")
    mesh_file = tmp_path / "mesh.yml"
    text = mesh("python: {wheelhouse: wheels}\n")  # relative to mesh.yml, not the cwd
    facts = host_facts(None)
    facts[f"file:{P.WHEEL_DIR}"] = {"kind": "absent"}
    facts[P.listing_fact(P.WHEEL_DIR).key] = {"files": []}
    for name in FULL:
        facts[f"file:{P.WHEEL_DIR}/{name}"] = {"kind": "absent"}
    planned = plan(text, "exec01.example.com", facts, file=str(mesh_file))
    got = changes(planned)
    assert got["dir:/opt/meshctl/wheels"] == "create"
    uploads = [p for p in planned if isinstance(p.op, Upload)]
    assert sorted(p.op.path.rsplit("/", 1)[1] for p in uploads) == sorted(FULL)  # *.whl only
    assert all(isinstance(p, Change) and p.uploads[0][0].startswith(str(wh)) for p in uploads)
    (pip,) = commands(planned, "pip:/opt/meshctl/venv")
    assert "install -q --no-index --find-links /opt/meshctl/wheels ansible-runner==2.4.3 receptorctl==1.6.9" in pip

    # Uploaded wheels get the local mtime: re-uploaded only when size or mtime differs.
    (touch,) = [c for c in commands(planned, f"upload:{P.WHEEL_DIR}/{FULL[0]}") if c.startswith("touch")]
    assert touch == f'touch -m -d @{int((wh / FULL[0]).stat().st_mtime)} "$_tmp"'
    assert all(P.WHEEL_DIR not in f.key or "digest=0" in f.command
               for p in planned for f in p.op.facts("apt") if f.kind == "file" and f.key.endswith(".whl"))

    # Provisioned: uploads hold by size and mtime; a wheel removed locally is removed remotely.
    facts = host_facts(dict(PINS), wheels=[*FULL, "ansible_runner-2.3.6-py3-none-any.whl"])
    for name in FULL:
        st = (wh / name).stat()
        facts[f"file:{P.WHEEL_DIR}/{name}"] = {
            "kind": "file", "mode": "644", "owner": "root", "group": "root", "size": st.st_size,
            "mtime": int(st.st_mtime)}
    facts[f"file:{P.WHEEL_DIR}/{FULL[1]}"]["mtime"] -= 60
    planned = plan(text, "exec01.example.com", facts, file=str(mesh_file))
    assert changes(planned) == {
        "prune:/opt/meshctl/wheels": "remove 1 stale file(s): ansible_runner-2.3.6-py3-none-any.whl",
        f"upload:{P.WHEEL_DIR}/{FULL[1]}": f"replace (size or mtime differs), {(wh / FULL[1]).stat().st_size} bytes"}
    assert commands(planned, "prune:/opt/meshctl/wheels") == [
        "rm -rf -- /opt/meshctl/wheels/ansible_runner-2.3.6-py3-none-any.whl"]


def errors_of(text: str, file: str = "mesh.yml") -> list[str]:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, file, make_plugins())
    return [str(d) for d in info.value.diagnostics if d.severity == "error"]


def test_wheelhouse_must_exist(tmp_path):
    text = mesh("python:\n  wheelhouse: nowhere\n")
    (err,) = errors_of(text, str(tmp_path / "mesh.yml"))
    assert err.startswith(f"{tmp_path}/mesh.yml:3:15: python.wheelhouse: directory {tmp_path}/nowhere does not exist")


def test_wheelhouse_must_hold_the_pinned_wheels(tmp_path):
    wh = wheelhouse(tmp_path, ["ansible_runner-2.4.2-py3-none-any.whl", *DEPS])
    (err,) = errors_of(mesh(f"python:\n  wheelhouse: {wh}\n"))
    assert err.startswith(f"mesh.yml:3:15: python.wheelhouse: {wh} has no wheel for ansible-runner==2.4.3, "
                          "receptorctl==1.6.9 (looked for ansible_runner-2.4.3-*.whl, receptorctl-1.6.9-*.whl)")
    assert "pip download --only-binary=:all:" in err


def test_hop_only_mesh_needs_no_ansible_runner_wheel(tmp_path):
    wh = wheelhouse(tmp_path, ["receptorctl-1.6.9-py3-none-any.whl"])
    hops = f"""\
    mesh: relays
    nodes:
      - name: hop01
        role: hop
        listener: {{port: 27199}}
    python: {{wheelhouse: {wh}}}
    """
    topo = parse_topology(textwrap.dedent(hops), "mesh.yml", make_plugins())
    assert P.settings(topo).wheelhouse == str(wh)
    # ...but an execution node does.
    (err,) = errors_of(mesh(f"python: {{wheelhouse: {wh}}}\n"))
    assert "has no wheel for ansible-runner==2.4.3 (looked for ansible_runner-2.4.3-*.whl)" in err


def test_a_complete_relative_wheelhouse_validates(tmp_path):
    wheelhouse(tmp_path, ["Ansible_Runner-2.4.3-py3-none-any.whl", "receptorctl-1.6.9-py3-none-any.whl"])
    path = tmp_path / "mesh.yml"
    path.write_text(mesh("python: {wheelhouse: wheels}\n"))
    topo = load_topology(path, make_plugins())
    assert P.wheelhouse_path(topo, P.settings(topo)) == tmp_path / "wheels"


@pytest.mark.parametrize(("section", "expected"), [
    ("python:\n  ansible_runner: '>=2.4'\n",
     "mesh.yml:3:19: python.ansible_runner: '>=2.4' is not an exact version like 2.4.3"),
    ("python:\n  receptorctl: latest\n",
     "mesh.yml:3:16: python.receptorctl: 'latest' is not an exact version"),
    ("python:\n  extra_packages: [pywinrm, 'jmespath>=1']\n",
     "mesh.yml:3:29: python.extra_packages[1]: 'jmespath>=1' must be NAME or NAME==VERSION"),
    ("python:\n  extra_packages: [receptorctl==1.5.0]\n",
     "mesh.yml:3:20: python.extra_packages[0]: 'receptorctl==1.5.0': set python.ansible_runner"),
    ("python:\n  index_url: pypi.example.com\n",
     "mesh.yml:3:14: python.index_url: must be an http:// or https:// URL with a host"),
    ("python:\n  index_url: \"https://u:tok3n@pypi.example.com/simple\\n --trusted-host evil\"\n",
     "mesh.yml:3:14: python.index_url: must be one URL without spaces or control characters"),
    ("python:\n  wheelhouse: /tmp\n  index_url: https://pypi.example.com/simple\n",
     "mesh.yml:4:14: python: set either wheelhouse or index_url, not both"),
    ("python:\n  wheelhose: wheels\n",
     "mesh.yml:3:3: unknown key 'wheelhose' in python (did you mean 'wheelhouse'?)"),
])
def test_section_errors_are_located(section, expected):
    errs = errors_of(mesh(section))
    assert any(e.startswith(expected) for e in errs), errs
    assert not any("tok3n" in e for e in errs)  # an index URL's token is never echoed


# ---------------------------------------------------------------------------
# Facts: the real shell commands, run here (no venv at /opt/meshctl on this machine)


@pytest.mark.skipif(Path(P.VENV).exists(), reason="this machine has a real /opt/meshctl/venv")
def test_fact_commands_run_in_a_shell_and_parse():
    facts = [P.venv_fact(sys.executable), P.packages_fact(), P.listing_fact("/nonexistent/meshctl")]
    script, boundary = factscript.batch_script(facts)
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60, check=True).stdout
    got = factscript.parse_batch(facts, out, boundary)
    here = ".".join(map(str, sys.version_info[:2]))  # from the resolved name, python3.X
    assert got[P.venv_fact(sys.executable).key] == {"exists": False, "python": "", "interpreter": here}
    assert got[P.packages_fact().key] == {}
    assert got[P.listing_fact("/nonexistent/meshctl").key] == {"files": []}


def test_packages_fact_lists_a_real_environment():
    """The packages snippet itself, run by this interpreter, names this environment's packages."""
    out = subprocess.run([sys.executable, "-I", "-c", PO._PACKAGES_PY], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    got = P.packages_fact().parse(out, 0)
    import importlib.metadata as md

    assert got["pydantic"] == md.version("pydantic") and got["pyyaml"] == md.version("PyYAML")


def test_verify_check_compares_the_pins():
    plugins = make_plugins()
    topo = parse_topology(mesh(), "mesh.yml", plugins)
    check = plugins.checks()["python-packages"]
    for node, output, ok, detail in [
        ("exec01.example.com", '{"ansible-runner": "2.4.3", "receptorctl": "1.6.9", "pip": "23.0.1"}', True,
         "ansible-runner 2.4.3, receptorctl 1.6.9"),
        ("exec01.example.com", '{"receptorctl": "1.6.8"}', False,
         "not as pinned: ansible-runner 2.4.3 (have none), receptorctl 1.6.9 (have 1.6.8)"),
        ("hop01.example.com", '{"receptorctl": "1.6.9"}', True, "receptorctl 1.6.9"),
        ("hop01.example.com", "", False, "/opt/meshctl/venv is missing or broken (run meshctl provision)"),
    ]:
        ctx = dataclasses.replace(Engine(topo, plugins).context(topo.node(node), DEBIAN12),
                                  run=lambda cmd, out=output: (0 if out else 127, out))
        res = check.run(ctx)
        assert (res.ok, res.detail) == (ok, detail)


def test_listing_fact_sees_dot_files(tmp_path):
    for name in ("a-1.0-py3-none-any.whl", ".hidden", "..odd"):
        (tmp_path / name).write_text("")
    fact = P.listing_fact(str(tmp_path))
    out = subprocess.run(["sh", "-c", fact.command], capture_output=True, text=True, timeout=30, check=True).stdout
    assert fact.parse(out, 0) == {"files": ["..odd", ".hidden", "a-1.0-py3-none-any.whl"]}
