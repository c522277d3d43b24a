"""The daemon, started for real (`sweepd serve` subprocesses) on temporary roots."""

import json
import os
import shutil
import signal
import subprocess
import time
from collections import Counter

import pytest

from conftest import measured, sweepd, sweepd_env, wait_for_rows, write_request
from daemon_helpers import Daemon
from sweepd import atomic

pytestmark = pytest.mark.slow


@pytest.fixture
def daemon_factory(tmp_path):
    made = []

    def make(name="root", **kw):
        d = Daemon(tmp_path / name, **kw)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def submit(root, req, env=None):
    r = sweepd("submit", req, "--root", root, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def trial_keys(root, job_id):
    rows = atomic.read_csv(root / "results" / f"job_{job_id}" / "trials.csv")
    return Counter((r["freq_mhz"], r["trial"]) for r in measured(rows))


def test_submit_runs_to_done_with_status_list_and_logs(daemon_factory, tmp_path):
    d = daemon_factory().start()
    req = write_request(tmp_path / "r.toml", clocks=(1410, 945), trials=1)
    sweep_id = submit(d.root, req)
    row = d.wait_state(sweep_id, ("done", "failed"))
    assert row.state == "done", row
    assert (d.root / "spool/accepted" / f"{sweep_id}.toml").exists()
    assert trial_keys(d.root, row.job_id) == {("1410", "1"): 1, ("945", "1"): 1}
    st = json.loads(sweepd("status", sweep_id, "--root", d.root, "--json").stdout)
    assert st["state"] == "done" and st["exit_status"] == 0
    assert sweep_id in sweepd("list", "--root", d.root).stdout
    log = sweepd("logs", sweep_id, "--root", d.root).stdout
    assert "sweep " + sweep_id in log and "clock 1/2 1410MHz: 1 trials" in log and "clock 2/2 945MHz" in log
    overall = json.loads(sweepd("status", "--root", d.root, "--json").stdout)
    assert overall["daemon_pid"] == d.proc.pid and overall["counts"]["done"] == 1
    d.wait_message("STATUS=idle; 0 queued")
    assert any(m.startswith("STATUS=gpu0: job") for m in d.messages), d.messages
    assert "WATCHDOG=1" in d.messages
    assert d.stop() == 0


def test_malformed_and_odd_files_are_rejected_with_reasons(daemon_factory, tmp_path):
    d = daemon_factory().start()
    inc = d.root / "spool/incoming"
    (inc / "bad.toml").write_text('[workload]\nsteps = 0\nprompt = ""\n[gpu]\nbackend = "cuda"\n')
    (inc / "clock.toml").write_text('[gpu]\nbackend = "sim"\n[frequencies]\nmode = "custom"\nlist = [950]\n')
    (inc / "huge.json").write_text(" " * 2_000_000)
    (inc / "adir").mkdir()
    (inc / "notes.txt").write_text("hello")
    (inc / "half-written.toml.part").write_text("[workload")
    end = time.monotonic() + 30
    while time.monotonic() < end and len(list((d.root / "spool/rejected").glob("*.error.txt"))) < 5:
        time.sleep(0.1)
    rej = d.root / "spool/rejected"
    err = (rej / "bad.toml.error.txt").read_text()
    assert "workload.steps: 0:" in err and "workload.prompt: '':" in err and "gpu.backend: 'cuda':" in err
    assert "945 MHz or 960 MHz" in (rej / "clock.toml.error.txt").read_text()
    assert "over the limit" in (rej / "huge.json.error.txt").read_text()
    assert "not a regular file" in (rej / "adir.error.txt").read_text()
    assert "unknown file type" in (rej / "notes.txt.error.txt").read_text()
    assert (inc / "half-written.toml.part").exists()  # not complete yet: left alone
    assert d.queue().counts()["queued"] == 0 and d.proc.poll() is None
    audit = [json.loads(line) for line in (d.root / "state/audit.jsonl").read_text().splitlines()]
    assert Counter(a["event"] for a in audit)["rejected"] == 5


def test_cancel_stops_a_running_sweep_and_resets_clocks(daemon_factory, tmp_path):
    log = tmp_path / "nvml.log"
    d = daemon_factory(fake_nvml=True, extra_env={"FAKE_NVML_LOG": str(log), "FAKE_NVML_GPUS": "A100"}).start()
    req = write_request(tmp_path / "r.toml", backend="nvml", clocks=(1410, 1200, 945, 705, 510), trials=3)
    sweep_id = submit(d.root, req, env=d.env)
    row = d.wait_state(sweep_id, ("running",))
    results = d.root / "results" / f"job_{row.job_id}"
    wait_for_rows(results / "trials.csv", 1)
    r = sweepd("cancel", sweep_id, "--root", d.root)
    assert r.returncode == 0 and "cancelling" in r.stdout
    row = d.wait_state(sweep_id, ("cancelled", "done", "failed"))
    assert row.state == "cancelled" and row.error.startswith("cancelled by user"), row
    calls = [json.loads(line)["call"] for line in log.read_text().splitlines()]
    assert calls[-2:] == ["nvmlDeviceResetGpuLockedClocks", "nvmlDeviceResetMemoryLockedClocks"]
    assert len(atomic.read_csv(results / "trials.csv")) < 15
    again = sweepd("cancel", sweep_id, "--root", d.root)
    assert again.returncode == 2 and "already cancelled" in again.stderr


def test_kill_9_of_the_daemon_mid_sweep_then_restart_finishes_the_sweep(daemon_factory, tmp_path):
    d = daemon_factory().start()
    clocks = ("1410", "1200", "945", "705", "510")
    req = write_request(tmp_path / "r.toml", clocks=tuple(map(int, clocks)), trials=2)
    sweep_id = submit(d.root, req)
    row = d.wait_state(sweep_id, ("running",))
    trials = d.root / "results" / f"job_{row.job_id}" / "trials.csv"
    wait_for_rows(trials, 3)
    d.signal(signal.SIGKILL)
    d.proc.wait()
    d.log.close()
    d.start()
    row = d.wait_state(sweep_id, ("done", "failed"), timeout=240)
    assert row.state == "done" and row.resumes == 1, row
    assert trial_keys(d.root, row.job_id) == {(f, t): 1 for f in clocks for t in ("1", "2")}
    assert not list((d.root / "state/gpu-locks").glob("*.json"))


def test_kill_9_of_a_worker_is_resumed_by_the_daemon(daemon_factory, tmp_path):
    d = daemon_factory().start()
    req = write_request(tmp_path / "r.toml", clocks=(1410, 945, 510), trials=2)
    sweep_id = submit(d.root, req)
    row = d.wait_state(sweep_id, ("running",))
    trials = d.root / "results" / f"job_{row.job_id}" / "trials.csv"
    wait_for_rows(trials, 1)
    pid = d.queue().get(sweep_id).pid
    os.kill(pid, signal.SIGKILL)
    row = d.wait_state(sweep_id, ("done", "failed"), timeout=240)
    assert row.state == "done" and row.resumes == 1
    assert trial_keys(d.root, row.job_id) == {(f, t): 1 for f in ("1410", "945", "510") for t in ("1", "2")}
    assert "worker killed by SIGKILL" in (d.root / "state/audit.jsonl").read_text()


def test_sighup_reloads_settings_and_keeps_the_old_ones_when_invalid(daemon_factory):
    d = daemon_factory().start()
    d.config.write_text("reconcile_interval_s = -1\n")
    n = len(d.read_messages())
    d.signal(signal.SIGHUP)
    d.wait_message("RELOADING=1", after=n)
    d.wait_message("READY=1", after=n)
    assert d.proc.poll() is None
    st = json.loads(sweepd("status", "--root", d.root, "--json").stdout)
    assert "reconcile_interval_s" in st["settings_error"] and "-1" in st["settings_error"]
    d.config.write_text("reconcile_interval_s = 0.5\nlog_level = \"debug\"\n")
    n = len(d.read_messages())
    d.signal(signal.SIGHUP)
    d.wait_message("READY=1", after=n)
    time.sleep(0.5)
    assert json.loads(sweepd("status", "--root", d.root, "--json").stdout)["settings_error"] is None
    assert d.stop() == 0


def test_second_daemon_on_the_same_root_is_refused(daemon_factory):
    d = daemon_factory().start()
    r = sweepd("serve", "--root", d.root, "--config", d.config, env=d.env, timeout=60)
    assert r.returncode == 2 and f"pid {d.proc.pid}" in r.stderr and "already runs" in r.stderr


def test_sigterm_stops_the_running_sweep_after_its_trial_and_it_resumes_on_restart(daemon_factory, tmp_path):
    d = daemon_factory().start()
    req = write_request(tmp_path / "r.toml", clocks=(1410, 1200, 945, 705, 510), trials=2)
    sweep_id = submit(d.root, req)
    row = d.wait_state(sweep_id, ("running",))
    trials = d.root / "results" / f"job_{row.job_id}" / "trials.csv"
    wait_for_rows(trials, 1)
    t0 = time.monotonic()
    assert d.stop() == 0 and time.monotonic() - t0 < 60
    assert "STOPPING=1" in d.read_messages()
    assert d.queue().get(sweep_id).state == "interrupted"
    d.start()
    assert d.wait_state(sweep_id, ("done", "failed"), timeout=240).state == "done"


def test_once_mode_runs_what_is_queued_and_exits(daemon_factory, tmp_path):
    d = daemon_factory()
    ids = [submit(d.root, write_request(tmp_path / f"r{i}.toml", clocks=(1410,), trials=1)) for i in range(2)]
    d.start("--once", wait_ready=False)
    assert d.proc.wait(timeout=240) == 0, d.output()
    q = d.queue()
    assert [q.get(i).state for i in ids] == ["done", "done"]


def test_thousand_files_dropped_at_once(daemon_factory, tmp_path):
    d = daemon_factory().start()
    staging = tmp_path / "staging"
    staging.mkdir()
    good = write_request(tmp_path / "good.toml", clocks=(1410,), trials=1).read_text()
    for i in range(1000):
        text = '[workload]\nsteps = "x"\n' if i % 10 == 0 else good
        (staging / f"req{i:04d}.toml").write_text(text)
    for p in sorted(staging.iterdir()):
        os.replace(p, d.root / "spool/incoming" / p.name)
    end = time.monotonic() + 120
    q = d.queue()

    def taken() -> int:  # queued or rejected; a file leaves incoming/ just before its queue row is written
        return sum(q.counts().values()) + len(list((d.root / "spool/rejected").glob("*.error.txt")))

    while time.monotonic() < end and taken() < 1000:
        time.sleep(0.2)
    time.sleep(0.5)  # nothing more may arrive
    total = sum(q.counts().values())
    rejected = list((d.root / "spool/rejected").glob("*.error.txt"))
    assert total == 900 and len(rejected) == 100
    assert all("workload.steps: 'x':" in p.read_text() for p in rejected)
    assert len(list((d.root / "spool/accepted").iterdir())) == 900


def test_install_service_writes_a_unit_that_systemd_verifies(tmp_path):
    r = sweepd("install-service", "--unit-dir", tmp_path, "--root", tmp_path / "root")
    assert r.returncode == 0 and "systemctl --user enable --now sweepd" in r.stdout
    assert "loginctl enable-linger" in r.stdout
    unit = (tmp_path / "sweepd.service").read_text()
    assert "Type=notify" in unit and f"serve --root {tmp_path / 'root'}" in unit
    exe = unit.split("ExecStart=")[1].split()[0]
    assert os.access(exe, os.X_OK)
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is needed (Debian package systemd); .ci/run installs it"
    v = subprocess.run([tool, "verify", str(tmp_path / "sweepd.service")], capture_output=True, text=True)
    assert v.returncode == 0, v.stderr


def test_journal_priorities_when_stderr_is_the_journal(tmp_path):
    env = sweepd_env(JOURNAL_STREAM="8:1234")
    bad = tmp_path / "bad.toml"
    bad.write_text("[workload]\nsteps = 0\n")
    d = tmp_path / "root"
    (d / "spool/incoming").mkdir(parents=True)
    os.replace(bad, d / "spool/incoming/bad.toml")
    r = subprocess.run([*map(str, ["python", "-m", "sweepd", "serve", "--once", "--root", d])], capture_output=True,
                       text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert any(line.startswith("<4>rejected bad.toml") for line in lines), lines
    assert any(line.startswith("<6>") for line in lines)


def test_daemon_enforces_storage_policy_on_cap_crossing_and_survives_a_bad_edit(daemon_factory, tmp_path):
    from storage_helpers import make_job, tree_hashes

    d = daemon_factory()
    policies = d.config_home / "sweepd" / "policies"
    policies.mkdir(parents=True)
    job_bytes = 24 * 4000
    (policies / "cap.toml").write_text(f'[[rules]]\nname = "cap"\nmax_bytes = {int(job_bytes * 2.5)}\n'
                                       'schedule = {{ every = "1h" }}\n'.replace("{{", "{").replace("}}", "}"))
    d.start()
    images = d.root / "images"
    for j, age in [("old", 5), ("mid", 4), ("new", 3)]:
        make_job(images, j, age_days=age)
    end = time.monotonic() + 30
    while time.monotonic() < end and (images / "job_old").exists():
        time.sleep(0.2)
    assert not (images / "job_old").exists(), d.output()
    assert {f.split("/")[0] for f in tree_hashes(images)} == {"job_mid", "job_new"}
    assert any(p.name.startswith("job_old-") for p in (d.root / "archive").glob("*.tar.zst"))
    # a bad edit: reported, the daemon stays up, the last valid policy stays in force
    (policies / "cap.toml").write_text('[[rules]]\nname = "cap"\nmax_bytes = "a lot"\n')
    end = time.monotonic() + 20
    st = {}
    while time.monotonic() < end and not st.get("policy_error"):
        time.sleep(0.3)
        st = json.loads(sweepd("status", "--root", d.root, "--json", env=d.env).stdout)
    assert "max_bytes" in (st.get("policy_error") or ""), st
    make_job(images, "newer", age_days=1)
    end = time.monotonic() + 30
    while time.monotonic() < end and (images / "job_mid").exists():
        time.sleep(0.2)
    assert not (images / "job_mid").exists() and d.proc.poll() is None
