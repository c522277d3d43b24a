"""Daemon figures: spool-to-queued latency with inotify, and the idle daemon's RSS and CPU.

Latency: a real `sweepd serve` (queue only, `gpus = []`, so no sweep competes for the CPU) on a
temporary root; N valid request files are renamed into spool/incoming one at a time, and the time
from the rename to the row's appearance in the queue is measured by polling the SQLite file.
Idle: a daemon with the default settings and an empty queue, sampled from /proc over 60 s.

    python bench/daemon_intake.py [--n 300] [--idle-s 60]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REQUEST = """[workload]
model = "tiny"
steps = 2
width = 32
height = 32
[gpu]
backend = "sim"
[frequencies]
mode = "custom"
list = [1410]
"""


def start(root: Path, settings: str) -> subprocess.Popen:
    cfg = root.parent / f"{root.name}.toml"
    cfg.write_text(settings)
    log = root.parent / f"{root.name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sweepd", "serve", "--root", str(root), "--config", str(cfg)],
                                stdout=out, stderr=subprocess.STDOUT)
    while not (root / "state" / "daemon.json").exists():
        if proc.poll() is not None:
            raise SystemExit(f"the daemon exited {proc.returncode}: {log.read_text()[-2000:]}")
        time.sleep(0.05)
    return proc


def latency(tmp: Path, n: int) -> dict:
    root = tmp / "latency"
    proc = start(root, "gpus = []\n")
    db = sqlite3.connect(root / "state" / "queue.sqlite")
    staging = tmp / "staging"
    staging.mkdir()
    lat = []
    try:
        for i in range(n):
            src = staging / f"r{i:05d}.toml"
            src.write_text(REQUEST)
            t0 = time.perf_counter()
            os.replace(src, root / "spool" / "incoming" / src.name)
            while not db.execute("SELECT 1 FROM sweeps WHERE source = ?", (src.name,)).fetchone():
                time.sleep(0.0005)
            lat.append(time.perf_counter() - t0)
            time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait()
    lat.sort()
    return {"n": n, "p50_ms": statistics.median(lat) * 1000, "p99_ms": lat[int(0.99 * (n - 1))] * 1000,
            "max_ms": lat[-1] * 1000}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def idle(tmp: Path, seconds: float, settle_s: float = 5.0) -> dict:
    proc = start(tmp / "idle", "# the packaged defaults\nlog_level = \"info\"\n")
    try:
        time.sleep(settle_s)  # settle after start-up
        c0, t0 = _cpu_s(proc.pid), time.monotonic()
        rss = []
        while time.monotonic() - t0 < seconds:
            rss.append(_rss_mb(proc.pid))
            time.sleep(1)
        cpu = (_cpu_s(proc.pid) - c0) / (time.monotonic() - t0)
    finally:
        proc.terminate()
        proc.wait()
    return {"seconds": seconds, "rss_mb_median": statistics.median(rss), "rss_mb_max": max(rss),
            "cpu_pct": cpu * 100}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--idle-s", type=float, default=60)
    ap.add_argument("--settle-s", type=float, default=5.0, help="wait after the idle daemon starts")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lat = latency(Path(tmp), a.n)
        print(f"spool -> queued over {lat['n']} files: p50 {lat['p50_ms']:.1f} ms, p99 {lat['p99_ms']:.1f} ms, "
              f"max {lat['max_ms']:.1f} ms")
        idl = idle(Path(tmp), a.idle_s, a.settle_s)
        print(f"idle daemon over {idl['seconds']:.0f} s: RSS median {idl['rss_mb_median']:.1f} MB "
              f"(max {idl['rss_mb_max']:.1f}), CPU {idl['cpu_pct']:.2f} %")
    if a.json:
        a.json.write_text(json.dumps({"latency": lat, "idle": idl, "date": time.strftime("%Y-%m-%d")}, indent=2))


if __name__ == "__main__":
    main()
