"""The worker's edges: a cancel at any moment of its start-up ends as cancelled, never as a crash
resumed three times; a full disk during a sweep ends with one line and a sweep.json that never
says done, and no plot is left 0-byte or truncated."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import sweepd_env, write_request
from sweepd.paths import Layout
from sweepd.queue import Queue
from sweepd.settings import Settings


@pytest.mark.parametrize("delay_s", [0.0, 0.05, 0.3, pytest.param(1.0, marks=pytest.mark.slow)])  # 1 s: the model loads
def test_a_cancel_during_worker_start_up_ends_cancelled(tmp_path, monkeypatch, delay_s):
    from sweepd.daemon.pool import WorkerPool
    from sweepd.request import SweepRequest
    from sweepd.configfile import load

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH")])))
    layout = Layout.resolve(tmp_path / "root")
    q = Queue(layout.state / "queue.sqlite")
    req = load(SweepRequest, write_request(tmp_path / "r.toml", trials=1))
    q.add("cccccccccccc", "early-cancel", req.with_job_id("early-cancel"))
    pool = WorkerPool(layout, q, Settings(gpus=[0]))
    pool.start_ready()
    time.sleep(delay_s)
    assert q.request_cancel("cccccccccccc") == "cancelling"
    pool.handle_cancels()
    end = time.monotonic() + 120
    while pool.running and time.monotonic() < end:
        pool.reap()
        time.sleep(0.05)
    row = q.get("cccccccccccc")
    assert row.state == "cancelled", row
    assert row.resumes == 0
    q.close()


ENOSPC = textwrap.dedent("""
    import subprocess, sys
    results = sys.argv[1]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + sys.argv[2], "tmpfs", results], check=True)
    r = subprocess.run([sys.executable, "-m", "sweepd", "run", *sys.argv[3:], "--results-dir", results],
                       capture_output=True, text=True)
    import json, os
    files = {}
    for d, _, fs in os.walk(results):
        for f in fs:
            p = os.path.join(d, f)
            files[os.path.relpath(p, results)] = os.path.getsize(p)
    status = None
    for name in files:
        if name.endswith("sweep.json"):
            status = json.load(open(os.path.join(results, name))).get("status")
    print(json.dumps({"rc": r.returncode, "stderr": r.stderr, "stdout": r.stdout, "files": files, "status": status}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("size", ["24k", "160k"])
def test_a_full_disk_during_a_sweep_ends_with_one_line_and_a_consistent_sweep_json(tmp_path, size):
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 and not unshare:
        pytest.skip("needs root or unshare to mount a small tmpfs: CI runs as root")
    req = write_request(tmp_path / "r.toml", clocks=(1410, 1200, 945, 705, 510), trials=2, images="benchmark")
    results = tmp_path / "results"
    results.mkdir()
    cmd = [sys.executable, "-c", ENOSPC, str(results), size, str(req), "--root", str(tmp_path / "root"),
           "--job-id", "full-disk", "--force"]
    cmd = ([unshare, "-rm"] if os.geteuid() != 0 else [unshare, "-m"] if unshare else []) + cmd
    r = subprocess.run(cmd, capture_output=True, text=True, env=sweepd_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert "Traceback" not in out["stderr"], out["stderr"]
    plots = {k: v for k, v in out["files"].items() if k.endswith((".png", ".svg", ".html"))}
    assert all(v > 0 for v in plots.values()), plots
    assert not any(".tmp" in k for k in out["files"]), out["files"]  # no temporary file left behind
    if out["rc"] == 0:  # it fitted after all (the plots may not have): then the sweep is done
        assert out["status"] == "done"
    else:
        assert out["rc"] == 1 and out["status"] != "done", out
        errors = [line for line in out["stderr"].splitlines() if "error" in line.lower()]
        assert errors and any("No space left on device" in line for line in errors), out["stderr"]
