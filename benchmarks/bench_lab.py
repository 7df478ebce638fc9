"""Cold and warm provision times of the podman lab mesh, and of the same mesh with
20 execution nodes, measured side by side in one run.

The lab mesh has 4 nodes, all managed: awx01 (control), hop01, exec01 and exec02.
The large run adds execution nodes on ctl until there are --exec-nodes of them.
Prints seconds per phase (warm: the median of --repeat runs), the ratio
warm(large)/warm(lab) (target <= 2) and SSH round trips per host on a warm run
(target <= 2). The ratio's two sides are measured alternately on the large lab's
hosts (the lab mesh is its first four nodes), so a machine that is slower for a
while slows both. Needs root and podman, like the lab.
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

#: Seconds between runs: the hosts finish closing the last run's SSH sessions
#: (logind, systemd) before the next run is timed, so no run pays for another.
SETTLE = 3.0


def provision(lab: lablib.Lab, name: str, mesh: Path | None = None) -> tuple[float, dict]:
    t0 = time.perf_counter()
    r = lab.meshctl("provision", "-o", "json", log_name=f"bench-{name}.log", mesh=mesh)
    seconds = time.perf_counter() - t0
    result = json.loads(r.stdout)
    bad = [h["node"] for h in result["hosts"] if h["status"] in ("failed", "unreachable")]
    if bad:
        raise labkit.LabError(f"provision failed on {bad}")
    return seconds, result


def _warm(out: dict, prefix: str, result: dict) -> None:
    out[f"{prefix}changed"] = max(out.get(f"{prefix}changed", 0), sum(h["changed"] for h in result["hosts"]))
    out[f"{prefix}round_trips"] = max(out.get(f"{prefix}round_trips", 0),
                                      max(h["round_trips"] for h in result["hosts"]))


def measure(extra: int, repeat: int) -> dict:
    """Cold and warm runs of the lab mesh plus ``extra`` execution nodes. With extra
    nodes, warm runs of the lab's own 4-node mesh on the same hosts alternate with
    the large ones: the ratio then compares runs made side by side, not minutes
    apart on a shared machine whose speed drifts."""
    lab = lablib.Lab(extra_exec=extra, log=lambda *_: None)
    try:
        lab.up()
        roles = [h.role for h in lab.hosts if h.role]
        out = {"managed": len(roles), "execution": roles.count("execution"), "mesh": len(roles)}
        out["cold"], result = provision(lab, f"{extra}-cold")
        out["cold_changed"] = sum(h["changed"] for h in result["hosts"])
        small_mesh = None
        if extra:
            small_mesh = lab.work / "mesh-lab.yml"
            small_mesh.write_text(lab.mesh_yml(only={h.name for h in lablib.lab_hosts()}))
        warm, side = [], []
        for i in range(repeat):
            if small_mesh is not None:
                time.sleep(SETTLE)
                seconds, result = provision(lab, f"{extra}-warm{i}-lab-mesh", mesh=small_mesh)
                side.append(seconds)
                _warm(out, "side_", result)
            time.sleep(SETTLE)
            seconds, result = provision(lab, f"{extra}-warm{i}")
            warm.append(seconds)
            _warm(out, "warm_", result)
        # Medians: one stray scheduling hiccup must not decide a ratio.
        out["warm"], out["warm_all"] = statistics.median(warm), warm
        if side:
            out["side"], out["side_all"] = statistics.median(side), side
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

    def runs(xs: list[float]) -> str:
        return " ".join(f"{x:.2f}" for x in xs)

    for name, m in (("lab", small), (f"lab, {large['execution']} exec", large)):
        print(f"{name:>13}: {m['mesh']:>2} mesh nodes ({m['managed']} managed)  cold {m['cold']:6.2f}s "
              f"({m['cold_changed']} changes)  warm {m['warm']:5.2f}s median of {runs(m['warm_all'])} "
              f"({m['warm_changed']} changes, {m['warm_round_trips']} round trips/host max)")
    print(f"{'side by side':>13}: the lab's {small['mesh']}-node mesh on the large lab's hosts, alternating with "
          f"it: warm {large['side']:5.2f}s median of {runs(large['side_all'])} ({large['side_changed']} changes)")
    ratio = large["warm"] / large["side"]
    print(f"warm({large['mesh']} nodes, {large['execution']} execution)/warm({small['mesh']} nodes), side by side "
          f"= {ratio:.2f}  (target <= 2) {'OK' if ratio <= 2 else 'OVER'}")
    print(f"  (against the separate small lab's median, minutes earlier: {large['warm'] / small['warm']:.2f})")
    rt = max(small["warm_round_trips"], large["warm_round_trips"], large["side_round_trips"])
    rt = max(small["warm_round_trips"], large["warm_round_trips"])
    print(f"warm SSH round trips per host: {rt}  (target <= 2) {'OK' if rt <= 2 else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
