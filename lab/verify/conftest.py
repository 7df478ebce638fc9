"""testinfra harness for the lab: hosts come from the inventory lab.py writes
(MESHLAB_INVENTORY) and are reached with its ssh_config, hidden hosts through
their ProxyJump, exactly as a user would."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import testinfra
import yaml

INVENTORY_ENV = "MESHLAB_INVENTORY"


def _inventory() -> dict:
    path = os.environ.get(INVENTORY_ENV)
    if not path:
        raise pytest.UsageError(f"{INVENTORY_ENV} is not set: run the lab (python lab/lab.py), not pytest directly")
    return json.loads(Path(path).read_text())


INV = _inventory()
MESH = yaml.safe_load(Path(INV["mesh_yml"]).read_text())
NODES = {n["name"]: n for n in MESH["nodes"]}
MESH_HOSTS = [name for name, h in INV["hosts"].items() if h["mesh"]]


def connect(name: str):
    return testinfra.get_host(f"ssh://{name}", ssh_config=INV["ssh_config"])


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "mesh_host" in metafunc.fixturenames:
        metafunc.parametrize("mesh_host", MESH_HOSTS, ids=MESH_HOSTS)
    for fixture, role in (("execution_host", "execution"), ("hop_host", "hop"), ("control_host", "control")):
        if fixture in metafunc.fixturenames:
            names = [n for n in MESH_HOSTS if INV["hosts"][n]["role"] == role]
            metafunc.parametrize(fixture, names, ids=names)


@pytest.fixture
def host(mesh_host):
    return connect(mesh_host)


@pytest.fixture
def xhost(execution_host):
    """An execution node, connected."""
    return connect(execution_host)


@pytest.fixture
def hhost(hop_host):
    """A hop node, connected."""
    return connect(hop_host)


@pytest.fixture
def chost(control_host):
    """A control node meshctl provisioned, connected."""
    return connect(control_host)


@pytest.fixture
def node(mesh_host) -> dict:
    return NODES[mesh_host]


@pytest.fixture(scope="session")
def inventory() -> dict:
    return INV


@pytest.fixture(scope="session")
def mesh() -> dict:
    return MESH
