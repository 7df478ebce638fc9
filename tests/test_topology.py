"""Every topology rule with a failing and a passing case, located errors."""

from __future__ import annotations

import textwrap

import pytest
from seed import EDGE

from meshctl.core.errors import TopologyError
from meshctl.core.topology import parse_topology, valid_address


def parse(text, plugins):
    return parse_topology(textwrap.dedent(text), "mesh.yml", plugins)


def errors_of(text, plugins):
    with pytest.raises(TopologyError) as info:
        parse(text, plugins)
    return [str(d) for d in info.value.diagnostics if d.severity == "error"]


def test_seed_is_valid(plugins):
    topo = parse(EDGE, plugins)
    assert [n.name for n in topo.nodes] == ["awx-task", "hop01.example.com", "exec01.example.com"]
    exec01 = topo.node("exec01.example.com")
    assert exec01.ssh.user == "cloud-user" and exec01.ssh.host == "192.0.2.10"
    assert exec01.ssh.via == "hop01.example.com"
    assert exec01.listener.port == 27199  # from defaults.listener
    assert [n.name for n in topo.managed_nodes] == ["hop01.example.com", "exec01.example.com"]
    assert topo.via_chain(exec01) == [topo.node("hop01.example.com")]
    assert topo.warnings == []


# (mutation of the seed, expected "LINE:COL: message" fragment). Each rule has a
# failing case here; the seed itself (and the "passing" list below) are the passing ones.
FAILING = [
    ("yaml syntax", EDGE.replace("peers: [awx-task]", "peers: [awx-task"), "YAML syntax error"),
    ("unknown key", EDGE.replace("    address: awx.example.com", "    adress: awx.example.com"),
     "mesh.yml:9:5: unknown key 'adress' in nodes[0] (did you mean 'address'?)"),
    ("unknown top key", EDGE + "nodez: []\n", "unknown key 'nodez' (did you mean 'nodes'?)"),
    ("duplicate key", EDGE.replace("    role: hop\n", "    role: hop\n    role: hop\n"), "duplicate key 'role'"),
    ("port range", EDGE.replace("listener: {port: 27199}", "listener: {port: 70000}"),
     "mesh.yml:12:22: nodes[1].listener.port: Input should be less than or equal to 65535"),
    ("port type", EDGE.replace("port: 22,", "port: twenty,"), "defaults.ssh.port: Input should be a valid integer"),
    ("protocol", EDGE.replace("protocol: tcp", "protocol: udp"), "defaults.listener.protocol: must be 'tcp' or 'ws'"),
    ("required name", EDGE.replace("  - name: awx-task\n    role: control", "  - role: control"),
     "nodes[0]: required key 'name' is missing"),
    ("required mesh", EDGE.replace("mesh: edge\n", ""), "required key 'mesh' is missing"),
    ("bad node name", EDGE.replace("name: awx-task", "name: 'awx task'").replace("[awx-task]", "['awx task']"),
     "not a valid receptor node id"),
    ("bad address", EDGE.replace("address: awx.example.com", "address: awx_example..com"),
     "mesh.yml:9:14: address 'awx_example..com' is not a valid hostname or IP address"),
    ("bad ip", EDGE.replace("host: 192.0.2.10", "host: 192.0.2.300"), "ssh.host '192.0.2.300' is not a valid"),
    ("duplicate name", EDGE.replace("name: exec01.example.com", "name: hop01.example.com"),
     "duplicate node name 'hop01.example.com' (first defined at line 10)"),
    ("duplicate listener", EDGE.replace("    peers: [hop01.example.com]\n", "    peers: [hop01.example.com]\n    address: hop01.example.com\n"),
     "listener hop01.example.com:27199 of 'exec01.example.com' is already used by 'hop01.example.com'"),
    ("unknown peer", EDGE.replace("peers: [hop01.example.com]", "peers: [hop02.example.com]"),
     "mesh.yml:16:13: peer 'hop02.example.com' is not a node in this topology (did you mean 'hop01.example.com'?)"),
    ("self peer", EDGE.replace("peers: [hop01.example.com]", "peers: [exec01.example.com]"), "cannot peer with itself"),
    ("duplicate peer", EDGE.replace("peers: [hop01.example.com]", "peers: [hop01.example.com, hop01.example.com]"),
     "mesh.yml:16:32: duplicate peer 'hop01.example.com'"),
    ("mutual peers", EDGE.replace("    listener: {port: 27199}\n    peers: [awx-task]", "    listener: {port: 27199}\n    peers: [awx-task, exec01.example.com]"),
     "peer to each other: a connection goes one way only"),
    ("peer without listener", EDGE.replace("    managed: false\n", "    managed: false\n    listener: false\n"),
     "'hop01.example.com' peers to 'awx-task', which has no listener"),
    ("hop runs no work", EDGE.replace("    role: hop\n", "    role: hop\n    instance_groups: [edge]\n"),
     "a hop node runs no work: it cannot be in instance groups"),
    ("control runs no work", EDGE.replace("    role: control\n", "    role: control\n    instance_groups: [edge]\n"),
     "a control node runs no work"),
    ("unknown via", EDGE.replace("via: hop01.example.com", "via: hop9"), "ssh.via 'hop9' is not a node"),
    ("via self", EDGE.replace("via: hop01.example.com", "via: exec01.example.com"), "cannot be its own ssh jump host"),
    ("via cycle", EDGE.replace("    listener: {port: 27199}\n    peers: [awx-task]", "    listener: {port: 27199}\n    peers: [awx-task]\n    ssh: {via: exec01.example.com}"),
     "ssh.via chain has a cycle: exec01.example.com -> hop01.example.com -> exec01.example.com"),
    ("unmanaged with ssh", EDGE.replace("    address: awx.example.com\n", "    address: awx.example.com\n    ssh: {user: root}\n"),
     "mesh.yml:10:5: node 'awx-task' is unmanaged (managed: false): it must not have an ssh section"),
    ("unknown role", EDGE.replace("role: execution", "role: executor"), "unknown role 'executor' (did you mean 'execution'?)"),
    ("hybrid cannot be managed", EDGE.replace("    role: control\n    managed: false\n",
                                              "    role: hybrid\n    managed: true\n"),
     "role 'hybrid' cannot be provisioned by meshctl: set managed: false"),
    ("not a mapping", "- a\n- b\n", "the topology must be a mapping"),
    ("empty nodes", "mesh: x\nnodes: []\n", "the topology has no nodes"),
    ("bad mesh name", EDGE.replace("mesh: edge", "mesh: 'my mesh'"), "mesh name 'my mesh' must be"),
]


@pytest.mark.parametrize("text,expected", [(t, e) for _, t, e in FAILING], ids=[n for n, _, _ in FAILING])
def test_rule_fails(plugins, text, expected):
    errors = errors_of(text, plugins)
    assert any(expected in e for e in errors), errors


PASSING = [
    ("ipv6 address", EDGE.replace("host: 192.0.2.10", "host: '2001:db8::10'")),
    ("listener off for a leaf", EDGE.replace("    peers: [hop01.example.com]\n", "    peers: [hop01.example.com]\n    listener: false\n")),
    ("via chain depth 2", EDGE + "  - name: exec02.example.com\n    role: execution\n    peers: [hop01.example.com]\n    ssh: {via: exec01.example.com}\n"),
    ("execution with instance groups", EDGE.replace("role: execution", "role: execution\n    instance_groups: [edge]")),
    ("peer to a listener on another port", EDGE.replace("listener: {port: 27199}", "listener: {port: 8443, protocol: ws}")),
]


@pytest.mark.parametrize("text", [t for _, t in PASSING], ids=[n for n, _ in PASSING])
def test_rule_passes(plugins, text):
    topo = parse(text, plugins)
    assert topo.nodes


def test_all_errors_reported_at_once(plugins):
    text = EDGE.replace("role: execution", "role: executor").replace(
        "listener: {port: 27199}", "listener: {port: 0}").replace("via: hop01.example.com", "via: nowhere")
    errors = errors_of(text, plugins)
    assert len(errors) == 3, errors
    assert errors == sorted(errors, key=lambda e: int(e.split(":")[1]))


def test_warning_for_execution_without_control_path(plugins):
    text = EDGE + "  - name: lonely.example.com\n    role: execution\n"
    topo = parse(text, plugins)
    assert [str(w) for w in topo.warnings] == [
        "mesh.yml:18:11: warning: execution node 'lonely.example.com' has no path to any control node: "
        "it will never get work"
    ]


def test_control_nodes_reach_peers_from_control_nodes(plugins):
    """AWX (an unmanaged control node here) dials every node flagged
    peers_from_control_nodes: a node behind such a hop has a path."""
    text = EDGE + ("  - name: edge-hop.example.com\n    role: hop\n    listener: {port: 27199}\n"
                   "    peers_from_control_nodes: true\n"
                   "  - name: behind.example.com\n    role: execution\n    peers: [edge-hop.example.com]\n")
    assert parse(text, plugins).warnings == []
    alone = text.replace("    peers_from_control_nodes: true\n", "")
    assert [w.message for w in parse(alone, plugins).warnings] == [
        "execution node 'behind.example.com' has no path to any control node: it will never get work"]


def test_defaults_merge_and_listener_false(plugins):
    text = EDGE.replace("    peers: [hop01.example.com]\n", "    peers: [hop01.example.com]\n    listener: false\n")
    topo = parse(text, plugins)
    assert topo.node("exec01.example.com").listener is None
    assert topo.node("awx-task").listener.port == 27199


@pytest.mark.parametrize("value,ok", [
    ("exec01.example.com", True), ("10.0.0.1", True), ("::1", True), ("a-b", True),
    ("-bad", False), ("bad_", False), ("300.1.1.1", False), ("", False), ("a" * 64, False),
])
def test_valid_address(value, ok):
    assert valid_address(value) is ok


def test_merge_keys_and_anchors(plugins):
    text = EDGE + (
        "  - &e\n    name: exec02.example.com\n    role: execution\n    peers: [hop01.example.com]\n"
        "  - <<: *e\n    name: exec03.example.com\n"
    )
    topo = parse(text, plugins)
    assert topo.node("exec03.example.com").peers == ["hop01.example.com"]


# -- roles are asked for their attributes, never their names ---------------------------

def _role_plugin(role):
    import types as pytypes

    from meshctl.plugin import hookimpl

    mod = pytypes.ModuleType(f"{role.name}_plugin")

    @hookimpl
    def meshctl_register_roles(register):
        register(role)

    mod.meshctl_register_roles = meshctl_register_roles
    return mod


def _plan_rows(planned):
    from meshctl.core.ops import Change

    return [(p.op.id, p.summary, [c.line for c in p.commands], p.diff) if isinstance(p, Change)
            else (p.op.id, p.reason) for p in planned]


def test_a_third_party_role_that_runs_work_gets_what_execution_gets():
    from meshctl.core.engine import Engine
    from meshctl.plugin import Role
    from meshctl.testing import (
        SEED_NODE,
        SEED_TEXT,
        parse,
        plan_from_facts,
        plugin_manager,
        recorded_facts,
    )

    plugins = plugin_manager(_role_plugin(Role("myexec", runs_work=True, provisionable=True)))
    text = (SEED_TEXT.replace("    role: execution\n", "    role: execution\n    instance_groups: [edge]\n")
            + "registries:\n  - {host: reg.example.com, insecure: true}\n")
    assert text.count("role: execution") == 1
    ours, theirs = parse(text, plugins), parse(text.replace("role: execution", "role: myexec"), plugins)
    assert theirs.node(SEED_NODE).role == "myexec" and theirs.warnings == ours.warnings
    for name in ("debian12-fresh", "debian12-provisioned"):
        want = _plan_rows(plan_from_facts(ours, SEED_NODE, name, plugins=plugins))
        assert _plan_rows(plan_from_facts(theirs, SEED_NODE, name, plugins=plugins)) == want
        assert any(row[0].startswith("registries:") for row in want)
    release = recorded_facts("debian12-fresh").os_release
    configs = [plugins.receptor_config(Engine(t, plugins).context(t.node(SEED_NODE), release))
               for t in (ours, theirs)]
    assert configs[0] == configs[1] and any("work-command" in s for s in configs[0])


def test_a_third_party_role_that_runs_no_work_has_no_instance_groups():
    from meshctl.plugin import Role
    from meshctl.testing import plugin_manager

    plugins = plugin_manager(_role_plugin(Role("relay", runs_work=False, provisionable=True)))
    text = EDGE.replace("    role: hop\n", "    role: relay\n    instance_groups: [edge]\n")
    assert errors_of(text, plugins) == [
        "mesh.yml:12:5: a relay node runs no work: it cannot be in instance groups"]


def test_a_third_party_controller_is_reached_and_dials_like_control():
    from meshctl.plugin import Role
    from meshctl.testing import plugin_manager

    plugins = plugin_manager(_role_plugin(Role("tower", runs_work=False, provisionable=True, controller=True)))
    text = EDGE.replace("role: control", "role: tower") + (
        "  - name: exec02.example.com\n    role: execution\n    peers_from_control_nodes: true\n")
    text = text.replace("    managed: false\n", "    listener: {port: 27199}\n", 1)
    topo = parse(text, plugins)
    assert topo.warnings == []  # exec01 reaches the tower through hop01
    tower = topo.node("awx-task")
    assert [n.name for n in topo.dials(tower)] == ["exec02.example.com"]
    assert [n.name for n in topo.inbound_peers(topo.node("exec02.example.com"))] == ["awx-task"]
