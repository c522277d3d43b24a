"""A bug in sweepd is a bug, wherever it happens: the process exits 70 (EXIT_INTERNAL) with the traceback, never
"failed" with exit 1, and a window that fails for a bug fails the sweep instead of becoming a failed row. What the
GPU or the system says no to is still one line and its own exit code. The bug is a TypeError raised by the
simulated GPU's energy counter from its 6th read on, as if a caller had got the counter's API wrong."""

import json

import pytest

from conftest import sweepd, sweepd_env, write_request
from sweepd import atomic, paths
from sweepd.errors import EXIT_INTERNAL, GpuError
from sweepd.gpu.sim import SimulatedGpu
from sweepd.records.status import WorkerStatus
from sweepd.request import SweepRequest
from sweepd.settings import SlurmSettings
from sweepd.slurm.script import JobScript


def break_energy_counter(monkeypatch, error: Exception) -> None:
    real, reads = SimulatedGpu.energy_mj, [0]

    def broken(self):
        reads[0] += 1
        if reads[0] > 5:
            raise error
        return real(self)

    monkeypatch.setattr(SimulatedGpu, "energy_mj", broken)


def test_a_type_error_inside_a_trial_exits_70_with_its_traceback(tmp_path, monkeypatch):
    break_energy_counter(monkeypatch, TypeError("injected bug"))
    req = write_request(tmp_path / "r.toml", clocks=(1410, 945), images="benchmark")
    r = sweepd("run", req, "--root", tmp_path / "root", "--job-id", "bug")
    assert r.returncode == EXIT_INTERNAL, r.stderr
    assert "Traceback" in r.stderr and "TypeError: injected bug" in r.stderr
    assert "internal error (a bug in sweepd" in r.stderr
    results = paths.Layout.resolve(tmp_path / "root").job_results("bug")
    manifest = json.loads((results / "sweep.json").read_text())
    assert manifest["status"] == "failed" and "internal error" in manifest["error"]
    # the buggy window is not a failed row among measured ones: the sweep stopped there
    assert all(t["status"] == "ok" for t in atomic.read_csv(results / "trials.csv"))


def test_a_gpu_error_inside_a_trial_is_still_a_failed_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    break_energy_counter(monkeypatch, GpuError("the energy counter did not answer"))
    req = write_request(tmp_path / "r.toml", clocks=(1410, 945), images="benchmark")
    r = sweepd("run", req, "--root", tmp_path / "root", "--job-id", "gpu")
    results = paths.Layout.resolve(tmp_path / "root").job_results("gpu")
    trials = atomic.read_csv(results / "trials.csv")
    assert "Traceback" not in r.stderr
    assert trials and all(t["status"] == "failed" for t in trials)
    assert "GpuError: the energy counter did not answer" in trials[0]["error"]


def test_a_type_error_inside_a_shard_exits_70_and_the_shard_is_not_retried(tmp_path, monkeypatch):
    break_energy_counter(monkeypatch, TypeError("injected bug"))
    layout = paths.Layout.resolve(tmp_path / "root")
    req = SweepRequest.model_validate({
        "executor": "slurm", "split": 2, "workload": {"model": "tiny", "steps": 2, "width": 32, "height": 32},
        "gpu": {"backend": "sim"}, "frequencies": {"mode": "custom", "list": [1410, 945, 510]},
        "protocol": {"trials": 2, "min_window_s": 0.2, "settle_s": 0}, "images": {"mode": "benchmark"}})
    js = JobScript("bbbbbbbbbbbb", req, SlurmSettings(), layout)
    js.write_spec(None)
    env = sweepd_env(SLURM_ARRAY_JOB_ID="700", SLURM_ARRAY_TASK_ID="0", SLURM_JOB_ID="700")
    r = sweepd("worker", "--spec", js.spec, "--shard", 0, "--root", tmp_path / "node",
               "--images-dir", layout.images, "--results-dir", layout.results, env=env)
    assert r.returncode == EXIT_INTERNAL, r.stderr
    assert "Traceback" in r.stderr and "TypeError: injected bug" in r.stderr
    status = WorkerStatus.read(layout.results / "job_700/shards/0/status.json")
    assert (status.state, status.exit_code) == ("failed", EXIT_INTERNAL) and "injected bug" in status.error
    assert status.retry_cannot_help  # the SLURM executor fails it instead of resubmitting it


@pytest.mark.parametrize("code, cannot_help", [(70, True), (2, True), (1, False), (3, False), (None, False)])
def test_only_a_bug_or_bad_input_is_not_worth_another_attempt(code, cannot_help):
    status = WorkerStatus(sweep_id="s", job_id="j", state="failed", exit_code=code)
    assert status.retry_cannot_help is cannot_help
