"""Running work is never touched by a policy, wherever it runs: a foreground `sweepd run` (its sweep.json says
running and its process lives) is protected like a queued or running sweep, both when the plan is made and
when the plan is carried out (a run that started after planning). One rule: sweepd.storage.protection."""

import os
import subprocess
import sys

import pytest

from conftest import sweepd
from storage_helpers import make_job, tree_hashes, write_policy
from sweepd import paths
from sweepd.request import SweepRequest
from sweepd.records.manifest import SweepManifest
from sweepd.storage.apply import apply
from sweepd.storage.context import make_plan
from sweepd.storage.policy import Policy
from sweepd.storage.protection import active_jobs, is_active


def foreground(layout, job_id, pid, status="running", shard=None):
    """The sweep.json a foreground run writes as it opens its job (a shard's under shards/<k>/)."""
    d = layout.job_results(job_id) if shard is None else layout.job_results(job_id) / "shards" / str(shard)
    d.mkdir(parents=True, exist_ok=True)
    SweepManifest(sweep_id="f" * 12, job_id=job_id, status=status, pid=pid, shard=shard,
                  request=SweepRequest.model_validate({"gpu": {"backend": "sim"}})).write(d / "sweep.json")


def test_a_live_foreground_run_is_active_and_a_dead_or_finished_one_is_not(tmp_path):
    layout = paths.Layout.resolve(tmp_path / "root")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    try:
        foreground(layout, "live", alive.pid)
        foreground(layout, "crashed", int(dead.stdout))  # says running, but its process is gone
        foreground(layout, "over", alive.pid, status="done")
        foreground(layout, "shard", alive.pid, shard=1)
        assert active_jobs(layout, ask_slurm=False).known == {"live", "shard"}
        assert is_active(layout, "live") and not is_active(layout, "crashed") and not is_active(layout, "over")
    finally:
        alive.kill()
        alive.wait()
    assert active_jobs(layout, ask_slurm=False).known == set()


def test_a_foreground_run_that_starts_after_the_plan_is_skipped_when_the_plan_is_carried_out(tmp_path):
    layout = paths.Layout.resolve(tmp_path / "root")
    originals = make_job(layout.images, "fg", age_days=60) | make_job(layout.images, "old", age_days=60)
    policy = [(tmp_path / "p.toml", Policy.model_validate({"rules": [{"name": "age", "max_age": "30d"}]}))]
    plan = make_plan(layout, policy, protected=set())
    assert sorted(a.unit for a in plan.actions) == ["job_fg", "job_old"]
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        foreground(layout, "fg", alive.pid)  # `sweepd run --job-id fg` started since the plan was made
        out = apply(plan, layout)
    finally:
        alive.kill()
        alive.wait()
    assert [a.unit for a in out.done] == ["job_old"] and [a.unit for a, _ in out.skipped] == ["job_fg"]
    assert tree_hashes(layout.images) == {f: h for f, h in originals.items() if f.startswith("job_fg/")}


def test_storage_apply_leaves_a_running_foreground_jobs_images_alone(tmp_path):
    """The attack that found it: `sweepd storage apply` with a small cap during a `sweepd run`."""
    root = tmp_path / "root"
    layout = paths.Layout.resolve(root)
    kept = make_job(layout.images, "mine", age_days=60)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        foreground(layout, "mine", alive.pid)
        policy = write_policy(tmp_path / "cap.toml", '[[rules]]\nname = "cap"\nmax_bytes = "1KiB"\n')
        r = sweepd("storage", "apply", "--policy", policy, "--root", root)
        assert r.returncode == 0, r.stderr
        assert "job_mine is queued or running" in r.stdout + r.stderr
        assert tree_hashes(layout.images) == kept
    finally:
        alive.kill()
        alive.wait()


def test_slurm_is_asked_only_for_a_job_id_slurm_could_have_given(tmp_path, monkeypatch):
    """A controller that does not answer keeps every numbered job (a `sweepd run` in one's own sbatch script) from
    deletion, and does not stop the clean-up of jobs SLURM cannot have named."""
    from sweepd.storage.protection import ProtectionUnknown

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "squeue"):
        (bin_dir / tool).write_text("#!/bin/sh\necho 'slurm_load_jobs error: Unable to contact slurm controller' >&2\n"
                                    "exit 1\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    active = active_jobs(paths.Layout.resolve(tmp_path / "root"))
    assert "demo" not in active and "x" * 60 not in active and "12a" not in active
    for job in ("123", "123_4"):
        with pytest.raises(ProtectionUnknown, match="squeue"):
            job in active  # noqa: B015
