"""The networks behave like the situation meshctl exists for, proven from inside
the lab (the machine itself can reach every bridge, so it proves nothing)."""

from __future__ import annotations

from conftest import INV, connect

PROBE = "python3 -c \"import socket,sys; socket.create_connection((sys.argv[1], 22), 1.5)\" {}"


def reachable(src: str, dst_ip: str) -> bool:
    return connect(src).run(PROBE.format(dst_ip)).rc == 0


def test_target_only_reachable_from_the_isolated_network():
    target = INV["target"]["address"]
    assert reachable("exec01", target)  # on ctl + isolated
    assert not reachable("hop01", target)  # ctl + edge
    assert not reachable("exec02", target)  # edge only


def test_exec02_hidden_behind_hop01():
    exec02 = INV["hosts"]["exec02"]["networks"]["edge"]
    assert reachable("hop01", exec02)
    assert not reachable("exec01", exec02)
    assert not reachable("target01", exec02)


def test_exec02_is_reached_through_its_jump_host():
    # testinfra used ssh_config's ProxyJump: sshd on exec02 logged hop01's edge address.
    log = connect("exec02").check_output("journalctl _COMM=sshd --no-pager -o cat")  # ssh or sshd unit
    hop_edge = INV["hosts"]["hop01"]["networks"]["edge"]
    assert f"from {hop_edge} " in log
