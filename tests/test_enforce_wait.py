"""A crossed cap is enforced within a bounded wait however many events follow (issue #30): events coalesce, but
a steady writer (a sweep saving an image every half second) cannot hold a folder over its cap until it stops."""

import os
import subprocess
import sys
import time

import pytest

from conftest import sweepd_env
from sweepd.storage.debounce import Debouncer


class Clock:
    """Virtual time, and the timers waiting on it."""

    def __init__(self):
        self.now, self.timers = 0.0, []

    def timer(self, delay, fn):
        clock = self

        class T:
            due, cancelled = clock.now + delay, False

            def start(self):
                clock.timers.append(self)

            def cancel(self):
                self.cancelled = True

            def fire(self):
                fn()
        return T()

    def advance(self, to):
        while True:
            due = sorted((t for t in self.timers if not t.cancelled and t.due <= to), key=lambda t: t.due)
            if not due:
                break
            self.now = due[0].due
            self.timers.remove(due[0])
            due[0].fire()
        self.now = to


def test_a_steady_stream_of_events_is_enforced_within_the_bounded_wait():
    c, runs = Clock(), []
    d = Debouncer(quiet_s=2.0, max_wait_s=5.0, clock=lambda: c.now, timer=c.timer)
    for k in range(120):  # an event every 0.5 s for a minute, the cap crossed from the first
        c.advance(k * 0.5)
        d.call("cap:x", lambda: runs.append(c.now))  # when it runs
    c.advance(61.0)
    assert runs[0] == pytest.approx(5.0)  # 5 s after the first event, not after the stream ends
    gaps = [b - a for a, b in zip(runs, runs[1:])]
    assert all(g <= 5.0 + 1e-9 for g in gaps) and len(runs) >= 11  # and every 5 s while it goes on


def test_a_single_burst_still_coalesces_into_one_run_after_the_quiet_time():
    c, runs = Clock(), []
    d = Debouncer(quiet_s=2.0, max_wait_s=5.0, clock=lambda: c.now, timer=c.timer)
    for t in (0.0, 0.3, 0.6, 0.9):
        c.advance(t)
        d.call("cap:x", runs.append, "once")
    c.advance(30.0)
    assert runs == ["once"] and not [t for t in c.timers if not t.cancelled]
    c.advance(31.0)
    d.call("cap:x", runs.append, "again")  # a new burst starts its own wait
    c.advance(33.5)
    assert runs == ["once", "again"]


def test_keys_wait_apart():
    c, runs = Clock(), []
    d = Debouncer(quiet_s=2.0, max_wait_s=5.0, clock=lambda: c.now, timer=c.timer)
    d.call("cap:a", runs.append, "a")
    c.advance(1.0)
    d.call("cap:b", runs.append, "b")
    c.advance(10.0)
    assert runs == ["a", "b"]


@pytest.mark.slow
def test_storage_watch_enforces_a_crossed_cap_under_a_steady_writer(tmp_path):
    """The real `sweepd storage watch`: a 1 MiB cap with a 1 h schedule, crossed while another job folder gets a
    1 KB write every 0.5 s. Before, nothing was archived until the writes stopped."""
    root = tmp_path / "root"
    images = root / "images"
    (images / "job_churn").mkdir(parents=True)
    policy = tmp_path / "p.toml"
    policy.write_text('[[rules]]\nname = "cap"\npaths = ["images"]\nmax_bytes = "1MiB"\n'
                      'action = "archive_then_delete"\nschedule = { every = "1h" }\n')
    log = open(tmp_path / "watch.log", "wb")
    watch = subprocess.Popen([sys.executable, "-m", "sweepd", "storage", "watch", "--policy", str(policy),
                              "--root", str(root)], stdout=log, stderr=subprocess.STDOUT, env=sweepd_env())
    try:
        end = time.monotonic() + 60
        while b"policies in force" not in (tmp_path / "watch.log").read_bytes():
            assert watch.poll() is None and time.monotonic() < end, (tmp_path / "watch.log").read_text()
            time.sleep(0.1)
        time.sleep(1.0)  # its observers are up
        for name in ("a", "b"):
            (images / f"job_{name}").mkdir()
            (images / f"job_{name}" / f"{name}.png").write_bytes(os.urandom(600 * 1024))
        crossed, n = time.monotonic(), 0
        while not list((root / "archive").glob("*.tar.zst")) if (root / "archive").exists() else True:
            (images / "job_churn" / f"c{n % 4}.png").write_bytes(os.urandom(1024))
            n += 1
            assert time.monotonic() - crossed < 30, "nothing archived 30 s after the cap was crossed: " + \
                (tmp_path / "watch.log").read_text()[-2000:]
            time.sleep(0.5)
        assert time.monotonic() - crossed < 12  # the bounded wait (5 s) plus the archive itself
    finally:
        watch.terminate()
        watch.wait(30)
        log.close()
