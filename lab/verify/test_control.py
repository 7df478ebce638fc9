"""The control node meshctl provisions (awx01), set up the way awx-operator sets up
AWX's own receptor: it signs work with the key execution nodes verify."""

from __future__ import annotations

import yaml
from conftest import INV, connect

VENV = "/opt/meshctl/venv"
CONF = "/etc/receptor/receptor.conf"


def test_control_receptor_conf_signs_work_with_awx_operators_names(chost):
    conf = yaml.safe_load(chost.file(CONF).content_string)
    kinds = {next(iter(s)): s[next(iter(s))] for s in conf}
    assert kinds["work-signing"] == {"privatekey": "/etc/receptor/work_private_key.pem", "tokenexpiration": "1m"}
    assert kinds["tls-client"]["name"] == "tlsclient"
    assert all(s[k]["tls"] == "tlsclient" for s in conf for k in s if k.endswith("-peer"))
    assert "work-command" not in kinds and "work-verification" not in kinds


def test_signing_key_is_the_private_half_of_what_execution_nodes_verify(chost):
    # Both halves checked by each host's own openssl, not by meshctl.
    mine = chost.check_output("openssl pkey -in /etc/receptor/work_private_key.pem -pubout")
    for name, h in INV["hosts"].items():
        if h["role"] == "execution":
            theirs = connect(name).check_output("cat /etc/receptor/work_public_key.pem")
            assert mine.strip() == theirs.strip(), name


def test_control_node_has_ansible_runner_and_receptorctl_as_awx(chost):
    for cmd in ("ansible-runner --version", "receptorctl --help"):
        assert chost.run(f"runuser -u awx -- {VENV}/bin/{cmd}").rc == 0, cmd
    assert not chost.package("podman").is_installed
