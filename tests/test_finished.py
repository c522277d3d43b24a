"""A finished sweep stays finished, and a running one is not resumed by a second process: `done` in sweep.json is
final (a worker killed while writing the report is followed by one that writes the report and measures nothing),
and `sweepd run --resume JOB` while JOB is measured elsewhere changes nothing."""

import hashlib
import subprocess
import sys

from conftest import sweepd
from sweepd.engine.runner import run_blank
from sweepd.paths import Layout
from sweepd.queue import Queue
from sweepd.records.manifest import SweepManifest
from sweepd.request import SweepRequest

REQUEST = {"job_id": "fin", "workload": {"model": "tiny", "steps": 2, "width": 32, "height": 32},
           "gpu": {"backend": "sim"}, "frequencies": {"mode": "custom", "list": [1410, 945]},
           "protocol": {"trials": 2, "min_window_s": 0.2, "settle_s": 0}, "images": {"mode": "benchmark"}}


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def done_job_without_report(tmp_path):
    """A job whose sweep.json says done and whose report was never written (its worker killed while writing it)."""
    layout = Layout(tmp_path, tmp_path / "images", tmp_path / "results")
    req = SweepRequest.model_validate(REQUEST)
    store = run_blank(req, layout, "fin")
    (store.dir / "report.html").unlink(missing_ok=True)
    return layout, req, store.dir


def test_a_queued_sweep_run_again_after_done_writes_its_report_and_measures_nothing(tmp_path):
    from sweepd.daemon import worker

    layout, req, d = done_job_without_report(tmp_path)
    before = {f: digest(d / f) for f in ("trials.csv", "summary.csv")}
    q = Queue(layout.queue_db)
    q.add("s1", "fin", req)
    q.close()
    assert worker.main("s1", layout) == 0  # as the daemon runs it when it resumes the killed worker's sweep
    assert (d / "report.html").exists()
    assert {f: digest(d / f) for f in before} == before
    assert SweepManifest.read(d / "sweep.json").status == "done"


def test_resume_of_a_done_job_writes_its_report_and_a_fresh_run_of_it_is_refused(tmp_path):
    layout, req, d = done_job_without_report(tmp_path)
    (tmp_path / "req.json").write_text(req.model_dump_json(by_alias=True))
    r = sweepd("run", "--resume", "fin", "--root", tmp_path)
    assert r.returncode == 0, r.stderr
    assert (d / "report.html").exists() and "report:" in r.stdout
    again = sweepd("run", tmp_path / "req.json", "--job-id", "fin", "--root", tmp_path)
    assert again.returncode == 2 and "already done" in again.stderr


def test_resume_of_a_job_another_process_measures_is_refused_and_changes_nothing(tmp_path):
    layout, req, d = done_job_without_report(tmp_path)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        m = SweepManifest.read(d / "sweep.json")
        m.status, m.pid = "running", alive.pid  # another process is measuring this job now
        m.write(d / "sweep.json")
        before = {p.name: digest(p) for p in d.iterdir() if p.is_file()}
        r = sweepd("run", "--resume", "fin", "--root", tmp_path)
        assert r.returncode == 2 and "running now" in r.stderr and "nothing was changed" in r.stderr
        assert {p.name: digest(p) for p in d.iterdir() if p.is_file()} == before
    finally:
        alive.kill()
        alive.wait()


def test_resume_of_a_job_the_daemon_has_queued_is_refused(tmp_path):
    layout, req, d = done_job_without_report(tmp_path)
    m = SweepManifest.read(d / "sweep.json")
    m.status = "interrupted"
    m.write(d / "sweep.json")
    q = Queue(layout.queue_db)
    q.add("s1", "fin", req)
    q.close()
    before = digest(d / "sweep.json")
    r = sweepd("run", "--resume", "fin", "--root", tmp_path)
    assert r.returncode == 2 and "queued or running" in r.stderr
    assert digest(d / "sweep.json") == before
