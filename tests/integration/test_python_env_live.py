"""The python_env plugin against a real Debian 12 host: a wheelhouse made on this
machine (lab containers cannot reach PyPI, like an air-gapped site), uploaded and
installed offline into /opt/meshctl/venv; then ansible-runner really runs there."""

from __future__ import annotations

import time
import types

import pytest
import yaml

from meshctl.core.engine import Engine, EngineSettings
from meshctl.core.hookspecs import hookimpl
from meshctl.core.ops import Packages
from meshctl.core.plugins import BUILTIN_PLUGINS, create_plugin_manager
from meshctl.core.topology import parse_topology
from meshctl.core.transport import SSHOptions
from meshctl.plugins import python_env as P

pytestmark = pytest.mark.integration

RUNNER, RECEPTORCTL = f"{P.VENV}/bin/ansible-runner", f"{P.VENV}/bin/receptorctl"
HELPER_OP = "test-packages:python3-venv"


def helper_plugin() -> types.ModuleType:
    """python3-venv is not in the lab image; in the product the OS plugin installs it."""
    mod = types.ModuleType("venvprereq")

    # phase "first": the package comes before the venv (as the OS plugin's does) even
    # on a host no other test set up.
    @hookimpl
    def meshctl_node_operations(ctx):
        return [Packages(id=HELPER_OP, names=["python3-venv"], phase="first")]

    mod.meshctl_node_operations = meshctl_node_operations
    return mod


def _ours(op) -> bool:
    # Only this plugin's operations (and the helper's): other built-ins (OS packages,
    # receptor, certificates) are tested elsewhere and would slow this test down.
    return op.id == HELPER_OP or P.BASE_DIR in op.id


def engine_for(minilab, wheelhouse, role: str = "execution"):
    extra = [("venvprereq", helper_plugin())]
    if "meshctl.plugins.python_env" not in BUILTIN_PLUGINS:
        extra.append(("python_env", P))
    plugins = create_plugin_manager(autoload=False, block={"base_node", "cert_backends", "registry_auth"},
                                    extra=extra)
    text = f"""\
mesh: venv
defaults:
  ssh: {{user: root, key: {minilab.key}}}
nodes:
  - name: ops01
    role: {role}
    address: {minilab.ip('ops')}
    listener: {{port: 27199}}  # a node needs a listener or peers; receptor is not set up here
python:
  wheelhouse: {wheelhouse}
"""
    topo = parse_topology(text, str(minilab.workdir / "mesh-venv.yml"), plugins)
    engine = Engine(topo, plugins, ssh=SSHOptions(known_hosts=minilab.known_hosts), settings=EngineSettings(op_filter=_ours))
    return engine, topo.node("ops01")


@pytest.fixture
def clean_ops_host(minilab):
    """Start from no venv, whatever ran before on the shared ops host; leave none."""
    had_uuid = minilab.exec("ops", "test", "-e", "/root/.ansible_runner_uuid", check=False).returncode == 0
    minilab.exec("ops", "rm", "-rf", P.BASE_DIR)
    yield
    minilab.exec("ops", "rm", "-rf", P.BASE_DIR)
    if not had_uuid:  # written by `ansible-runner worker --worker-info`
        minilab.exec("ops", "rm", "-f", "/root/.ansible_runner_uuid")


def summaries(result) -> dict[str, str]:
    return {c.op.id: c.summary for c in result.changes}


def test_venv_from_a_wheelhouse_runs_ansible_runner(minilab, clean_ops_host):
    from labkit.image import cache_dir
    from wheels import ensure_wheelhouse

    pins = P.PythonSection()
    t0 = time.monotonic()
    wh = ensure_wheelhouse(cache_dir() / "wheels", "3.11", pins.ansible_runner, pins.receptorctl)
    t_wheels = time.monotonic() - t0
    wheels = sorted(p.name for p in P.local_wheels(wh))

    engine, node = engine_for(minilab, wh)
    t0 = time.monotonic()
    (first,) = engine.apply([node])
    t_install = time.monotonic() - t0
    assert first.status == "changed", first.error
    got = summaries(first)
    assert got["venv:/opt/meshctl/venv"] == "create with /usr/bin/python3"
    assert got["pip:/opt/meshctl/venv"] == (
        f"install ansible-runner {pins.ansible_runner}, receptorctl {pins.receptorctl} (new virtualenv)")
    assert sorted(k.rsplit("/", 1)[1] for k in got if k.startswith("upload:")) == wheels

    # The tools work, by the absolute paths other plugins use.
    assert minilab.exec("ops", RUNNER, "--version").stdout.strip() == pins.ansible_runner
    usage = minilab.exec("ops", RECEPTORCTL, "--help").stdout
    assert "Usage: receptorctl" in usage and "reload" in usage
    # What AWX's health check runs on an execution node.
    info = yaml.safe_load(minilab.exec("ops", RUNNER, "worker", "--worker-info").stdout)
    assert info["runner_version"] == pins.ansible_runner and info["errors"] == []
    assert info["cpu_count"] >= 1 and info["mem_in_bytes"] > 0
    # Offline really: pip had no index (and the container cannot reach PyPI anyway).
    assert minilab.exec("ops", "ls", P.WHEEL_DIR).stdout.split() == wheels

    t0 = time.monotonic()
    (second,) = engine.apply([node])
    t_noop = time.monotonic() - t0
    assert second.status == "ok" and second.changes == [], summaries(second)
    assert second.round_trips == 2
    reasons = {u.op.id: u.reason for u in second.unchanged}
    assert reasons["venv:/opt/meshctl/venv"].startswith("python 3.11.")  # read from pyvenv.cfg

    # A venv another minor Python made (the interpreter upgraded under it): planned for rebuild.
    cfg = f"{P.VENV}/pyvenv.cfg"
    minilab.exec("ops", "sed", "-i.orig", "s/^version = .*/version = 3.9.18/", cfg)
    (stale,) = engine.plan([node])
    minilab.exec("ops", "mv", f"{cfg}.orig", cfg)
    assert summaries(stale)["venv:/opt/meshctl/venv"] == (
        "recreate with /usr/bin/python3 (python 3.9.18, /usr/bin/python3 is 3.11)")
    assert reasons["pip:/opt/meshctl/venv"] == (
        f"ansible-runner {pins.ansible_runner}, receptorctl {pins.receptorctl} installed")

    (verified,) = engine.verify([node])
    assert ("python-packages", True, f"ansible-runner {pins.ansible_runner}, receptorctl {pins.receptorctl}") \
        in verified.checks

    # A broken venv (its interpreter gone) and a stale wheel: recreated, refilled, pruned.
    minilab.exec("ops", "sh", "-c", f"rm -f {P.VENV}/bin/python*; touch {P.WHEEL_DIR}/old-0.1-py3-none-any.whl")
    t0 = time.monotonic()
    (third,) = engine.apply([node])
    t_rebuild = time.monotonic() - t0
    assert summaries(third) == {
        "venv:/opt/meshctl/venv": "recreate with /usr/bin/python3 (its python does not run)",
        "prune:/opt/meshctl/wheels": "remove 1 stale file(s): old-0.1-py3-none-any.whl",
        "pip:/opt/meshctl/venv": f"install ansible-runner {pins.ansible_runner}, receptorctl {pins.receptorctl} "
                                 "(new virtualenv)",
    }, third.error
    assert minilab.exec("ops", RUNNER, "--version").stdout.strip() == pins.ansible_runner

    # The node becomes a hop: no ansible-runner there, receptorctl stays.
    hop, node = engine_for(minilab, wh, role="hop")
    (fourth,) = hop.apply([node])
    assert summaries(fourth) == {"pip:/opt/meshctl/venv": f"remove ansible-runner {pins.ansible_runner}"}
    assert minilab.exec("ops", "test", "-e", RUNNER, check=False).returncode == 1
    minilab.exec("ops", RECEPTORCTL, "--help")
    (fifth,) = hop.apply([node])
    assert fifth.changes == [] and fifth.round_trips == 2

    print(f"\npython_env timings: wheelhouse {t_wheels:.1f}s, first provision {t_install:.1f}s "
          f"(apt python3-venv, {len(wheels)} uploads, venv, pip), no-op re-run {t_noop:.2f}s, "
          f"venv rebuild + offline install {t_rebuild:.1f}s")


@pytest.fixture
def root_umask_077(minilab):
    """SSH sessions on ops start with umask 077, as on a CIS-hardened host (pam_umask)."""
    line = "session optional pam_umask.so umask=0077"
    minilab.exec("ops", "sh", "-c", f"echo '{line}' >> /etc/pam.d/sshd")
    yield
    minilab.exec("ops", "sed", "-i", f"\\|^{line}$|d", "/etc/pam.d/sshd")


def test_venv_usable_by_others_when_root_umask_is_077(minilab, clean_ops_host, root_umask_077):
    from labkit.image import cache_dir
    from wheels import ensure_wheelhouse

    pins = P.PythonSection()
    wh = ensure_wheelhouse(cache_dir() / "wheels", "3.11", pins.ansible_runner, pins.receptorctl)
    engine, node = engine_for(minilab, wh)
    seen: dict[str, str] = {}

    def evaluate(ctx, out):
        seen["umask"] = out.strip()
        return [("umask", True, seen["umask"])]

    engine.probe([node], lambda ctx: "umask\n", evaluate)
    assert seen["umask"] == "0077"  # meshctl's own sessions run under it

    (first,) = engine.apply([node])
    assert first.status == "changed", (first.error, summaries(first))
    # Nothing in the venv is private to root: no file others cannot read, no
    # directory others cannot enter.
    private = minilab.exec("ops", "find", P.VENV, "(", "-type", "f", "!", "-perm", "-o=r", ")", "-o",
                           "(", "-type", "d", "!", "-perm", "-o=rx", ")", "-print").stdout
    assert private == ""
    # What awx needs: another user runs the tools.
    assert minilab.exec("ops", "runuser", "-u", "nobody", "--", RUNNER, "--version").stdout.strip() == \
        pins.ansible_runner
    assert "Usage: receptorctl" in minilab.exec("ops", "runuser", "-u", "nobody", "--", RECEPTORCTL, "--help").stdout
