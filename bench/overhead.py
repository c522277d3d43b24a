"""Harness overhead of a sweep, and the old one-process-per-trial way, side by side.

overhead = (sweep wall time - sum of trial windows) / sum of trial windows, for a 20-clock x
3-trial sweep of the tiny model on the simulated A100 with settle 0. The wall time is the whole
`sweepd run` process: interpreter start, torch import, model load, warm-up, CSVs, images.
The old way starts one Python process per trial that imports torch, loads the pipeline and
generates the same images at the same simulated clock.

    python bench/overhead.py [--warmup 0] [--min-window 2.0] [--skip-old]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sweepd import atomic

REQUEST = """
[workload]
model = "tiny"
prompt = "a watercolour fox"
steps = 8
width = 64
height = 64
[gpu]
backend = "sim"
sim_model = "A100"
[frequencies]
mode = "dvfs"
floor_mhz = {floor}
stride = 3          # 1410, 1365, ... 555: 20 clocks
[protocol]
warmup = {warmup}
trials = 3
min_window_s = {window}
settle_s = 0
[images]
mode = "benchmark"
"""

OLD_TRIAL = """
import sys, time
from pathlib import Path
t_start = time.perf_counter()
from sweepd import paths
from sweepd.gpu.sim import SimulatedGpu
from sweepd.request import Workload as Spec
from sweepd.workload.pipeline import Workload
freq, n = int(sys.argv[1]), int(sys.argv[2])
gpu = SimulatedGpu("A100"); gpu.lock_clocks(freq)
w = Workload(Spec(model="tiny", prompt="a watercolour fox", steps=8, width=64, height=64), paths.cache_dir(),
             simulated=True)
e0, t0 = gpu.energy_mj(), time.perf_counter_ns()
for i in range(n):
    with gpu.busy():
        w.generate(i, 1)
t1 = time.perf_counter_ns()
print((t1 - t0) / 1e9, (gpu.energy_mj() - e0) / 1000)
"""


def run_sweep(root: Path, warmup: int, window: float, floor: int = 555) -> dict:
    req = root / "req.toml"
    req.write_text(REQUEST.format(warmup=warmup, window=window, floor=floor))
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sweepd", "run", str(req), "--root", str(root), "--job-id", "bench"],
                   check=True, capture_output=True)
    wall = time.perf_counter() - t0
    trials = atomic.read_csv(root / "results/job_bench/trials.csv")
    windows = sum(float(t["time_s"]) for t in trials)
    return {"wall_s": wall, "windows_s": windows, "overhead": (wall - windows) / windows, "trials": len(trials),
            "clocks": len({t["freq_mhz"] for t in trials}), "images_per_trial": int(trials[0]["images"]),
            "clock_list": sorted({int(t["freq_mhz"]) for t in trials}, reverse=True)}


def run_old(clocks: list[int], trials: int, n: int) -> dict:
    walls, windows = [], []
    t_all = time.perf_counter()
    for f in clocks:
        for _ in range(trials):
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", OLD_TRIAL, str(f), str(n)], check=True,
                                 capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            windows.append(float(out.stdout.split()[0]))
    wall = time.perf_counter() - t_all
    return {"wall_s": wall, "windows_s": sum(windows), "overhead": (wall - sum(windows)) / sum(windows),
            "trials": len(walls), "median_process_s": statistics.median(walls)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--min-window", type=float, default=2.0)
    ap.add_argument("--skip-old", action="store_true")
    ap.add_argument("--floor", type=int, default=555, help="lowest clock, MHz (555: 20 clocks)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        new = run_sweep(Path(tmp), a.warmup, a.min_window, a.floor)
    res = {"sweepd": new, "config": vars(a) | {"json": None}, "date": time.strftime("%Y-%m-%d"),
           "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    print(f"sweepd run: {new['clocks']} clocks x 3 trials, {new['images_per_trial']} images/trial: "
          f"wall {new['wall_s']:.1f} s, trial windows {new['windows_s']:.1f} s, overhead {new['overhead'] * 100:.1f} %")
    if not a.skip_old:
        old = run_old(new["clock_list"], 3, new["images_per_trial"])
        res["old_way"] = old
        res["speedup"] = old["wall_s"] / new["wall_s"]
        print(f"old way (process per trial): wall {old['wall_s']:.1f} s, windows {old['windows_s']:.1f} s, "
              f"overhead {old['overhead'] * 100:.1f} %, median process {old['median_process_s']:.2f} s")
        print(f"speed-up of sweepd over the old way: {res['speedup']:.2f}x")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
