"""clock_control = "slurm" through real sbatch and srun on the one-node cluster (issue #24): `sbatch --gres=gpu:1 --wrap
"sweepd run REQ"`, each clock an `srun --gpu-freq` step. `.ci/slurm-up` emulates what SLURM's gpu/nvml plugin does
for the fake NVML (a TaskProlog sets the step's clock, a TaskEpilog resets it); a job exported with
SWEEPD_TEST_NO_GPU_FREQ=1 runs without it, as on a cluster whose SLURM sets no clocks. The user has no root here:
the fake NVML refuses every lock (FAKE_NVML_DENY_SET=1)."""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from conftest import sweepd, sweepd_env
from sweepd import atomic
from test_slurm_cluster import slurm_down_reason

pytestmark = [pytest.mark.slurm, pytest.mark.slow]  # the two plain sweeps go on in the background (run_first/last)

CLOCKS = [1410, 1290, 1200, 1095, 945, 780]


@pytest.fixture(scope="module")
def cluster():
    import os

    why = slurm_down_reason()
    if why is None:
        conf = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=30).stdout
        if "gpu-freq-task-prolog" not in conf:
            why = "its TaskProlog is not sweepd's --gpu-freq emulation: run .ci/slurm-up again"
    if why:
        if os.environ.get("SWEEPD_REQUIRE_SLURM"):
            pytest.fail(f"SWEEPD_REQUIRE_SLURM is set but SLURM is not ready: {why}")
        pytest.skip(f"no SLURM here ({why}); `sudo .ci/slurm-up` starts a one-node cluster")


def request(path, job, control="slurm", clocks=CLOCKS, trials=3):
    path.write_text(f"""job_id = "{job}"
[workload]
model = "tiny"
steps = 2
width = 32
height = 32
[gpu]
backend = "nvml"
clock_control = "{control}"
[frequencies]
mode = "custom"
list = {clocks}
[protocol]
warmup = 1
trials = {trials}
min_window_s = 0.2
settle_s = 0
[images]
mode = "benchmark"
""")
    return path


def job_env(tmp_path, **extra):
    # two fake GPUs, as SLURM has two: a job may get either (another test's job may hold the first)
    return sweepd_env(True, FAKE_NVML_GPUS="A100,A100", FAKE_NVML_STATE=str(tmp_path / "nvml-state.json"),
                      FAKE_NVML_DENY_SET="1", **extra)


def exit_said(cmd: str) -> str:
    """A job's command that also writes its exit code into its output: the session-long jobs are checked at the
    end of the session, and SLURM forgets a job MinJobAge seconds after it ends (wait_gone reads it there)."""
    return f'{cmd}; rc=$?; echo "job exit: $rc"; exit $rc'


def sbatch(tmp_path, req, name, env) -> str:
    out = tmp_path / f"{name}.out"
    p = subprocess.run(["sbatch", "--parsable", "--gres=gpu:1", "--export=ALL", "-o", str(out), "--wrap",
                        exit_said(f"sweepd run {req} --root {tmp_path / 'root'}")], capture_output=True, text=True,
                       env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip().split(";")[0]


def wait_gone(jid: str, out: Path, timeout=600) -> int:
    """Waits for the job to end; its exit code (from its output, `exit_said`, once SLURM has forgotten the job)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        p = subprocess.run(["scontrol", "show", "job", jid], capture_output=True, text=True, timeout=30)
        state = re.search(r"JobState=(\S+)", p.stdout)
        if state and state.group(1) not in ("PENDING", "RUNNING", "CONFIGURING", "COMPLETING"):
            return int(re.search(r"ExitCode=(\d+):", p.stdout).group(1))
        if "Invalid job id" in p.stderr:
            said = re.findall(r"^job exit: (\d+)$", out.read_text() if out.exists() else "", re.M)
            assert said, f"job {jid} is gone from SLURM without its exit line: {out}"
            return int(said[-1])
        time.sleep(0.5)
    subprocess.run(["scancel", jid], timeout=30)
    raise AssertionError(f"job {jid} still running after {timeout} s")


def trials(tmp_path, job):
    return atomic.read_csv(tmp_path / "root" / "results" / f"job_{job}" / "trials.csv")


def all_reset(tmp_path) -> bool:
    """Every fake GPU's locked clock reset (the TaskEpilog), whichever one SLURM gave the job."""
    return all(v["locked"] is None for v in json.loads((tmp_path / "nvml-state.json").read_text()).values())


def answer(root, job, env) -> dict:
    r = sweepd("report", job, "--root", root, "--json", env=env)
    assert r.returncode == 0, r.stderr
    return {(o["metric"], o["bounded"]): o for o in json.loads(r.stdout)["optima"]}


@pytest.fixture(scope="session")
def background_jobs(tmp_path_factory):
    """The two sweeps that need nothing but SLURM's time (with and without the clock hook), submitted when the
    session starts (run_first, after the cluster module's own tests) and checked at its end (run_last), so the
    rest of the suite runs while SLURM works through their steps."""
    import os

    why = slurm_down_reason()
    if why:
        if os.environ.get("SWEEPD_REQUIRE_SLURM"):
            pytest.fail(f"SWEEPD_REQUIRE_SLURM is set but SLURM is not up: {why}")
        pytest.skip(f"no SLURM here ({why}); `sudo .ci/slurm-up` starts a one-node cluster")
    steps, nohook = tmp_path_factory.mktemp("gpu-freq-steps"), tmp_path_factory.mktemp("gpu-freq-nohook")
    jobs = {"steps": (steps, sbatch(steps, request(steps / "steps.toml", "steps"), "steps", job_env(steps))),
            "nohook": (nohook, sbatch(nohook, request(nohook / "n.toml", "n"), "n",
                                      job_env(nohook, SWEEPD_TEST_NO_GPU_FREQ="1")))}
    yield jobs
    for _, jid in jobs.values():
        subprocess.run(["scancel", jid], timeout=30)


@pytest.mark.run_first
def test_the_background_sweeps_are_submitted(cluster, background_jobs):
    assert set(background_jobs) == {"steps", "nohook"}


@pytest.mark.run_last
def test_a_slurm_sweep_measures_each_clock_in_its_own_step_and_answers_as_locked_clocks_do(cluster, background_jobs):
    tmp_path, jid = background_jobs["steps"]
    assert wait_gone(jid, tmp_path / "steps.out") == 0, (tmp_path / "steps.out").read_text()
    out = (tmp_path / "steps.out").read_text()
    assert "SLURM sets clocks here" in out and "Traceback" not in out
    rows = [r for r in trials(tmp_path, "steps") if r["status"] == "ok"]
    assert {int(r["freq_mhz"]) for r in rows if not r["role"]} == set(CLOCKS)
    assert all(r["freq_mhz"] == r["observed_sm_clock_mhz"] for r in rows), rows  # each step ran at its clock
    assert all_reset(tmp_path)  # reset when the last step ended (the TaskEpilog)
    m = json.loads((tmp_path / "root/results/job_steps/sweep.json").read_text())
    assert m["status"] == "done" and m["model_loads"] == len(CLOCKS) + 1  # and the baseline again at the end
    assert (tmp_path / "root/results/job_steps/report.html").exists()

    # the same request with locked clocks (root, no SLURM) measures what the steps measured: the fake board's power
    # at each clock is fixed (60 W + 160 W x clock / max), so a window's mean power (its energy over its time) says
    # which clock drew it and that its energy was counted as a locked trial's is. Times (and so the optima) are this
    # CPU's and move with the load beside a CI run: two sweeps' answers are not compared (a 780 vs 945 MHz pick
    # flipped once when a load spike lasted one step).
    lock_env = sweepd_env(True, FAKE_NVML_GPUS="A100")
    r = sweepd("run", request(tmp_path / "lock.toml", "lock", "lock"), "--root", tmp_path / "root", env=lock_env,
               process=True)
    assert r.returncode == 0, r.stderr
    locked = [r for r in trials(tmp_path, "lock") if r["status"] == "ok"]
    for row in rows + locked:
        f = int(row["freq_mhz"])
        assert float(row["avg_power_w"]) == pytest.approx(60 + 160 * f / max(CLOCKS), rel=0.02), row
    assert {int(r["freq_mhz"]) for r in locked} == {int(r["freq_mhz"]) for r in rows}
    for job in ("steps", "lock"):  # both answer every question, with intervals
        opt = answer(tmp_path / "root", job, lock_env)
        assert {m for m, _ in opt} == {"energy", "edp", "ed2p"} and all(o["energy_saving_ci95"] for o in opt.values()), opt


@pytest.mark.run_last
def test_a_cluster_whose_slurm_sets_no_clock_stops_after_the_first_step_with_the_fix(cluster, background_jobs):
    tmp_path, jid = background_jobs["nohook"]
    assert wait_gone(jid, tmp_path / "n.out") == 2
    out = (tmp_path / "n.out").read_text()
    assert "AutoDetect=nvml" in out and "--gpu-freq" in out and "Traceback" not in out, out
    assert not (tmp_path / "root/results/job_n/trials.csv").exists()  # nothing measured at the wrong clock


def kill_and_resume(tmp_path) -> dict:
    """A step killed with SIGKILL: `sweepd run` ends interrupted (4), and the same command again in the same
    allocation (on the same GPU: a sweep resumed elsewhere is refused, one sweep, one GPU) resumes it. Returns
    what the check looks at."""
    env = job_env(tmp_path)
    req = request(tmp_path / "k.toml", "k", clocks=CLOCKS[:3], trials=2)
    run = f"sweepd run {req} --root {tmp_path / 'root'}"
    out = tmp_path / "k.out"
    p = subprocess.run(["sbatch", "--parsable", "--gres=gpu:1", "--export=ALL", "-o", str(out), "--wrap",
                        exit_said(f"{run}; echo first run: exit $?; {run}")], capture_output=True, text=True, env=env,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    jid = p.stdout.strip().split(";")[0]
    spec = tmp_path / "root" / "state" / "slurm-steps" / "k" / "step.json"

    def measured_two():
        try:
            return len({r["freq_mhz"] for r in trials(tmp_path, "k")}) >= 2
        except OSError:
            return False

    end = time.monotonic() + 600
    while not measured_two():
        assert time.monotonic() < end, out.read_text() if out.exists() else "no output"
        time.sleep(0.2)
    before = len(trials(tmp_path, "k"))
    subprocess.run(["pkill", "-KILL", "-f", f"sweepd step {spec}"], timeout=30)
    return {"exit": wait_gone(jid, out), "out": out.read_text(), "before": before}


@pytest.fixture(scope="session")
def killed_sweep(tmp_path_factory):
    """kill_and_resume in a thread from the session's start (run_first) to its end (run_last): it mostly waits."""
    import threading

    if slurm_down_reason():
        pytest.skip("no SLURM here")
    tmp_path = tmp_path_factory.mktemp("gpu-freq-kill")
    result: dict = {}

    def go():
        try:
            result.update(kill_and_resume(tmp_path))
        except BaseException as e:  # the check raises it in the test
            result["error"] = e

    t = threading.Thread(target=go, daemon=True)
    t.start()
    yield t, result, tmp_path


@pytest.mark.run_first
def test_the_kill_and_resume_sweep_is_started(cluster, killed_sweep):
    assert killed_sweep[0].is_alive() or killed_sweep[1]


@pytest.mark.run_last
def test_a_slurm_sweep_killed_mid_step_resumes_where_it_was(cluster, killed_sweep):
    t, result, tmp_path = killed_sweep
    t.join(timeout=900)
    if "error" in result:
        raise result["error"]
    assert result["exit"] == 0, result["out"]
    text = result["out"]
    assert "first run: exit 4" in text and "sweep interrupted" in text, text  # killed: resumable
    after = trials(tmp_path, "k")
    assert {int(r["freq_mhz"]) for r in after if not r["role"] and r["status"] == "ok"} == set(CLOCKS[:3])
    assert all(r["freq_mhz"] == r["observed_sm_clock_mhz"] for r in after if r["status"] == "ok")
    assert any(r["role"] == "drift" for r in after[result["before"]:])  # the resumed sweep checked its baseline
    assert all_reset(tmp_path)


@pytest.fixture(scope="session")
def executor_sweep(tmp_path_factory):
    """A split = 2 sweep in steps through a real `sweepd serve` and its SLURM executor, started with the session
    (run_first) and checked at its end (run_last): a daemon polling SLURM is mostly waiting."""
    from daemon_helpers import Daemon

    if slurm_down_reason():
        pytest.skip("no SLURM here")
    tmp_path = tmp_path_factory.mktemp("gpu-freq-executor")
    settings = 'executor = "slurm"\ngpus = []\n[slurm]\npoll_interval_s = 1.0\ntime_min_minutes = 5\n'
    d = Daemon(tmp_path / "root", fake_nvml=True, settings=settings,
               extra_env={"FAKE_NVML_GPUS": "A100,A100", "FAKE_NVML_STATE": str(tmp_path / "nvml-state.json"),
                          "FAKE_NVML_DENY_SET": "1"}).start()
    req = request(tmp_path / "split.toml", "ignored", clocks=CLOCKS[:4], trials=2)
    req.write_text(req.read_text().replace('job_id = "ignored"\n', 'executor = "slurm"\nsplit = 2\n'))
    r = sweepd("submit", req, "--root", d.root, env=d.env)
    yield d, r, tmp_path
    d.close()


@pytest.mark.run_first
def test_the_executor_sweep_is_submitted(cluster, executor_sweep):
    _, r, _ = executor_sweep
    assert r.returncode == 0, r.stderr


@pytest.mark.run_last
def test_the_daemons_slurm_executor_measures_each_shard_in_steps_on_the_gpu_slurm_gave_it(cluster, executor_sweep):
    d, r, tmp_path = executor_sweep
    row = d.wait_state(r.stdout.strip(), ("done", "failed", "cancelled"), timeout=600)
    assert row.state == "done", (row, d.output())
    top = d.root / "results" / f"job_{row.job_id}"
    rows = [t for t in atomic.read_csv(top / "trials.csv") if t["status"] == "ok"]
    assert {int(t["freq_mhz"]) for t in rows if not t["role"]} == set(CLOCKS[:4])
    assert all(t["freq_mhz"] == t["observed_sm_clock_mhz"] for t in rows), rows
    shards = [json.loads((top / "shards" / str(k) / "sweep.json").read_text()) for k in (0, 1)]
    # each on the GPU SLURM gave its task (both on one when another job holds the other)
    assert {m["gpu"]["uuid"] for m in shards} <= {f"GPU-0000000{k}-0000-4000-8000-00000000a100" for k in (0, 1)}
    assert all(m["model_loads"] >= 2 for m in shards)  # steps: a load per clock
    assert all(v["locked"] is None for v in json.loads((tmp_path / "nvml-state.json").read_text()).values())
