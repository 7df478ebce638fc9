"""meshctl awx plan: what AWX should record, diffed against the state a real AWX
24.6.1 recorded (../shared/awx/24.6.1), without a server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshctl.core.errors import TopologyError
from meshctl.core.topology import parse_topology
from meshctl.plugins.awx.plan import Current, steps, wanted
from meshctl.testing import plugin_manager

RECORDED = Path(__file__).resolve().parents[1].parent / "shared" / "awx" / "24.6.1" / "recorded"
needs_recordings = pytest.mark.skipif(not RECORDED.is_dir(), reason=f"AWX recordings not found at {RECORDED}")

AWX = "awx: {url: https://awx.example.com, token_env: AWX_TOKEN}\n"
# The mesh AWX recorded after calls 013-017: hop01 and exec01 dialled by the control
# node, exec02 and exec03 peered to hop01; exec03 listens too.
MESH = AWX + """\
mesh: edge
nodes:
  - {name: awx-task, role: control, managed: false, address: awx-task}
  - {name: hop01.ansible.internal, role: hop, address: hop01.ansible.internal, listener: {port: 27199},
     peers_from_control_nodes: true}
  - {name: exec01.ansible.internal, role: execution, address: exec01.ansible.internal,
     listener: {port: 27199}, peers_from_control_nodes: true}
  - {name: exec02.ansible.internal, role: execution, address: exec02.ansible.internal, listener: false,
     peers: [hop01.ansible.internal]}
  - {name: exec03.ansible.internal, role: execution, address: exec03.ansible.internal,
     listener: {port: 27199}, peers: [hop01.ansible.internal]}
"""


def body(name: str) -> dict:
    return json.loads((RECORDED / name).read_text())["response_body"]


def recorded_state() -> Current:
    """AWX after call 062: the instance details and the receptor addresses AWX answered."""
    instances = [body(f) for f in ("058-instance-control-detail-after-create.json", "059-instance-hop01-detail.json",
                                   "060-instance-exec01-detail.json", "061-instance-exec02-detail.json",
                                   "062-instance-exec03-detail.json")]
    ids = {i["id"] for i in instances}
    addresses = [a for a in body("049-receptor-addresses-all.json")["results"] if a["instance"] in ids]
    groups = {g["name"]: g for g in body("010-instance-groups-initial.json")["results"]}
    return Current({i["hostname"]: i for i in instances}, addresses, groups, {})


def topo(text: str = MESH):
    return parse_topology(text, "mesh.yml", plugin_manager())


@pytest.fixture(autouse=True)
def _token(monkeypatch):
    monkeypatch.setenv("AWX_TOKEN", "t0ken")


@needs_recordings
def test_the_recorded_mesh_needs_no_change():
    wants, notes = wanted(topo())
    assert [w.hostname for w in wants] == ["hop01.ansible.internal", "exec01.ansible.internal",
                                           "exec02.ansible.internal", "exec03.ansible.internal"]
    todo, refused = steps(wants, recorded_state())
    assert (todo, refused) == ([], [])
    assert all(n.severity == "warning" for n in notes)


@needs_recordings
def test_drift_is_written_back_as_awx_takes_it():
    text = MESH.replace("peers: [hop01.ansible.internal]}\n  - {name: exec03",
                        "peers: [exec03.ansible.internal]}\n  - {name: exec03")
    text = text.replace("listener: {port: 27199}, peers: [hop01.ansible.internal]}",
                        "listener: {port: 27199}, peers: [hop01.ansible.internal],\n     awx: {enabled: false}}")
    todo, refused = steps(wanted(topo(text))[0], recorded_state())
    assert refused == []
    assert [(s.kind, s.target, s.body) for s in todo] == [
        ("update", "exec03.ansible.internal", {"enabled": False}),
        ("peers", "exec02.ansible.internal", {"peers": ("exec03.ansible.internal",)}),
    ]


@needs_recordings
def test_what_awx_cannot_change_is_refused_with_the_reason():
    text = MESH.replace("role: hop, address: hop01.ansible.internal, listener: {port: 27199}",
                        "role: hop, address: hop01.ansible.internal, listener: {port: 27200}")
    text = text.replace("name: exec03.ansible.internal, role: execution", "name: exec03.ansible.internal, role: hop")
    wants = wanted(topo(text))[0]
    todo, refused = steps(wants, recorded_state())
    why = {w.hostname: (field, reason) for w, field, reason in refused}
    assert why["hop01.ansible.internal"][0] == "listener" and "cannot change it" in why["hop01.ansible.internal"][1]
    assert why["exec03.ansible.internal"][0] == "role" and "cannot change node types" in why["exec03.ansible.internal"][1]


@needs_recordings
def test_a_case_variant_and_awx_managed_records_are_left_alone():
    state = recorded_state()
    state.instances["EXEC05.ansible.internal"] = dict(state.instances["exec03.ansible.internal"],
                                                      hostname="EXEC05.ansible.internal", id=99)
    text = MESH + ("  - {name: exec05.ansible.internal, role: execution, address: exec05.ansible.internal,\n"
                   "     peers: [hop01.ansible.internal]}\n"
                   "  - {name: awx-task2, role: execution, address: awx-task2, peers: [hop01.ansible.internal]}\n")
    state.instances["awx-task2"] = dict(state.instances["awx-task"], hostname="awx-task2", node_type="execution")
    todo, refused = steps(wanted(topo(text))[0], state)
    reasons = {w.hostname: r for w, _, r in refused}
    assert "differs only in case" in reasons["exec05.ansible.internal"]
    assert "AWX manages this instance itself" in reasons["awx-task2"]
    assert not [s for s in todo if s.target in reasons]


def test_an_empty_awx_gets_groups_then_nodes_then_peers_then_members():
    text = MESH.replace("peers: [hop01.ansible.internal]}\n  - {name: exec03",
                        "peers: [hop01.ansible.internal], instance_groups: [edge]}\n  - {name: exec03")
    empty = Current({}, [], {}, {})
    todo, refused = steps(wanted(topo(text))[0], empty)
    assert refused == []
    kinds = [s.kind for s in todo]
    assert kinds == ["group", "create", "create", "create", "create", "peers", "peers", "associate"]
    assert todo[0].body == {"name": "edge", "policy_instance_percentage": 0, "policy_instance_minimum": 0}
    # Only fields the recordings show AWX taking at create.
    assert todo[1].body == {"hostname": "hop01.ansible.internal", "node_type": "hop", "listener_port": 27199,
                            "peers_from_control_nodes": True, "enabled": True}


def test_what_awx_cannot_record_is_found_at_validate():
    text = MESH.replace("listener: false,\n     peers: [hop01.ansible.internal]}",
                        "listener: false,\n     peers: [hop01.ansible.internal], peers_from_control_nodes: true}")
    with pytest.raises(TopologyError) as err:
        topo(text)
    assert "mesh.yml:10:65: exec02.ansible.internal: peers_from_control_nodes needs a listener" in err.value.render()


def test_awx_section_needs_credentials_and_never_holds_both(monkeypatch):
    with pytest.raises(TopologyError) as err:
        topo(MESH.replace("token_env: AWX_TOKEN", "username: admin"))
    assert "no credentials" in err.value.render()
    with pytest.raises(TopologyError) as err:
        topo(MESH.replace("token_env: AWX_TOKEN", "token_env: AWX_TOKEN, username: admin, password_env: P"))
    assert "not both" in err.value.render()
    monkeypatch.delenv("AWX_TOKEN")
    with pytest.raises(TopologyError) as err:
        topo()
    assert "mesh.yml:1:" in err.value.render() and "environment variable AWX_TOKEN is not set" in err.value.render()


def test_an_awx_off_kubernetes_is_told_how_to_register_nodes():
    from meshctl.plugins.awx.client import AwxError
    from meshctl.plugins.awx.sync import refusal

    # AWX's answer when IS_K8S is false (serializers.py; NOTES.md, setup section).
    exc = AwxError("POST", "/api/v2/instances/", 400, {"__all__": ["Can only create instances on Kubernetes or OpenShift."]})
    message = str(refusal(topo(), None, exc))
    assert "does not run on Kubernetes or OpenShift" in message and "awx-manage provision_instance" in message
