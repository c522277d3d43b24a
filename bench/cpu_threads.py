"""The demo's wall time idle and under load, with torch's CPU threads as sweepd sizes them and as torch would.

Issue #23, item 6: on a 2-core machine busy with other work, torch's default threads (one per core) spin
against the load and the quickstart demo crawled (10-12x per image). sweepd now gives the tiny model one
thread (SWEEPD_CPU_THREADS overrides). The load is made the way ../shared/checks/lib/busy.sh makes it: one
shell busy-loop per core. Each condition runs `sweepd demo` N times in a fresh root; medians and their ratio
to the idle median are printed side by side.

    python bench/cpu_threads.py [--runs 3] [--request FILE] [--only K] [--json out.json]

``--request`` runs `sweepd run FILE` instead of the demo (a smaller request for the smoke test).
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

CONDITIONS = [  # name, load processes, SWEEPD_CPU_THREADS (None: sweepd's own choice)
    ("idle, sweepd's threads", 0, None),
    ("loaded, sweepd's threads", None, None),
    ("loaded, torch's default threads", None, "default"),
]


def busy(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen(["bash", "-c", "while :; do :; done"]) for _ in range(n)]


def one_run(request: str | None, threads: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != "SWEEPD_CPU_THREADS"}
    if threads == "default":
        env["SWEEPD_CPU_THREADS"] = str(os.cpu_count() or 1)  # what torch takes when nobody sizes it
    with tempfile.TemporaryDirectory(prefix="sweepd-bench-threads-") as tmp:
        argv = ["demo"] if request is None else ["run", request]
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "sweepd", *argv, "--root", tmp], capture_output=True, text=True,
                           env=env, timeout=1800)
        wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"sweepd {' '.join(argv)} failed ({r.returncode}): {r.stderr[-500:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--request", default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--only", type=int, default=None, metavar="K",
                    help="run the first K conditions only (the smoke test: the idle one)")
    args = ap.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    out = {"cores": cores, "runs": args.runs, "command": "demo" if args.request is None else "run", "conditions": []}
    for name, load, threads in CONDITIONS[:args.only]:
        procs = busy(cores if load is None else load)
        try:
            walls = [one_run(args.request, threads) for _ in range(args.runs)]
        finally:
            for p in procs:
                p.kill()
                p.wait()
        out["conditions"].append({"name": name, "walls_s": [round(w, 2) for w in walls],
                                  "median_s": round(statistics.median(walls), 2)})
    idle = out["conditions"][0]["median_s"]
    print(f"{cores} cores, {args.runs} run(s) each, `sweepd {out['command']}`")
    print(f"{'condition':34s} {'median s':>9s} {'x idle':>7s}")
    for c in out["conditions"]:
        c["ratio_to_idle"] = round(c["median_s"] / idle, 2)
        print(f"{c['name']:34s} {c['median_s']:9.1f} {c['ratio_to_idle']:7.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
