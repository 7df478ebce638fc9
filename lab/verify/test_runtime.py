"""Receptor running: only with a receptor binary (lab.py --receptor-binary PATH),
which cannot be downloaded on machines without GitHub access."""

from __future__ import annotations

import json

import pytest
from conftest import INV, MESH_HOSTS, connect

SOCK = "/var/run/receptor/receptor.sock"
NO_BINARY = ("no receptor binary was given (lab.py --receptor-binary PATH or MESHLAB_RECEPTOR_BINARY): "
             "receptor is laid down but not started, so the running mesh cannot be checked")


@pytest.fixture(autouse=True)
def _needs_binary():
    if not INV.get("receptor_binary"):
        pytest.skip(NO_BINARY)


def test_receptor_active_on_every_node(host):
    assert host.service("receptor").is_running


def test_mesh_formed_routes_to_every_node():
    status = json.loads(connect("exec01").check_output(
        f"runuser -u awx -- /opt/meshctl/venv/bin/receptorctl --socket {SOCK} status --json"))
    routes = set(status.get("RoutingTable") or {})
    assert set(MESH_HOSTS) - {"exec01"} <= routes, routes
