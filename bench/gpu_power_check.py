"""On a real GPU: a window's energy from the energy counter against the 10 Hz power samples' energy, for NVML's
instant-power field (what sweepd samples where the driver has it) and for nvmlDeviceGetPowerUsage (a 1 s average
on Ampere and newer except the A100). The load is bursty like SD at batch 4: matrix products for ~0.15 s, then
~0.06 s of host time, over 2.4 s windows, the windows read on the counter's steps as sweepd's are.

    python bench/gpu_power_check.py [--windows 6] [--json out.json]     # on a GPU machine; a minute

(The test suite runs it at a smoke size against its fake pynvml, the load on the CPU: --device cpu --windows 1
--window-s 0.3; its figures there are the fake's, not a GPU's.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time

import torch

from sweepd.gpu.nvml import NvmlGpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--window-s", type=float, default=2.4)
    ap.add_argument("--device", default="cuda", help="where the load runs (cpu: the test suite's smoke run)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    cuda = args.device == "cuda"
    size = 4096 if cuda else 256
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with NvmlGpu() as g:
        print(f"{g.name}: sweepd reads power as {g.power_reading()!r}")
        nv, h = g._nv, g._h
        samples: list[tuple[int, float | None, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((g.now_ns(), g._instant_w(), nv.nvmlDeviceGetPowerUsage(h) / 1000.0))
                stop.wait(0.1)

        a = torch.randn(size, size, device=args.device, dtype=torch.half if cuda else torch.float32)
        for _ in range(20):
            a @ a
        sync()
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        ratios: dict[str, list[float]] = {"instant": [], "1 s average": []}
        for w in range(args.windows):
            time.sleep(0.5)  # idle between windows, as a clock change's settle
            e0 = g.energy_update_mj()
            t0 = g.now_ns()
            while g.now_ns() - t0 < args.window_s * 1e9:
                t = time.monotonic()
                while time.monotonic() - t < 0.15:
                    a @ a
                sync()
                time.sleep(0.06)  # the host's share between batches
            t1 = g.now_ns()
            counter_j = (g.energy_update_mj() - e0) / 1000
            inside = [s for s in list(samples) if t0 <= s[0] < t1]
            secs = (t1 - t0) / 1e9
            line = f"window {w + 1}: {secs:.2f} s, counter {counter_j:.0f} J"
            for k, name in ((1, "instant"), (2, "1 s average")):
                vals = [s[k] for s in inside if s[k] is not None]
                if len(vals) >= 5:
                    j = statistics.fmean(vals) * secs
                    ratios[name].append(counter_j / j - 1)
                    line += f", {name} samples {j:.0f} J ({(counter_j / j - 1) * 100:+.1f}%)"
            print(line, flush=True)
        stop.set()
        out = {"gpu": g.name, "power_reading": str(g.power_reading()), "windows": args.windows,
               "window_s": args.window_s, "counter_vs_samples": {}}
        for name, r in ratios.items():
            if r:
                print(f"counter vs {name} samples: median {statistics.median(r) * 100:+.1f}%, "
                      f"worst {max(r, key=abs) * 100:+.1f}% over {len(r)} windows")
                out["counter_vs_samples"][name] = {"median_pct": statistics.median(r) * 100,
                                                   "worst_pct": max(r, key=abs) * 100, "windows": len(r)}
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
