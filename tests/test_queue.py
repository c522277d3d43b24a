"""The SQLite queue: order, states, cancellation, and the state files of earlier versions."""

import shutil
import sqlite3
from pathlib import Path

import pytest

from sweepd.request import SweepRequest
from sweepd.queue import DuplicateJob, Queue, QueueError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def q(tmp_path):
    queue = Queue(tmp_path / "queue.sqlite")
    yield queue
    queue.close()


def test_priority_then_fifo(q):
    for i, prio in enumerate([0, 5, 0, 5]):
        q.add(f"s{i}", f"j{i}", SweepRequest(), priority=prio)
    order = [q.claim_next("gpu0", 0).id for _ in range(4)]
    assert order == ["s1", "s3", "s0", "s2"] and q.claim_next("gpu0", 0) is None


def test_gpu_pinned_requests_wait_for_their_gpu(q):
    q.add("a", "ja", SweepRequest(), gpu_index=1)
    q.add("b", "jb", SweepRequest())
    assert q.claim_next("gpu0", 0).id == "b"
    assert q.claim_next("gpu0", 0) is None
    assert q.claim_next("gpu1", 1).id == "a"


def test_states_and_cancel(q):
    q.add("a", "ja", SweepRequest())
    q.add("b", "jb", SweepRequest())
    assert q.request_cancel("jb") == "cancelled"  # by job id, while queued
    q.claim_next("gpu0", 0)
    assert q.request_cancel("a") == "cancelling" and q.get("a").cancel_requested == 1
    q.finish("a", "cancelled", 4)
    with pytest.raises(QueueError, match="already cancelled"):
        q.request_cancel("a")
    with pytest.raises(QueueError, match="no sweep"):
        q.request_cancel("zzz")
    assert q.counts()["cancelled"] == 2


def test_interrupted_sweeps_requeue_in_place_and_count_resumes(q):
    q.add("a", "ja", SweepRequest())
    q.add("b", "jb", SweepRequest())
    q.claim_next("gpu0", 0)
    q.finish("a", "interrupted", -9, "killed")
    q.requeue("a")
    row = q.claim_next("gpu0", 0)
    assert row.id == "a" and row.resumes == 1


def test_duplicate_job_id_is_refused(q):
    q.add("a", "same", SweepRequest())
    with pytest.raises(DuplicateJob, match="already used by sweep a"):
        q.add("b", "same", SweepRequest())


def test_state_survives_reopening(tmp_path):
    q = Queue(tmp_path / "queue.sqlite")
    q.add("a", "ja", SweepRequest())
    q.close()
    q2 = Queue(tmp_path / "queue.sqlite")
    assert q2.get("a").state == "queued"
    assert sqlite3.connect(tmp_path / "queue.sqlite").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_schema_1_state_file_from_release_0_1_still_opens(tmp_path):
    """Old state files are kept as fixtures: every later schema must open them (pueue's lesson)."""
    db = tmp_path / "queue.sqlite"
    shutil.copy(FIXTURES / "queue-schema1.sqlite", db)
    q = Queue(db)
    assert {r.id: r.state for r in q.list()} == {"aaaaaaaaaaaa": "done", "bbbbbbbbbbbb": "queued"}
    assert q.claim_next("gpu0", 0).id == "bbbbbbbbbbbb"


def test_a_newer_schema_is_refused(tmp_path):
    db = tmp_path / "queue.sqlite"
    sqlite3.connect(db).execute("PRAGMA user_version=99")
    with pytest.raises(QueueError, match="upgrade sweepd"):
        Queue(db)
