"""The SLURM executor's parts that run without SLURM: options, the job script, the queue's shard rows,
the node worker and the merge (run for real, shard by shard, as SLURM would run them)."""

import json
import os
import shutil
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from conftest import measured, sweepd, sweepd_env, write_request
from sweepd import atomic, paths
from sweepd.engine.runner import shard_plan
from sweepd.queue import Queue
from sweepd.records.queuerows import AttemptEnd
from sweepd.records.shardspec import ShardSpec
from sweepd.request import SweepRequest
from sweepd.settings import SlurmSettings
from sweepd.slurm import node
from sweepd.slurm.script import JobScript, TemplateError, time_limit_minutes

FIXTURES = Path(__file__).parent / "fixtures"
NASTY = "a fox\n$(touch /tmp/sweepd-pwned) `id` 'quote' \"dq\"; rm -rf ~ #SBATCH --wrap=x"


V010 = Path(__file__).parent / "fixtures" / "v0.1.0"


def slurm_request(**over) -> SweepRequest:
    data = {"executor": "slurm", "split": 2, "workload": {"model": "tiny", "prompt": NASTY},
            "gpu": {"backend": "sim"}, "frequencies": {"mode": "custom", "list": [1410, 1200, 945, 510]}}
    return SweepRequest.model_validate(data | over)


# options ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("opt, says", [
    ("--qos=short\necho pwned", "line breaks"),
    ("--array=0-9", "use split"),
    ("-t 10", "use time_limit_minutes"),
    ("--output=/tmp/x", "sweepd sets --output itself"),
    ("qos=short", "write an sbatch option"),
    # what sbatch would parse: abbreviations of long options, and the job's environment, folder and start
    ("--out=/tmp/x", "sweepd sets --output itself"), ("--er=/tmp/y", "sweepd sets --error itself"),
    ("--arr=0-9", "use split"), ("--tim=5", "use time_limit_minutes"), ("--part=gpu", "use partition"),
    ("--acc=x", "use account"), ("--wra=id", "sweepd sets --wrap itself"),
    ("--exp=ALL,LD_PRELOAD=/tmp/z.so", "sweepd sets --export itself"),
    ("--export=LD_PRELOAD=/tmp/z.so", "sweepd sets --export itself"), ("-D /tmp", "sweepd sets -D itself"),
    ("--dep=afterok:1", "sweepd sets --dependency itself"),
])
def test_sbatch_options_that_would_break_the_script_or_the_bookkeeping_are_refused(tmp_path, opt, says):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"executor": "slurm", "slurm": {"sbatch": ["--qos=ok", opt]}}))
    r = sweepd("run", f, "--root", tmp_path / "root")
    assert r.returncode == 2
    assert "slurm.sbatch" in r.stderr and says in r.stderr and "Traceback" not in r.stderr


def test_split_needs_the_slurm_executor(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('executor = "local"\nsplit = 2\n')
    r = sweepd("submit", f, "--root", tmp_path / "root")
    assert r.returncode == 2 and 'needs executor = "slurm"' in r.stderr


def test_the_fingerprint_ignores_where_a_sweep_runs():
    a = slurm_request()
    b = slurm_request(executor="local", split=1, slurm={"partition": "x"}, gpu={"backend": "sim", "index": 1})
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() != slurm_request(workload={"steps": 3}).fingerprint()


# the job script -----------------------------------------------------------------------------------
def test_job_script_has_the_options_and_no_request_text(tmp_path):
    layout = paths.Layout.resolve(tmp_path / "root with space")
    req = slurm_request(slurm={"partition": "gpu-a100", "account": "proj1", "sbatch": ["--constraint=a100"]})
    s = SlurmSettings(sbatch=["--qos=short"], account="fallback", python="/opt/venv/bin/python")
    js = JobScript("abcdef012345", req, s, layout)
    js.write_spec(None)
    path = js.write(1, "0-1", 42)
    text = path.read_text()
    for line in ("#SBATCH --job-name=sweepd-abcdef012345", "#SBATCH --array=0-1", "#SBATCH --time=42",
                 "#SBATCH --gres=gpu:1", "#SBATCH --partition=gpu-a100", "#SBATCH --account=proj1",
                 "#SBATCH --qos=short", "#SBATCH --constraint=a100"):
        assert line in text.splitlines(), line
    assert "fox" not in text and "pwned" not in text and "--wrap" not in text
    assert f"'{layout.results}/slurm/abcdef012345/request.json'" in text  # quoted: the path has a space
    assert subprocess.run(["bash", "-n", str(path)]).returncode == 0
    # directives stop at the first command: only sweepd's lines are directives
    directives = [ln for ln in text.splitlines() if ln.startswith("#SBATCH")]
    assert len(directives) == 8
    spec = json.loads(js.spec.read_text())
    assert spec["request"]["workload"]["prompt"] == NASTY and spec["job_id"] is None and spec["split"] == 2


def test_a_template_with_an_unknown_placeholder_is_refused(tmp_path):
    t = tmp_path / "job.sh"
    t.write_text("#!/bin/bash\n{{sbatch}}\nexec {{python}} -m sweepd worker --spec {{spec}} {{partition}}\n")
    js = JobScript("abcdef012345", slurm_request(), SlurmSettings(template=str(t)), paths.Layout.resolve(tmp_path))
    with pytest.raises(TemplateError, match=r"unknown placeholder\(s\) \['partition'\]"):
        js.render("0-1", 10)


def test_time_limit_from_the_estimate_with_margin_bounds_and_request_override():
    s = SlurmSettings(time_margin=0.5, time_extra_minutes=5, time_min_minutes=10, time_max_minutes=120)
    req = slurm_request()
    assert time_limit_minutes(req, s, 600) == 20          # 10 min x 1.5 + 5
    assert time_limit_minutes(req, s, 60) == 10           # at least the minimum
    assert time_limit_minutes(req, s, 36000) == 120       # at most the maximum
    assert time_limit_minutes(req, s, None) == 10
    assert time_limit_minutes(slurm_request(slurm={"time_limit_minutes": 3}), s, 36000) == 3


def test_shards_interleave_so_each_sees_high_and_low_clocks():
    plan = list(range(1410, 500, -15))  # 61 clocks, highest first
    shards = [shard_plan(plan, k, 3) for k in range(3)]
    assert sorted(sum(shards, [])) == sorted(plan)
    assert shards[0][0] == 1410  # shard 0 measures the baseline
    for s in shards:
        assert s[0] >= 1380 and s[-1] <= 540


def test_the_node_runs_on_the_gpu_slurm_allocated():
    req = slurm_request()
    assert node.allocated_gpu(req, {"SLURM_JOB_GPUS": "3", "CUDA_VISIBLE_DEVICES": "0"}).gpu.index == 3
    assert node.allocated_gpu(req, {"CUDA_VISIBLE_DEVICES": "GPU-1234abcd-0000"}).gpu.uuid == "GPU-1234abcd-0000"
    pinned = slurm_request(gpu={"backend": "sim", "index": 1})
    assert node.allocated_gpu(pinned, {"SLURM_JOB_GPUS": "3"}).gpu.index == 1
    spec = ShardSpec(sweep_id="s", job_id=None, split=1, request=pinned)
    assert node.job_id_for(spec, None, {"SLURM_ARRAY_JOB_ID": "77", "SLURM_JOB_ID": "78"}) == "77"
    assert node.job_id_for(spec, "77", {"SLURM_ARRAY_JOB_ID": "90"}) == "77"  # a resubmission


# the queue ----------------------------------------------------------------------------------------
def test_schema_1_state_file_gains_the_slurm_columns_and_keeps_its_sweeps(tmp_path):
    db = tmp_path / "queue.sqlite"
    shutil.copy(FIXTURES / "queue-schema1.sqlite", db)
    q = Queue(db)
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 2
    assert {r.id: r.executor for r in q.list()} == {"aaaaaaaaaaaa": "local", "bbbbbbbbbbbb": "local"}
    assert q.claim_next("slurm", None, executor="slurm") is None  # a local sweep is never sent to SLURM
    assert q.claim_next("gpu0", 0).id == "bbbbbbbbbbbb"


def test_shard_rows_record_each_attempt(tmp_path):
    q = Queue(tmp_path / "queue.sqlite")
    q.add("cccccccccccc", "slurm-pending-cccccccccccc", SweepRequest(), executor="slurm")
    assert q.claim_next("gpu0", 0) is None  # a SLURM sweep is never run by a local worker
    assert q.claim_next("slurm", None, executor="slurm").id == "cccccccccccc"
    q.set_submitted("cccccccccccc", "41", "41", {0: "41_0", 1: "41_1"}, minutes=12)
    q.update_shard("cccccccccccc", 1, state="interrupted", slurm_state="TIMEOUT", ended=AttemptEnd(slurm_state="TIMEOUT"))
    q.update_shard("cccccccccccc", 1, resubmitted_as="45_1", minutes=24)
    row, shards = q.get("41"), q.shards("cccccccccccc")
    assert row.slurm_job_id == "41" and row.id == "cccccccccccc"
    assert [(s.slurm_id, s.state, s.attempts) for s in shards] == [("41_0", "pending", 1),
                                                                           ("45_1", "pending", 2)]
    hist = shards[1].history
    assert [(h.slurm_id, h.slurm_state, h.minutes) for h in hist] == [("41_1", "TIMEOUT", 12),
                                                                                  ("45_1", None, 24)]


# intake ------------------------------------------------------------------------------------------
def test_slurm_requests_are_rejected_where_there_is_no_sbatch(tmp_path):
    root = tmp_path / "root"
    req = write_request(tmp_path / "r.toml")
    (root / "spool/incoming").mkdir(parents=True)
    (root / "spool/incoming/r.toml").write_text('executor = "slurm"\nsplit = 2\n' + req.read_text())
    env = sweepd_env(PATH=os.path.dirname(shutil.which("python3")) + ":/nonexistent", SWEEPD_GPUS="[]",
                     XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    r = sweepd("serve", "--once", "--root", root, env=env)
    assert r.returncode == 0, r.stderr
    why = (root / "spool/rejected/r.toml.error.txt").read_text()
    assert 'executor: "slurm": sbatch and squeue are not on' in why


# node worker and merge, without SLURM -----------------------------------------------------------------
@pytest.mark.slow
def test_two_shards_run_by_the_node_worker_merge_into_one_sweep(tmp_path):
    """What each array task runs, run here by hand with SLURM's environment variables."""
    layout = paths.Layout.resolve(tmp_path / "root")
    req = SweepRequest.model_validate({
        "executor": "slurm", "split": 2, "workload": {"model": "tiny", "prompt": NASTY, "steps": 2, "width": 32,
                                                      "height": 32},
        "gpu": {"backend": "sim"}, "frequencies": {"mode": "custom", "list": [1410, 1200, 945, 705, 510]},
        "protocol": {"trials": 2, "min_window_s": 0.2, "settle_s": 0}, "images": {"mode": "archive"}})
    js = JobScript("dddddddddddd", req, SlurmSettings(), layout)
    js.write_spec(None)
    for k in (0, 1):
        env = sweepd_env(SLURM_ARRAY_JOB_ID="900", SLURM_ARRAY_TASK_ID=str(k), SLURM_JOB_ID=str(900 + k),
                         SLURM_JOB_GPUS=str(k))
        r = sweepd("worker", "--spec", js.spec, "--shard", k, "--root", tmp_path / "node",
                   "--images-dir", layout.images, "--results-dir", layout.results, env=env)
        assert r.returncode == 0, r.stderr
        st = json.loads((layout.results / f"job_900/shards/{k}/status.json").read_text())
        assert (st["state"], st["shard"], st["slurm_array_task"]) == ("done", k, f"900_{k}")
    assert not (tmp_path / "node/state/queue.sqlite").exists()  # the node never touches the daemon's queue
    assert not (layout.results / "job_900/sweep.json").exists()  # not a finished result before the merge

    r = sweepd("merge", "900", "--root", layout.root, "--images-dir", layout.images, "--results-dir", layout.results)
    assert r.returncode == 0, r.stderr
    top = layout.results / "job_900"
    trials = atomic.read_csv(top / "trials.csv")
    assert [t["freq_mhz"] for t in measured(trials)] == ["1410", "1410", "1200", "1200", "945", "945", "705", "705",
                                                         "510", "510"]
    # shard 0 measured the reference again at its end; shard 1 measured it first and last on its own GPU: that
    # GPU's reference (role "reference"), which its savings are taken against
    assert [(t["freq_mhz"], t["trial"]) for t in trials if t["role"] == "drift"] == [("1410", "3"), ("1410", "4")]
    assert [(t["freq_mhz"], t["trial"]) for t in trials if t["role"] == "reference"] == [
        ("1410", str(k)) for k in range(1, 5)]
    assert Counter(t["gpu_uuid"] for t in trials).keys() >= {trials[0]["gpu_uuid"]}
    assert {t["job_id"] for t in trials} == {"900"}
    assert [s["freq_mhz"] for s in atomic.read_csv(top / "summary.csv")] == ["1410", "1200", "945", "705", "510"]
    m = json.loads((top / "sweep.json").read_text())
    assert m["status"] == "done" and m["merged_shards"] == 2 and m["plan_mhz"] == [1410, 1200, 945, 705, 510]
    assert [s["plan_mhz"] for s in m["shards"]] == [[1410, 945, 510], [1410, 1200, 705]]
    assert len(m["gpus"]) == 2 and m["simulated"] is True
    saved = sorted(p.parent.name for p in (layout.images / "job_900").rglob("*.png"))
    made = Counter()
    for t in trials:
        if t["role"] != "reference":  # shard 0 keeps the reference clock's images
            made[f"{t['freq_mhz']}MHz"] += int(t["images"])
    assert Counter(saved) == made and len(made) == 5  # archive mode: every image of every shard, by clock
    html = (top / "report.html").read_text()
    assert "SIMULATED GPU" in html and "measured in 2 shards" in html
    rep = sweepd("report", "900", "--root", layout.root, "--json")
    assert rep.returncode == 0, rep.stderr
    assert json.loads(rep.stdout)["job_id"] == "900" and len(json.loads(rep.stdout)["clocks"]) == 5
    offsets = json.loads(rep.stdout)["gpu_offsets"]  # GPU 1 against GPU 0 at the reference clock
    assert [(g["gpu"], g["shards"], g["energy_offset_pct"]) for g in offsets][0] == (0, [0], 0.0) and len(offsets) == 2
    # a resubmission that raced its predecessor's end (SLURM's time limit as the worker exited) finds the
    # shard done and does nothing
    env = sweepd_env(SLURM_ARRAY_JOB_ID="905", SLURM_ARRAY_TASK_ID="1", SLURM_JOB_ID="905")
    r = sweepd("worker", "--spec", js.spec, "--shard", 1, "--job-id", "900", "--root", tmp_path / "node",
               "--images-dir", layout.images, "--results-dir", layout.results, env=env)
    assert r.returncode == 0 and "already done" in r.stderr, r.stderr
    st = json.loads((layout.results / "job_900/shards/1/status.json").read_text())
    assert (st["state"], st["slurm_array_task"]) == ("done", "905_1")
    again = sweepd("merge", "job_900", "--root", layout.root, "--images-dir", layout.images,
                   "--results-dir", layout.results)
    assert again.returncode == 0 and atomic.read_csv(top / "trials.csv") == trials  # merging again: same files


def test_merge_names_the_shards_that_are_missing_or_unfinished(tmp_path):
    layout = paths.Layout.resolve(tmp_path / "root")
    d = layout.results / "job_5/shards/0"
    d.mkdir(parents=True)
    shard0 = json.loads((V010 / "job_75" / "shards" / "0" / "sweep.json").read_text())
    atomic.write_json(d / "sweep.json", shard0 | {"job_id": "5", "shards": 3, "status": "interrupted",
                                                  "plan_mhz_all": [1410, 1110, 945]})
    r = sweepd("merge", "5", "--root", layout.root)
    assert r.returncode == 2
    assert "shard(s) [1, 2] have no results" in r.stderr and "0 (interrupted) not done" in r.stderr
    assert not (layout.results / "job_5/sweep.json").exists()



def test_estimate_of_a_slurm_sweep_gives_each_shards_time_and_job_time_limit(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text('executor = "slurm"\nsplit = 2\n' + write_request(tmp_path / "base.toml", clocks=(1410, 945, 510))
                 .read_text())
    env = sweepd_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"), SWEEPD_SLURM__TIME_MIN_MINUTES="7")
    r = sweepd("estimate", f, "--root", tmp_path / "root", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["slurm"]["shards"] == 2 and out["slurm"]["time_limit_minutes"] == 7  # a short sweep: the minimum
    from sweepd.report.estimate import STARTUP_S

    # each shard starts up on its node and takes its half of the rest
    assert STARTUP_S <= out["slurm"]["shard_s"] <= STARTUP_S + max(0.0, out["duration_s"] - STARTUP_S) / 2 + 1e-6
    text = sweepd("estimate", f, "--root", tmp_path / "root", env=env).stdout
    assert "SLURM: 2 shard(s) of about" in text and "time limit 7 min per job" in text


def test_submit_refuses_at_once_what_the_daemon_would_reject(tmp_path):
    f = tmp_path / "r.toml"
    f.write_text("split = 2\n" + write_request(tmp_path / "base.toml").read_text())
    env = sweepd_env(XDG_CONFIG_HOME=str(tmp_path / "xdg"))  # the default executor: local
    r = sweepd("submit", f, "--root", tmp_path / "root", env=env)
    assert r.returncode == 2 and f"{f}: split: 2:" in r.stderr and 'executor = "slurm"' in r.stderr, r.stderr
    assert not list((tmp_path / "root").rglob("*.toml"))  # nothing was dropped into the spool
