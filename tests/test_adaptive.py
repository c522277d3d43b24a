"""The answer in minutes: the adaptive search (pure decisions, then a whole sweep on the simulated GPU), and
putting the answer to use with `sweepd clock set/show/reset` on the simulated GPU and the fake pynvml."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import measured, sweepd, sweepd_env, wait_for_rows, write_request
from sweepd import atomic
from sweepd.engine import search
from sweepd.engine.search import Trial, decide
from sweepd.gpu.simmodel import calibrate
from sweepd.records.rows import TrialRow


def synthetic(curve, clocks, spread=0.01, n=4):
    """Trials whose EDP follows ``curve`` (J with s = 1), with a small fixed spread."""
    k = [1 + spread * x for x in (-1.5, -0.5, 0.5, 1.5)[:n]]
    return {f: [Trial(curve(f) * x, 1.0) for x in k] for f in clocks}


def drive(supported, curve, objective="edp", spread=0.01):
    """Run the search to its end against a known curve; returns (decision, clocks evaluated in order)."""
    done, order = {}, []
    while True:
        d = decide(supported, done, objective)
        if not d.next_mhz:
            return d, order
        f = d.next_mhz[0]
        done.update(synthetic(curve, [f], spread))
        order.append(f)


def test_the_search_starts_coarse_then_narrows_to_the_knee_and_says_why_it_stopped():
    supported = list(range(1410, 509, -15))  # 61 clocks like the A100's
    model = calibrate("A100")
    d, order = drive(supported, lambda f: model.energy_ratio(f) * model.slowdown(f))
    assert order[:5] == [supported[i] for i in search.coarse(61)] == [1410, 1185, 960, 735, 510]
    assert len(order) <= 12 and len(set(order)) == len(order)
    assert d.chosen_mhz in (945, 960, 975) and "fitted optimum and the clocks next to it" in d.stopped_because
    # the same measurements give the same decisions: what a resumed sweep relies on
    again, order2 = drive(supported, lambda f: model.energy_ratio(f) * model.slowdown(f))
    assert order2 == order and again.chosen_mhz == d.chosen_mhz


def test_a_bump_in_the_measured_curve_is_measured_densely_and_said():
    supported = list(range(1410, 509, -15))
    # two valleys (at 1185 and 735) with a significant bump between: not unimodal
    curve = lambda f: 100 + (20 if abs(f - 960) < 100 else 0) + abs(f - 735) / 50 * (f < 800) + abs(f - 1185) / 50 * (f > 1100)  # noqa: E731
    done = synthetic(curve, [supported[i] for i in search.coarse(61)])
    d = decide(supported, done, "edp")
    assert d.notes and "not unimodal" in d.notes[0] and d.next_mhz
    assert all(f not in done for f in d.next_mhz)


def test_the_slowdown_bound_keeps_the_answer_within_it():
    supported = list(range(1410, 509, -15))
    done = {f: [Trial(100 - (1410 - f) / 30, 1 + (1410 - f) / 1000)] * 3 for f in [1410, 1185, 960, 735, 510]}
    d = decide(supported, done, "energy", max_slowdown_pct=10)
    assert d.chosen_mhz >= 1320  # 10 % slower than 1410 at 1310 MHz in this curve


def adaptive_request(path, extra_freq="", extra_protocol="", noise="none"):
    text = write_request(path, clocks=(1410,), trials=2, images="benchmark").read_text()
    text = text.replace('mode = "custom"\nlist = [1410]', f'mode = "adaptive"\nobjective = "edp"\n{extra_freq}')
    text = text.replace('sim_model = "A100"', f'sim_model = "A100"\nsim_noise = "{noise}"')
    text = text.replace("min_window_s = 0.3", "min_window_s = 4.0")  # 100 ms counter steps: 2.5 % at most
    path.write_text(text.replace("[protocol]", f"[protocol]\n{extra_protocol}"))
    return path


@pytest.mark.slow
def test_an_adaptive_sweep_measures_a_few_clocks_reports_the_search_and_resumes_to_the_same_decisions(tmp_path):
    from sweepd import configfile
    from sweepd.engine.runner import run_blank
    from sweepd.paths import Layout
    from sweepd.request import SweepRequest

    req = adaptive_request(tmp_path / "a.toml")
    one = tmp_path / "one"  # the engine without the model: the search, its files and the report as `run` has them
    run_blank(configfile.load(SweepRequest, req), Layout(one, one / "images", one / "results"), "a")
    a = json.loads(sweepd("report", "a", "--root", tmp_path / "one", "--json").stdout)
    s = a["search"]
    assert s["mode"] == "adaptive" and s["supported_count"] == 61 and 5 <= len(s["evaluated_mhz"]) <= 12
    assert s["fraction"] == pytest.approx(len(s["evaluated_mhz"]) / 61, abs=1e-3) and s["stopped_because"]
    assert sorted(c["freq_mhz"] for c in a["clocks"]) == sorted(s["evaluated_mhz"])  # ordinary rows, each one
    edp = next(o for o in a["optima"] if o["metric"] == "edp" and not o["bounded"])
    assert edp["freq_mhz"] == s["chosen_mhz"] in (945, 960, 975)  # the noise-free truth's 1 % band
    # the whole path replays from trials.csv as written: every decision was made from the rows a resume reads
    done = [TrialRow.model_validate(r) for r in atomic.read_csv(tmp_path / "one/results/job_a/trials.csv")]
    replay: dict[int, list[Trial]] = {}
    for f in s["evaluated_mhz"]:
        assert decide(list(range(1410, 509, -15)), replay, "edp").next_mhz[0] == f
        replay[f] = [Trial(t.j_per_image, t.s_per_image_median or t.s_per_image) for t in done
                     if t.freq_mhz == f and t.role is None]
    last = decide(list(range(1410, 509, -15)), replay, "edp")
    assert last.next_mhz == [] and last.chosen_mhz == s["chosen_mhz"]
    text = sweepd("report", "a", "--root", tmp_path / "one").stdout
    assert f"measured {len(s['evaluated_mhz'])} of 61 clocks" in text and "stopped because" in text
    assert f"sbatch --gpu-freq={edp['freq_mhz']}" in text and f"nvidia-smi -lgc {edp['freq_mhz']},{edp['freq_mhz']}" in text

    # killed mid-way (SIGKILL) and resumed: the clocks completed before are kept, and the next clock is the one
    # the search decides from exactly those (a new process measures anew, so later figures and choices may differ)
    # shorter windows for the real processes: what is checked here is the resume, not the precision
    req = adaptive_request(tmp_path / "b.toml")
    req.write_text(req.read_text().replace("min_window_s = 4.0", "min_window_s = 2.0"))
    proc = subprocess.Popen([sys.executable, "-m", "sweepd", "run", str(req), "--root", str(tmp_path / "two"),
                             "--job-id", "a"], env=sweepd_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_rows(tmp_path / "two/results/job_a/trials.csv", 13, proc)  # into the 7th clock
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = [TrialRow.model_validate(r) for r in atomic.read_csv(tmp_path / "two/results/job_a/trials.csv")]
    complete = {}
    for t in before:
        complete.setdefault(t.freq_mhz, []).append(Trial(t.j_per_image, t.s_per_image_median or t.s_per_image))
    complete = {f: ts for f, ts in complete.items() if len(ts) == 2}
    expected_next = decide(list(range(1410, 509, -15)), complete, "edp").next_mhz[0]
    r = sweepd("run", req, "--root", tmp_path / "two", "--job-id", "a")
    assert r.returncode == 0, r.stderr
    b = json.loads(sweepd("report", "a", "--root", tmp_path / "two", "--json").stdout)
    order = list(complete)
    assert b["search"]["evaluated_mhz"][:len(order)] == order == s["evaluated_mhz"][:len(order)]
    assert b["search"]["evaluated_mhz"][len(order)] == expected_next and b["search"]["stopped_because"]
    trials = atomic.read_csv(tmp_path / "two/results/job_a/trials.csv")
    assert len(measured(trials)) == 2 * len(b["search"]["evaluated_mhz"])
    assert [t["role"] for t in trials if t["freq_mhz"] == "1410"] == ["", "", "drift", "drift", "drift", "drift"]


def test_an_adaptive_request_is_checked_like_any_other(tmp_path):
    bad = adaptive_request(tmp_path / "b.toml", extra_freq="max_slowdown_pct = -3")
    r = sweepd("run", bad, "--root", tmp_path)
    assert r.returncode == 2 and "frequencies.max_slowdown_pct" in r.stderr and "Traceback" not in r.stderr
    wrong = write_request(tmp_path / "c.toml")
    wrong.write_text(wrong.read_text().replace("[frequencies]", '[frequencies]\nobjective = "edp"'))
    r = sweepd("run", wrong, "--root", tmp_path)
    assert r.returncode == 2 and 'only used with mode = "adaptive"' in r.stderr
    est = json.loads(sweepd("estimate", adaptive_request(tmp_path / "e.toml"), "--root", tmp_path, "--json").stdout)
    low, expected, high = est["adaptive_evaluations"]
    assert 5 == low < expected <= high == search.MAX_EVALUATIONS and est["clocks"] == expected
    lo, hi = est["duration_range_s"]
    assert lo < est["duration_s"] < hi


def test_clock_set_show_reset_on_the_simulated_gpu_refuses_unsupported_clocks_with_the_nearest(tmp_path):
    root = ["--root", tmp_path]
    r = sweepd("clock", "set", "945", "--backend", "sim", "--sim-model", "A100", *root)
    assert r.returncode == 0, r.stderr
    assert "locked at 945 MHz" in r.stdout and "SIMULATED" in r.stdout and "--gpu-freq=945" in r.stdout
    shown = json.loads(sweepd("clock", "show", "--json", *root).stdout)
    assert [(s["freq_mhz"], s["backend"], s["source"]) for s in shown] == [(945, "sim", "manual")]
    assert "production lock: 945 MHz" in sweepd("gpus", "--backend", "sim", *root).stdout
    bad = sweepd("clock", "set", "1147", "--backend", "sim", "--sim-model", "A100", *root)
    assert bad.returncode == 2 and "nearest: 1140 MHz or 1155 MHz" in bad.stderr and "Traceback" not in bad.stderr
    assert json.loads(sweepd("clock", "show", "--json", *root).stdout)[0]["freq_mhz"] == 945  # unchanged
    r = sweepd("clock", "reset", "--backend", "sim", *root)
    assert r.returncode == 0 and "was 945 MHz" in r.stdout
    assert json.loads(sweepd("clock", "show", "--json", *root).stdout) == []
    nothing = sweepd("clock", "set", "no-such-job", *root)
    assert nothing.returncode == 2 and "neither a sweep" in nothing.stderr


@pytest.mark.slow
def test_a_sweep_on_a_gpu_with_a_production_lock_restores_it_afterwards(tmp_path):
    log = tmp_path / "nvml.log"
    env = sweepd_env(fake_nvml=True, FAKE_NVML_GPUS="A100", FAKE_NVML_LOG=str(log))
    r = sweepd("clock", "set", "945", "--backend", "nvml", "--root", tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "SIMULATED" not in r.stdout
    req = write_request(tmp_path / "r.toml", backend="nvml", clocks=(1410, 510), trials=1, images="benchmark")
    assert sweepd("run", req, "--root", tmp_path, "--job-id", "p", env=env).returncode == 0
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    sets = [c for c in calls if c["call"] == "nvmlDeviceSetGpuLockedClocks"]
    assert sets[0]["args"] == [945, 945] and sets[-1]["args"] == [945, 945]  # set, swept, restored
    assert [c["args"] for c in sets[1:-1]] and all(c["args"] != [945, 945] for c in sets[1:-1])
    assert calls[-1]["call"] == "nvmlDeviceSetGpuLockedClocks"  # the reset came before the restore
    shown = json.loads(sweepd("clock", "show", "--json", "--root", tmp_path, env=env).stdout)
    assert shown[0]["freq_mhz"] == 945 and shown[0]["backend"] == "nvml"
    r = sweepd("clock", "reset", "--root", tmp_path, env=env)
    assert r.returncode == 0
    assert [json.loads(line)["call"] for line in log.read_text().splitlines()[-2:]] == [
        "nvmlDeviceResetGpuLockedClocks", "nvmlDeviceResetMemoryLockedClocks"]


def test_under_uncertainty_the_pick_leans_to_the_side_where_missing_the_knee_costs_less():
    """Above the knee the objective rises slowly, below it steeply: the bootstrap-averaged fit (search.expected)
    lands below the knee less often than the single best fit, and costs less on average (30 seeded replicates of
    noisy trials around a known V); the same trials always give the same curve."""
    import random

    supported = list(range(1410, 509, -15))
    true = lambda f: 100 * (1 + (0.004 * (f - 945) / 15 if f >= 945 else 0.032 * (945 - f) / 15))  # noqa: E731
    rng = random.Random(5)
    single, averaged = [], []
    for _ in range(30):
        pts = {f: [true(f) * (1 + rng.gauss(0, 0.04)) for _ in range(4)] for f in (1035, 990, 960, 945, 930, 915, 885)}
        single.append(search.fit(pts, supported)[0])
        e = search.expected(pts, supported)
        averaged.append(min(e, key=e.get))
        assert search.expected(pts, supported) == e
    assert sum(f < 945 for f in averaged) < sum(f < 945 for f in single)
    assert sum(map(true, averaged)) < sum(map(true, single))


def test_on_a_real_h200s_trials_the_search_stops_at_its_answer_inside_the_stride_sweeps_equivalent_set():
    """The trials of a real adaptive sweep (H200, SD-1.5-sized, batch 4): from all its clocks the search stops
    with the answer it gave there (1320 MHz), and that answer lies inside the equivalent set of a 12-clock stride
    sweep of the same request on the same GPU. (That sweep decided from its rows before they were rounded to
    the file's 6 digits; its path cannot be replayed from the file, which is what commit_trial's stored rows
    now prevent: test_an_adaptive_sweep_..._resumes_to_the_same_decisions replays one.)"""
    from sweepd.engine.summary import by_clock, reference_trials, summarize
    from sweepd.report.optima import find

    fixtures = Path(__file__).parent / "fixtures" / "h200-batch4"
    supported = list(range(1980, 509, -15))  # the H200's 99 clocks >= 510 MHz (sweepd gpus on the real board)
    rows = by_clock(TrialRow.read_all(fixtures / "adaptive-trials.csv"))
    trials = {f: [Trial(float(t.j_per_image), float(t.s_per_image_median or t.s_per_image)) for t in ts]
              for f, ts in rows.items()}
    assert len(trials) == 11
    d = decide(supported, trials, "edp")
    assert d.next_mhz == [] and d.chosen_mhz == 1320 and "next to it in the table are measured" in d.stopped_because

    stride = TrialRow.read_all(fixtures / "stride-trials.csv")
    plan = sorted({t.freq_mhz for t in stride}, reverse=True)
    o = find("edp", False, summarize(stride, plan, 2.0), by_clock(stride), reference_trials(stride, plan, 2.0), 5.0)
    assert o.freq_mhz == 1305 and min(o.equivalent_mhz) <= d.chosen_mhz <= max(o.equivalent_mhz)


def test_a_search_decides_from_the_rows_as_written_so_a_resume_decides_alike(tmp_path):
    """A live process holds each trial's figures to more digits than trials.csv keeps (6); the search is seeded by
    the trials, and from the real H200's coarse clocks a difference in the 7th digit sends it elsewhere (1035 to
    1110 MHz). The store keeps the rows as written, so the live process and a resumed one decide alike."""
    from sweepd.engine.store import JobStore
    from sweepd.paths import Layout

    fixtures = Path(__file__).parent / "fixtures" / "h200-batch4"
    rows = [r for r in TrialRow.read_all(fixtures / "adaptive-trials.csv")
            if r.freq_mhz in (1980, 1620, 1245, 870, 510) and r.role is None]
    store = JobStore(Layout.resolve(tmp_path), "h200")
    store.dir.mkdir(parents=True)
    for k, r in enumerate(rows):  # the digits a live process has beyond the file's
        store.commit_trial(r.model_copy(update={"j_per_image": r.j_per_image * (1 + 3e-7 * (k % 3 - 1))}), [])

    def next_clock(trials: list[TrialRow]) -> int:
        by = {}
        for t in trials:
            by.setdefault(t.freq_mhz, []).append(Trial(t.j_per_image, t.s_per_image_median or t.s_per_image))
        return decide(list(range(1980, 509, -15)), by, "edp").next_mhz[0]

    assert next_clock(store.trials) == next_clock(TrialRow.read_all(store.dir / "trials.csv"))
