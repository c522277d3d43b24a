"""A split sweep over GPUs that differ (the simulated GPU's sim_power_offsets_pct): every shard measures the
reference clock on its own GPU, savings are ratios within a GPU, and the report names each GPU's offset. In
process, through the engine (runner.run_blank), the merge and the report's analysis; the same through real SLURM
is shared check `intervals`."""

import pytest

from sweepd.engine.runner import run_blank
from sweepd.paths import Layout
from sweepd.report.analysis import analyse
from sweepd.report.data import load
from sweepd.report.words import answer_lines
from sweepd.request import SweepRequest
from sweepd.slurm.merge import merge
from sweepd.slurm.node import simulated_board

CLOCKS = [1785, 1620, 1500, 1410, 1320, 1230, 1125, 1020, 900, 795]


def request(split: int, seed: int = 3) -> SweepRequest:
    return SweepRequest.model_validate({
        "executor": "slurm" if split > 1 else None, "split": split,
        "workload": {"model": "tiny", "steps": 4, "width": 64, "height": 64, "seed": seed},
        "gpu": {"backend": "sim", "sim_model": "H100", "sim_power_offsets_pct": [0, 5]},
        "frequencies": {"mode": "custom", "list": CLOCKS}, "protocol": {"min_window_s": 20, "settle_s": 0},
        "images": {"mode": "benchmark"}})


def split_sweep(tmp_path, seed: int = 3):
    layout = Layout(tmp_path, tmp_path / "images", tmp_path / "results")
    req = request(2, seed)
    for k in (0, 1):
        run_blank(simulated_board(req, k), layout, "split", shard=(k, 2))
    return analyse(load(merge(layout, "split")))


def test_a_gpu_drawing_5_percent_more_is_named_and_the_savings_stay_within_each_gpu(tmp_path):
    s = split_sweep(tmp_path)
    first, second = s.gpu_offsets
    assert (first.gpu, first.shards, first.energy_offset_pct) == (0, [0], 0.0)
    assert second.gpu == 1 and second.shards == [1]
    lo, hi = second.energy_offset_ci95
    assert lo < 5 < hi and lo > 2 and abs(second.time_offset_pct) < 2  # power differs, speed does not
    assert any(f.kind == "gpu_offset" and "GPU 1" in f.text for f in s.flags)
    assert any(line.startswith("on these 2 GPUs") for line in answer_lines(s))

    unsplit_layout = Layout(tmp_path / "u", tmp_path / "u/images", tmp_path / "u/results")
    u = analyse(load(run_blank(request(1), unsplit_layout, "unsplit").dir))
    os_, ou = s.best("energy", False), u.best("energy", False)
    assert os_.freq_mhz in ou.equivalent_mhz or ou.freq_mhz in os_.equivalent_mhz
    (slo, shi), (ulo, uhi) = os_.energy_saving_ci95, ou.energy_saving_ci95
    assert slo <= uhi and ulo <= shi
    # without the per-GPU reference, GPU 1's clocks would read 5 % worse: the merged curve is normalised
    by_f = {r.freq_mhz: r for r in s.rows}
    gpu1 = [f for f in CLOCKS[1::2]]
    truth = {r.freq_mhz: r.energy_saving_pct_vs_max for r in u.rows}
    assert sum(by_f[f].energy_saving_pct_vs_max - truth[f] for f in gpu1) / len(gpu1) == pytest.approx(0, abs=1.5)


def test_one_gpu_sweeps_are_unchanged_by_the_normalisation(tmp_path):
    from sweepd.engine import gpunorm

    store = run_blank(request(1), Layout(tmp_path, tmp_path / "images", tmp_path / "results"), "one")
    rows = load(store.dir).trials
    assert gpunorm.normalised(rows, CLOCKS[0]) is rows and gpunorm.offsets(rows, CLOCKS[0]) == []
