"""On a real GPU: a window's energy from the energy counter against the 10 Hz power samples' energy, for NVML's
instant-power field (what sweepd samples where the driver has it) and for nvmlDeviceGetPowerUsage (a 1 s average
on Ampere and newer except the A100). The load is bursty like SD at batch 4: matrix products for ~0.15 s, then
~0.06 s of host time, over 2.4 s windows, the windows read on the counter's steps as sweepd's are.

    python bench/gpu_power_check.py [--windows 6]      # on a GPU machine; a minute
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import torch

from sweepd.gpu.nvml import NvmlGpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=6)
    args = ap.parse_args()
    with NvmlGpu() as g:
        print(f"{g.name}: sweepd reads power as {g.power_reading()!r}")
        nv, h = g._nv, g._h
        samples: list[tuple[int, float | None, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append((g.now_ns(), g._instant_w(), nv.nvmlDeviceGetPowerUsage(h) / 1000.0))
                stop.wait(0.1)

        a = torch.randn(4096, 4096, device="cuda", dtype=torch.half)
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()
        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        ratios: dict[str, list[float]] = {"instant": [], "1 s average": []}
        for w in range(args.windows):
            time.sleep(0.5)  # idle between windows, as a clock change's settle
            e0 = g.energy_update_mj()
            t0 = g.now_ns()
            while g.now_ns() - t0 < 2.4e9:
                t = time.monotonic()
                while time.monotonic() - t < 0.15:
                    a @ a
                torch.cuda.synchronize()
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
        for name, r in ratios.items():
            if r:
                print(f"counter vs {name} samples: median {statistics.median(r) * 100:+.1f}%, "
                      f"worst {max(r, key=abs) * 100:+.1f}% over {len(r)} windows")


if __name__ == "__main__":
    main()
