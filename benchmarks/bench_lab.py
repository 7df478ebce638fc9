"""Cold and warm provision times of the podman lab, with and without 20 more
execution nodes, measured side by side in one run.

Prints seconds per phase, the ratio warm(large)/warm(small) (target <= 2) and SSH
round trips per host on a warm run (target <= 2). Needs root and podman, like the lab.
Run: python benchmarks/bench_lab.py [--extra 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "lab"))

import labkit  # noqa: E402

import lab as lablib  # noqa: E402


def measure(extra: int) -> dict:
    lab = lablib.Lab(extra_exec=extra, log=lambda *_: None)
    try:
        lab.up()
        out = {"managed": sum(1 for h in lab.hosts if h.role)}
        for phase in ("cold", "warm"):
            t0 = time.perf_counter()
            r = lab.meshctl("provision", "-o", "json", log_name=f"bench-{extra}-{phase}.log")
            out[phase] = time.perf_counter() - t0
            result = json.loads(r.stdout)
            bad = [h["node"] for h in result["hosts"] if h["status"] in ("failed", "unreachable")]
            if bad:
                raise labkit.LabError(f"provision failed on {bad}")
            out[f"{phase}_changed"] = sum(h["changed"] for h in result["hosts"])
            out[f"{phase}_round_trips"] = max(h["round_trips"] for h in result["hosts"])
        return out
    finally:
        if lab.env:
            lab.down()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--extra", type=int, default=20, help="extra execution nodes for the large run")
    args = ap.parse_args()
    small = measure(0)
    large = measure(args.extra)
    for name, m in (("lab", small), (f"lab+{args.extra}", large)):
        print(f"{name:>8}: {m['managed']:>2} managed nodes  cold {m['cold']:6.2f}s ({m['cold_changed']} changes)  "
              f"warm {m['warm']:5.2f}s ({m['warm_changed']} changes, {m['warm_round_trips']} round trips/host max)")
    ratio = large["warm"] / small["warm"]
    print(f"warm({large['managed']} nodes)/warm({small['managed']} nodes) = {ratio:.2f}  (target <= 2) "
          f"{'OK' if ratio <= 2 else 'OVER'}")
    rt = max(small["warm_round_trips"], large["warm_round_trips"])
    print(f"warm SSH round trips per host: {rt}  (target <= 2) {'OK' if rt <= 2 else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
