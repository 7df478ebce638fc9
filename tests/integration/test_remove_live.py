"""meshctl remove: a preview first, then nothing meshctl created is left
(compared with a listing taken before provisioning), and a second run is a no-op."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

# Where meshctl writes; package-owned files (podman, ...) are filtered out with dpkg.
PATHS = "/etc /opt /usr/bin /usr/lib/systemd /var/lib/meshctl /var/lib/systemd/linger /var/log/receptor /home"
LISTING = (f"find {PATHS} -xdev 2>/dev/null | grep -v -e '^/etc/ssh/' -e '^/etc/ld.so.cache' -e '^/etc/alternatives' "
           "| sort")


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


def owned_by_packages(minilab, paths: set[str]) -> set[str]:
    if not paths:
        return set()
    # Debian 12 merged /usr, but dpkg records many paths under /lib: try both spellings.
    script = ("for p in \"$@\"; do if dpkg -S \"$p\" >/dev/null 2>&1 || dpkg -S \"${p#/usr}\" >/dev/null 2>&1; "
              "then echo \"$p\"; "
              # Enablement links made by the packages' maintainer scripts point at package units.
              "elif [ -L \"$p\" ] && { t=$(readlink -f \"$p\"); dpkg -S \"$t\" >/dev/null 2>&1 || "
              "dpkg -S \"${t#/usr}\" >/dev/null 2>&1; }; then echo \"$p\"; fi; done")
    out = minilab.exec("ops", "sh", "-c", script, "sh", *sorted(paths)).stdout
    return set(out.split())


# Made by the OS, not by meshctl: podman's postinst network config, the directories
# holding enablement links, shadow's backup copies from usermod.
NOT_OURS = {"/etc/networks", "/etc/cni", "/etc/cni/net.d", "/etc/cni/net.d/87-podman-bridge.conflist", "/etc/subuid-",
            "/etc/subgid-", "/etc/systemd/system/default.target.wants", "/etc/systemd/system/sockets.target.wants",
            "/etc/systemd/user/sockets.target.wants", "/etc/systemd/system/timers.target.wants"}


def test_remove_leaves_nothing_meshctl_created(minilab, tmp_path):
    kh = ("--known-hosts", str(minilab.known_hosts))
    minilab.exec("ops", "rm", "-rf", "/etc/receptor", "/opt/meshctl")  # other tests' leftovers on this host
    before = set(minilab.exec("ops", "sh", "-c", LISTING).stdout.split())
    mesh = mesh_for(minilab, tmp_path)
    minilab.provision_json("provision", "-f", str(mesh), *kh)
    preview = minilab.meshctl("remove", "gone01", "-f", str(mesh), *kh, "--purge-user", check_rc=2)
    assert "add --yes" in preview.stderr and "gone01:" in preview.stdout  # shown, not done
    assert minilab.exec("ops", "test", "-d", "/etc/receptor", check=False).returncode == 0
    done = minilab.provision_json("remove", "gone01", "-f", str(mesh), *kh, "--purge-user", "--yes")
    assert done["hosts"][0]["status"] == "changed", done
    after = set(minilab.exec("ops", "sh", "-c", LISTING).stdout.split())
    leftover = after - before
    leftover -= owned_by_packages(minilab, leftover)  # podman etc. stay installed
    leftover -= NOT_OURS
    assert leftover == set(), sorted(leftover)
    assert minilab.exec("ops", "id", "awx", check=False).returncode != 0
    assert minilab.exec("ops", "grep", "-q", "^awx:", "/etc/subuid", check=False).returncode != 0
    again = minilab.provision_json("remove", "gone01", "-f", str(mesh), *kh, "--purge-user", "--yes")
    assert "hosts" not in again or all(h["changed"] == 0 for h in again["hosts"]), again
