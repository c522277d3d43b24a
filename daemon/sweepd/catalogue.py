"""One catalogue of a root's sweeps, whoever ran them: the daemon's queue, requests still waiting in
spool/incoming/ (no daemon has taken them in yet), and foreground `sweepd run`/`demo` jobs (a
results/job_<ID>/sweep.json that no queue row owns).

Everything here only reads: it works on a read-only root and creates no folder or file.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field

from pathlib import Path

from sweepd.paths import Layout
from sweepd.procs import pid_alive


@dataclass
class Entry:
    """One sweep as `sweepd list` shows it (queue rows keep their own, fuller form in `row`)."""
    id: str
    job_id: str
    state: str  # queue states, plus "waiting" (in spool/incoming/) for requests no daemon has taken in
    origin: str  # "queue", "spool" or "foreground"
    submitted_at: float | None = None
    error: str | None = None
    path: str = ""  # the request file (spool) or the results folder (foreground)
    row: dict = field(default_factory=dict)


def open_queue_readonly(layout: Layout):
    """The queue opened for reading only (None when there is none yet): never creates state/ or the
    database, and works on a read-only filesystem."""
    from sweepd.queue import Queue

    db = layout.state / "queue.sqlite"
    if not db.exists():
        return None
    return Queue.reader(db)


def waiting_requests(layout: Layout) -> list[Entry]:
    from sweepd.spool import ignored

    incoming = layout.root / "spool" / "incoming"
    try:
        names = sorted(p for p in incoming.iterdir() if not ignored(p.name) and p.is_file())
    except OSError:
        return []
    out = []
    for p in names:
        try:
            mtime = p.stat().st_mtime
        except OSError:
            continue
        out.append(Entry(p.stem, "", "waiting", "spool", mtime, None, str(p)))
    return out


def foreground_jobs(layout: Layout, known_jobs: set[str]) -> list[Entry]:
    out = []
    try:
        manifests = sorted(layout.results.glob("job_*/sweep.json"))
    except OSError:
        return []
    for m in manifests:
        job_id = m.parent.name.removeprefix("job_")
        if job_id in known_jobs or m.parent.name.startswith("job_slurm-"):
            continue
        if (e := foreground_entry(m)) is not None:
            out.append(e)
    return out


def foreground_entry(manifest: Path) -> Entry | None:
    """A foreground job from its sweep.json (None for a shard's or an unreadable one)."""
    job_id = manifest.parent.name.removeprefix("job_")
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("shard") is not None:
        return None
    state = str(data.get("status") or "unknown")
    error = data.get("error")
    if state == "running" and not pid_alive(data.get("pid")):
        state, error = "interrupted", error or "its process is gone: resume with sweepd run --resume " + job_id
    return Entry(job_id, job_id, state, "foreground", data.get("started_unix"), error, str(manifest.parent))


def entries(layout: Layout) -> list[Entry]:
    """Every sweep of the root, oldest first."""
    out: list[Entry] = []
    q = open_queue_readonly(layout)
    known: set[str] = set()
    if q is not None:
        try:
            for r in q.list():
                d = {k: r[k] for k in r.keys()}
                known.add(d["job_id"])
                out.append(Entry(d["id"], d["job_id"], d["state"], "queue", d["submitted_at"], d["error"],
                                 d.get("spool_path") or "", d))
        except sqlite3.Error:
            pass
        finally:
            q.close()
    out += waiting_requests(layout)
    out += foreground_jobs(layout, known)
    return sorted(out, key=lambda e: (e.submitted_at or 0.0, e.id))


def find(layout: Layout, key: str) -> Entry | None:
    """A sweep by its sweep id or job id (job_<ID> too)."""
    key = key.removeprefix("job_") if key.startswith("job_") else key
    for e in entries(layout):
        if key in (e.id, e.job_id):
            return e
    return None
