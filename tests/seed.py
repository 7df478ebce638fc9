"""The one seed topology unit tests share, and the way to derive a test's variant.

``EDGE`` is the mesh of ``meshctl.testing.SEED_TEXT`` (awx-task, unmanaged control;
hop01 peering to it; exec01 behind hop01), written the way an operator would: ssh and
listener defaults, a jump host. Tests that need the mesh the recorded facts were
gathered with use ``SEED_TEXT`` itself.

A test that needs something else says so at the call, so a reader sees there what is
special about its mesh::

    edge(sections="firewall: {zone: internal}\\n")            # a top-level section
    edge(nodes="  - name: exec02.example.com\\n    ...")        # more nodes
    edge({"role: execution": "role: executor"})               # an edit of the seed

Line numbers of ``EDGE`` (for assertions that name ``mesh.yml:LINE:COL``): 1 ``mesh``,
2-4 ``defaults``, 5 ``nodes:``, 6-9 awx-task, 10-13 hop01, 14-17 exec01.
"""

from __future__ import annotations

EDGE = """\
mesh: edge
defaults:
  ssh: {user: cloud-user, port: 22, key: ~/.ssh/id_ed25519, become: true}
  listener: {port: 27199, protocol: tcp}
nodes:
  - name: awx-task
    role: control
    managed: false
    address: awx.example.com
  - name: hop01.example.com
    role: hop
    listener: {port: 27199}
    peers: [awx-task]
  - name: exec01.example.com
    role: execution
    peers: [hop01.example.com]
    ssh: {host: 192.0.2.10, via: hop01.example.com}
"""


def edge(replace: dict[str, str] | None = None, *, sections: str = "", nodes: str = "") -> str:
    """``EDGE`` with a test's changes, applied in this order:

    - ``replace``: ``{old: new}`` text edits; each ``old`` must occur exactly once, so
      a change to the seed fails loudly instead of leaving a variant silently unchanged;
    - ``sections``: top-level YAML (whole lines) put right after the ``mesh:`` line;
    - ``nodes``: node entries (``  - name: ...`` lines) appended to ``nodes:``.
    """
    text = EDGE
    for old, new in (replace or {}).items():
        if text.count(old) != 1:
            raise ValueError(f"seed edit: {old!r} occurs {text.count(old)} times in the seed, not once")
        text = text.replace(old, new)
    head, rest = text.split("\n", 1)
    return f"{head}\n{sections}{rest}{nodes}"
