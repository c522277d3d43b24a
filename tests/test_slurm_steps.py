"""clock_control = "slurm" (issue #24): a sweep measured as one `srun --gpu-freq` step per clock, for users who may not
set clocks. Here through the code's seams: the driver (`sweepd.slurm.steps.drive`) with a launcher that runs each
step in this process (the engine with the blank workload on the simulated GPU, or the NVML backend on the fake
pynvml); `tests/test_slurm_gpu_freq.py` runs the same through real sbatch and srun on the one-node cluster."""

import pytest

from conftest import sweepd, sweepd_env
from sweepd.engine import clockcontrol, runner
from sweepd.errors import EXIT_INTERRUPTED, InputError
from sweepd.gpu import open_device
from sweepd.gpu.base import GpuPermissionError
from sweepd.gpu.locks import ClockGuard, NextClock, SlurmSetsNoClock
from sweepd.ops import sweeps
from sweepd.paths import Layout
from sweepd.records.manifest import SweepManifest
from sweepd.records.step import StepSpec
from sweepd.request import SweepRequest
from sweepd.slurm import steps
from sweepd.vocab import ClockControl, RunState

CLOCKS = [1410, 1290, 1200, 1095, 945, 780]


def request(control="slurm", clocks=CLOCKS, backend="sim", **protocol) -> SweepRequest:
    return SweepRequest.model_validate({
        "workload": {"model": "tiny", "steps": 2, "width": 32, "height": 32},
        "gpu": {"backend": backend, "sim_model": "A100", "clock_control": control},
        "frequencies": {"mode": "custom", "list": clocks},
        "protocol": {"warmup": 0, "trials": 2, "images_per_trial": 2, "min_window_s": 0.05, "settle_s": 0,
                     "baseline_every": 2} | protocol,
        "images": {"mode": "benchmark"}})


class InProcess:
    """Runs each step as `sweepd step` would, in this process, with the blank workload; records every step."""

    def __init__(self, layout: Layout, die_at: int | None = None):
        self.layout, self.die_at, self.specs = layout, die_at, []

    def __call__(self, spec: StepSpec, path) -> int:
        assert StepSpec.read(path) == spec  # what the step process would read
        self.specs.append(spec)
        if spec.step == self.die_at:
            return 137  # killed (SIGKILL) before it wrote anything
        if spec.probe:
            runner.probe_step(spec.request, self.layout, spec)
        else:
            runner.run_blank(spec.request, self.layout, spec.job_id, step=spec)
        return 0


def rows(layout: Layout, job: str) -> list[tuple[int, str]]:
    from sweepd.records.rows import TrialRow

    return [(r.freq_mhz, r.role or "") for r in TrialRow.read_all(layout.job_results(job) / "trials.csv")]


def plan_of(req: SweepRequest, layout: Layout, job: str):
    prepared = runner.prepare(req, layout, job)
    prepared.device.close()
    return prepared.plan


@pytest.fixture
def allocation(monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")


def with_batch_sizes(req: SweepRequest, sizes) -> SweepRequest:
    return SweepRequest.model_validate(req.model_dump() | {"workload": req.workload.model_dump() | {
        "batch_size": sizes}}) if sizes else req


@pytest.mark.parametrize("sizes", [None, [1, 2]])
def test_a_sweep_in_steps_measures_what_one_process_measures_in_the_same_order(tmp_path, allocation, sizes):
    one = Layout.resolve(tmp_path / "one")
    runner.run_blank(with_batch_sizes(request("lock"), sizes), one, "one")
    layout = Layout.resolve(tmp_path / "steps")
    req = with_batch_sizes(request(), sizes)
    launch = InProcess(layout)
    assert steps.drive(req, layout, "s", plan_of(req, layout, "s"), launch) == 0
    assert rows(layout, "s") == rows(one, "one")  # the baseline again after every 2 clocks and at the end, alike
    assert rows(layout, "s")[-1] == (1410, "drift")
    probe, *measuring = launch.specs
    assert probe.probe and probe.freq_mhz == 780  # the lowest: a clock the GPU does not run at by itself
    # one step per clock, plus one per re-measurement of the baseline; only the first is a resumed sweep
    assert [s.freq_mhz for s in measuring] == [1410, 1290, 1410, 1200, 1095, 1410, 945, 780, 1410]
    assert [s.freq_mhz for s in measuring] == [f for i, (f, _) in enumerate(rows(layout, "s"))
                                               if i == 0 or rows(layout, "s")[i - 1][0] != f]
    assert [s.continues for s in measuring] == [False] + [True] * 8
    m = SweepManifest.read(SweepManifest.path_in(layout.job_results("s")))
    assert m.status == RunState.DONE and m.request_sha256 == with_batch_sizes(request("lock"), sizes).fingerprint()
    assert (m.batch is not None) == bool(sizes)  # a batch-size list: its phase in the first step, its choice kept
    assert not layout.job_steps("s").exists()  # the driver's hand-over files go with it


def test_a_killed_step_leaves_a_sweep_that_resumes_with_one_check_of_the_baseline(tmp_path, allocation):
    layout = Layout.resolve(tmp_path)
    req = request()
    plan = plan_of(req, layout, "k")
    out = sweeps.measure_in_steps(req, layout, "k", plan, InProcess(layout, die_at=3))
    assert out.status == RunState.INTERRUPTED and out.exit_code == EXIT_INTERRUPTED
    assert "exit status 137 (signal 9)" in out.error and "resumes" in out.error
    assert SweepManifest.read(SweepManifest.path_in(layout.job_results("k"))).status == RunState.INTERRUPTED
    before = rows(layout, "k")
    assert {f for f, _ in before} == {1410, 1290}
    again = InProcess(layout)
    out = sweeps.measure_in_steps(req, layout, "k", plan, again)
    assert out.status == RunState.DONE and out.exit_code == 0
    after = rows(layout, "k")
    assert after[:len(before)] == before and after[len(before)] == (1410, "drift")  # the resumed process's check
    assert {f for f, role in after if not role} == set(CLOCKS)
    assert [s.continues for s in again.specs if not s.probe][:2] == [False, True]
    # a job done is done: measured again by nobody (no step launched), its report written again
    launched = len(again.specs)
    assert sweeps.measure_in_steps(req, layout, "k", plan, again).status == RunState.DONE
    assert len(again.specs) == launched and (layout.job_results("k") / "report.html").exists()


def test_an_adaptive_search_goes_on_from_step_to_step(tmp_path, allocation):
    layout = Layout.resolve(tmp_path)
    req = SweepRequest.model_validate(request().model_dump() | {"frequencies": {"mode": "adaptive"}})
    launch = InProcess(layout)
    assert steps.drive(req, layout, "a", plan_of(req, layout, "a"), launch) == 0
    m = SweepManifest.read(SweepManifest.path_in(layout.job_results("a")))
    assert m.status == RunState.DONE and m.search.stopped_because and m.search.chosen_mhz
    measured = [s.freq_mhz for s in launch.specs if not s.probe]
    assert measured[:len(m.search.evaluated_mhz)] == m.search.evaluated_mhz  # each step: the search's next clock
    assert rows(layout, "a")[-1] == (m.search.evaluated_mhz[0], "drift")


def test_a_step_measures_only_at_its_own_clock_and_hands_over_at_the_next(tmp_path):
    with open_device("sim") as gpu, ClockGuard(gpu, tmp_path, control=ClockControl.SLURM, step_mhz=1095) as guard:
        guard.lock(1095, None)
        assert gpu.sm_clock_mhz() == 1095
        with pytest.raises(NextClock) as e:
            guard.lock(945, 1215)
        assert (e.value.freq_mhz, e.value.memory_mhz) == (945, 1215)
    assert list(tmp_path.iterdir()) == []  # slurmstepd resets the clock: no lock record to repair
    with open_device("sim") as gpu, ClockGuard(gpu, tmp_path, control=ClockControl.SLURM) as guard:
        with pytest.raises(InputError, match="srun --gpu-freq steps"):
            guard.lock(1095, None)


def test_a_cluster_whose_slurm_sets_no_clock_is_told_after_the_probe_with_the_fix(fake_nvml, monkeypatch, tmp_path):
    """The fake NVML runs at its highest clock when nobody set one: what a step sees where SLURM ignores
    --gpu-freq (gpu/generic), so the probe at the lowest clock ends the sweep with exit 2 and the fix."""
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("FAKE_NVML_STATE", str(tmp_path / "clocks.json"))  # what every process on the node sees
    layout = Layout.resolve(tmp_path)
    req = request(backend="nvml")
    spec = StepSpec(job_id="n", step=0, freq_mhz=780, probe=True, root=str(layout.root), images=str(layout.images),
                    results=str(layout.results), request=req)
    with pytest.raises(SlurmSetsNoClock) as e:
        runner.probe_step(req, layout, spec)
    assert e.value.exit_code == 2 and "AutoDetect=nvml" in str(e.value) and "--gpu-freq" in str(e.value)
    spec.write(tmp_path / "step.json")
    r = sweepd("step", tmp_path / "step.json", env=sweepd_env(True, SLURM_JOB_ID="77", FAKE_NVML_GPUS="A100"))
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert '[gpu] clock_control = "slurm"' in r.stderr and "AutoDetect=nvml" in r.stderr, r.stderr
    assert not layout.job_results("n").exists()
    # where the clock was set (slurmstepd, as root), the probe passes and says so
    fake_nvml.nvmlInit()
    fake_nvml.nvmlDeviceSetGpuLockedClocks(fake_nvml.nvmlDeviceGetHandleByIndex(0), 780, 780)
    fake_nvml.nvmlShutdown()
    assert runner.probe_step(req, layout, spec) == 780


def test_auto_falls_back_to_steps_only_inside_an_allocation_and_never_silently(fake_nvml, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")
    monkeypatch.setenv("FAKE_NVML_API_RESTRICTED", "1")
    monkeypatch.setenv("ZEUSD_SOCK_PATH", str(tmp_path / "no-zeusd.sock"))
    monkeypatch.setattr("sweepd.gpu.controls.privileged", lambda: False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    req = request("auto", backend="nvml")
    with open_device("nvml") as gpu:
        with pytest.raises(GpuPermissionError) as e:
            clockcontrol.control_for(req, gpu)
        assert "slurm: not inside a SLURM allocation" in str(e.value) and "zeusd" in str(e.value)
        monkeypatch.setenv("SLURM_JOB_ID", "9")
        assert clockcontrol.control_for(req, gpu) == [ClockControl.SLURM]
        assert clockcontrol.control_for(request("slurm", backend="nvml"), gpu) == [ClockControl.SLURM]
        monkeypatch.delenv("SLURM_JOB_ID")
        with pytest.raises(InputError, match="not inside a SLURM allocation"):
            clockcontrol.check_device(request("slurm", backend="nvml"), gpu, Layout.resolve(tmp_path))


def test_the_estimate_counts_a_model_load_for_every_step(fake_nvml, tmp_path):
    from sweepd.report.estimate import STARTUP_S, estimate

    layout = Layout.resolve(tmp_path)
    with open_device("nvml") as gpu:
        locked = estimate(request("lock", backend="nvml"), layout, gpu, from_history=False)
        stepped = estimate(request("slurm", backend="nvml"), layout, gpu, from_history=False)
    steps_ = len(CLOCKS) + request().protocol.drift_checks(len(CLOCKS))  # each clock, each re-measurement
    assert stepped.duration_s - locked.duration_s == pytest.approx(STARTUP_S * (steps_ - 1))


def test_auto_in_an_allocation_tries_this_process_first_and_takes_steps_when_the_driver_refuses(fake_nvml, monkeypatch,
                                                                                                tmp_path):
    """Root in a container without CAP_SYS_ADMIN on the host's GPU: locking looks available and is refused. Tried
    before the model loads, at the first clock and reset: then srun steps, not a failed sweep."""
    monkeypatch.setattr("sweepd.gpu.controls.privileged", lambda: True)
    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")
    monkeypatch.setenv("ZEUSD_SOCK_PATH", str(tmp_path / "no-zeusd.sock"))
    monkeypatch.setenv("SLURM_JOB_ID", "9")
    layout = Layout.resolve(tmp_path)
    req = request("auto", backend="nvml")
    ready = sweeps.prepare(req, layout, "auto1", force=True)
    assert ready.in_steps
    assert not [c for c in fake_nvml.calls if c[0].startswith("nvmlDeviceSet")]  # refused: nothing was set
    assert list((tmp_path / "state" / "gpu-locks").glob("*.json")) == []  # and no lock record is left
    monkeypatch.delenv("FAKE_NVML_DENY_SET")
    assert not sweeps.prepare(req, layout, "auto2", force=True).in_steps  # where locking works, this process does
    assert [c[0] for c in fake_nvml.calls] == ["nvmlDeviceSetGpuLockedClocks", "nvmlDeviceSetMemoryLockedClocks",
                                               "nvmlDeviceResetGpuLockedClocks", "nvmlDeviceResetMemoryLockedClocks"]


def test_when_auto_is_refused_everywhere_the_line_names_what_was_not_even_tried(fake_nvml, monkeypatch, tmp_path):
    monkeypatch.setattr("sweepd.gpu.controls.privileged", lambda: True)
    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")  # root, but the driver refuses (root in a container)
    monkeypatch.setenv("ZEUSD_SOCK_PATH", str(tmp_path / "no-zeusd.sock"))
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    out = runner.run(request("auto", backend="nvml"), Layout.resolve(tmp_path), "r", QuietObserverForTest())
    assert out.status == RunState.FAILED and out.exit_code == 3
    assert "lock:" in out.error and "zeusd:" in out.error and "slurm: not inside a SLURM allocation" in out.error


class QuietObserverForTest:
    def clock_started(self, *a): ...

    def trial_done(self, *a): ...

    def clock_done(self, *a): ...
