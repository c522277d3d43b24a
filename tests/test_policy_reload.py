"""Policies do what they say: a read is no edit, a rename into place is, timers keep running across
reloads, durations are finite and at least a second, and the path index survives files vanishing."""

import logging
import os
import shutil
import threading
import time

import pytest

from conftest import sweepd
from sweepd.paths import Layout
from sweepd.storage.enforce import StorageManager
from storage_helpers import make_job, tree_hashes, write_policy

IN_FORCE = "storage policies in force"


def wait(cond, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def manager(tmp_path):
    made = []

    def make(policy_text):
        pdir = tmp_path / "policies"
        pdir.mkdir(exist_ok=True)
        policy = write_policy(pdir / "p.toml", policy_text)
        layout = Layout.resolve(tmp_path / "root")
        layout.images.mkdir(parents=True, exist_ok=True)
        mgr = StorageManager(layout, [policy])
        made.append(mgr)
        mgr.start()
        return mgr, policy, layout

    yield make
    for m in made:
        m.stop()


@pytest.mark.slow  # a 1 s timer firing three times
def test_reads_do_not_reload_renames_do_and_timers_keep_running(manager, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="sweepd.storage")
    mgr, policy, layout = manager('[[rules]]\nname = "tick"\nmax_age = "30d"\nschedule = { every = "1s" }\n')
    assert wait(lambda: "tick" in mgr.last_run)
    loads = lambda: sum(IN_FORCE in r.getMessage() for r in caplog.records)  # noqa: E731
    before = loads()
    for _ in range(5):
        policy.read_bytes()
        assert sweepd("policy", "check", policy, "--root", layout.root).returncode == 0
    policy.write_text(policy.read_text())  # rewritten with the same text: no change either
    first = mgr.last_run["tick"]
    assert wait(lambda: mgr.last_run["tick"] > first + 2, timeout=30)  # the 1 s timer still fires
    assert loads() == before
    # a new version written beside it and renamed over it: reloaded
    (policy.parent / "p.toml.new").write_text('[[rules]]\nname = "tock"\nmax_age = "30d"\n'
                                             'schedule = { every = "1s" }\n')
    os.rename(policy.parent / "p.toml.new", policy)
    assert wait(lambda: [r.name for p, pol in mgr.policies for r in pol.rules] == ["tock"])
    assert loads() == before + 1
    assert wait(lambda: "tock" in mgr.last_run)


def test_a_bad_reload_keeps_the_old_policy_and_reports(manager):
    mgr, policy, _ = manager('[[rules]]\nname = "a"\nmax_age = "30d"\n')
    policy.write_text('[[rules]]\nname = "a"\nmax_age = "30d"\nschedule = { every = "inf" }\n')
    assert wait(lambda: mgr.error is not None)
    assert "schedule.every" in mgr.error
    assert [r.name for _, pol in mgr.policies for r in pol.rules] == ["a"]
    assert mgr.scheduler.get_job("rule:a") is not None


@pytest.mark.parametrize("value, needle", [
    ("inf", "finite"), ("nan", "finite"), ('"99999999999w"', "at most 100 years"), ('"0.0001s"', "at least 1 s"),
    ("0", "at least 1 s"), ("-5", "at least 1 s"), ('"1e9w"', "a number and a unit"), ("true", "a number and a unit"),
])
def test_bad_durations_are_refused_by_policy_check(tmp_path, value, needle):
    for field in (f"schedule = {{ every = {value} }}", f"max_age = {value}"):
        body = f'[[rules]]\nname = "r"\nmax_files = 5\n{field}\n'
        r = sweepd("policy", "check", write_policy(tmp_path / "p.toml", body), "--root", tmp_path / "root")
        assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, (field, r.stderr)
        assert ("schedule.every" if "every" in field else "max_age") in r.stderr


@pytest.mark.filterwarnings("ignore:Callback with id:RuntimeWarning")  # watchdog, on folders recreated fast
def test_the_index_survives_files_vanishing_and_caps_are_still_enforced(manager, tmp_path):
    mgr, _, layout = manager('[[rules]]\nname = "cap"\nmax_files = 60\n')

    def churn():  # 150 jobs made and removed: thousands of events, whatever the machine's speed
        k = 0
        while k < 150:
            d = layout.images / f"job_churn{k % 3}" / "1410MHz"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(20):
                (d / f"i{i}.png").write_bytes(b"x")
            shutil.rmtree(d.parent, ignore_errors=True)
            k += 1

    t = threading.Thread(target=churn)
    t.start()
    t.join()
    for j in range(3):
        shutil.rmtree(layout.images / f"job_churn{j}", ignore_errors=True)
    assert all(o.is_alive() for o in mgr.path_observers), "a watching thread died"
    for j, age in [("old", 9), ("mid", 5), ("new", 1)]:
        make_job(layout.images, j, age_days=age)  # 24 files each: 72 > 60
    assert wait(lambda: not (layout.images / "job_old").exists(), timeout=90)  # the churn leaves a backlog of events; a loaded machine drains it slowly
    assert {f.split("/")[0] for f in tree_hashes(layout.images)} == {"job_mid", "job_new"}
