"""Batch size as a second knob: a list of sizes is measured at the highest clock first, a size that does not
fit in memory is a failed window with its error (never a crash), the clocks are measured at the best size, and
the report says what each knob contributes. Whole sweeps run the tiny model on the CPU with the simulated GPU,
whose memory the request shrinks so that a size is refused."""

import json

import pytest
from pydantic import ValidationError

from conftest import sweepd, write_request
from sweepd import atomic
from sweepd.gpu.base import OutOfMemory, is_out_of_memory
from sweepd.gpu.sim import SimulatedGpu
from sweepd.gpu.simmodel import batch_factor
from sweepd.records.manifest import SweepManifest
from sweepd.request import SweepRequest


def batch_request(path, sizes="[1, 2, 4]", memory=6.0, mode="custom", extra_freq=""):
    p = write_request(path, clocks=(1410, 945), trials=2)
    text = p.read_text().replace("height = 32\n", f"height = 32\nbatch_size = {sizes}\n")
    text = text.replace('sim_model = "A100"\n', f'sim_model = "A100"\nsim_memory_gib = {memory}\n')
    if mode != "custom":
        text = text.replace('mode = "custom"\nlist = [1410, 945]\n', f'mode = "{mode}"\n')
    text = text.replace("[frequencies]\n", f"[frequencies]\n{extra_freq}")
    p.write_text(text)
    return p


def test_the_simulated_gpu_saves_per_image_with_larger_batches_and_runs_out_of_memory():
    g = SimulatedGpu("A100", s_per_image=1.0, memory_gib=6.0)
    one, four = g.batch_s(1, 1410).total_s, g.batch_s(4, 1410).total_s / 4
    assert four == pytest.approx(one * batch_factor(4)) and four < 0.7 * one
    with g.busy(2):  # 2.6 + 2 x 1.1 GiB fits in 6
        pass
    t = g.now_ns()
    with pytest.raises(OutOfMemory, match="out of memory"):
        with g.busy(4):
            raise AssertionError("a batch that does not fit must not run")
    assert g.now_ns() == t  # nothing ran, no time passed


def test_out_of_memory_is_recognised_from_torch_and_cuda_errors_too():
    class OutOfMemoryError(RuntimeError):
        pass

    assert is_out_of_memory(OutOfMemoryError("x")) and is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not is_out_of_memory(RuntimeError("CUDA error: an illegal memory access"))


@pytest.mark.parametrize("sizes, words", [
    ([], "at least one batch size"), ([1, 0], "1 to 64; 0"), ([2, 2], "repeats"), (65, "1 to 64; 65")])
def test_bad_batch_sizes_are_refused_with_the_value(sizes, words):
    with pytest.raises(ValidationError, match=words):
        SweepRequest.model_validate({"workload": {"batch_size": sizes}})


def test_a_batch_list_needs_one_gpu_and_is_what_lets_a_dvfs_sweep_take_an_objective():
    SweepRequest.model_validate({"workload": {"batch_size": [1, 4]}, "frequencies": {"objective": "energy"}})
    with pytest.raises(ValidationError, match="only used with"):
        SweepRequest.model_validate({"workload": {"batch_size": 4}, "frequencies": {"objective": "energy"}})
    with pytest.raises(ValidationError, match="list of batch sizes picks one"):
        SweepRequest.model_validate({"workload": {"batch_size": [1, 4]}, "executor": "slurm", "split": 2})


@pytest.mark.slow  # the tiny pipeline at three batch sizes
def test_a_batch_list_end_to_end_with_a_size_refused_for_memory(tmp_path):
    req = batch_request(tmp_path / "b.toml")
    r = sweepd("run", req, "--root", tmp_path / "root", "--job-id", "b")
    assert r.returncode == 0, r.stderr
    job = tmp_path / "root/results/job_b"
    trials = atomic.read_csv(job / "trials.csv")
    phase = [t for t in trials if t["role"] == "batch"]
    assert {t["freq_mhz"] for t in phase} == {"1410"}  # the sizes are measured at the highest clock
    assert [t["batch_size"] for t in phase if t["status"] == "ok"] == ["1", "1", "2", "2"]
    refused = [t for t in phase if t["status"] == "failed"]
    assert [t["batch_size"] for t in refused] == ["4"] and "out of memory" in refused[0]["error"]
    own = [t for t in trials if not t["role"]]
    assert {t["batch_size"] for t in own} == {"2"} and {t["freq_mhz"] for t in own} == {"1410", "945"}
    keys = [(t["freq_mhz"], t["trial"]) for t in trials]
    assert len(keys) == len(set(keys))
    m = SweepManifest.read(job / "sweep.json")
    assert m.batch.chosen == 2 and "4" in m.batch.refused and m.status == "done"
    summary = atomic.read_csv(job / "summary.csv")
    assert [s["n"] for s in summary] == ["2", "2"]  # batch windows stay out of the clock's statistics
    rep = json.loads(sweepd("report", "b", "--root", tmp_path / "root", "--json").stdout)
    b = rep["batch"]
    assert b["chosen"] == 2 and b["against"] == 1 and b["batch_saving_pct"] > 10
    assert [s["size"] for s in b["sizes"] if s["refused"]] == [4]
    assert b["total_saving_pct"] == pytest.approx(
        100 * (1 - (1 - b["batch_saving_pct"] / 100) * (1 - b["clock_saving_pct"] / 100)), abs=0.02)
    text = sweepd("report", "b", "--root", tmp_path / "root").stdout
    assert "batch 2:" in text and "vs batch 1" in text and "batch 4 refused" in text and "together" in text
    assert "trial" not in [line for line in text.splitlines() if "out of memory" in line][0].split("refused")[0]


@pytest.mark.slow  # two runs of the tiny pipeline
def test_an_interrupted_batch_phase_is_measured_again_and_decides_the_same(tmp_path):
    req = batch_request(tmp_path / "b.toml", sizes="[4, 1, 2]", memory=40.0)
    root = tmp_path / "root"
    assert sweepd("run", req, "--root", root, "--job-id", "b").returncode == 0
    job = root / "results/job_b"
    first = SweepManifest.read(job / "sweep.json")
    assert first.batch.chosen == 4 and not first.batch.refused
    # as if killed after the phase's third window: sweep.json not done, trials.csv ends there
    trials = atomic.read_csv(job / "trials.csv")
    cut = [i for i, t in enumerate(trials) if t["role"] == "batch"][2] + 1
    atomic.write_csv(job / "trials.csv", list(trials[0]), trials[:cut])
    first.status, first.batch = "interrupted", None
    first.write(job / "sweep.json")
    r = sweepd("run", req, "--root", root, "--job-id", "b")
    assert r.returncode == 0, r.stderr
    again = atomic.read_csv(job / "trials.csv")
    assert [t["batch_size"] for t in again if t["role"] == "batch"] == ["4", "4", "1", "1", "2", "2"]
    assert SweepManifest.read(job / "sweep.json").batch.chosen == 4
    keys = [(t["freq_mhz"], t["trial"]) for t in again]
    assert len(keys) == len(set(keys))


def test_when_no_size_fits_the_sweep_is_refused_before_the_model_loads(tmp_path):
    req = batch_request(tmp_path / "b.toml", sizes="[4, 8]", memory=4.0)
    r = sweepd("run", req, "--root", tmp_path / "root", "--job-id", "b")
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    assert "at batch 4 needs about 7.0 GiB of GPU memory" in r.stderr and "has 4 GiB" in r.stderr
    assert not (tmp_path / "root/results/job_b/sweep.json").exists()


def test_where_the_gpus_memory_cannot_be_read_the_batch_phase_refuses_each_size_in_one_line(tmp_path, monkeypatch):
    """No memory figure to check against (NVML may not say): each size is tried, each runs out of memory, and
    the sweep ends with one line naming them."""
    from sweepd import configfile
    from sweepd.engine.phases import NoBatchSize
    from sweepd.engine.runner import run_blank
    from sweepd.paths import Layout
    from sweepd.request import SweepRequest

    monkeypatch.setattr(SimulatedGpu, "total_memory_gib", lambda self: None)
    req = configfile.load(SweepRequest, batch_request(tmp_path / "b.toml", sizes="[4, 8]", memory=4.0))
    with pytest.raises(NoBatchSize, match=r"no batch size of \[4, 8\] could be measured.*4: .*out of memory"):
        run_blank(req, Layout(tmp_path, tmp_path / "images", tmp_path / "results"), "b")


def test_the_estimate_counts_the_batch_phase(tmp_path):
    one = json.loads(sweepd("estimate", batch_request(tmp_path / "a.toml", sizes="4"), "--root", tmp_path,
                            "--json").stdout)
    three = json.loads(sweepd("estimate", batch_request(tmp_path / "b.toml"), "--root", tmp_path, "--json").stdout)
    assert three["duration_s"] > one["duration_s"] and three["images_generated"] > one["images_generated"]
