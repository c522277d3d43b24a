"""The sweep queue: SQLite in WAL mode under state/, shared by the daemon and the client commands.

States: queued -> running -> done | failed | cancelled | interrupted; interrupted -> queued on
resume. The next sweep is the highest priority, then the oldest (FIFO). Keep this file on a local
disk: SQLite's locking is not safe on NFS or Lustre.

A sweep run by SLURM (executor 'slurm') is `running` from its submission until its shards are
merged; table `shards` holds one row per array task with the SLURM job it runs as now.
Schema history: 1 (0.1): sweeps; 2: sweeps.executor, sweeps.slurm_job_id, shards.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sweepd import paths
from sweepd.errors import QueueError, QueueFault
from sweepd.records.queuerows import AttemptEnd, ShardAttempt, ShardRow, SweepRow
from sweepd.request import SweepRequest
from sweepd.vocab import ShardState, SweepState

SCHEMA_VERSION = 2
STATES = tuple(s.value for s in SweepState)  # plain strings: they are spelled into the tables' CHECKs
FINAL = tuple(s.value for s in SweepState if s.final)
SHARD_STATES = tuple(s.value for s in ShardState)

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS sweeps (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    job_id TEXT UNIQUE NOT NULL,
    state TEXT NOT NULL CHECK (state IN {STATES}),
    priority INTEGER NOT NULL DEFAULT 0,
    gpu_index INTEGER,
    request TEXT NOT NULL,
    source TEXT,
    spool_path TEXT,
    submitted_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    worker TEXT,
    pid INTEGER,
    exit_status INTEGER,
    error TEXT,
    resumes INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS sweeps_next ON sweeps (state, priority DESC, seq);
"""
MIGRATIONS = {  # from version n-1 to n
    2: f"""
ALTER TABLE sweeps ADD COLUMN executor TEXT NOT NULL DEFAULT 'local';
ALTER TABLE sweeps ADD COLUMN slurm_job_id TEXT;
CREATE TABLE shards (
    sweep_id TEXT NOT NULL REFERENCES sweeps (id),
    shard INTEGER NOT NULL,
    slurm_id TEXT,
    state TEXT NOT NULL CHECK (state IN {SHARD_STATES}),
    slurm_state TEXT,
    attempts INTEGER NOT NULL DEFAULT 1,
    error TEXT,
    history TEXT NOT NULL DEFAULT '[]',
    updated_at REAL,
    PRIMARY KEY (sweep_id, shard)
);
""",
}


BUSY_TIMEOUT_S = 10.0  # SQLite retries a locked queue this long before a call gives up (QueueFault, busy)


def busy_timeout_s() -> float:
    """BUSY_TIMEOUT_S, or SWEEPD_QUEUE_BUSY_S where set (a shorter wait, for a test or an impatient script)."""
    try:
        return float(os.environ["SWEEPD_QUEUE_BUSY_S"])
    except (KeyError, ValueError):
        return BUSY_TIMEOUT_S


class DuplicateJob(QueueError):
    pass


def fault(path: Path, e: sqlite3.Error) -> QueueFault:
    """SQLite's error as sweepd's: one line naming the file; ``busy`` when another process holds the lock."""
    text = str(e)
    busy = "locked" in text or "busy" in text
    why = f"held by another process for over {busy_timeout_s():g} s" if busy else text
    return QueueFault(f"{path}: {why}", busy=busy)


class _Connection:
    """The queue's SQLite connection: every statement goes through :meth:`execute`, which turns SQLite's
    operational and database errors into :class:`QueueFault` (a unique key stays an IntegrityError)."""

    def __init__(self, db: sqlite3.Connection, path: Path):
        self.raw, self.path = db, path

    @contextmanager
    def _faults(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as e:
            raise fault(self.path, e) from None

    def execute(self, sql: str, params: tuple | list = ()) -> sqlite3.Cursor:
        with self._faults():
            return self.raw.execute(sql, params)

    def all(self, sql: str, params: tuple | list = ()) -> list[sqlite3.Row]:
        with self._faults():
            return self.raw.execute(sql, params).fetchall()

    def one(self, sql: str, params: tuple | list = ()) -> sqlite3.Row | None:
        with self._faults():
            return self.raw.execute(sql, params).fetchone()

    def close(self) -> None:
        self.raw.close()


class Queue:
    def __init__(self, path: Path):
        try:
            self._open(path)
        except sqlite3.Error as e:  # the folder or file cannot be opened
            raise fault(Path(path), e) from None
        except QueueFault as e:  # not a database, a damaged one, or a locked one: one line naming the file
            raise QueueFault(f"cannot be used as the queue: {e}", e.busy) from None

    def _open(self, path: Path) -> None:
        self.path = Path(path)
        paths.private_dir(self.path.parent)  # state/: the queue is the owner's alone, whatever the umask
        db = sqlite3.connect(self.path, timeout=busy_timeout_s(), isolation_level=None, check_same_thread=False)
        db.row_factory = sqlite3.Row
        self.db = _Connection(db, self.path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        version = self.db.one("PRAGMA user_version")[0]
        if version > SCHEMA_VERSION:
            raise QueueError(f"{self.path} has schema {version}; this sweepd knows up to {SCHEMA_VERSION}: upgrade sweepd")
        if version < SCHEMA_VERSION:
            with self.tx() as db:
                steps = [SCHEMA] if version == 0 else []
                steps += [MIGRATIONS[v] for v in range(max(version, 1) + 1, SCHEMA_VERSION + 1)]
                for script in steps:
                    for statement in script.split(";"):
                        if statement.strip():
                            db.execute(statement)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self.db.close()

    @classmethod
    def reader(cls, path: Path) -> "Queue":
        """Open for reading only: no folder, file or migration is made (a read-only root works too)."""
        from urllib.parse import quote

        self = cls.__new__(cls)
        self.path = Path(path)
        for mode in ("mode=ro", "immutable=1"):  # immutable: a read-only filesystem, where WAL cannot make -shm
            try:
                db = sqlite3.connect(f"file:{quote(str(self.path))}?{mode}", uri=True, timeout=busy_timeout_s(),
                                     isolation_level=None, check_same_thread=False)
                db.row_factory = sqlite3.Row
                version = db.execute("PRAGMA user_version").fetchone()[0]
                break
            except sqlite3.DatabaseError as e:  # OperationalError, or not a database at all
                error = e
                continue
        else:
            raise QueueFault(f"{self.path} cannot be read: {error}")
        if version > SCHEMA_VERSION:
            db.close()
            raise QueueError(f"{self.path} has schema {version}; this sweepd knows up to {SCHEMA_VERSION}: upgrade sweepd")
        self.db = _Connection(db, self.path)
        return self

    @contextmanager
    def tx(self) -> Iterator[_Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE: waits up to BUSY_TIMEOUT_S for the lock)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
            self.db.execute("COMMIT")
        except BaseException:
            try:
                self.db.raw.rollback()  # a failed COMMIT may already have ended the transaction
            except sqlite3.Error:
                pass
            raise

    # writes ----------------------------------------------------------------------------------
    def add(self, sweep_id: str, job_id: str, request: SweepRequest, *, priority: int = 0, gpu_index: int | None = None,
            source: str = "", spool_path: str = "", executor: str = "local") -> None:
        try:
            with self.tx() as db:
                db.execute("INSERT INTO sweeps (id, job_id, state, priority, gpu_index, request, source, spool_path,"
                           " submitted_at, executor) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                           (sweep_id, job_id, priority, gpu_index, request.model_dump_json(by_alias=True), source, spool_path,
                            time.time(), executor))
        except sqlite3.IntegrityError:
            other = self.get(job_id)
            raise DuplicateJob(f"job_id {job_id!r} is already used by sweep {other.id if other else '?'}") from None

    def claim_next(self, worker: str, gpu_index: int | None, executor: str = "local") -> SweepRow | None:
        """Take the next queued sweep this worker can run (any GPU, or its GPU index) and mark it running.
        SLURM sweeps are queued without a GPU index: executor 'slurm' takes any of them."""
        with self.tx() as db:
            row = db.one("SELECT id FROM sweeps WHERE state = 'queued' AND executor = ? AND"
                             " (gpu_index IS NULL OR gpu_index = ?)"
                             " ORDER BY priority DESC, seq LIMIT 1", (executor, gpu_index))
            if row is None:
                return None
            # pinned to this GPU from now on: a resumed sweep must continue on the GPU it started on
            db.execute("UPDATE sweeps SET state = 'running', worker = ?, started_at = ?, pid = NULL,"
                       " exit_status = NULL, error = NULL, gpu_index = COALESCE(gpu_index, ?) WHERE id = ?",
                       (worker, time.time(), gpu_index, row[0]))
        return self.get(row[0])

    def set_pid(self, sweep_id: str, pid: int) -> None:
        with self.tx() as db:
            db.execute("UPDATE sweeps SET pid = ? WHERE id = ?", (pid, sweep_id))

    def finish(self, sweep_id: str, state: SweepState, exit_status: int | None = None, error: str | None = None) -> None:
        assert state in STATES
        with self.tx() as db:
            db.execute("UPDATE sweeps SET state = ?, exit_status = ?, error = ?, ended_at = ? WHERE id = ?",
                       (state, exit_status, error, time.time(), sweep_id))

    def requeue(self, sweep_id: str) -> None:
        """An interrupted sweep goes back to the queue, keeping its place (seq) and counting the resume."""
        with self.tx() as db:
            db.execute("UPDATE sweeps SET state = 'queued', resumes = resumes + 1, pid = NULL, ended_at = NULL"
                       " WHERE id = ? AND state = 'interrupted'", (sweep_id,))

    def request_cancel(self, key: str) -> str:
        """Cancel a queued sweep at once, or ask the daemon to stop a running one. Returns the outcome."""
        with self.tx() as db:
            row = self._get(db, key)
            if row is None:
                raise QueueError(f"no sweep {key!r}")
            if row.state in ("queued", "interrupted"):
                db.execute("UPDATE sweeps SET state = 'cancelled', ended_at = ?, error = 'cancelled by user'"
                           " WHERE id = ?", (time.time(), row.id))
                return "cancelled"
            if row.state == "running":
                db.execute("UPDATE sweeps SET cancel_requested = 1 WHERE id = ?", (row.id,))
                return "cancelling"
            raise QueueError(f"sweep {row.id} is already {row.state}")

    # SLURM ------------------------------------------------------------------------------------
    def set_submitted(self, sweep_id: str, job_id: str, slurm_job_id: str, shards: dict[int, str],
                      minutes: int | None = None) -> None:
        """The array is submitted: the sweep takes SLURM's job id (unless it has its own) and one row per task."""
        now = time.time()
        with self.tx() as db:
            db.execute("UPDATE sweeps SET job_id = ?, slurm_job_id = ? WHERE id = ?", (job_id, slurm_job_id, sweep_id))
            for k, slurm_id in shards.items():
                db.execute("INSERT OR REPLACE INTO shards (sweep_id, shard, slurm_id, state, slurm_state, attempts,"
                           " history, updated_at) VALUES (?, ?, ?, 'pending', 'PENDING', 1, ?, ?)",
                           (sweep_id, k, slurm_id,
                            json.dumps([{"slurm_id": slurm_id, "submitted": now, "minutes": minutes}]), now))

    def shards(self, sweep_id: str) -> list[ShardRow]:
        return [ShardRow.of(r) for r in
                self.db.all("SELECT * FROM shards WHERE sweep_id = ? ORDER BY shard", (sweep_id,))]

    def update_shard(self, sweep_id: str, shard: int, *, state: ShardState | None = None,
                     slurm_state: str | None = None, error: str | None = None, resubmitted_as: str | None = None,
                     ended: AttemptEnd | None = None, minutes: int | None = None) -> None:
        """Record what SLURM says of a shard; `ended` closes its current attempt in the history,
        `resubmitted_as` starts a new attempt under a new SLURM job."""
        with self.tx() as db:
            row = ShardRow.of(db.one("SELECT * FROM shards WHERE sweep_id = ? AND shard = ?",
                                         (sweep_id, shard)))
            history = list(row.history)
            if ended:
                history[-1] = history[-1].closed(ended)
            new = row.model_copy(update={"updated_at": time.time()})
            if state is not None:
                assert state in SHARD_STATES
                new = new.model_copy(update={"state": state})
            if slurm_state is not None:
                new = new.model_copy(update={"slurm_state": slurm_state})
            if error is not None:
                new = new.model_copy(update={"error": error})
            if resubmitted_as:
                history.append(ShardAttempt(slurm_id=resubmitted_as, submitted=time.time(), minutes=minutes))
                new = new.model_copy(update={"slurm_id": resubmitted_as, "attempts": row.attempts + 1,
                                             "state": "pending", "slurm_state": "PENDING"})
            db.execute("UPDATE shards SET slurm_id = ?, state = ?, slurm_state = ?, attempts = ?, error = ?,"
                       " history = ?, updated_at = ? WHERE sweep_id = ? AND shard = ?",
                       (new.slurm_id, new.state, new.slurm_state, new.attempts, new.error,
                        json.dumps([h.model_dump(exclude_unset=True) for h in history]), new.updated_at,
                        sweep_id, shard))

    def back_to_queue(self, sweep_id: str, error: str) -> None:
        """A submission that SLURM did not take (controller unreachable): try again later."""
        with self.tx() as db:
            db.execute("UPDATE sweeps SET state = 'queued', error = ?, started_at = NULL WHERE id = ?",
                       (error, sweep_id))

    # reads -----------------------------------------------------------------------------------
    @staticmethod
    def _get(db: _Connection, key: str) -> SweepRow | None:
        row = db.one("SELECT * FROM sweeps WHERE id = ? OR job_id = ?", (key, key))
        return None if row is None else SweepRow.of(row)

    def get(self, key: str) -> SweepRow | None:
        return self._get(self.db, key)

    def list(self, states: tuple[str, ...] = STATES) -> list[SweepRow]:
        marks = ",".join("?" * len(states))
        return [SweepRow.of(r) for r in
                self.db.all(f"SELECT * FROM sweeps WHERE state IN ({marks}) ORDER BY seq", states)]

    def counts(self) -> dict[SweepState, int]:
        rows = self.db.all("SELECT state, COUNT(*) FROM sweeps GROUP BY state")
        return {s: 0 for s in SweepState} | {SweepState(r[0]): r[1] for r in rows}
