"""Cold and warm provision times of the podman lab mesh, and of the same mesh with
20 execution nodes, measured side by side in one run.

The lab mesh has 4 nodes: awx-task (control, unmanaged), hop01, exec01 and exec02.
The large run adds execution nodes on ctl until there are --exec-nodes of them.
Prints seconds per phase (warm: the median of --repeat runs), the ratio
warm(large)/warm(lab) (target <= 2) and SSH round trips per host on a warm run
(target <= 2). Needs root and podman, like the lab.
Run: python benchmarks/bench_lab.py [--exec-nodes 20] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lab"))

import labkit  # noqa: E402

import lab as lablib  # noqa: E402


def provision(lab: lablib.Lab, name: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r = lab.meshctl("provision", "-o", "json", log_name=f"bench-{name}.log")
    seconds = time.perf_counter() - t0
    result = json.loads(r.stdout)
    bad = [h["node"] for h in result["hosts"] if h["status"] in ("failed", "unreachable")]
    if bad:
        raise labkit.LabError(f"provision failed on {bad}")
    return seconds, result


def measure(extra: int, repeat: int) -> dict:
    lab = lablib.Lab(extra_exec=extra, log=lambda *_: None)
    try:
        lab.up()
        roles = [h.role for h in lab.hosts if h.role]
        out = {"managed": len(roles), "execution": roles.count("execution"), "mesh": len(roles) + 1}  # + awx-task
        out["cold"], result = provision(lab, f"{extra}-cold")
        out["cold_changed"] = sum(h["changed"] for h in result["hosts"])
        # Warm runs are short: the median of several, so one stray scheduling
        # hiccup on a shared machine does not decide the ratio.
        warm = []
        for i in range(repeat):
            seconds, result = provision(lab, f"{extra}-warm{i}")
            warm.append(seconds)
            out["warm_changed"] = max(out.get("warm_changed", 0), sum(h["changed"] for h in result["hosts"]))
            out["warm_round_trips"] = max(out.get("warm_round_trips", 0),
                                          max(h["round_trips"] for h in result["hosts"]))
        out["warm"] = statistics.median(warm)
        out["warm_all"] = warm
        return out
    finally:
        if lab.env:
            lab.down()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--exec-nodes", type=int, default=20, help="execution nodes in the large run")
    ap.add_argument("--repeat", type=int, default=5, help="warm runs per lab (the median counts)")
    args = ap.parse_args()
    base = sum(1 for h in lablib.lab_hosts() if h.role == "execution")
    if args.exec_nodes < base:
        ap.error(f"--exec-nodes must be at least {base} (the lab's own)")
    small = measure(0, args.repeat)
    large = measure(args.exec_nodes - base, args.repeat)
    for name, m in (("lab", small), (f"lab, {large['execution']} exec", large)):
        print(f"{name:>13}: {m['mesh']:>2} mesh nodes ({m['managed']} managed)  cold {m['cold']:6.2f}s "
              f"({m['cold_changed']} changes)  warm {m['warm']:5.2f}s median of "
              f"{' '.join(f'{w:.2f}' for w in m['warm_all'])} "
              f"({m['warm_changed']} changes, {m['warm_round_trips']} round trips/host max)")
    ratio = large["warm"] / small["warm"]
    print(f"warm({large['mesh']} nodes, {large['execution']} execution)/warm({small['mesh']} nodes) = {ratio:.2f}  "
          f"(target <= 2) {'OK' if ratio <= 2 else 'OVER'}")
    rt = max(small["warm_round_trips"], large["warm_round_trips"])
    print(f"warm SSH round trips per host: {rt}  (target <= 2) {'OK' if rt <= 2 else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
