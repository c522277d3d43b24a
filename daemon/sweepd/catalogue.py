"""One catalogue of a root's sweeps, whoever ran them: the daemon's queue, requests still waiting in
spool/incoming/ (no daemon has taken them in yet) or in spool/accepted/ without their queue row, and foreground
`sweepd run`/`demo` jobs (a results/job_<ID>/sweep.json that no queue row owns).

Everything here only reads: it works on a read-only root and creates no folder or file.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from sweepd.vocab import ListedState, Origin, ShardState, SweepState
from sweepd.paths import Layout, job_of
from sweepd.procs import pid_alive
from sweepd.records.manifest import SweepManifest
from sweepd.records.queuerows import ShardRow, SweepRow
from sweepd.records.status import WorkerStatus


@dataclass
class ShardView:
    """A SLURM shard's queue row and, while it runs, its worker's status.json."""
    row: ShardRow
    progress: WorkerStatus | None = None

    def to_json(self) -> dict:
        return self.row.to_json() | {"progress": self.progress.to_json() if self.progress else {}}


@dataclass
class Entry:
    """One sweep as `sweepd status` and `sweepd list` show it."""
    id: str
    job_id: str
    state: ListedState
    origin: Origin
    submitted_at: float | None = None
    error: str | None = None
    path: str = ""  # the request file (spool) or the results folder (foreground)
    row: SweepRow | None = None  # a queue entry's row
    progress: WorkerStatus | None = None  # a running local sweep's status.json (see with_progress)
    shards: list[ShardView] = field(default_factory=list)  # a SLURM sweep's (see with_progress)

    @property
    def executor(self) -> str:
        return self.row.executor if self.row else "local"

    @property
    def priority(self) -> int:
        return self.row.priority if self.row else 0

    def to_json(self, layout: Layout) -> dict:
        results = str(layout.job_results(self.job_id)) if self.job_id else ""
        if self.row is None:
            return {"id": self.id, "job_id": self.job_id, "state": self.state, "origin": self.origin,
                    "executor": "local", "priority": 0, "submitted_at": self.submitted_at, "error": self.error,
                    "progress": {}, "results_dir": results, "spool_path": self.path if self.origin == Origin.SPOOL else "",
                    "slurm_job_id": None}
        out = self.row.to_json() | {"origin": self.origin,
                                    "progress": self.progress.to_json() if self.progress else {},
                                    "results_dir": results}
        if self.row.slurm:
            out["shards"] = [sh.to_json() for sh in self.shards]
        return out


def with_progress(layout: Layout, e: Entry, q) -> Entry:
    """Read what a queue entry's workers say: status.json of a running local sweep, each SLURM shard's row
    and, while it runs, its status.json."""
    from sweepd.engine.status import read_shard_status, read_status

    if e.row is None:
        return e
    if e.row.state == SweepState.RUNNING and not e.row.slurm:
        e.progress = read_status(layout, e.row.job_id)
    if e.row.slurm:
        e.shards = [ShardView(sh, read_shard_status(layout, e.row.job_id, sh.shard) if sh.state == ShardState.RUNNING else None)
                    for sh in q.shards(e.row.id)]
    return e


def queue_entry(row: SweepRow) -> Entry:
    return Entry(row.id, row.job_id, ListedState(row.state), Origin.QUEUE, row.submitted_at, row.error, row.spool_path or "", row)


def open_queue_readonly(layout: Layout):
    """The queue opened for reading only (None when there is none yet): never creates state/ or the
    database, and works on a read-only filesystem."""
    from sweepd.queue import Queue

    db = layout.queue_db
    if not db.exists():
        return None
    return Queue.reader(db)


def waiting_requests(layout: Layout, queued: set[str] = frozenset()) -> list[Entry]:
    """Requests in spool/incoming/, and those in spool/accepted/ whose queue row is not there (yet): the daemon
    renames a request into accepted/ just before it writes the row, and a `status` between the two must still
    find it (as after a crash between them, until the next start queues it)."""
    from sweepd.spool import ignored

    out = []
    for folder in (layout.incoming, layout.accepted):
        try:
            files = sorted(p for p in folder.iterdir() if not ignored(p.name) and p.is_file())
        except OSError:
            continue
        for p in files:
            sweep_id = p.stem if folder == layout.incoming else p.name.partition(".")[0]  # accepted/<id>.<ext>
            if folder == layout.accepted and sweep_id in queued:
                continue
            try:
                mtime = p.stat().st_mtime
            except OSError:
                continue
            out.append(Entry(sweep_id, "", ListedState.WAITING, Origin.SPOOL, mtime, None, str(p)))
    return out


def foreground_jobs(layout: Layout, known_jobs: set[str]) -> list[Entry]:
    out = []
    try:
        manifests = sorted(layout.results.glob("job_*/sweep.json"))
    except OSError:
        return []
    for m in manifests:
        job_id = job_of(m.parent.name) or m.parent.name
        if job_id in known_jobs or m.parent.name.startswith("job_slurm-"):
            continue
        if (e := foreground_entry(m)) is not None:
            out.append(e)
    return out


def foreground_entry(manifest: Path) -> Entry | None:
    """A foreground job from its sweep.json (None for a shard's or an unreadable one)."""
    job_id = job_of(manifest.parent.name) or manifest.parent.name
    m = SweepManifest.read_or_none(manifest)
    if m is None or m.shard is not None:
        return None
    state, error = ListedState(m.status or ListedState.UNKNOWN), m.error
    if state == ListedState.RUNNING and not pid_alive(m.pid):
        state, error = ListedState.INTERRUPTED, error or "its process is gone: resume with sweepd run --resume " + job_id
    return Entry(job_id, job_id, state, Origin.FOREGROUND, m.started_unix, error, str(manifest.parent))


def entries(layout: Layout, q=None) -> list[Entry]:
    """Every sweep of the root, oldest first (``q``: the queue, already open for reading)."""
    out: list[Entry] = []
    own = q is None
    q = open_queue_readonly(layout) if own else q
    known: set[str] = set()
    queued: set[str] = set()
    if q is not None:
        try:
            for r in q.list():
                known.add(r.job_id)
                queued.add(r.id)
                out.append(queue_entry(r))
        except sqlite3.Error:
            pass
        finally:
            if own:
                q.close()
    out += waiting_requests(layout, queued)
    out += foreground_jobs(layout, known)
    return sorted(out, key=lambda e: (e.submitted_at or 0.0, e.id))


def find(layout: Layout, key: str) -> Entry | None:
    """A sweep by its sweep id or job id (job_<ID> too)."""
    key = job_of(key) or key
    for e in entries(layout):
        if key in (e.id, e.job_id):
            return e
    return None
