"""The benchmarks that measure the printed answers run at a smoke size, so an API change cannot break one unnoticed:
each completes and writes its figures. (Their real sizes and figures: BENCHMARKS.md.)"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench"


def run(script: str, *args: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{script}.json"
    r = subprocess.run([sys.executable, str(BENCH / script), *args, "--json", str(out)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(out.read_text())


def test_the_coverage_benchmark_runs_and_writes_every_figure_the_intervals_check_reads(tmp_path):
    d = run("coverage.py", "--runs", "2", "--boards", "A100", "--windows", "2", "--split-runs", "1",
            "--power-runs", "1", tmp_path=tmp_path)
    cells = d["cells"]
    assert {(c["board"], c["split"], c["objective"], c["bounded"]) for c in cells} == {
        (board, n, o, b) for board, n in (("A100", 1), ("H100", 2), ("A100 power", 1))
        for o in ("energy", "edp", "ed2p") for b in (False, True)}
    for c in cells:
        assert {"board", "window_s", "default_protocol", "runs", "saving_ci_coverage", "time_ci_coverage",
                "clock_ci_coverage", "truth_in_set", "set_size_mean", "winners_curse_pp"} <= set(c)
        assert c["default_protocol"] and 0 <= c["clock_ci_coverage"] <= 1 and c["set_size_mean"] >= 1
    assert isinstance(d["false_alarms"], dict) and d["cost"]["A100 2 s"]["trials_per_clock"] >= 3


@pytest.mark.slow  # 9 board/objective pairs of a search and a full sweep: about 6 s
def test_the_adaptive_search_benchmark_runs(tmp_path):
    rows = run("adaptive.py", "--runs", "1", tmp_path=tmp_path)
    assert len(rows) == 9 and all(r["evaluations_median"] >= 3 for r in rows)


@pytest.mark.slow  # makes its sweep-like PNGs first: about 6 s
def test_the_storage_benchmark_runs_its_scan_and_its_archive(tmp_path):
    """It rotted once: write_archive came to take an open UnitDir while the bench still passed a path."""
    d = run("storage.py", "--workdir", str(tmp_path / "work"), "--jobs", "4", "--per-job", "20", "--archive-mb", "3",
            "--runs", "2", tmp_path=tmp_path)
    assert d["scan"]["files"] == 80 and d["scan"]["jobs"] == 4 and len(d["scan"]["du_runs_s"]) == 2
    a = d["archive"]
    assert a["files"] >= 5 and a["vs_tar_zstd"] > 0 and 0 < a["sweepd_ratio"] <= 1.1
    assert {k: len(v) for k, v in a["runs_s"].items()} == {"sweepd": 2, "tar_zstd": 2, "tar_zstd_dir_order": 2,
                                                            "tar_zstd_fsync": 2}


@pytest.mark.slow  # a sweep of one clock in a process of its own (the loaded conditions: BENCHMARKS.md)
def test_the_cpu_threads_benchmark_runs(tmp_path):
    req = tmp_path / "one.toml"
    req.write_text('[workload]\nmodel = "tiny"\nsteps = 2\nwidth = 32\nheight = 32\n[gpu]\nbackend = "sim"\n'
                   '[frequencies]\nmode = "custom"\nlist = [1410]\n[protocol]\ntrials = 1\nmin_window_s = 0.2\n'
                   'settle_s = 0\n[images]\nmode = "benchmark"\n')
    d = run("cpu_threads.py", "--runs", "1", "--request", str(req), "--only", "1", tmp_path=tmp_path)
    assert [c["name"] for c in d["conditions"]] == ["idle, sweepd's threads"]
    assert d["conditions"][0]["median_s"] > 0 and d["conditions"][0]["ratio_to_idle"] == 1.0


@pytest.mark.slow  # three client processes
def test_the_client_start_benchmark_runs(tmp_path):
    d = run("client_start.py", "--runs", "1", tmp_path=tmp_path)
    assert d["sweepd list"]["median_s"] > 0 and d["sweepd list over python"] > 0


@pytest.mark.slow  # a real daemon for the intake, another for the idle figures
def test_the_daemon_intake_benchmark_runs_and_intake_is_not_held_up_by_the_settle_time(tmp_path):
    """It rotted once: its idle daemon was started with an empty settings file, which sweepd now refuses, and it
    waited for ever; and its figures showed every request waiting out spool_settle_s (1 s)."""
    d = run("daemon_intake.py", "--n", "3", "--idle-s", "1", "--settle-s", "0.5", tmp_path=tmp_path)
    assert d["latency"]["n"] == 3 and d["latency"]["max_ms"] < 900  # renamed in: taken at once, not settled
    assert d["idle"]["rss_mb_median"] > 0


@pytest.mark.slow  # a one-clock sweep of the tiny model in a process of its own
def test_the_overhead_benchmark_runs(tmp_path):
    d = run("overhead.py", "--skip-old", "--min-window", "0.2", "--floor", "1410", tmp_path=tmp_path)
    assert d["sweepd"]["clocks"] == 1 and d["sweepd"]["trials"] >= 3


LOAD_RANDOM_SD = """
import runpy, sys
from pathlib import Path
script, out = sys.argv[1], Path(sys.argv[2])
sys.argv = [script, str(out), "--smoke"]
runpy.run_path(script, run_name="__main__")
from sweepd.request import Workload as Spec
from sweepd.workload.pipeline import Workload
[image] = Workload(Spec(model=str(out), steps=2, width=64, height=64), out.parent / "cache").generate(0, 1)
print("image", image.shape)
"""
GPU_SCRIPTS = (("gpu_check.sh", {"SIM": "1"}), ("gpu_fidelity.sh", {"SMOKE": "1"}), ("gpu_adaptive.sh", {"SMOKE": "1"}),
               ("gpu_families.sh", {"SMOKE": "1"}), ("gpu_knobs.sh", {"SMOKE": "1"}))


@pytest.fixture(scope="session")
def gpu_scripts(tmp_path_factory):
    """bench/gpu_*.sh on the simulated GPU, bench/random_sd.py --smoke and a short bench/soak.py, all at once in
    the background: seven small sweeps, a model build and a daemon in processes of their own, about a minute of
    CPU, while the rest of the suite runs (started first, checked last). Nothing here asserts a time."""
    tmp = tmp_path_factory.mktemp("gpu-scripts")
    runs = {}
    for script, env in GPU_SCRIPTS:
        out, log = tmp / script, tmp / f"{script}.log"
        e = os.environ | env | {"OUT": str(out), "ROOT": str(tmp / f"{script}.root"), "SWEEPD_CPU_THREADS": "1",
                                "MODELS": str(tmp / f"{script}.models")}
        with open(log, "w") as fh:
            runs[script] = (out, log, subprocess.Popen(["bash", str(BENCH / script)], cwd=BENCH.parent, env=e,
                                                       stdout=fh, stderr=subprocess.STDOUT))
    sd, log = tmp / "random-sd", tmp / "random_sd.log"
    with open(log, "w") as fh:  # built, then loaded through sweepd's workload and made to draw one image
        runs["random_sd.py"] = (sd, log, subprocess.Popen(
            [sys.executable, "-c", LOAD_RANDOM_SD, str(BENCH / "random_sd.py"), str(sd)], cwd=BENCH.parent,
            env=os.environ | {"SWEEPD_CPU_THREADS": "1"}, stdout=fh, stderr=subprocess.STDOUT))
    soak, log = tmp / "soak.json", tmp / "soak.log"  # a real daemon, one small sweep, the writer, the accounting
    with open(log, "w") as fh:
        runs["soak.py"] = (soak, log, subprocess.Popen(
            [sys.executable, str(BENCH / "soak.py"), "--minutes", "0.05", "--every", "5", "--drain-s", "240",
             "--json", str(soak)], cwd=BENCH.parent, stdout=fh, stderr=subprocess.STDOUT))
    yield runs
    for _, _, p in runs.values():
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.slow
@pytest.mark.run_first
def test_the_gpu_scripts_start_on_the_simulated_gpu(gpu_scripts):
    assert {s for s, _ in GPU_SCRIPTS} | {"random_sd.py", "soak.py"} == set(gpu_scripts)


@pytest.mark.slow
@pytest.mark.run_last
def test_the_gpu_scripts_ran_on_the_simulated_gpu_and_wrote_their_figures(gpu_scripts):
    """bench/gpu_*.sh are what a lent GPU machine runs, once, with minutes to spare: a script broken by an API change
    is found here, not there. Their SIM/SMOKE paths run the same steps on the simulated GPU with the tiny model."""
    logs = {}
    for script, (_, log, p) in gpu_scripts.items():
        rc = p.wait(timeout=300)
        logs[script] = log.read_text()
        assert rc == 0, logs[script][-3000:]
        assert "Traceback" not in logs[script] and "exited" not in logs[script], logs[script][-3000:]
    d = json.loads(gpu_scripts["soak.py"][0].read_text())  # the soak: every request and image accounted for
    assert d["requests"] == {"dropped": 1, "done": 1, "failed": 0, "missing": 0, "unfinished": 0}
    assert d["images"]["total"] >= 5 and d["images"]["verified"] == d["images"]["total"]
    assert d["rss_mb"] and d["fds"] and d["threads"] and d["daemon_exit"] == 0 and d["helpers_died"] == []
    assert d["worker_peak_rss_mb"]["n"] >= 1 and d["worker_peak_rss_mb"]["max"] > d["rss_mb"][0][1]  # torch's
    assert set(d["intake_ms"]) == {"p50", "p95", "max"}
    sd = gpu_scripts["random_sd.py"][0]  # random_sd.py --smoke: SD 1.5's classes at toy widths, loaded by sweepd
    assert "M parameters" in logs["random_sd.py"] and "image (64, 64, 3)" in logs["random_sd.py"]
    assert (sd / "model_index.json").exists()
    for family in ("sdxl", "sd3"):  # gpu_families.sh: each family built at toy widths, swept (3 clocks in SMOKE)
        assert sum(line.startswith(f"{family} ") and "J/image" in line
                   for line in logs["gpu_families.sh"].splitlines()) == 3, logs["gpu_families.sh"][-3000:]
    check = gpu_scripts["gpu_check.sh"][0]
    assert (check / "trials.csv").read_text().count("\n") >= 1 + 3 * 3  # 3 clocks, 3 trials
    assert "clock lock records left: 0" in logs["gpu_check.sh"]
    fid = gpu_scripts["gpu_fidelity.sh"][0]
    for b in (1, 4):
        report = json.loads((fid / f"b{b}.json").read_text())
        assert report["simulated"] and len(report["clocks"]) == 3
    assert "batch 1's optimum" in logs["gpu_fidelity.sh"] and "(SIMULATED)" in logs["gpu_fidelity.sh"]
    ada = gpu_scripts["gpu_adaptive.sh"][0]
    assert json.loads((ada / "adaptive.json").read_text())["search"]["chosen_mhz"] > 0
    assert len(json.loads((ada / "stride.json").read_text())["clocks"]) == 4
    assert "adaptive answer" in logs["gpu_adaptive.sh"] and "reset to default" in logs["gpu_adaptive.sh"]
    knobs = gpu_scripts["gpu_knobs.sh"][0]  # gpu_knobs.sh: a clock sweep, a power sweep, compare (3 of each in SMOKE)
    c = json.loads((knobs / "compare.json").read_text())
    assert c["a"]["knob"] == "clock" and c["b"]["knob"] == "power limit" and len(c["objectives"]) == 6
    assert (knobs / "frontiers.png").exists() and "B frontier:" in logs["gpu_knobs.sh"]
    assert "power_limit_w" in (knobs / "knob-power-trials.csv").read_text().splitlines()[0]


def test_the_power_check_runs_against_nvml(tmp_path):
    """bench/gpu_power_check.py, through the fake pynvml (its figures are the fake's), the load on the CPU."""
    out = tmp_path / "power.json"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(BENCH.parent / "tests" / "fakes"),
                                                       os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, str(BENCH / "gpu_power_check.py"), "--device", "cpu", "--windows", "1",
                        "--window-s", "0.8", "--json", str(out)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    d = json.loads(out.read_text())
    assert d["windows"] == 1 and d["power_reading"] and d["counter_vs_samples"]["instant"]["windows"] == 1
