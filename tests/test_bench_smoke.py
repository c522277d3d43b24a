"""The benchmarks that measure the printed answers run at a smoke size, so an API change cannot break one unnoticed:
each completes and writes its figures. (Their real sizes and figures: BENCHMARKS.md.)"""

import json
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
            tmp_path=tmp_path)
    cells = d["cells"]
    assert {(c["split"], c["objective"], c["bounded"]) for c in cells} == {
        (n, o, b) for n in (1, 2) for o in ("energy", "edp", "ed2p") for b in (False, True)}
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
    assert {k: len(v) for k, v in a["runs_s"].items()} == {"sweepd": 2, "tar_zstd": 2, "tar_zstd_dir_order": 2}


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


@pytest.mark.slow  # a real daemon, one small sweep, the writer and the accounting
def test_the_soak_benchmark_runs_and_accounts_for_every_request_and_image(tmp_path):
    d = run("soak.py", "--minutes", "0.05", "--every", "5", "--drain-s", "120", tmp_path=tmp_path)
    assert d["requests"] == {"dropped": 1, "done": 1, "failed": 0, "missing": 0, "unfinished": 0}
    assert d["images"]["total"] >= 5 and d["images"]["verified"] == d["images"]["total"]
    assert d["rss_mb"] and d["fds"] and d["threads"] and d["daemon_exit"] == 0
    assert d["worker_peak_rss_mb"]["n"] >= 1 and d["worker_peak_rss_mb"]["max"] > d["rss_mb"][0][1]  # torch's
    assert set(d["intake_ms"]) == {"p50", "p95", "max"}
