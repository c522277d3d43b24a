"""Issue #13's targets for the adaptive search, on the simulated H100, A100 and V100 with the measured noise.

For each board and objective, 20 seeded runs of the search (`sweepd.engine.search.decide`, the code an
adaptive sweep runs) against the simulated GPU (`SimulatedGpu`, noise "measured"), each clock measured
with the request protocol's defaults (sequential trials: 3 to 10 windows of >= 2 s each, a window being
images of SD at 512x512 and 4 steps until it lasts 2 s, timed and metered on the sim's own clock). Next
to it, a full sweep of every clock >= 510 MHz with the same protocol and seed, whose argmin of means is
what a full sweep would answer. Reports per board and objective: evaluations (median, max), the chosen
clock's true objective (the sim's noise-free model) against the true optimum (regret; how many of 20
within 1 %), the same for the full sweep, and GPU time of the search against the full sweep.

No images are rendered (the CPU's share does not matter to the sim's clock), so this takes a minute or
two, not hours; whole adaptive sweeps through the engine are tests/test_adaptive.py.

    python bench/adaptive.py [--runs 20] [--first-seed 0] [--min-window-s 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics

from sweepd.engine.search import Trial, decide
from sweepd.engine.stopping import windows_done
from sweepd.vocab import Objective
from sweepd.gpu.sim import SimulatedGpu
from sweepd.gpu.simmodel import calibrate, s_per_image
from sweepd.request import Protocol


class Bench:
    def __init__(self, board: str, seed: int, protocol: Protocol):
        self.gpu = SimulatedGpu(board, noise="measured", seed=seed, s_per_image=s_per_image(board, "tiny", 4, 64, 64))
        self.protocol = protocol
        self.before: list[list[float]] = []  # the J/image of each clock measured so far (what plans the next)
        self.supported = [f for f in self.gpu.graphics_clocks(self.gpu.memory_clocks()[0]) if f >= 510]

    def clock(self, f: int) -> list[Trial]:
        """One clock as the engine measures it: lock, settle, the trials engine.stopping plans for it."""
        g, p = self.gpu, self.protocol
        g.lock_clocks(f)
        g.wait(p.settle_s)
        trials: list[Trial] = []
        while not windows_done(p, [t.j_per_image for t in trials], len(trials), self.before):
            e0 = g.energy_update_mj()  # as the engine's windows: from a fresh counter step to the first after
            t0, per = g.now_ns(), []
            while g.now_ns() - t0 < p.min_window_s * 1e9:
                a = g.now_ns()
                with g.busy(1):
                    pass
                per.append((g.now_ns() - a) / 1e9)
            trials.append(Trial((g.energy_update_mj() - e0) / 1000 / len(per), statistics.median(per)))
        self.before.append([t.j_per_image for t in trials])
        return trials

    def adaptive(self, objective: str) -> tuple[int, int, float]:
        """(chosen clock, clocks evaluated, GPU seconds)."""
        start, measured = self.gpu.now_ns(), {}
        while True:
            d = decide(self.supported, measured, objective)
            if not d.next_mhz:
                return d.chosen_mhz, len(measured), (self.gpu.now_ns() - start) / 1e9
            measured[d.next_mhz[0]] = self.clock(d.next_mhz[0])

    def full(self, objective: str) -> tuple[int, float]:
        start = self.gpu.now_ns()
        means = {f: statistics.fmean(Objective(objective).of(t.j_per_image, t.s_per_image) for t in self.clock(f))
                 for f in self.supported}
        return min(means, key=means.get), (self.gpu.now_ns() - start) / 1e9


def regret(board: str, objective: str, f: int, supported: list[int]) -> float:
    m = calibrate(board)
    true = {c: Objective(objective).of(m.energy_ratio(c), m.slowdown(c)) for c in supported}
    return (true[f] / min(true.values()) - 1) * 100


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + runs - 1")
    ap.add_argument("--min-window-s", type=float, default=Protocol().min_window_s,
                    help="the protocol's window (default: the request default); both sweeps use it")
    ap.add_argument("--json")
    args = ap.parse_args()
    p = Protocol(min_window_s=args.min_window_s)
    rows = []
    print("| board (clocks) | objective | evaluations median (max) | adaptive within 1 % | worst | full sweep within 1 % "
          "| GPU time adaptive / full |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for board in ("H100", "A100", "V100"):
        for objective in ("energy", "edp", "ed2p"):
            evals, ra, rf, ta, tf = [], [], [], [], []
            for seed in range(args.first_seed, args.first_seed + args.runs):
                b = Bench(board, seed, p)
                chosen, n, t = b.adaptive(objective)
                evals.append(n)
                ra.append(regret(board, objective, chosen, b.supported))
                ta.append(t)
                full = Bench(board, seed, p)
                pick, tt = full.full(objective)
                rf.append(regret(board, objective, pick, full.supported))
                tf.append(tt)
            row = {"board": board, "clocks": len(b.supported), "objective": objective,
                   "evaluations_median": statistics.median(evals), "evaluations_max": max(evals),
                   "adaptive_within_1pct": sum(r <= 1 for r in ra), "adaptive_worst_pct": round(max(ra), 2),
                   "full_within_1pct": sum(r <= 1 for r in rf), "gpu_time_ratio": round(sum(ta) / sum(tf), 3),
                   "runs": args.runs, "first_seed": args.first_seed, "min_window_s": p.min_window_s}
            rows.append(row)
            print(f"| {board} ({row['clocks']}) | {objective} | {row['evaluations_median']:g} ({row['evaluations_max']}) | "
                  f"{row['adaptive_within_1pct']}/{args.runs} | {row['adaptive_worst_pct']:.1f} % | "
                  f"{row['full_within_1pct']}/{args.runs} | {row['gpu_time_ratio'] * 100:.0f} % |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
