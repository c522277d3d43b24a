"""sweepd against a real SLURM: a real `sweepd serve` with executor = "slurm" submits real jobs to the
one-node cluster that `.ci/slurm-up` starts (the jobs use the simulated GPU).

They skip with a message when no SLURM answers, except where SWEEPD_REQUIRE_SLURM is set (.ci/run sets
it after starting SLURM): there they fail.
"""

import json
import os
import shutil
import subprocess
import time
from collections import Counter

import pytest

from conftest import measured, sweepd
from daemon_helpers import Daemon
from sweepd import atomic, paths

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.run_first]  # see time_limit_sweep

SETTINGS = """executor = "slurm"
gpus = []
[slurm]
poll_interval_s = 1.0
time_min_minutes = 5
max_retries = 3
"""


def slurm_down_reason() -> str | None:
    if not shutil.which("sbatch") or not shutil.which("sinfo"):
        return "sbatch/sinfo are not installed"
    try:
        p = subprocess.run(["sinfo", "--noheader", "--format=%T"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer in 20 s"
    if p.returncode != 0:
        return (p.stderr.strip().splitlines() or ["sinfo failed"])[-1]
    if not any(s.startswith(("idle", "mixed", "allocated", "completing")) for s in p.stdout.split()):
        return f"no node takes jobs (sinfo: {p.stdout.split()})"
    return None


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    why = slurm_down_reason()
    if why:
        if os.environ.get("SWEEPD_REQUIRE_SLURM"):
            pytest.fail(f"SWEEPD_REQUIRE_SLURM is set but SLURM is not up: {why}")
        pytest.skip(f"no SLURM here ({why}); `sudo .ci/slurm-up` starts a one-node cluster")
    d = Daemon(tmp_path_factory.mktemp("slurm") / "root", settings=SETTINGS).start()
    yield d
    for row in d.queue().list(("queued", "running")):  # leave no job behind on the cluster
        sweepd("cancel", row.id, "--root", d.root, env=d.env)
    d.close()


def request(path, clocks, *, split=1, trials=2, window=0.3, settle=0.0, slurm="", steps=2, size=32):
    path.write_text(f"""executor = "slurm"
split = {split}
[workload]
model = "tiny"
prompt = "a fox; $(touch /tmp/sweepd-pwned) `id`"
steps = {steps}
width = {size}
height = {size}
[gpu]
backend = "sim"
sim_model = "A100"
[frequencies]
mode = "custom"
list = {list(clocks)}
[protocol]
warmup = 1
trials = {trials}
min_window_s = {window}
settle_s = {settle}
[images]
mode = "research"
[slurm]
{slurm}
""")
    return path


def submit(d, req) -> str:
    r = sweepd("submit", req, "--root", d.root, env=d.env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def status(d, sweep_id) -> dict:
    r = sweepd("status", sweep_id, "--root", d.root, "--json", env=d.env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def wait_for(fn, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = fn()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def squeue_ids(job: str) -> set[str]:
    p = subprocess.run(["squeue", "--noheader", "--array", "--jobs", job, "--format=%i|%T"], capture_output=True,
                       text=True, timeout=30)
    return {line.split("|")[0] for line in p.stdout.split() if line.split("|")[1] in ("PENDING", "RUNNING")}


def test_a_split_sweep_is_a_two_task_array_merged_into_one_report(daemon, tmp_path):
    clocks = (1410, 1305, 1200, 1095, 945, 810, 645, 510)
    sid = submit(daemon, request(tmp_path / "split.toml", clocks, split=2))
    array = wait_for(lambda: status(daemon, sid).get("slurm_job_id"), 60, "the sbatch submission")
    seen = set()
    while daemon.queue().get(sid).state == "running":
        seen |= squeue_ids(array)
        time.sleep(0.5)
    row = daemon.wait_state(sid, ("done", "failed", "cancelled"))
    assert row.state == "done", (row, daemon.output())
    assert seen == {f"{array}_0", f"{array}_1"}  # squeue showed both array tasks

    assert row.job_id == array
    top = daemon.root / "results" / f"job_{array}"
    trials = atomic.read_csv(top / "trials.csv")
    assert Counter(t["freq_mhz"] for t in measured(trials)) == {str(f): 2 for f in clocks}
    assert [t["freq_mhz"] for t in measured(trials)][::2] == [str(f) for f in clocks]  # the sweep's order, not the shards'
    assert len(atomic.read_csv(top / "summary.csv")) == len(clocks)
    m = json.loads((top / "sweep.json").read_text())
    assert (m["status"], m["merged_shards"], m["job_id"]) == ("done", 2, array)
    # each shard measures the reference clock on its own GPU: shard 1 too, first
    assert [s["plan_mhz"] for s in m["shards"]] == [list(clocks[0::2]), [clocks[0], *clocks[1::2]]]
    assert {t["role"] for t in trials if t["freq_mhz"] == str(clocks[0])} == {"", "drift", "reference"}
    assert "SIMULATED GPU" in (top / "report.html").read_text()
    assert (daemon.root / "images" / f"job_{array}" / "1410MHz").is_dir()
    assert not os.path.exists("/tmp/sweepd-pwned")  # the prompt never reached a shell

    st = status(daemon, sid)
    assert [(s["shard"], s["state"], s["slurm_id"]) for s in st["shards"]] == [(0, "done", f"{array}_0"),
                                                                               (1, "done", f"{array}_1")]
    logs = sweepd("logs", sid, "--root", daemon.root, env=daemon.env).stdout
    assert f"==> shard-0.job-{array}_0.log <==" in logs and f"shard 1 of sweep {sid} done" in logs
    shown = sweepd("status", sid, "--root", daemon.root, env=daemon.env).stdout
    assert f"shard 0: done, SLURM {array}_0" in shown


def test_cancel_scancels_a_running_job_which_stops_after_its_trial(daemon, tmp_path):
    clocks = tuple(range(1410, 500, -60))
    sid = submit(daemon, request(tmp_path / "long.toml", clocks, trials=3, window=1.0))

    def measuring():
        s = status(daemon, sid)
        shards = s.get("shards") or [{}]
        p = shards[0].get("progress", {})
        return p.get("state") == "running" and (p.get("trials_done") or p.get("clock", 0) > 1) and s

    s = wait_for(measuring, 120, "the shard's first trial")
    job = s["shards"][0]["slurm_id"]
    r = sweepd("cancel", sid, "--root", daemon.root, env=daemon.env)
    assert r.returncode == 0 and f"scancel {job}" in r.stdout, r.stdout + r.stderr
    row = daemon.wait_state(sid, ("cancelled", "done", "failed"), timeout=120)
    assert row.state == "cancelled", row
    assert not squeue_ids(s["slurm_job_id"])
    shard_dir = daemon.root / "results" / f"job_{row.job_id}" / "shards" / "0"
    assert json.loads((shard_dir / "status.json").read_text())["state"] == "interrupted"  # stopped cleanly
    trials = atomic.read_csv(shard_dir / "trials.csv")
    assert 0 < len(trials) < len(clocks) * 3
    assert status(daemon, sid)["shards"][0]["state"] == "cancelled"


def test_jobs_outlive_the_daemon_and_a_restarted_daemon_follows_them_to_done(daemon, tmp_path):
    clocks = (1410, 1200, 1005, 810, 645, 510)
    sid = submit(daemon, request(tmp_path / "restart.toml", clocks, split=2, window=1.0))
    array = wait_for(lambda: status(daemon, sid).get("slurm_job_id"), 60, "the sbatch submission")
    wait_for(lambda: squeue_ids(array) == {f"{array}_0", f"{array}_1"}, 60, "both tasks in squeue")
    assert daemon.stop() == 0
    assert squeue_ids(array), "stopping the daemon must not stop its SLURM jobs"
    daemon.start()  # the same root: the shards table says what to follow
    row = daemon.wait_state(sid, ("done", "failed", "cancelled"), timeout=240)
    assert row.state == "done", (row, daemon.output()[-2000:])
    trials = atomic.read_csv(daemon.root / "results" / f"job_{array}" / "trials.csv")
    assert Counter(t["freq_mhz"] for t in measured(trials)) == {str(f): 2 for f in clocks}


def test_sbatch_refusing_a_job_fails_the_sweep_with_its_reason(daemon, tmp_path):
    sid = submit(daemon, request(tmp_path / "bad.toml", (1410, 510), slurm='partition = "no-such-partition"'))
    row = daemon.wait_state(sid, ("failed", "done", "cancelled"), timeout=60)
    assert row.state == "failed" and "invalid partition" in row.error.lower(), row


def test_pending_and_running_slurm_jobs_are_protected_from_storage_policies(daemon, tmp_path):
    from sweepd.storage.context import protected_jobs

    p = subprocess.run(["sbatch", "--parsable", "--hold", "--job-name=other", "--wrap", "true"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    job = p.stdout.strip().split(";")[0]
    layout = paths.Layout.resolve(tmp_path / "storage-root")
    try:
        assert job in protected_jobs(layout)  # someone's own sbatch job, not submitted by sweepd
    finally:
        subprocess.run(["scancel", job], timeout=30)
    wait_for(lambda: job not in protected_jobs(layout), 30, "the cancelled job to lose its protection")


def test_a_submission_while_the_controller_is_down_waits_and_then_goes_through(daemon, tmp_path):
    """Last in this file: it stops and restarts slurmctld."""
    if os.geteuid() != 0 or not shutil.which("slurmctld", path="/usr/sbin:/usr/bin"):
        pytest.skip("stopping and starting slurmctld needs root")
    subprocess.run(["pkill", "-x", "slurmctld"], check=True)
    wait_for(lambda: subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode != 0, 30,
             "slurmctld to stop")
    try:
        sid = submit(daemon, request(tmp_path / "outage.toml", (1410, 510)))
        q = daemon.queue()
        row = wait_for(lambda: (r := q.get(sid)) is not None and "waiting for SLURM" in (r.error or "") and r,
                       120, "the failed submission to be noted")
        assert row.state == "queued" and row.slurm_job_id is None  # kept, not failed, not dropped
        shown = sweepd("status", sid, "--root", daemon.root, env=daemon.env).stdout
        assert "state: queued" in shown and "waiting for SLURM" in shown
    finally:
        subprocess.run([shutil.which("slurmctld", path="/usr/sbin:/usr/bin")], check=True)
    wait_for(lambda: slurm_down_reason() is None, 60, "slurmctld to take jobs again")
    row = daemon.wait_state(sid, ("done", "failed", "cancelled"), timeout=240)
    assert row.state == "done" and row.slurm_job_id, row


# last in this module, checked last in the session ------------------------------------------------------
@pytest.fixture(scope="session")
def time_limit_sweep(tmp_path_factory):
    """A sweep longer than its 1-minute SLURM time limit. It takes minutes of SLURM's own clock (the limit is
    checked every 30 s, then the resubmission runs), and no faster SLURM can be asked for: this module runs first
    in the session (run_first), the sweep is submitted after its other tests (the cluster is theirs until then:
    test_a_job_with_a_one_minute_limit_is_submitted) and checked at the end of the session (run_last), so the rest
    of the suite runs while SLURM works. Its own daemon and root:
    the module's daemon cancels what it leaves behind."""
    why = slurm_down_reason()
    if why:
        if os.environ.get("SWEEPD_REQUIRE_SLURM"):
            pytest.fail(f"SWEEPD_REQUIRE_SLURM is set but SLURM is not up: {why}")
        pytest.skip(f"no SLURM here ({why}); `sudo .ci/slurm-up` starts a one-node cluster")
    tmp = tmp_path_factory.mktemp("slurm-timeout")
    # as many resubmissions as a busy machine needs: each attempt resumes, but on a loaded 2-core machine (the
    # background benchmarks, another job) an attempt's minute can go mostly to starting up; what is checked is
    # that a TIMEOUT is resubmitted and resumed, not how few attempts it takes
    d = Daemon(tmp / "root", settings=SETTINGS.replace("max_retries = 3", "max_retries = 10")).start()
    # 12 clocks x 4 images of real CPU work each (the simulated GPU's own clock costs no wall time): about
    # 1.5 minutes with start-up, longer than the 1-minute limit and short enough for one resubmission
    clocks = tuple(range(1410, 700, -60))
    sid = submit(d, request(tmp / "timeout.toml", clocks, trials=3, window=2.5, settle=1.0, steps=8, size=128,
                            slurm="time_limit_minutes = 1"))
    yield d, sid, clocks
    for row in d.queue().list(("queued", "running")):
        sweepd("cancel", row.id, "--root", d.root, env=d.env)
    d.close()


def test_a_job_with_a_one_minute_limit_is_submitted(time_limit_sweep):
    d, sid, _ = time_limit_sweep
    shards = wait_for(lambda: status(d, sid).get("shards"), 60, "the sbatch submission")  # not while accepted
    assert shards[0]["history"][0]["minutes"] == 1


@pytest.mark.run_last
def test_a_job_killed_by_its_time_limit_is_resubmitted_and_resumes(time_limit_sweep):
    d, sid, clocks = time_limit_sweep
    row = d.wait_state(sid, ("done", "failed", "cancelled"), timeout=900)
    assert row.state == "done", (row, status(d, sid), d.output()[-3000:])
    shard = status(d, sid)["shards"][0]
    assert shard["attempts"] >= 2
    assert shard["history"][0]["slurm_state"] == "TIMEOUT"
    assert len({h["slurm_id"] for h in shard["history"]}) == shard["attempts"]  # a new SLURM job each time
    top = d.root / "results" / f"job_{row.job_id}"
    manifest = json.loads((top / "shards/0/sweep.json").read_text())
    assert manifest["resumed_at"]  # the resubmission resumed the shard, it did not start over
    trials = atomic.read_csv(top / "trials.csv")
    assert Counter((t["freq_mhz"], t["trial"]) for t in measured(trials)) == {(str(f), str(t)): 1 for f in clocks
                                                                    for t in (1, 2, 3)}
