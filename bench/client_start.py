"""How fast a client command starts: `sweepd list` against `python -c pass`, interleaved, medians.

    python bench/client_start.py [--runs 21] [--json FILE]

Issue #14's target: a client command starts in well under half a second, importing none of torch,
diffusers, transformers, matplotlib or numpy (tests/test_daily_tool.py checks the imports)."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=21)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as root:
        cmds = {"python -c pass": [sys.executable, "-c", "pass"],
                "sweepd list": [sys.executable, "-m", "sweepd", "list", "--root", root],
                "sweepd status": [sys.executable, "-m", "sweepd", "status", "--root", root]}
        for c in cmds.values():
            timed(c)  # warm the page cache
        got: dict[str, list[float]] = {k: [] for k in cmds}
        for _ in range(args.runs):
            for k, c in cmds.items():
                got[k].append(timed(c))
    med = {k: statistics.median(v) for k, v in got.items()}
    out = {k: {"median_s": round(m, 4), "min_s": round(min(got[k]), 4), "max_s": round(max(got[k]), 4)}
           for k, m in med.items()}
    out["sweepd list over python"] = round(med["sweepd list"] / med["python -c pass"], 1)
    print(json.dumps(out, indent=1))
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
