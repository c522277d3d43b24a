"""Power limits as the sweep's knob (issue #29): a [power] request sweeps the board's limit with the clock left to the
firmware, through the same engine, statistics and report as a clock sweep; limits outside the board's range and
controls that cannot set a limit are refused before anything runs; `sweepd compare` sets a clock sweep against a
power sweep. The engine runs in process (run_blank: the engine's files without the model); `sweepd run` with the model
runs once, and the fake pynvml shows the limit set and reset through NVML as root would."""

import json

import pytest

from conftest import sweepd, sweepd_env
from sweepd import configfile
from sweepd.engine.runner import run_blank
from sweepd.paths import Layout
from sweepd.records.rows import SummaryRow, TrialRow
from sweepd.request import SweepRequest

LIMITS = [250, 225, 200, 175, 150]


def request(tmp_path, name: str, knob: str, backend: str = "sim", steps: int = 2, extra: str = "",
            board: str = "A100"):
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""job_id = "{name}"
[workload]
model = "tiny"
steps = {steps}
width = 32
height = 32
[gpu]
backend = "{backend}"
sim_model = "{board}"
{extra}
[protocol]
trials = 3
warmup = 1
min_window_s = 0.3
settle_s = 0
[images]
mode = "benchmark"
{knob}
""")
    return path


POWER = "[power]\nlimits = [" + ", ".join(map(str, LIMITS)) + "]"
CLOCKS = '[frequencies]\nmode = "custom"\nlist = [1410, 1200, 1005, 780, 510]'


def blank(tmp_path, name: str, knob: str, count: int | None = None, **kw) -> Layout:
    """The sweep as `run` has it without the model; ``count``: images per trial (a real device's windows last
    min_window_s of this machine's time, which blank images would fill by the thousand)."""
    layout = Layout.resolve(tmp_path / "root")
    path = request(tmp_path, name, knob, **kw)
    if count:
        path.write_text(path.read_text().replace("min_window_s = 0.3", f"min_window_s = 0.05\nimages_per_trial = {count}"))
    run_blank(configfile.load(SweepRequest, path), layout, name)
    return layout


def test_a_power_sweep_records_each_limit_where_it_put_the_clock_and_reports_in_watts(tmp_path):
    layout = blank(tmp_path, "pw", POWER)
    rows = [r for r in TrialRow.read_all(layout.job_results("pw") / "trials.csv") if r.role is None]
    assert [r.power_limit_w for r in rows[::3]] == LIMITS and all(r.freq_mhz is None for r in rows)
    by_limit = {r.power_limit_w: r for r in rows}
    # 250 W: the A100 at its highest clock fits under it, so the clock never moves; a cap it does not fit under
    # dithers between two supported clocks (gpu.simcap), so its window has a spread
    assert by_limit[250].sm_clock_mean_mhz == 1410 and by_limit[250].sm_clock_std_mhz == 0
    assert by_limit[200].sm_clock_std_mhz > 0 and by_limit[200].sm_clock_mean_mhz < 1410
    assert all(r.avg_power_w <= w + 15 for w, r in by_limit.items() if w < 250)  # the limit, and each batch's overshoot
    summary = SummaryRow.read_all(layout.job_results("pw") / "summary.csv")
    assert [s.power_limit_w for s in summary] == LIMITS and summary[2].sm_clock_std_mhz > 0
    r = sweepd("report", "pw", "--root", layout.root, "--json")
    assert r.returncode == 0, r.stderr
    a = json.loads(r.stdout)
    assert a["knob"] == "power_limit" and a["baseline_w"] == 250 and "baseline_mhz" not in a
    assert a["optima"] and all(o["power_limit_w"] in LIMITS and set(o["equivalent_w"]) <= set(LIMITS)
                               and "freq_mhz" not in o for o in a["optima"])
    text = sweepd("report", "pw", "--root", layout.root).stdout
    assert "power limit W" in text and "SM clock MHz" in text and "baseline: 250 W (the highest power limit" in text
    assert " MHz, the reference" not in text and "nvidia-smi -pl" in text and "(simulated)" in text


@pytest.mark.parametrize("table, field, words", [
    ("[power]\nlimits = [1000, 250]", "power.limits", "1000 W outside what NVIDIA A100-PCIE-40GB (simulated) takes: "
                                                      "150 to 250 W (default 250 W)"),
    ("[power]\nstep_w = 25\nmin_w = 50", "power.min_w", "outside what"),
])
def test_a_limit_outside_the_boards_range_is_one_line_and_nothing_is_made(tmp_path, table, field, words):
    root = tmp_path / "root"
    r = sweepd("run", request(tmp_path, "big", table), "--root", root)
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr
    err = (r.stdout + r.stderr).strip().splitlines()
    assert len(err) <= 3 and field in err[-1] and words in err[-1]
    assert not (root / "results/job_big").exists()
    r = sweepd("submit", request(tmp_path, "big2", table), "--root", root)  # refused at submit, too
    assert r.returncode == 2 and field in r.stdout + r.stderr


@pytest.mark.parametrize("extra, knob, words", [
    ('clock_control = "application"', POWER, 'cannot set a power limit; a power sweep needs "lock"'),
    ('clock_control = "slurm"', POWER, 'cannot set a power limit'),
    ("", POWER + '\n[frequencies]\nmode = "custom"\nlist = [1410]', "frequencies.mode: a power sweep"),
    ("", POWER + '\n[frequencies]\nmode = "adaptive"', "a power sweep measures each of its limits"),
    ("", "[power]\nlimits = [250]\nstep_w = 25", "give power.limits"),
    ("", "[power]\nlimits = [250, 250]", "appears more than once"),
])
def test_what_cannot_be_a_power_sweep_is_refused_naming_the_field(tmp_path, extra, knob, words):
    r = sweepd("run", request(tmp_path, "bad", knob, extra=extra), "--root", tmp_path / "root")
    assert r.returncode == 2 and words in r.stdout + r.stderr and "Traceback" not in r.stderr


def test_a_power_sweep_on_the_simulated_h100_runs_through_its_range(tmp_path):
    layout = blank(tmp_path, "h", "[power]\nstep_w = 50", extra="", board="H100")
    summary = SummaryRow.read_all(layout.job_results("h") / "summary.csv")
    assert [s.power_limit_w for s in summary] == [400, 350, 300, 250, 200]
    clocks = [s.sm_clock_mean_mhz for s in summary]
    assert clocks == sorted(clocks, reverse=True) and clocks[0] == 1785  # a lower cap, a lower clock


def test_a_step_w_sweep_goes_from_the_boards_maximum_down_to_its_minimum(tmp_path):
    from sweepd.freqplan import plan_for
    from sweepd.gpu.sim import SimulatedGpu

    req = configfile.load(SweepRequest, request(tmp_path, "st", "[power]\nstep_w = 25"))
    assert [p.power_limit_w for p in plan_for(req, SimulatedGpu("A100"))] == [250, 225, 200, 175, 150]
    assert [p.power_limit_w for p in plan_for(req, SimulatedGpu("H100"))][::4] == [400, 300, 200]


def test_a_clock_sweeps_fingerprint_is_what_it_was_before_power_sweeps(tmp_path):
    """A sweep started before [power] existed still resumes: 0.1.0's jobs keep the fingerprint they were written with."""
    from pathlib import Path

    fixtures = sorted((Path(__file__).parent / "fixtures/v0.1.0").glob("job_*/sweep.json"))
    assert fixtures
    for path in fixtures:
        old = json.loads(path.read_text())
        assert SweepRequest.model_validate(old["request"]).fingerprint() == old["request_sha256"], path
    clock = configfile.load(SweepRequest, request(tmp_path, "c", CLOCKS))
    assert configfile.load(SweepRequest, request(tmp_path, "p", POWER)).fingerprint() != clock.fingerprint()


def test_compare_names_a_winner_per_objective_with_a_ci_and_draws_both_frontiers(tmp_path):
    layout = blank(tmp_path, "ck", CLOCKS)
    blank(tmp_path, "pw", POWER)
    r = sweepd("compare", "ck", "pw", "--root", layout.root, "--json")
    assert r.returncode == 0, r.stderr
    c = json.loads(r.stdout)
    assert c["differs"] == [] and len(c["objectives"]) == 6
    for o in c["objectives"]:
        assert o["winner"] in ("A", "B", "tie") and len(o["energy_diff_ci95"]) == 2
        lo, hi = o["objective_diff_ci95"]
        assert (o["winner"] == "tie") == (lo <= 0 <= hi) and (o["winner"] == "B") == (hi < 0)
    assert {p["label"] for p in c["a"]["points"]} >= {"1410 MHz", "510 MHz"}
    assert {p["label"] for p in c["b"]["points"]} == {f"{w} W" for w in LIMITS}
    assert any(p["on_frontier"] for p in c["b"]["points"]) and not all(p["on_frontier"] for p in c["a"]["points"])
    assert not (layout.results / "compare_ck_vs_pw").exists()  # --json reads only
    text = sweepd("compare", "ck", "pw", "--root", layout.root).stdout
    assert text.startswith("A: job ck, clock sweep on") and "B: job pw, power limit sweep" in text
    assert "minimum energy:" in text and "A frontier: 1410 MHz" in text and "B frontier: 250 W" in text
    folder = layout.results / "compare_ck_vs_pw"
    assert (folder / "frontiers.png").stat().st_size > 0 and (folder / "frontiers.svg").exists()
    page = (folder / "report.html").read_text()
    assert "<svg" in page and "SIMULATED GPU" in page and "175 W" in page


def test_compare_of_two_different_workloads_names_the_differing_fields_first(tmp_path):
    layout = blank(tmp_path, "ck", CLOCKS)
    blank(tmp_path, "ck3", CLOCKS, steps=3)
    c = json.loads(sweepd("compare", "ck", "ck3", "--root", layout.root, "--json").stdout)
    assert c["differs"] == ["workload.steps"]
    lines = sweepd("compare", "ck", "ck3", "--root", layout.root).stdout.splitlines()
    assert lines[1].startswith("the workloads differ in workload.steps")
    manifest = layout.job_results("ck3") / "sweep.json"  # a sweep that did not finish says so before the figures
    manifest.write_text(manifest.read_text().replace('"status": "done"', '"status": "interrupted"'))
    lines = sweepd("compare", "ck", "ck3", "--root", layout.root).stdout.splitlines()
    assert lines[1] == "B is interrupted: only the clocks it measured are compared"


def test_a_power_sweep_through_nvml_sets_each_limit_and_leaves_the_default(fake_nvml, tmp_path, monkeypatch):
    """The real NVML path (the fake pynvml as root): each limit set in milliwatts, the clock never locked, the
    default limit back at the end and no lock record left."""
    from sweepd.gpu.locks import read_records
    from sweepd.gpu.nvml import NvmlGpu

    monkeypatch.setenv("FAKE_NVML_STATE", str(tmp_path / "state.json"))
    layout = blank(tmp_path, "nv", "[power]\nlimits = [250, 200, 150]", count=2, backend="nvml")
    sets = [c[2] for c in fake_nvml.calls if c[0] == "nvmlDeviceSetPowerManagementLimit"]
    assert sets[:3] == [250_000, 200_000, 150_000] and sets[-1] == 250_000  # the last: the reset to the default
    assert not [c for c in fake_nvml.calls if c[0] == "nvmlDeviceSetGpuLockedClocks"]
    with NvmlGpu() as gpu:
        assert gpu.power_limits_w().current_w == 250
    assert read_records(layout.gpu_locks) == []
    rows = [r for r in TrialRow.read_all(layout.job_results("nv") / "trials.csv") if r.role is None]
    assert {r.power_limit_w for r in rows} == {250, 200, 150}


def test_without_root_auto_tries_zeusd_and_says_what_sets_a_limit(fake_nvml, tmp_path, monkeypatch):
    """Root in a container that NVML refuses (it looks able): the first limit is refused, no zeusd answers, and the
    line says what sets a power limit, not the clock setters' advice; nothing stays set, no record is left."""
    from sweepd.gpu.base import GpuPermissionError
    from sweepd.gpu.locks import read_records

    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")
    monkeypatch.setenv("ZEUSD_SOCK_PATH", str(tmp_path / "no-zeusd.sock"))
    with pytest.raises(GpuPermissionError) as e:
        blank(tmp_path, "nr", POWER, count=2, backend="nvml")
    assert e.value.exit_code == 3 and "setting a power limit needs root" in str(e.value) and "zeusd" in str(e.value)
    assert "locking GPU clocks" not in str(e.value)
    assert read_records(tmp_path / "root/state/gpu-locks") == []


def test_a_production_cap_is_set_shown_paused_for_a_clock_sweep_restored_and_reset(fake_nvml, tmp_path, monkeypatch):
    """One interface for both knobs: `sweepd clock set 200W` caps the board until `sweepd clock reset`; a clock sweep
    on that GPU measures without the cap (its limits reset to the default at its first clock) and puts it back."""
    from sweepd.gpu.nvml import NvmlGpu

    state = tmp_path / "state.json"
    monkeypatch.setenv("FAKE_NVML_STATE", str(state))
    env = sweepd_env(fake_nvml=True, FAKE_NVML_GPUS="A100", FAKE_NVML_STATE=str(state))
    root = tmp_path / "root"
    r = sweepd("clock", "set", "200W", "--backend", "nvml", "--root", root, env=env)
    assert r.returncode == 0 and "capped at 200 W from manual" in r.stdout and "nvidia-smi -pl 200" in r.stdout
    assert "a 200 W cap" in sweepd("clock", "show", "--root", root, env=env).stdout
    gpus = json.loads(sweepd("gpus", "--backend", "nvml", "--json", "--root", root, env=env).stdout)
    assert gpus[0]["production_power_limit_w"] == 200 and gpus[0]["production_lock_mhz"] is None
    with NvmlGpu() as gpu:
        assert gpu.power_limits_w().current_w == 200
    fake_nvml.calls.clear()
    blank(tmp_path, "ck", '[frequencies]\nmode = "custom"\nlist = [1410, 1005]', count=2, backend="nvml")
    sets = [c[2] for c in fake_nvml.calls if c[0] == "nvmlDeviceSetPowerManagementLimit"]
    assert sets == [250_000, 200_000]  # the default for the sweep, then the production cap back
    with NvmlGpu() as gpu:
        assert gpu.power_limits_w().current_w == 200
    r = sweepd("clock", "reset", "--root", root, env=env)
    assert "(was a 200 W cap)" in r.stdout
    with NvmlGpu() as gpu:
        assert gpu.power_limits_w().current_w == 250
    r = sweepd("clock", "set", "1000W", "--backend", "nvml", "--root", root, env=env)
    assert r.returncode == 2 and "the board takes 150 to 250 W" in r.stdout + r.stderr


def test_a_production_cap_that_the_control_cannot_lift_stays_and_is_said(fake_nvml, tmp_path, monkeypatch, caplog):
    """A user without root sweeping with application clocks under an administrator's production cap: application
    clocks cannot reset a power limit, so the sweep runs under the cap, says so, and leaves it as it was."""
    from sweepd.gpu.nvml import NvmlGpu

    state = tmp_path / "state.json"
    monkeypatch.setenv("FAKE_NVML_STATE", str(state))
    env = sweepd_env(fake_nvml=True, FAKE_NVML_GPUS="A100", FAKE_NVML_STATE=str(state))
    assert sweepd("clock", "set", "200W", "--backend", "nvml", "--root", tmp_path / "root", env=env).returncode == 0
    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")
    monkeypatch.setenv("FAKE_NVML_API_RESTRICTED", "0")
    layout = blank(tmp_path, "app", CLOCKS.replace("1410, 1200, 1005, 780, 510", "1410, 1005"), count=2,
                   backend="nvml", extra='clock_control = "application"')
    assert "the production power cap of" in caplog.text and "stays for this sweep" in caplog.text
    with NvmlGpu() as gpu:
        assert gpu.power_limits_w().current_w == 200
    assert {r.freq_mhz for r in TrialRow.read_all(layout.job_results("app") / "trials.csv")} == {1410, 1005}


def test_a_power_sweeps_status_file_names_its_knob_for_status_and_the_daemons_line(tmp_path):
    """status.json carries the knob (a typed field): `sweepd status` and the daemon's status line say "power limit
    2/6 225W", not "clock 2/6 225W" (they guessed from the label's unit before, or did not say)."""
    from sweepd.engine.status import StatusFileObserver
    from sweepd.freqplan import ClockPoint
    from sweepd.records.status import WorkerStatus
    from sweepd.vocab import Knob

    path = tmp_path / "status.json"
    obs = StatusFileObserver(path, "pw", "s1", trials_per_clock=3)
    obs.clock_started(1, 6, ClockPoint(None, None, power_limit_w=225))
    st = WorkerStatus.read(path)
    assert st.knob is Knob.POWER_LIMIT and st.where == "power limit 2/6 225W"
    assert st.progress_line() == "power limit 2/6 225W, trial 0/3"
    obs.clock_started(1, 6, ClockPoint(1200, None))
    assert WorkerStatus.read(path).progress_line() == "clock 2/6 1200MHz, trial 0/3"
