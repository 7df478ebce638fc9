"""The OS plugins' part of a plan, per release (tests/data/os/*.yml): the release's
/etc/os-release text and recorded-style facts in, the OS plugin's operations out.

Only the OS plugin's operations are built (its hook functions called directly), so
other plugins adding operations does not change these expectations.
"""

from __future__ import annotations

import copy
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from seed import edge

from meshctl.core import facts as F
from meshctl.core import factscript
from meshctl.core.engine import (
    Engine,
    PlanError,
    build_operations,
    detect_os,
    needed_facts,
    plan_operations,
)
from meshctl.core.ops import Change, File, NoChange, OperationError
from meshctl.core.planner import order_operations
from meshctl.core.plugins import create_plugin_manager
from meshctl.core.topology import parse_topology
from meshctl.core.types import NodeContext, OSRelease
from meshctl.plugins import os_debian, os_rhel

DATA = Path(__file__).parent / "data" / "os"
RELEASES = sorted(DATA.glob("*.yml"))
MODULES = {"rhel": os_rhel, "debian": os_debian}
NODES = {"execution": "exec01.example.com", "hop": "hop01.example.com"}


def mesh(sections: str = "") -> str:
    """The seed, exec01 dialing out only (no port to open), with top-level ``sections``."""
    return edge({"    peers: [hop01.example.com]\n": "    peers: [hop01.example.com]\n    listener: false\n"},
                sections=sections)


TOPOLOGY = mesh()


@pytest.fixture(scope="module")
def plugins():
    return create_plugin_manager(autoload=False)


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def context(plugins, release: OSRelease, node: str, topology: str = TOPOLOGY) -> NodeContext:
    topo = parse_topology(topology, plugins=plugins)
    family = detect_os(plugins, release)
    return NodeContext(node=topo.node(node), topology=topo, os_release=release, os_family=family)


def os_operations(ctx: NodeContext) -> list:
    """The OS plugin's operations, in the order the engine lists them (by phase: the
    relabel of os_rhel is "late")."""
    module = MODULES[ctx.os_family.name]
    return order_operations([("meshctl_node_operations", list(module.meshctl_node_operations(ctx) or []))])


def describe(result: Change | NoChange) -> dict[str, Any]:
    if isinstance(result, Change):
        return {"op": result.op.id, "summary": result.summary, "commands": [c.line for c in result.commands]}
    return {"op": result.op.id, "nochange": result.reason}


def plan(ctx: NodeContext, facts: dict[str, Any], changed: set[str] | None = None):
    ops = os_operations(ctx)
    manager = ctx.os_family.package_manager
    if changed is None:
        return ops, plan_operations(ops, facts, manager)
    return ops, [op.plan(facts, changed, manager) for op in ops]


# -- per-release plans ---------------------------------------------------------


def test_every_supported_release_has_a_data_file():
    names = {load(p)["name"] for p in RELEASES}
    assert names == {
        "RHEL 8.10", "RHEL 9.5", "RHEL 10.0", "CentOS Stream 9", "CentOS Stream 10", "Rocky Linux 9.5",
        "AlmaLinux 8.10", "Oracle Linux 9.5", "Fedora 41", "Debian 12", "Debian 13", "Ubuntu 22.04",
        "Ubuntu 24.04",
    }


@pytest.mark.parametrize("path", RELEASES, ids=[p.stem for p in RELEASES])
def test_release_is_detected_with_its_interpreter(plugins, path):
    case = load(path)
    release = OSRelease.parse(case["os_release"], arch="x86_64")
    family = detect_os(plugins, release)
    assert family.name == case["family"]
    assert family.python(release) == case["python"]


@pytest.mark.parametrize("role", sorted(NODES))
@pytest.mark.parametrize("path", RELEASES, ids=[p.stem for p in RELEASES])
def test_release_plan(plugins, path, role):
    case = load(path)
    ctx = context(plugins, OSRelease.parse(case["os_release"]), NODES[role])
    _, planned = plan(ctx, case["facts"])
    assert [describe(p) for p in planned] == case["expect"][role]


@pytest.mark.parametrize("path", RELEASES, ids=[p.stem for p in RELEASES])
def test_recorded_facts_are_exactly_the_declared_ones(plugins, path):
    # Every fact the plugin declares is in the file (no KeyError hides behind another
    # test) and the file holds nothing the plugin does not ask for.
    case = load(path)
    release = OSRelease.parse(case["os_release"])
    declared: set[str] = set()
    for node in NODES.values():
        ctx = context(plugins, release, node)
        declared |= {f.key for f in needed_facts(os_operations(ctx), ctx.os_family.package_manager)}
    assert set(case["facts"]) == declared


def converged(facts: dict[str, Any]) -> dict[str, Any]:
    """The same host after a provision: packages installed, every guard holding."""
    out = copy.deepcopy(facts)
    for key, value in out.items():
        if key.startswith("package:"):
            value.update(installed=True, version=value.get("version") or "1.0-1")
        elif key.startswith("rc:"):
            value["rc"] = 0
    return out


@pytest.mark.parametrize("role", sorted(NODES))
@pytest.mark.parametrize("path", RELEASES, ids=[p.stem for p in RELEASES])
def test_rerun_changes_nothing(plugins, path, role):
    case = load(path)
    ctx = context(plugins, OSRelease.parse(case["os_release"]), NODES[role])
    _, planned = plan(ctx, converged(case["facts"]))
    assert [describe(p) for p in planned if isinstance(p, Change)] == []


# -- unsupported systems -----------------------------------------------------------

UNSUPPORTED = {
    "arch": 'NAME="Arch Linux"\nPRETTY_NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n',
    "rhel7": ('NAME="Red Hat Enterprise Linux Server"\nVERSION="7.9 (Maipo)"\nID="rhel"\nID_LIKE="fedora"\n'
              'VERSION_ID="7.9"\nPRETTY_NAME="Red Hat Enterprise Linux Server 7.9 (Maipo)"\n'),
    "debian11": ('PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nNAME="Debian GNU/Linux"\nVERSION_ID="11"\n'
                 'VERSION="11 (bullseye)"\nVERSION_CODENAME=bullseye\nID=debian\n'),
    "sles15": ('NAME="SLES"\nVERSION="15-SP5"\nVERSION_ID="15.5"\nPRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"\n'
               'ID="sles"\nID_LIKE="suse"\n'),
}


@pytest.mark.parametrize("name", sorted(UNSUPPORTED))
def test_unsupported_os_names_the_os_and_the_families(plugins, name):
    release = OSRelease.parse(UNSUPPORTED[name])
    with pytest.raises(PlanError) as info:
        detect_os(plugins, release)
    msg = str(info.value)
    assert f"unsupported OS {release.pretty_name!r}" in msg
    assert "debian (Debian 12, 13; Ubuntu 22.04, 24.04)" in msg
    assert "rhel (RHEL, CentOS Stream, Rocky, AlmaLinux, Oracle Linux 8-10; Fedora)" in msg


def test_minor_release_without_python311_is_refused_for_that_host(plugins):
    text = load(DATA / "rhel-8.10.yml")["os_release"].replace("8.10", "8.6")
    ctx = context(plugins, OSRelease.parse(text), NODES["hop"])
    with pytest.raises(OperationError, match=r"8\.6 .*no python3\.11 package .*since 8\.8"):
        plan(ctx, {})


# -- behaviour that the data files do not isolate ------------------------------------


def rhel95(plugins, node: str = NODES["hop"], topology: str = TOPOLOGY):
    case = load(DATA / "rhel-9.5.yml")
    return context(plugins, OSRelease.parse(case["os_release"]), node, topology), case["facts"]


def test_restorecon_runs_when_notified_even_if_labels_look_right(plugins):
    ctx, facts = rhel95(plugins)
    facts = converged(facts)
    ops, planned = plan(ctx, facts, changed={"cmd:restorecon", "cmd:restorecon#restart"})
    relabel = planned[[o.id for o in ops].index("cmd:restorecon")]
    assert isinstance(relabel, Change) and relabel.summary == "relabel (notified)"


def test_restorecon_follows_other_plugins_files_so_their_notify_reaches_it(plugins):
    ctx, _ = rhel95(plugins)
    ids = [op.id for op in build_operations(plugins, ctx)]
    # After the files base_node writes, before the service that runs them.
    assert ids.index("file:/etc/receptor/receptor.conf") < ids.index("cmd:restorecon")
    assert ids.index("cmd:restorecon") < ids.index("service:receptor.service")
    assert ids[0] == "packages:os-base"  # packages before anything uses them


def test_notification_from_another_plugin_reaches_restorecon(plugins):
    ctx, facts = rhel95(plugins)
    facts = converged(facts)
    binary = File(path="/usr/bin/receptor", content="new", notify=[os_rhel.RESTORECON_ID])
    facts["file:/usr/bin/receptor"] = {"kind": "absent"}
    ops = [binary, *os_operations(ctx)]
    planned = plan_operations(ops, facts, "dnf")
    assert {p.op.id: p.summary for p in planned if isinstance(p, Change)} == {
        "file:/usr/bin/receptor": "create", "cmd:restorecon": "relabel (notified)"}


def test_firewall_zone_comes_from_the_mesh_section(plugins):
    ctx, facts = rhel95(plugins, topology=mesh("firewall: {zone: internal}\n"))
    fw = next(op for op in os_operations(ctx) if op.id == "firewall:firewalld")
    assert fw.command == ("firewall-cmd --permanent --zone=internal --add-port=27199/tcp"
                          " && firewall-cmd --zone=internal --add-port=27199/tcp")
    assert fw.unless == ("firewall-cmd --permanent --zone=internal --query-port=27199/tcp"
                         " && firewall-cmd --zone=internal --query-port=27199/tcp")


@pytest.mark.parametrize("family", ["rhel", "debian"])
def test_firewall_manage_false_touches_nothing_and_says_so(plugins, family):
    text = mesh("firewall: {manage: false}\n")
    name = "rhel-9.5.yml" if family == "rhel" else "ubuntu-22.04.yml"
    release = OSRelease.parse(load(DATA / name)["os_release"])
    ctx = context(plugins, release, NODES["hop"], text)
    fw = [op for op in os_operations(ctx) if op.id.startswith("firewall:")]
    assert [op.facts(ctx.os_family.package_manager) for op in fw] == [[]]
    assert fw[0].plan({}, set(), ctx.os_family.package_manager).reason == "firewall.manage is false: not touched"


def test_firewall_section_rejects_typos(plugins):
    from meshctl.core.errors import TopologyError

    with pytest.raises(TopologyError) as info:
        parse_topology(mesh("firewall: {zones: dmz}\n"), plugins=plugins)
    assert "unknown key 'zones' in firewall (did you mean 'zone'?)" in str(info.value.diagnostics[0])


def test_os_plugins_leave_unmanaged_nodes_and_other_families_alone(plugins):
    ctx, _ = rhel95(plugins, node="awx-task")
    assert os_rhel.meshctl_node_operations(ctx) is None
    ctx, _ = rhel95(plugins)
    assert os_debian.meshctl_node_operations(ctx) is None


# -- the shell snippets, run against stand-in tools ----------------------------------

UFW_ACTIVE = """\
Status: active

To                         Action      From
--                         ------      ----
22/tcp                     ALLOW       Anywhere
{rule}22/tcp (v6)                ALLOW       Anywhere (v6)
"""


def sh(command: str, tools: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    """Run ``command`` with stand-in tools (name -> shell body) first on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    for name, body in tools.items():
        tool = bindir / name
        tool.write_text("#!/bin/sh\n" + body + "\n")
        tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "LANG": "de_DE.UTF-8"}
    proc = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=env, timeout=30)
    return proc.returncode, proc.stdout


def fact(f: F.Fact, tools: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    rc, out = sh(f.command, tools, tmp_path)
    return f.parse(out, rc)


def ufw_tool(status: str) -> str:
    # The stand-in refuses to answer unless asked in the C locale, like a translated ufw would differ.
    return f'[ "$LC_ALL" = C ] || {{ echo "Status: aktiv"; exit 0; }}\ncat <<"EOF"\n{status}EOF'


@pytest.mark.parametrize("rule,allowed", [
    ("", False),
    ("27199/tcp                  ALLOW       Anywhere\n", True),
    ("27199                      ALLOW       10.0.0.0/8\n", True),  # narrowed by the user: kept
    ("27199/tcp                  LIMIT       Anywhere\n", True),
    ("27199/tcp                  ALLOW OUT   Anywhere\n", False),
    ("27199/tcp                  DENY        Anywhere\n", False),
    ("271990/tcp                 ALLOW       Anywhere\n", False),
])
def test_ufw_guard(tmp_path, rule, allowed):
    rc, _ = sh(os_debian.ufw_allowed(27199), {"ufw": ufw_tool(UFW_ACTIVE.format(rule=rule))}, tmp_path)
    assert (rc == 0) is allowed


def test_ufw_fact(tmp_path):
    active = {"ufw": ufw_tool(UFW_ACTIVE.format(rule=""))}
    assert fact(os_debian.UFW_FACT, active, tmp_path) == {"state": "active"}
    inactive = {"ufw": ufw_tool("Status: inactive\n")}
    assert fact(os_debian.UFW_FACT, inactive, tmp_path) == {"state": "inactive"}


def test_firewalld_and_selinux_facts(tmp_path):
    running = {"firewall-cmd": '[ "$1" = --state ] && echo running', "getenforce": "echo Enforcing"}
    assert fact(os_rhel.FIREWALLD_FACT, running, tmp_path) == {"state": "active"}
    assert fact(os_rhel.SELINUX_FACT, running, tmp_path) == {"mode": "enforcing"}
    stopped = {"firewall-cmd": "echo 'not running'; exit 252", "getenforce": "echo Disabled"}
    assert fact(os_rhel.FIREWALLD_FACT, stopped, tmp_path / "b") == {"state": "inactive"}
    assert fact(os_rhel.SELINUX_FACT, stopped, tmp_path / "b") == {"mode": "disabled"}


def test_facts_say_absent_where_the_tools_are_missing(tmp_path):
    # An empty PATH but for sh's own builtins and coreutils: no firewall-cmd, ufw, getenforce.
    if any(os.access(os.path.join(d, t), os.X_OK) for d in ("/usr/bin", "/bin")
           for t in ("firewall-cmd", "ufw", "getenforce")):
        pytest.skip("this machine has a firewall or SELinux tool installed")
    assert fact(os_rhel.FIREWALLD_FACT, {}, tmp_path) == {"state": "absent"}
    assert fact(os_debian.UFW_FACT, {}, tmp_path) == {"state": "absent"}
    assert fact(os_rhel.SELINUX_FACT, {}, tmp_path) == {"mode": "absent"}


@pytest.mark.parametrize("dry_run_output,holds", [
    ("", True),
    ("Would relabel /usr/bin/receptor from unconfined_u:object_r:user_tmp_t:s0 "
     "to system_u:object_r:bin_t:s0", False),
])
def test_restorecon_guard(tmp_path, dry_run_output, holds):
    # The stand-in prints the dry run only when called with -n, as restorecon -n -v does.
    tool = f'case " $* " in *" -n "*) [ -n "{dry_run_output}" ] && echo "{dry_run_output}";; esac; exit 0'
    rc, _ = sh(os_rhel.restorecon_op().unless, {"restorecon": tool}, tmp_path)
    assert (rc == 0) is holds


def test_the_engine_gathers_these_facts_in_its_one_batch(plugins):
    # A Debian hop node: its OS facts are plain Fact objects the batch script can carry.
    case = load(DATA / "debian-12.yml")
    topo = parse_topology(TOPOLOGY, plugins=plugins)
    ctx = Engine(topo, plugins).context(topo.node(NODES["hop"]), OSRelease.parse(case["os_release"]))
    fact_list = needed_facts(os_operations(ctx), "apt")
    script, boundary = factscript.batch_script(fact_list)
    assert {"fw:ufw", "fw:nftables"} <= {f.key for f in fact_list}
    # Two markers per fact, except apt packages, which share one dpkg-query (two markers).
    apt = [f for f in fact_list if f.kind == "package_apt"]
    assert script.count(boundary) == 2 * (len(fact_list) - len(apt)) + (2 if apt else 0) + 1
    assert script.count("dpkg-query") == 1
