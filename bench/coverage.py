"""How often each interval sweepd prints covers the truth: seeded sweeps on the simulated A100 and H100 with the
measured noise, through the real engine (`Sweep`, `JobStore`, trials.csv) and the report's analysis
(`report.analysis.analyse`), against the simulated GPU's expected time and energy per image.

The truth is the expectation of what the noisy sim produces (`SimulatedGpu.expected`: time and energy per image
integrated over its jitter and stalls), not the noise-free model: the noise stretches batches (stalls at idle
power, jitter capped at the board's work), so the noisy mean J/image sits about 1 % below the noise-free model,
and a sweep can only ever estimate what the noise produces.

Each run is one sweep of 10 clocks (the quickstart's on the A100, the same spread on the H100), 2 denoising
steps of SD at 512x512 as the sim times it, no images rendered (a workload that returns blank images: the sim's
clock does not look at the CPU). Cells: board x window (the default protocol's 2 s, and 20 s) x objective x
bounded. For each: how often the reported optimum's energy-saving and time-change CIs cover that clock's true
saving and time change, how often each clock's own J/image CI covers its truth, how often the true optimum is
in the equivalent set, the sets' mean size, and the winner's curse (reported minus true saving, in percentage
points, averaged). Then every flag's rate per sweep on a sim where the flag's condition is false. A power-limit
cell (the A100 at the default protocol, 10 limits from 250 W down: the clock left to the simulated firmware,
`gpu.simcap`) is measured the same way against the capped truth (`SimulatedGpu.expected(..., limit_w)`).

    python bench/coverage.py [--runs 200] [--boards A100,H100] [--windows 2,20] [--power-runs N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sweepd.engine.runner import open_for, run_blank
from sweepd.gpu.sim import Truth
from sweepd.vocab import Objective
from sweepd.paths import Layout
from sweepd.report.analysis import analyse
from sweepd.report.data import load
from sweepd.request import Protocol, SweepRequest
from sweepd.slurm.merge import merge
from sweepd.slurm.node import simulated_board

CLOCKS = {"A100": [1410, 1305, 1200, 1095, 1005, 945, 885, 780, 645, 510],
          "H100": [1785, 1620, 1500, 1410, 1320, 1230, 1125, 1020, 900, 795]}
LIMITS = {"A100": [250, 225, 210, 200, 190, 180, 175, 170, 165, 160]}  # W; 250: the default, above what SD draws
OBJECTIVES = ("energy", "edp", "ed2p")
BOUND_PCT = 5.0


SPLIT_OFFSETS = [0.0, 5.0]  # a split sweep's two GPUs: the second draws 5 % more power


def request(board: str, seed: int, window_s: float, split: int = 1, power: bool = False) -> SweepRequest:
    knob = {"power": {"limits": LIMITS[board]}} if power else {"frequencies": {"mode": "custom", "list": CLOCKS[board]}}
    return SweepRequest.model_validate({
        "job_id": f"cov-{board}-{window_s:g}-{split}-{'w' if power else 'f'}-{seed}", "split": split,
        "executor": "slurm" if split > 1 else None,
        "workload": {"model": "tiny", "steps": 2, "width": 32, "height": 32, "seed": seed},
        "gpu": {"backend": "sim", "sim_model": board, "sim_noise": "measured",
                "sim_power_offsets_pct": SPLIT_OFFSETS if split > 1 else []},
        "protocol": {"min_window_s": window_s},
        "images": {"mode": "benchmark"}} | knob)


def sweep(req: SweepRequest, root: Path):
    """One sweep through the engine, as `sweepd run` runs it (less the model), or each shard of a split one as
    its array task runs it and then the merge; returns (analysis, the first GPU)."""
    layout = Layout(root, root / "images", root / "results")
    if req.split == 1:
        path = run_blank(req, layout, req.job_id).dir
    else:
        for k in range(req.split):
            run_blank(simulated_board(req, k), layout, req.job_id, shard=(k, req.split))
        path = merge(layout, req.job_id)
    return analyse(load(path), bound_pct=BOUND_PCT), open_for(simulated_board(req, 0) if req.split > 1 else req)


@dataclass
class Cell:
    board: str  # "A100", or "A100 power" for the power-limit cell
    window_s: float
    split: int
    objective: str
    bounded: bool
    runs: int = 0
    saving_hits: list[bool] = field(default_factory=list)
    time_hits: list[bool] = field(default_factory=list)
    in_set: list[bool] = field(default_factory=list)
    set_sizes: list[int] = field(default_factory=list)
    curse: list[float] = field(default_factory=list)

    def row(self, clock_hits: list[bool]) -> dict:
        rate = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
        return {"board": self.board, "window_s": self.window_s, "split": self.split,
                "gpu_power_offsets_pct": SPLIT_OFFSETS if self.split > 1 else [],
                "default_protocol": self.window_s == Protocol().min_window_s,
                "objective": self.objective, "bounded": self.bounded, "runs": self.runs,
                "saving_ci_coverage": rate(self.saving_hits), "time_ci_coverage": rate(self.time_hits),
                "clock_ci_coverage": rate(clock_hits), "truth_in_set": rate(self.in_set),
                "set_size_mean": round(statistics.fmean(self.set_sizes), 2) if self.set_sizes else None,
                "winners_curse_pp": round(statistics.fmean(self.curse), 3) if self.curse else None}


def truths(device, settings: list[int], power: bool = False) -> dict[int, Truth]:
    """Each clock's (or, ``power``, each limit's, at the highest clock) expected J/image and s/image under the sim's
    noise."""
    if power:
        top = device.graphics_clocks(device.memory_clocks()[0])[0]
        return {w: device.expected(top, limit_w=w) for w in settings}
    return {f: device.expected(f) for f in settings}


def covers(ci: list[float] | None, value: float) -> bool:
    return ci is not None and ci[0] - 1e-9 <= value <= ci[1] + 1e-9


def flag_kinds(a) -> dict[str, bool]:
    """Which kinds of flag a sweep raised (the rate of each on a sim whose conditions are false)."""
    return {f.kind: True for f in a.flags}


# statements about the intervals themselves (true whenever printed), not alarms about the GPU
PRECISION = {"target_missed", "saving_unclear", "one_trial", "feasibility", "shards", "unfinished"}


def run_cells(board: str, window_s: float, runs: int, first_seed: int, cells: dict, alarms: dict, clock_hits: dict,
              cost: dict, tmp: Path, split: int = 1, power: bool = False) -> None:
    settings = LIMITS[board] if power else CLOCKS[board]
    name = f"{board} power" if power else board
    for seed in range(first_seed, first_seed + runs):
        a, device = sweep(request(board, seed, window_s, split, power), tmp / f"{name}-{window_s:g}-{split}-{seed}")
        truth = truths(device, settings, power)  # the first GPU's; a split sweep's savings are within each GPU
        top = settings[0]
        tj, ts = truth[top].j_per_image, truth[top].s_per_image
        key = (name, window_s, split)
        # a clock's own interval is about its own GPU: a split sweep's rows are normalised to the first GPU's scale,
        # so its mean is taken back to its GPU's (the estimated offset) and compared with that GPU's truth
        gpu_of = {f: (i % split) for i, f in enumerate(settings)}
        est = {k: 1 + g.energy_offset_pct / 100 for k, g in enumerate(a.gpu_offsets)} if split > 1 else {0: 1.0}
        true_off = {k: 1 + (SPLIT_OFFSETS[k] if split > 1 else 0) / 100 for k in range(split)}
        c = cost.setdefault(key, {"gpu_s": [], "trials": []})
        c["gpu_s"].append(a.job.manifest.device_time.total_s)
        c["trials"].append(statistics.fmean(r.n for r in a.rows))
        for r in a.rows:
            k = gpu_of[r.setting]
            j, m = truth[r.setting].j_per_image * true_off[k], r.j_per_image_mean * est[k]
            if r.ci95_pct is not None:
                clock_hits.setdefault(key, []).append(abs(m - j) <= r.ci95_pct / 100 * m + 1e-12)
        for k, v in flag_kinds(a).items():
            if v:
                alarms.setdefault(key, {}).setdefault(k, 0)
                alarms[key][k] += 1
        hostfree = [rg for rg in a.ranges if rg.bound == "host"]
        if hostfree:  # "the saving is free": the sim's time grows at every clock below the top
            claims = [f for f in settings if any(rg.from_mhz is not None and rg.to_mhz is not None and
                                                      rg.to_mhz <= f <= rg.from_mhz for rg in hostfree)]
            if any((truth[f].s_per_image / ts - 1) * 100 > a.margin_pct for f in claims):
                alarms.setdefault(key, {}).setdefault("host_bound_claim", 0)
                alarms[key]["host_bound_claim"] += 1
        for obj in OBJECTIVES:
            true_obj = {f: Objective(obj).of(t.j_per_image, t.s_per_image) for f, t in truth.items()}
            for bounded in (False, True):
                c = cells.setdefault((name, window_s, split, obj, bounded), Cell(name, window_s, split, obj, bounded))
                o = a.best(obj, bounded)
                c.runs += 1
                feasible = [f for f in settings if not bounded or (truth[f].s_per_image / ts - 1) * 100 <= BOUND_PCT]
                best_true = min(feasible, key=true_obj.get)
                if o is None:
                    c.in_set.append(False)
                    continue
                shown = o.shown  # the intervals the answer prints (the next best's when the best is the reference)
                f = shown.freq_mhz
                true_saving = (1 - truth[f].j_per_image / tj) * 100
                true_time = (truth[f].s_per_image / ts - 1) * 100
                c.saving_hits.append(covers(shown.energy_saving_ci95, true_saving) if f != top else True)
                c.time_hits.append(covers(shown.time_change_ci95, true_time) if f != top else True)
                if f != top:
                    c.curse.append(shown.energy_saving_pct - true_saving)
                c.in_set.append(best_true in o.equivalent_mhz)
                c.set_sizes.append(len(o.equivalent_mhz))
        print(f"  {name} {window_s:g} s seed {seed}", file=sys.stderr, end="\r")


def _runs(args, board: str, split: int) -> int:
    """How many sweeps a board/window/split key ran."""
    return args.split_runs if split > 1 else args.power_runs if board.endswith(" power") else args.runs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--boards", default="A100,H100")
    ap.add_argument("--windows", default="2,20", help="window lengths (s); 2 is the default protocol's")
    ap.add_argument("--split-runs", type=int, default=None,
                    help="split sweeps (2 shards, the second GPU +5 %% power) on the H100; default: --runs")
    ap.add_argument("--power-runs", type=int, default=None,
                    help="power-limit sweeps on the A100 at the default protocol; default: --runs")
    ap.add_argument("--json")
    args = ap.parse_args()
    args.split_runs = args.runs if args.split_runs is None else args.split_runs
    args.power_runs = args.runs if args.power_runs is None else args.power_runs
    cells: dict = {}
    alarms: dict = {}
    clock_hits: dict = {}
    cost: dict = {}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sweepd-coverage-") as tmp:
        for board in args.boards.split(","):
            for w in (float(x) for x in args.windows.split(",")):
                run_cells(board, w, args.runs, args.first_seed, cells, alarms, clock_hits, cost, Path(tmp))
                shutil.rmtree(Path(tmp), ignore_errors=True)
                Path(tmp).mkdir()
        if args.split_runs:  # a split sweep over two GPUs that differ by 5 % in power, at the default protocol
            run_cells("H100", Protocol().min_window_s, args.split_runs, args.first_seed, cells, alarms, clock_hits,
                      cost, Path(tmp), split=2)
        if args.power_runs:  # the power-limit knob on the A100, at the default protocol
            run_cells("A100", Protocol().min_window_s, args.power_runs, args.first_seed, cells, alarms, clock_hits,
                      cost, Path(tmp), power=True)
    rows = [c.row(clock_hits.get((c.board, c.window_s, c.split), [])) for c in cells.values()]
    total = {}
    for (b, w, n), counts in alarms.items():
        for k, c in counts.items():
            if k == "gpu_offset" and n > 1:
                continue  # there the GPUs do differ: a detection (its rate is in alarms_by_board_window), not an alarm
            total.setdefault(k, []).append(c / _runs(args, b, n))
    false_alarms = {k: round(max(v), 4) for k, v in total.items() if k not in PRECISION}
    notes = {k: round(max(v), 4) for k, v in total.items() if k in PRECISION}
    out = {"runs_per_cell": args.runs, "first_seed": args.first_seed, "seconds": round(time.monotonic() - t0, 1),
           "cells": rows, "false_alarms": false_alarms, "precision_notes": notes,
           "cost": {f"{b} {w:g} s" + (f" split {n}" if n > 1 else ""): {"gpu_min_per_sweep": round(statistics.fmean(v["gpu_s"]) / 60, 2),
                                      "trials_per_clock": round(statistics.fmean(v["trials"]), 2)}
                    for (b, w, n), v in cost.items()},
           "alarms_by_board_window": {f"{b} {w:g} s" + (f" split {n}" if n > 1 else ""): {
               k: round(c / _runs(args, b, n), 4) for k, c in v.items()}
               for (b, w, n), v in alarms.items()}}
    print("| board | window | objective | bounded | saving CI | time CI | clock CI | truth in set | set size | "
          "winner's curse (pp) |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['board']}{' split 2, +5 % W' if r['split'] > 1 else ''} | {r['window_s']:g} s | {r['objective']} | {'yes' if r['bounded'] else 'no'} | "
              f"{r['saving_ci_coverage']} | {r['time_ci_coverage']} | {r['clock_ci_coverage']} | {r['truth_in_set']} | "
              f"{r['set_size_mean']} | {r['winners_curse_pp']} |")
    print("false alarms per sweep (worst board/window):", json.dumps(false_alarms))
    print("precision notes per sweep:", json.dumps(notes))
    print("GPU time and trials per clock:", json.dumps(out["cost"]))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
