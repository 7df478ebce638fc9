"""meshctl remove: a preview first, then nothing meshctl created is left
(compared with a listing taken before provisioning), and a second run is a no-op."""

from __future__ import annotations

import pytest
from labkit import leftovers

pytestmark = pytest.mark.integration

def mesh_for(minilab, tmp_path):
    return minilab.write_mesh(tmp_path / "mesh.yml", f"""\
mesh: removal
defaults:
  ssh: {{user: root, key: {minilab.key}}}
  listener: {{port: 27199}}
receptor: {{start: false, install: none}}
python: {{wheelhouse: {minilab.wheels}}}
work_signing: {{generate: true}}
nodes:
  - name: awx-task
    role: control
    managed: false
    address: awx.example.com
  - name: gone01
    role: execution
    address: {minilab.ip('ops')}
    peers: [awx-task]
""")


def test_remove_leaves_nothing_meshctl_created(minilab, tmp_path):
    kh = ("--known-hosts", str(minilab.known_hosts))
    minilab.exec("ops", "rm", "-rf", "/etc/receptor", "/opt/meshctl")  # other tests' leftovers on this host
    before = set(minilab.exec("ops", "sh", "-c", leftovers.LISTING).stdout.split())
    mesh = mesh_for(minilab, tmp_path)
    minilab.provision_json("provision", "-f", str(mesh), *kh)
    preview = minilab.meshctl("remove", "gone01", "-f", str(mesh), *kh, "--purge-user", check_rc=2)
    assert "add --yes" in preview.stderr and "gone01:" in preview.stdout  # shown, not done
    assert minilab.exec("ops", "test", "-d", "/etc/receptor", check=False).returncode == 0
    done = minilab.provision_json("remove", "gone01", "-f", str(mesh), *kh, "--purge-user", "--yes")
    assert done["hosts"][0]["status"] == "changed", done
    after = set(minilab.exec("ops", "sh", "-c", leftovers.LISTING).stdout.split())
    unowned = minilab.exec("ops", "sh", "-c", leftovers.unowned_command(after - before)).stdout.split()
    assert leftovers.meshctl_leftovers(unowned) == []  # podman etc. stay installed
    assert minilab.exec("ops", "id", "awx", check=False).returncode != 0
    assert minilab.exec("ops", "grep", "-q", "^awx:", "/etc/subuid", check=False).returncode != 0
    again = minilab.provision_json("remove", "gone01", "-f", str(mesh), *kh, "--purge-user", "--yes")
    assert "hosts" not in again or all(h["changed"] == 0 for h in again["hosts"]), again
