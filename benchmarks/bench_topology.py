"""Validate + plan a generated 5,000-node topology (no SSH; recorded facts).

Targets on a 2-core machine: <= 2 s for validate + plan, <= 300 MB peak RSS.
Run: python benchmarks/bench_topology.py [--nodes N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from meshctl.core.engine import Engine, build_operations, needed_facts, plan_operations
from meshctl.core.plugins import create_plugin_manager
from meshctl.core.topology import load_topology
from meshctl.core.types import OSRelease
from meshctl.plugins.cert_backends.backends import BackendContext, SelfSigned

HERE = Path(__file__).resolve().parent
# Read as a file, not through meshctl.testing: importing pytest here would grow the
# heap and slow the garbage collector through the whole measurement.
FACTS = next(p for p in (HERE.parent / "src" / "meshctl" / "testing" / "data" / "facts" / "debian12-fresh.json",
                         HERE.parent / "tests" / "data" / "facts" / "debian12-fresh.json") if p.exists())


def generate(n: int) -> str:
    hops = max(1, n // 100)
    lines = [
        "mesh: bench",
        "defaults:",
        "  ssh: {user: cloud-user, key: ~/.ssh/id_ed25519, become: true}",
        "  listener: {port: 27199, protocol: tcp}",
        "nodes:",
        "  - name: awx-task",
        "    role: control",
        "    managed: false",
        "    address: awx.example.com",
    ]
    for h in range(hops):
        lines += [f"  - name: hop{h:03d}.example.com", "    role: hop", "    peers: [awx-task]",
                  f"    ssh: {{host: 10.1.{h // 250}.{h % 250 + 1}}}"]
    for i in range(n - hops - 1):
        hop = f"hop{i % hops:03d}.example.com"
        lines += [f"  - name: exec{i:05d}.example.com", "    role: execution", f"    peers: [{hop}]",
                  f"    ssh: {{host: 10.2.{i // 250}.{i % 250 + 1}, via: {hop}}}",
                  "    instance_groups: [bench]"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=5000)
    args = ap.parse_args()
    recorded = json.loads(FACTS.read_text())
    # The mesh CA is made once per mesh; keep it (and its cost) out of the measurement.
    state = tempfile.mkdtemp(prefix="bench-state-")
    os.environ["MESHCTL_STATE_DIR"] = state
    release = OSRelease(**recorded["os_release"])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mesh.yml"
        path.write_text(generate(args.nodes))
        size = path.stat().st_size
        SelfSigned(None, BackendContext("bench", Path(state) / "bench", Path(tmp))).current()
        # So is the generated work-signing pair (an RSA key whose making takes 0.3-2 s at
        # random): a two-node mesh of the same name makes it before the clock starts.
        small = Path(tmp) / "small.yml"
        small.write_text(generate(3))
        warm_plugins = create_plugin_manager(autoload=False)
        warm = load_topology(small, warm_plugins)
        build_operations(warm_plugins, Engine(warm, warm_plugins).context(warm.managed_nodes[-1], release))
        t0 = time.perf_counter()
        plugins = create_plugin_manager(autoload=False)
        topo = load_topology(path, plugins)
        t1 = time.perf_counter()
        engine = Engine(topo, plugins)
        changes = ops_total = 0
        for node in topo.managed_nodes:
            ctx = engine.context(node, release)
            ops = build_operations(plugins, ctx)
            manager = ctx.os_family.package_manager
            facts = {}
            for f in needed_facts(ops, manager):  # facts the recording lacks: as on a fresh host
                facts[f.key] = recorded["facts"].get(f.key) or _fresh(f.kind)
            planned = plan_operations(ops, facts, manager)
            ops_total += len(ops)
            changes += sum(1 for p in planned if p.__class__.__name__ == "Change")
        t2 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = t2 - t0
    print(f"topology: {len(topo.nodes)} nodes, {size / 1e6:.1f} MB of YAML")
    print(f"validate: {t1 - t0:.3f} s")
    print(f"plan:     {t2 - t1:.3f} s ({len(topo.managed_nodes)} nodes, {ops_total} operations, {changes} changes)")
    print(f"total:    {total:.3f} s   (target <= 2.0 s)  {'OK' if total <= 2.0 else 'OVER'}")
    print(f"peak RSS: {rss_mb:.0f} MB  (target <= 300 MB) {'OK' if rss_mb <= 300 else 'OVER'}")
    return 0


def _fresh(kind: str) -> dict:
    return {
        "file": {"kind": "absent"},
        "pubkey": {"state": "absent"},
        "passwd": {"exists": False},
        "group": {"exists": False},
        "service": {"enabled": "", "active": "inactive"},
        "rc": {"rc": 1},
        "package_apt": {"installed": False, "version": ""},
        "package_dnf": {"installed": False, "version": ""},
    }.get(kind, {})


if __name__ == "__main__":
    sys.exit(main())
