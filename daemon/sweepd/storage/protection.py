"""Which jobs the storage manager never touches: one copy of the rule, for planning (every job at once) and for
the check right before each action (one job, as it is now).

A job is active, and so protected, while
- its row in this root's queue is queued or running (a SLURM sweep is `running` from its submission until its
  merge), read through a read-only connection;
- a foreground `sweepd run` measures it: its sweep.json (or a shard's, `shards/<k>/sweep.json`) says running and
  the process it names is alive (a crashed run's is not: it is interrupted, and resumable);
- SLURM lists it, or the array it belongs to, as pending or running for this user, whoever submitted it (a
  `sweepd run` inside one's own sbatch script writes to job_<SLURM_JOB_ID>). Asked at most once per plan, and only
  when a job id SLURM could have given (123, 123_4) is looked up; when SLURM is here but does not answer, such a
  job may not be deleted (:class:`ProtectionUnknown`).
A ``.keep`` file in a job's folder protects it too (:func:`sweepd.storage.planner.why_protected`)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

from sweepd.errors import StorageError
from sweepd.paths import JOB_PREFIX, Layout, job_of
from sweepd.procs import pid_alive
from sweepd.records.manifest import SweepManifest
from sweepd.vocab import RunState, SweepState

ACTIVE_STATES = (SweepState.QUEUED.value, SweepState.RUNNING.value)


class ProtectionUnknown(StorageError):
    """SLURM is here but did not say which jobs are pending or running: nothing may be deleted."""


SLURM_JOB_ID = re.compile(r"[0-9]+(_[0-9]+)?")  # a job, or an array task, as SLURM numbers them


@dataclass
class ActiveJobs:
    """The jobs active now, for ``job_id in active``: the queue's and the foreground runs' read at once, SLURM's
    asked the first time an id SLURM could have given is looked up (a login node whose controller is down can
    still clean up sweeps named otherwise)."""
    known: set[str]
    ask_slurm: bool = True
    _slurm: set[str] | None = field(default=None, repr=False)

    def __contains__(self, job_id: object) -> bool:
        if job_id in self.known:
            return True
        if not self.ask_slurm or not isinstance(job_id, str) or not SLURM_JOB_ID.fullmatch(job_id):
            return False
        if self._slurm is None:
            self._slurm = slurm_active_jobs()
        return job_id in self._slurm


def active_jobs(layout: Layout, ask_slurm: bool = True) -> ActiveJobs:
    """Every job active now (see the module's text); ``ask_slurm=False`` leaves SLURM out."""
    return ActiveJobs(queued_or_running(layout) | foreground_running(layout), ask_slurm)


def is_active(layout: Layout, job_id: str) -> bool:
    """Whether this one job is active in the queue or in a foreground run now (SLURM was asked at planning)."""
    return job_id in queued_or_running(layout) or _measuring(layout.results / f"{JOB_PREFIX}{job_id}")


def queued_or_running(layout: Layout) -> set[str]:
    db = layout.queue_db
    if not db.exists():
        return set()
    from sweepd.queue import Queue

    try:
        q = Queue.reader(db)
    except sqlite3.Error:
        return set()
    try:
        return {r.job_id for r in q.list(ACTIVE_STATES)}
    finally:
        q.close()


def foreground_running(layout: Layout) -> set[str]:
    """Jobs whose sweep.json says a live process measures them now."""
    try:
        folders = [p for p in layout.results.glob(f"{JOB_PREFIX}*") if p.is_dir()]
    except OSError:
        return set()
    return {job_of(p.name) for p in folders if _measuring(p)}


def _measuring(job_dir: Path) -> bool:
    manifests = [SweepManifest.path_in(job_dir), *job_dir.glob("shards/*/sweep.json")]
    for path in manifests:
        m = SweepManifest.read_or_none(path)
        if m is not None and m.status == RunState.RUNNING and pid_alive(m.pid):
            return True
    return False


def slurm_active_jobs() -> set[str]:
    """Ids of this user's pending and running SLURM jobs: 123, and for array tasks 123_4 and 123."""
    from sweepd.slurm import commands

    if not commands.available():
        return set()
    try:
        jobs = commands.squeue()
    except commands.SlurmError as e:
        raise ProtectionUnknown(f"cannot tell which SLURM jobs are pending or running ({e}): "
                                "nothing is deleted until squeue answers") from None
    out = set()
    for j in jobs.values():
        if j.active:
            out.add(j.job_id)
            out.add(j.job_id.split("_")[0])
    return out
