"""The plugin system: built-ins, entry points, blocking, named registrations,
unknown hooks, plugin topology sections, the CLI, and a real third-party plugin
(examples/meshctl-plugin-example) installed into a fresh virtualenv."""

from __future__ import annotations

import base64
import hashlib
import importlib
import importlib.metadata as md
import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
import types
import uuid
from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict
from seed import EDGE, edge

import meshctl
from meshctl import __version__
from meshctl.core.engine import Engine, build_operations, needed_facts
from meshctl.core.errors import PluginError, TopologyError
from meshctl.core.hookspecs import hookimpl
from meshctl.core.ops import Change, NoChange
from meshctl.core.plugins import (
    BUILTIN_PLUGINS,
    CORE_PLUGIN,
    DISABLE_AUTOLOAD_ENV,
    create_plugin_manager,
    parse_plugin_args,
)
from meshctl.core.topology import parse_topology
from meshctl.core.types import OSRelease, Role, TopologySection

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "meshctl-plugin-example"
BUILTIN_NAMES = [CORE_PLUGIN] + [m.rsplit(".", 1)[-1] for m in BUILTIN_PLUGINS]
EXAMPLE_HOOKS = [
    "meshctl_cli_options",
    "meshctl_node_operations",
    "meshctl_register_topology_sections",
    "meshctl_validate_topology",
]


@pytest.fixture(autouse=True)
def _no_plugin_env(monkeypatch):
    # The developer's shell must not change what these tests load.
    for var in (DISABLE_AUTOLOAD_ENV, "MESHCTL_TRACE_HOOKS"):
        monkeypatch.delenv(var, raising=False)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MESHCTL_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(extra)
    return env


@pytest.fixture
def install_dist(tmp_path, monkeypatch):
    """Install fake distributions with a ``meshctl`` entry point on sys.path: real
    dist-info metadata, so the entry-point scan and the distribution names in error
    messages are exercised exactly as for a pip-installed plugin."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    monkeypatch.syspath_prepend(str(site_dir))
    modules: list[str] = []

    def install(dist: str, version: str, entry_point: str, source: str) -> str:
        # Unique module names: sys.modules outlives a test.
        module = f"{entry_point}_{uuid.uuid4().hex[:8]}"
        (site_dir / f"{module}.py").write_text(textwrap.dedent(source))
        info = site_dir / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[meshctl]\n{entry_point} = {module}\n")
        (info / "top_level.txt").write_text(module + "\n")
        importlib.invalidate_caches()
        modules.append(module)
        return module

    yield install
    for module in modules:
        sys.modules.pop(module, None)


ROLE_EDGE = """\
    from meshctl.core.hookspecs import hookimpl
    from meshctl.core.types import Role

    @hookimpl
    def meshctl_register_roles(register):
        register(Role("edge", runs_work=True, provisionable=True))
"""

BACKEND_VAULT = """\
    from meshctl.core.hookspecs import hookimpl
    from meshctl.core.types import CertBackend

    @hookimpl
    def meshctl_register_cert_backends(register):
        register(CertBackend("vault", factory=dict))
"""


# -- built-ins and blocking ---------------------------------------------------

def test_builtins_load_and_are_listed():
    plugins = create_plugin_manager(autoload=False)
    infos = plugins.list_plugins()
    assert [i.name for i in infos] == BUILTIN_NAMES
    for info in infos:
        assert (info.distribution, info.version, info.builtin) == ("meshctl", __version__, True)
    # Subsets, not equality: built-ins gain hooks as features land.
    by_name = {i.name: i for i in infos}
    assert {"meshctl_node_operations", "meshctl_receptor_config",
            "meshctl_register_roles"} <= set(by_name["base_node"].hooks)
    assert by_name["hop_node"].hooks == sorted(by_name["hop_node"].hooks)
    assert "meshctl_register_roles" in by_name["hop_node"].hooks
    assert {"control", "hybrid", "execution", "hop"} <= set(plugins.roles())
    assert {"debian", "rhel"} <= set(plugins.os_families())
    assert plugins.distribution_of("os_rhel") == f"meshctl {__version__}"


def test_each_manager_is_fresh():
    # Registering into one manager must not leak into the next (one per test).
    extra = types.ModuleType("extra_role")
    extra.meshctl_register_roles = hookimpl(
        lambda register: register(Role("edge", True, True)))
    first = create_plugin_manager(autoload=False, extra=[("extra", extra)])
    second = create_plugin_manager(autoload=False)
    assert "edge" in first.roles()
    assert "edge" not in second.roles()
    assert first.pm is not second.pm


def test_block_hop_node_removes_the_hop_role():
    plugins = create_plugin_manager(autoload=False, block={"hop_node"})
    assert "hop_node" not in [i.name for i in plugins.list_plugins()]
    assert "hop" not in plugins.roles()
    assert "execution" in plugins.roles()


def test_parse_plugin_args_splits_loads_and_blocks():
    assert parse_plugin_args(["a.b", "no:hop_node,no:x", " c "]) == (["a.b", "c"], {"hop_node", "x"})


# -- named registrations --------------------------------------------------------

@pytest.mark.parametrize(
    ("source", "collect", "what"),
    [(ROLE_EDGE, "roles", "role 'edge'"), (BACKEND_VAULT, "cert_backends", "certificate backend 'vault'")],
    ids=["role", "cert-backend"],
)
def test_duplicate_name_names_both_plugins_and_distributions(install_dist, source, collect, what):
    install_dist("meshctl-edge-a", "1.0", "edge_a", source)
    install_dist("meshctl-edge-b", "2.0", "edge_b", source)
    plugins = create_plugin_manager()
    with pytest.raises(PluginError) as info:
        getattr(plugins, collect)()
    message = str(info.value)
    assert message.startswith(f"{what} is registered twice: by plugin ")
    for fragment in ("'edge_a' (meshctl-edge-a 1.0)", "'edge_b' (meshctl-edge-b 2.0)"):
        assert fragment in message


def test_duplicate_of_a_builtin_names_meshctl(install_dist):
    install_dist("meshctl-hop2", "0.3", "hop2", ROLE_EDGE.replace('"edge"', '"hop"'))
    with pytest.raises(PluginError) as info:
        create_plugin_manager().roles()
    message = str(info.value)
    assert "role 'hop' is registered twice" in message
    assert f"'hop_node' (meshctl {__version__})" in message
    assert "'hop2' (meshctl-hop2 0.3)" in message
    # Blocking the built-in is how a plugin replaces it.
    assert create_plugin_manager(block={"hop_node"}).roles()["hop"].runs_work is True


@pytest.mark.parametrize(
    ("source", "wrong", "right"),
    [
        # Undecorated: still a hook implementation, so the typo cannot go unnoticed.
        ("def meshctl_register_role(register):\n    pass\n",
         "meshctl_register_role", "meshctl_register_roles"),
        ("from meshctl.core.hookspecs import hookimpl\n\n"
         "@hookimpl\ndef meshctl_node_operation(ctx):\n    return []\n",
         "meshctl_node_operation", "meshctl_node_operations"),
    ],
    ids=["undecorated", "decorated"],
)
def test_misspelled_hook_is_rejected_with_a_suggestion(install_dist, source, wrong, right):
    install_dist("meshctl-typo", "1.0", "typo", source)
    with pytest.raises(PluginError) as info:
        create_plugin_manager()
    assert str(info.value) == (
        f"plugin 'typo' (meshctl-typo 1.0) implements unknown hook {wrong!r} (did you mean {right!r}?)"
    )


def test_hookimpl_with_unknown_argument_is_a_plugin_error():
    bad = types.ModuleType("bad_args")
    bad.meshctl_node_operations = hookimpl(lambda context: None)  # spec says ``ctx``
    with pytest.raises(PluginError, match="'bad'.*context"):
        create_plugin_manager(autoload=False, extra=[("bad", bad)])


def test_broken_entry_point_is_a_warning_not_fatal(install_dist):
    install_dist("meshctl-broken", "1.0", "broken", "raise RuntimeError('boom')\n")
    install_dist("meshctl-edge", "1.0", "edge", ROLE_EDGE)
    plugins = create_plugin_manager()
    assert plugins.load_warnings == ["plugin 'broken' from meshctl-broken 1.0 failed to load: boom"]
    assert "edge" in plugins.roles()


# -- entry points and autoload ------------------------------------------------------

def test_entry_point_plugin_is_listed_with_its_distribution(install_dist):
    install_dist("meshctl-edge", "1.4.2", "edge", ROLE_EDGE)
    info = {i.name: i for i in create_plugin_manager().list_plugins()}["edge"]
    assert (info.distribution, info.version, info.builtin) == ("meshctl-edge", "1.4.2", False)
    assert info.hooks == ["meshctl_register_roles"]


def test_disable_autoload_env_stops_entry_point_loading(install_dist, monkeypatch):
    module = install_dist("meshctl-edge", "1.0", "edge", ROLE_EDGE)
    monkeypatch.setenv(DISABLE_AUTOLOAD_ENV, "1")
    plugins = create_plugin_manager()
    assert [i.name for i in plugins.list_plugins()] == BUILTIN_NAMES
    assert "edge" not in plugins.roles()
    assert module not in sys.modules  # not even imported

    # -p still loads a module explicitly, registered under its dotted path.
    loaded = create_plugin_manager(load=[module])
    info = {i.name: i for i in loaded.list_plugins()}[module]
    assert (info.distribution, info.version) == ("meshctl-edge", "1.0")
    assert "edge" in loaded.roles()

    monkeypatch.delenv(DISABLE_AUTOLOAD_ENV)
    assert "edge" in {i.name for i in create_plugin_manager().list_plugins()}


def test_blocked_entry_point_is_not_imported(install_dist):
    module = install_dist("meshctl-edge", "1.0", "edge", ROLE_EDGE)
    plugins = create_plugin_manager(block={"edge"})
    assert "edge" not in plugins.roles()
    assert module not in sys.modules


def test_p_on_a_module_its_entry_point_already_loaded_is_not_a_crash(install_dist):
    module = install_dist("meshctl-edge", "1.0", "edge", ROLE_EDGE)
    try:
        plugins = create_plugin_manager(load=[module])
    except PluginError:
        return  # a clean refusal naming the plugin is fine too
    assert "edge" in plugins.roles()


def test_unknown_plugin_module_is_a_plugin_error():
    with pytest.raises(PluginError, match="cannot load plugin module 'no_such_mod_x'"):
        create_plugin_manager(autoload=False, load=["no_such_mod_x"])


# -- plugin topology sections -----------------------------------------------------

class Banner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str
    width: int = 80


class Proxy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str


def _sections_plugin() -> types.ModuleType:
    mod = types.ModuleType("sections_plugin")

    @hookimpl
    def meshctl_register_topology_sections(register):
        register(TopologySection("banner", Banner, scope="mesh"))
        register(TopologySection("proxy", Proxy, scope="node"))

    @hookimpl
    def meshctl_validate_topology(topology, report):
        banner = topology.sections["banner"]
        if banner is not None and len(banner.text) > banner.width:
            report(("banner", "text"), "banner.text is wider than banner.width")

    mod.meshctl_register_topology_sections = meshctl_register_topology_sections
    mod.meshctl_validate_topology = meshctl_validate_topology
    return mod


# The seed with the test plugin's sections: a banner, a proxy default, and exec02
# (nodes[3]) with a proxy of its own, at line 25.
SECTIONS_YML = edge({"  listener: {port: 27199, protocol: tcp}\n":
                     '  listener: {port: 27199, protocol: tcp}\n  proxy: {url: "http://proxy:3128"}\n'},
                    sections="banner:\n  text: hello\n  width: 40\n",
                    nodes="""\
  - name: exec02.example.com
    role: execution
    peers: [hop01.example.com]
    proxy: {url: "http://other:3128"}
""")


def test_plugin_sections_are_parsed_into_models():
    plugins = create_plugin_manager(autoload=False, extra=[("sections", _sections_plugin())])
    topo = parse_topology(SECTIONS_YML, "mesh.yml", plugins)
    assert topo.sections["banner"] == Banner(text="hello", width=40)
    assert topo.node("exec01.example.com").sections["proxy"].url == "http://proxy:3128"  # default
    assert topo.node("exec02.example.com").sections["proxy"].url == "http://other:3128"


def test_plugin_section_errors_are_located():
    plugins = create_plugin_manager(autoload=False, extra=[("sections", _sections_plugin())])
    text = (SECTIONS_YML.replace("width: 40", "width: wide")
            .replace('proxy: {url: "http://other:3128"}', 'proxy: {uri: "http://other:3128"}'))
    with pytest.raises(TopologyError) as info:
        parse_topology(text, "mesh.yml", plugins)
    assert [str(d) for d in info.value.diagnostics] == [
        "mesh.yml:4:10: banner.width: Input should be a valid integer, unable to parse string as an integer",
        "mesh.yml:25:12: nodes[3].proxy: required key 'url' is missing",
        "mesh.yml:25:13: unknown key 'uri' in nodes[3].proxy (did you mean 'url'?)",
    ]


def test_plugin_validate_topology_reports_at_the_path():
    plugins = create_plugin_manager(autoload=False, extra=[("sections", _sections_plugin())])
    with pytest.raises(TopologyError) as info:
        parse_topology(SECTIONS_YML.replace("width: 40", "width: 3"), "mesh.yml", plugins)
    assert [str(d) for d in info.value.diagnostics] == [
        "mesh.yml:3:9: banner.text is wider than banner.width",
    ]


def test_without_the_plugin_its_section_is_an_unknown_key():
    plugins = create_plugin_manager(autoload=False)
    with pytest.raises(TopologyError) as info:
        parse_topology(SECTIONS_YML, "mesh.yml", plugins)
    first = str(info.value.diagnostics[0])
    assert first.startswith("mesh.yml:2:1: unknown key 'banner'")


# -- the CLI ----------------------------------------------------------------------

def run_meshctl(*args: str, cwd: Path, python: str = sys.executable,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([python, "-m", "meshctl", *args], cwd=cwd, env=env or clean_env(),
                          capture_output=True, text=True, timeout=120)


def test_cli_plugins_json_lists_builtins_with_hooks(tmp_path):
    proc = run_meshctl("plugins", "-o", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    expected = {i.name: i for i in create_plugin_manager(autoload=False).list_plugins()}
    for name in BUILTIN_NAMES:
        entry = listed[name]
        assert entry["distribution"] == "meshctl" and entry["version"] == __version__
        assert entry["builtin"] is True
        assert entry["hooks"] == expected[name].hooks
    assert "meshctl_register_roles" in listed["execution_node"]["hooks"]


HOP_YML = """\
mesh: edge
nodes:
  - name: hop01.example.com
    role: hop
    listener: {port: 27199}
"""


def test_cli_block_hop_node_makes_hop_an_unknown_role(tmp_path):
    (tmp_path / "mesh.yml").write_text(HOP_YML)
    ok = run_meshctl("validate", "-f", "mesh.yml", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr

    proc = run_meshctl("-p", "no:hop_node", "validate", "-f", "mesh.yml", cwd=tmp_path)
    assert proc.returncode == 2
    assert "mesh.yml:4:11: unknown role 'hop'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "1 error(s); nothing was changed" in proc.stderr


def test_cli_option_on_a_command_that_takes_none_is_a_plugin_error(tmp_path):
    (tmp_path / "opt_on_validate.py").write_text(textwrap.dedent("""\
        import click
        from meshctl.core.hookspecs import hookimpl

        @hookimpl
        def meshctl_cli_options(register):
            register("validate", click.Option(["--extra"]))
    """))
    (tmp_path / "mesh.yml").write_text(HOP_YML)
    proc = run_meshctl("-p", "opt_on_validate", "validate", "-f", "mesh.yml", cwd=tmp_path,
                       env=clean_env(PYTHONPATH=str(tmp_path)))
    assert proc.returncode == 3, proc.stderr



@pytest.mark.parametrize("name", ["remove", "plugins"])
def test_a_plugin_option_named_like_an_engine_setting_is_refused_naming_the_plugin(tmp_path, name):
    # It used to replace the engine's own setting in the shared options mapping and
    # crash planning with an internal error.
    (tmp_path / "opt_clash.py").write_text(textwrap.dedent(f"""\
        import click
        from meshctl.core.hookspecs import hookimpl

        @hookimpl
        def meshctl_cli_options(register):
            register("plan", click.Option(["--{name}"], is_flag=True))
    """))
    (tmp_path / "mesh.yml").write_text(HOP_YML)
    proc = run_meshctl("-p", "opt_clash", "plan", "-f", "mesh.yml", cwd=tmp_path,
                       env=clean_env(PYTHONPATH=str(tmp_path)))
    assert proc.returncode == 3, proc.stderr
    assert "plugin 'opt_clash'" in proc.stderr and f"registers the option '{name}' for 'plan'" in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


# -- the example plugin, in-process ------------------------------------------------

@pytest.fixture
def example_module(monkeypatch) -> types.ModuleType:
    # Loaded from its file, not installed; no __pycache__ litter in examples/.
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    spec = importlib.util.spec_from_file_location(
        "meshctl_plugin_example", EXAMPLE / "meshctl_plugin_example.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "meshctl_plugin_example", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example_plugins(example_module):
    return create_plugin_manager(autoload=False, extra=[("example", example_module)])


def motd_yml(text: str) -> str:
    """The seed with the example plugin's section (``motd.text`` at line 3, column 9)."""
    return edge(sections=f"motd:\n  text: {text}\n")


def empty_host_facts(facts) -> dict:
    """Facts of a host where nothing exists yet, through the real parsers."""
    return {f.key: f.parse("kind=absent" if f.kind == "file" else "", 0 if f.kind == "file" else 1)
            for f in facts}


def test_example_plans_the_motd_file_from_facts(example_plugins):
    topo = parse_topology(motd_yml("Authorised use only."), "mesh.yml", example_plugins)
    node = topo.node("exec01.example.com")
    engine = Engine(topo, example_plugins, options={"motd_suffix": "change CHG-1234"})
    release = OSRelease("debian", "12")
    ops = build_operations(example_plugins, engine.context(node, release))
    facts = needed_facts(ops, "apt")
    assert {"file:/etc/motd.d", "file:/etc/motd.d/meshctl"} <= {f.key for f in facts}

    planned = {p.op.id: p for p in engine.plan_from_facts(node, release, empty_host_facts(facts))}
    assert isinstance(planned["dir:/etc/motd.d"], Change)
    motd = planned["file:/etc/motd.d/meshctl"]
    assert isinstance(motd, Change) and motd.summary == "create"
    [body] = [c.stdin for c in motd.commands if c.stdin is not None]
    content = base64.b64decode(body).decode()
    assert content == (
        "Authorised use only.\n"
        "\n"
        "exec01.example.com: receptor execution node of mesh edge, managed by meshctl.\n"
        "change CHG-1234\n"
    )
    assert "+exec01.example.com: receptor execution node" in motd.diff

    # Second run against a host that has exactly that: nothing to do (idempotent).
    done = empty_host_facts(facts)
    done["file:/etc/motd.d"] = {"kind": "dir", "mode": "755", "owner": "root", "group": "root"}
    done["file:/etc/motd.d/meshctl"] = {
        "kind": "file", "mode": "644", "owner": "root", "group": "root",
        "sha256": hashlib.sha256(content.encode()).hexdigest(),
    }
    again = {p.op.id: p for p in engine.plan_from_facts(node, release, done)}
    assert isinstance(again["dir:/etc/motd.d"], NoChange)
    assert isinstance(again["file:/etc/motd.d/meshctl"], NoChange)


def test_example_contributes_nothing_without_its_section(example_plugins):
    topo = parse_topology(EDGE, "mesh.yml", example_plugins)
    ctx = Engine(topo, example_plugins).context(topo.node("exec01.example.com"),
                                                OSRelease("rhel", "9.4"))
    assert not [op for op in build_operations(example_plugins, ctx) if "motd" in op.id]


def test_example_validation_errors_and_warnings(example_plugins):
    with pytest.raises(TopologyError) as info:
        parse_topology(motd_yml("x" * 1001), "mesh.yml", example_plugins)
    assert [str(d) for d in info.value.diagnostics] == [
        "mesh.yml:3:9: motd.text is 1001 characters long; the limit is 1000",
        "mesh.yml:3:9: warning: motd.text line 1 is wider than 80 columns",
    ]
    topo = parse_topology(motd_yml("y" * 81), "mesh.yml", example_plugins)
    assert [str(w) for w in topo.warnings] == [
        "mesh.yml:3:9: warning: motd.text line 1 is wider than 80 columns",
    ]
    with pytest.raises(TopologyError) as info:
        parse_topology(motd_yml("hi").replace("  text:", "  txt:"), "mesh.yml",
                       example_plugins)
    assert "mesh.yml:3:3: unknown key 'txt' in motd (did you mean 'text'?)" in [
        str(d) for d in info.value.diagnostics]


def test_example_adds_motd_suffix_to_plan_and_provision(example_plugins):
    from meshctl.core.cli import build_cli

    cli = build_cli(example_plugins)
    for command in ("plan", "provision"):
        assert "motd_suffix" in [p.name for p in cli.commands[command].params]
    assert "motd_suffix" not in [p.name for p in cli.commands["validate"].params]


# -- the example plugin, pip-installed into a fresh virtualenv ----------------------

def _can_build_wheels() -> bool:
    """setuptools < 70.1 needs the separate ``wheel`` package to build a wheel."""
    try:
        version = md.version("setuptools")
    except md.PackageNotFoundError:
        return False
    major, minor = (int(x) for x in version.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


def _pip(python: Path, *args: str, cwd: Path) -> None:
    proc = subprocess.run([str(python), "-m", "pip", "--disable-pip-version-check", "--no-input",
                           *args], cwd=cwd, env=clean_env(), capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"pip {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture(scope="module")
def example_venv(tmp_path_factory) -> Path:
    """A virtualenv with only meshctl-plugin-example installed; meshctl and its
    dependencies come from the running environment through a .pth file, so nothing
    of meshctl's is downloaded."""
    tmp = tmp_path_factory.mktemp("example-venv")
    venv = tmp / "venv"
    # --without-pip: the venv's own (old) pip and setuptools would shadow ours.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True, capture_output=True, text=True).stdout.strip()
    meshctl_src = Path(meshctl.__file__).resolve().parent.parent
    host_paths = [*site.getsitepackages(), str(meshctl_src)]
    Path(purelib, "meshctl-host.pth").write_text("\n".join(host_paths) + "\n")

    if not _can_build_wheels():
        # The only download: a setuptools that builds wheels by itself, into the
        # temporary venv (where it shadows the host's older one).
        _pip(python, "install", "--ignore-installed", "--no-deps", "setuptools>=70.1", cwd=tmp)
    # Build from a copy so no build/ or *.egg-info lands in the repository.
    src = tmp / "meshctl-plugin-example"
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    _pip(python, "install", "--no-deps", "--no-build-isolation", "--no-index", str(src), cwd=tmp)
    return python


def test_installed_example_is_listed_with_its_distribution(example_venv, tmp_path):
    proc = run_meshctl("plugins", "-o", "json", cwd=tmp_path, python=str(example_venv))
    assert proc.returncode == 0, proc.stderr
    listed = {p["name"]: p for p in json.loads(proc.stdout)}
    assert listed["example"] == {
        "name": "example",
        "distribution": "meshctl-plugin-example",
        "version": "0.1.0",
        "hooks": EXAMPLE_HOOKS,
        "builtin": False,
    }
    # Built-ins come first, the entry-point plugin after them.
    assert list(listed)[: len(BUILTIN_NAMES)] == BUILTIN_NAMES

    help_text = run_meshctl("plan", "--help", cwd=tmp_path, python=str(example_venv)).stdout
    assert "--motd-suffix TEXT" in help_text


def test_installed_example_validates_its_section(example_venv, tmp_path):
    mesh = tmp_path / "mesh.yml"
    mesh.write_text(motd_yml("Authorised use only."))
    ok = run_meshctl("validate", "-f", "mesh.yml", cwd=tmp_path, python=str(example_venv))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "mesh.yml: valid (3 nodes, 2 managed)"

    mesh.write_text(motd_yml("x" * 1001))
    bad = run_meshctl("validate", "-f", "mesh.yml", cwd=tmp_path, python=str(example_venv))
    assert bad.returncode == 2
    assert "mesh.yml:3:9: motd.text is 1001 characters long; the limit is 1000" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_installed_example_off_when_autoload_is_disabled(example_venv, tmp_path):
    (tmp_path / "mesh.yml").write_text(motd_yml("Authorised use only."))
    env = clean_env(**{DISABLE_AUTOLOAD_ENV: "1"})
    proc = run_meshctl("validate", "-f", "mesh.yml", cwd=tmp_path, python=str(example_venv), env=env)
    assert proc.returncode == 2
    assert "mesh.yml:2:1: unknown key 'motd'" in proc.stderr

    listed = run_meshctl("plugins", "-o", "json", cwd=tmp_path, python=str(example_venv), env=env)
    assert [p["name"] for p in json.loads(listed.stdout)] == BUILTIN_NAMES
