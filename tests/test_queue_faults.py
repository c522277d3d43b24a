"""The queue under faults (issue #26): SQLite's own faults (a lock held past the wait, a read-only or full database,
a damaged file) are QueueFaults naming the file; intake loses no request from view while the queue fails; a worker's
end is recorded once the queue heals; the daemon reports the fault and keeps serving; a lost queue is rebuilt from the
files without running again what results/ says is done.

Read-only and full are made the way SQLite itself refuses writes (``PRAGMA query_only``, ``max_page_count``): these
tests run as root, whom a read-only folder does not stop."""

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import sweepd, write_request
from sweepd import audit, paths, queue as queue_mod
from sweepd.errors import QueueFault
from sweepd.ops.admission import Admission
from sweepd.queue import Queue
from sweepd.records.manifest import SweepManifest
from sweepd.request import SweepRequest
from sweepd.spool import Spool
from sweepd.vocab import SweepState


@pytest.fixture(autouse=True)
def short_wait(monkeypatch):
    monkeypatch.setattr(queue_mod, "BUSY_TIMEOUT_S", 0.2)  # SQLite's wait for a lock, so a held one shows at once


class Holder:
    """Another process's write lock on the queue (BEGIN EXCLUSIVE), held until released."""

    def __init__(self, path):
        self.db = sqlite3.connect(path, isolation_level=None, timeout=5)
        self.db.execute("BEGIN EXCLUSIVE")

    def release(self):
        self.db.execute("COMMIT")
        self.db.close()


def broken(q: Queue, how: str):
    """Make the queue's own connection fail its writes the way SQLite does; returns what heals it."""
    if how == "locked":
        h = Holder(q.path)
        return h.release
    if how == "read-only":
        q.db.raw.execute("PRAGMA query_only = 1")
        return lambda: q.db.raw.execute("PRAGMA query_only = 0")
    if how == "full":  # no page left: the database can grow no further, and what space it has is used
        q.db.raw.execute("CREATE TABLE filler (x BLOB)")
        pages = q.db.raw.execute("PRAGMA page_count").fetchone()[0]
        q.db.raw.execute(f"PRAGMA max_page_count = {pages + 2}")
        for size in (4096, 512, 64, 8):
            try:
                while True:
                    q.db.raw.execute("INSERT INTO filler VALUES (zeroblob(?))", (size,))
            except sqlite3.OperationalError as e:
                assert "full" in str(e)
        try:  # and the queue's own pages: rows that are not requests, taken out again when it heals
            for i in range(10000):
                q.db.raw.execute("INSERT INTO sweeps (id, job_id, state, request, submitted_at) VALUES "
                                 "(?, ?, 'done', '{}', 0)", (f"filler-{i}", f"filler-{i}"))
        except sqlite3.OperationalError as e:
            assert "full" in str(e)

        def heal():
            q.db.raw.execute("PRAGMA max_page_count = 1000000")
            q.db.raw.execute("DROP TABLE filler")
            q.db.raw.execute("DELETE FROM sweeps WHERE id LIKE 'filler-%'")
        return heal
    raise ValueError(how)


FAULTS = ("locked", "read-only", "full")


@pytest.mark.parametrize("how", FAULTS)
def test_sqlite_faults_are_queue_faults_naming_the_file(tmp_path, how):
    q = Queue(tmp_path / "queue.sqlite")
    heal = broken(q, how)
    with pytest.raises(QueueFault) as e:
        for i in range(3):
            q.add(f"{i:012x}", f"job{i}", SweepRequest())
    assert str(q.path) in str(e.value) and e.value.busy == (how == "locked")
    heal()
    q.add("a" * 12, "after", SweepRequest())
    assert q.get("after").state == SweepState.QUEUED


def test_a_damaged_queue_file_is_one_line_for_every_command(tmp_path):
    root = tmp_path / "root"
    q = Queue(paths.Layout.resolve(root).queue_db)
    q.add("a" * 12, "x", SweepRequest())
    q.close()
    db = paths.Layout.resolve(root).queue_db
    db.write_bytes(db.read_bytes()[:1000])  # truncated
    for args in (["status"], ["list"], ["status", "x"], ["cancel", "x"]):
        r = sweepd(*args, "--root", root)
        assert r.returncode in (1, 2) and "Traceback" not in r.stderr and "queue.sqlite" in r.stderr, (args, r.stderr)


def test_cancel_under_a_held_lock_says_so_in_one_line(tmp_path):
    root = tmp_path / "root"
    layout = paths.Layout.resolve(root)
    q = Queue(layout.queue_db)
    q.add("a" * 12, "x", SweepRequest())
    q.close()
    h = Holder(layout.queue_db)
    try:
        r = sweepd("cancel", "x", "--root", root)
    finally:
        h.release()
    assert r.returncode == 1 and "held by another process" in r.stderr and "Traceback" not in r.stderr


def spool(tmp_path) -> Spool:
    root = tmp_path / "root"
    q = Queue(root / "state" / "queue.sqlite")
    s = Spool(paths.Layout.resolve(root), q, admission=Admission(gpu_indices=None), settle_s=0)
    s.ensure()
    return s


@pytest.mark.parametrize("how", FAULTS)
def test_intake_with_a_faulty_queue_leaves_the_request_in_incoming_and_takes_it_once_healed(tmp_path, how):
    s = spool(tmp_path)
    req = write_request(tmp_path / "r.toml").read_text()
    for i in range(3):
        (s.incoming / f"r{i}.toml").write_text(req)
        s.hint_complete(f"r{i}.toml")  # as inotify says of a file closed after writing
    heal = broken(s.queue, how)
    with pytest.raises(QueueFault):
        s.scan()
    assert sorted(p.name for p in s.incoming.iterdir()) == ["r0.toml", "r1.toml", "r2.toml"]  # in view: waiting
    assert list(s.accepted.iterdir()) == [] and list(s.rejected.iterdir()) == []
    heal()
    for i in range(3):
        s.hint_complete(f"r{i}.toml")  # renamed back into incoming/: inotify says so
    assert all(o.accepted for o in s.scan())
    assert list(s.incoming.iterdir()) == [] and len(s.queue.list()) == 3
    assert {r.source for r in s.queue.list()} == {"r0.toml", "r1.toml", "r2.toml"}


def test_a_workers_end_is_recorded_once_the_queue_heals(tmp_path):
    from sweepd.daemon.pool import Running, WorkerPool
    from sweepd.settings import Settings

    layout = paths.Layout.resolve(tmp_path / "root")
    q = Queue(layout.queue_db)
    q.add("a" * 12, "w", SweepRequest())
    q.claim_next("gpu0", 0)
    pool = WorkerPool(layout, q, Settings(gpus=[0]))
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(0)"])
    proc.wait()
    pool.running["gpu0"] = Running("a" * 12, "w", proc, open(tmp_path / "log", "ab"))
    heal = broken(q, "read-only")
    with pytest.raises(QueueFault):
        pool.reap()
    assert "gpu0" in pool.running and q.get("w").state == SweepState.RUNNING  # still followed, not forgotten
    heal()
    pool.reap()
    assert not pool.running and q.get("w").state == SweepState.DONE


def test_the_audit_log_failing_never_stops_the_work(tmp_path, caplog):
    (tmp_path / "audit.jsonl").mkdir()  # cannot be appended to
    audit.record(tmp_path, "accepted", sweep_id="x")
    audit.record(tmp_path, "accepted", sweep_id="y")
    lines = [r for r in caplog.records if "audit log not written" in r.getMessage()]
    assert len(lines) == 1 and '"sweep_id": "x"' in lines[0].getMessage()  # said once, with the line lost


def ran_before(layout, sweep_id, job_id, status):
    d = layout.job_results(job_id)
    d.mkdir(parents=True)
    SweepManifest(sweep_id=sweep_id, job_id=job_id, status=status, pid=None,
                  request=SweepRequest.model_validate({"gpu": {"backend": "sim"}})).write(d / "sweep.json")


def test_a_lost_queue_is_rebuilt_from_the_files_without_running_what_is_done(tmp_path):
    s = spool(tmp_path)
    layout = paths.Layout.resolve(tmp_path / "root")
    req = write_request(tmp_path / "r.toml").read_text()
    ids = {"done": "d" * 12, "failed": "f" * 12, "interrupted": "e" * 12, "never": "a" * 12}
    for what, sid in ids.items():
        (s.accepted / f"{sid}.toml").write_text(req)
        if what != "never":
            ran_before(layout, sid, f"local-{what}", what)
    assert s.reconcile_accepted() == 4
    rows = {r.id: r for r in s.queue.list()}
    assert rows[ids["done"]].state == SweepState.DONE and rows[ids["done"]].job_id == "local-done"
    assert rows[ids["failed"]].state == SweepState.FAILED
    assert rows[ids["interrupted"]].state == SweepState.QUEUED  # resumes its own job
    assert rows[ids["interrupted"]].job_id == "local-interrupted"
    assert rows[ids["never"]].state == SweepState.QUEUED
    assert s.reconcile_accepted() == 0  # once


@pytest.mark.slow
def test_the_daemon_reports_a_held_queue_lock_and_goes_on_serving(tmp_path):
    """A real `sweepd serve`: the queue locked longer than SQLite's wait, a request dropped meanwhile. The daemon
    says FAULT (systemd status, `sweepd status`), stays up, and takes the request in once the lock is gone."""
    from daemon_helpers import Daemon

    d = Daemon(tmp_path / "root", settings="gpus = []\n", extra_env={"SWEEPD_QUEUE_BUSY_S": "2"})
    try:
        d.start()
        h = Holder(d.root / "state" / "queue.sqlite")
        try:
            write_request(d.root / "spool/incoming/.r.tmp")
            os.rename(d.root / "spool/incoming/.r.tmp", d.root / "spool/incoming/r.toml")
            d.wait_message("FAULT: intake", timeout=120)
            st = sweepd("status", "--json", "--root", d.root)
            assert '"fault": "intake:' in st.stdout and "held by another process" in st.stdout
            assert (d.root / "spool/incoming/r.toml").exists() and d.proc.poll() is None
        finally:
            h.release()
        end = time.monotonic() + 120
        while time.monotonic() < end and (d.root / "spool/incoming/r.toml").exists():
            time.sleep(0.2)
        q = d.queue()
        assert [r.source for r in q.list()] == ["r.toml"]
        q.close()
        assert "healed: intake" in d.output()
    finally:
        d.close()


@pytest.mark.slow
def test_status_says_a_stopped_daemon_is_not_responding(tmp_path):
    """SIGSTOP: the process lives and holds its lock, but serves nothing. `status` said "running"."""
    import json
    import signal

    from daemon_helpers import Daemon

    d = Daemon(tmp_path / "root", settings="gpus = []\n")
    try:
        d.start()
        state = d.root / "state" / "daemon.json"
        d.signal(signal.SIGSTOP)
        try:
            os.utime(state, (time.time() - 120, time.time() - 120))  # as two minutes of silence leave it
            st = json.loads(sweepd("status", "--json", "--root", d.root).stdout)
            assert st["daemon_pid"] == d.proc.pid and st["daemon_responding"] is False
            assert "NOT RESPONDING for 1" in sweepd("status", "--root", d.root).stdout
        finally:
            d.signal(signal.SIGCONT)
        end = time.monotonic() + 60
        while json.loads(sweepd("status", "--json", "--root", d.root).stdout)["daemon_responding"] is False:
            assert time.monotonic() < end, "the daemon did not touch daemon.json after SIGCONT"
            time.sleep(0.2)
    finally:
        d.close()
