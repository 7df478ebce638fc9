"""A backend that signs the node's CSR wrong stops the host's apply mid-way: the earlier
round trip is rolled back and the host's error names the backend and its plugin. The
apply script runs here with sh, as on a host."""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import subprocess
from pathlib import Path

import pytest
from test_cert_backend_checks import WHO, _cert_change, csr

from meshctl.core import ops as O
from meshctl.core.applier import ApplyRunner
from meshctl.core.results import HostResult

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the apply script keeps its state in /var/lib/meshctl")


class LocalSession:
    """Runs scripts with the local sh, as Session runs them on a host."""

    round_trips = 0

    def run(self, script, on_line=None, timeout=None, **_):
        self.round_trips += 1
        proc = subprocess.run(["sh", "-s"], input=script, capture_output=True, text=True, timeout=timeout)
        for line in proc.stdout.splitlines():
            if on_line is not None:
                on_line(line)
        return proc.returncode, proc.stdout

    def upload(self, files):
        raise AssertionError("nothing to upload")


class Quiet:
    def host_phase(self, *_):
        pass

    def step(self, *_):
        pass


@pytest.mark.parametrize("fault", ["other-ca", "raise-sign_csr"])
def test_a_wrong_signature_rolls_the_host_back(tmp_path, fault):
    me, mine = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    target = tmp_path / "receptor.conf"
    target.write_text("old\n")
    first = O.File(path=str(target), content="new\n", owner=me, group=mine, backup=True)
    cert = _cert_change(fault)
    node_csr = csr("exec01.example.com", ["exec01.example.com"]).decode()
    # The node's side of the exchange: print a CSR (as node_csr_script does).
    asks = O.Command(command="print the CSR", creates="/nonexistent")
    changes = [O.Change(first, "update", first.write_commands()),
               O.Change(asks, "csr", [O.Cmd(f"printf '%s\\n' {shlex.quote(node_csr)}")], exchange=cert.exchange)]
    result = HostResult(node="exec01.example.com", changes=changes, status="changed")
    ApplyRunner(LocalSession(), result.node, result, Quiet(), 60).run()
    assert result.status == "failed"
    assert result.error.startswith(f"step 2/2 '{asks}': {WHO}"), result.error
    assert "internal error" not in result.error
    assert target.read_text() == "old\n"  # the first round trip was undone
    assert not any(Path("/var/lib/meshctl/rollback").glob("*"))
