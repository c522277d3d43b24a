"""A sweep process's own record of progress, and how it ends: `results/job_<ID>/status.json`
(:class:`~sweepd.records.status.WorkerStatus`, written atomically by the worker, read by the
daemon, `sweepd status` and the SLURM executor). Shared by the daemon's workers and SLURM nodes,
so it lives below both. The exit codes are :mod:`sweepd.errors`'."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from sweepd.errors import EXIT_FAILED, EXIT_INPUT, EXIT_INTERNAL, SweepdError, os_line
from sweepd.freqplan import ClockPoint
from sweepd.paths import Layout
from sweepd.records.rows import SummaryRow, TrialRow
from sweepd.records.status import WorkerStatus


def status_path(layout: Layout, job_id: str) -> Path:
    return WorkerStatus.path_in(layout.job_results(job_id))


def read_status(layout: Layout, job_id: str) -> WorkerStatus | None:
    return WorkerStatus.read_or_none(status_path(layout, job_id))


def read_shard_status(layout: Layout, job_id: str, shard: int) -> WorkerStatus | None:
    """The status.json of a SLURM sweep's shard (results/job_<ID>/shards/<k>/)."""
    from sweepd.engine.store import shard_dir

    return WorkerStatus.read_or_none(WorkerStatus.path_in(shard_dir(layout, job_id, shard)))


@dataclass(frozen=True)
class ShardPlace:
    """Where a SLURM shard runs, as its status.json says."""
    shard: int
    shards: int
    node: str
    slurm_job_id: str | None
    slurm_array_task: str | None

    @classmethod
    def here(cls, shard: int, shards: int) -> "ShardPlace":
        """This process's place: its host and the SLURM job (and array task) it runs in."""
        import socket

        task = "_".join(filter(None, (os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID"))))
        return cls(shard, shards, socket.gethostname(), os.environ.get("SLURM_JOB_ID"), task or None)


class StatusFileObserver:
    """Implements :class:`sweepd.engine.phases.Observer` by rewriting status.json."""

    def __init__(self, path: Path, job_id: str, sweep_id: str, trials_per_clock: int, shard: ShardPlace | None = None):
        self.path = path
        self.state = WorkerStatus(sweep_id=sweep_id, job_id=job_id, pid=os.getpid(), state="starting",
                                  trials_per_clock=trials_per_clock)
        if shard is not None:
            s = self.state
            s.shard, s.shards, s.node, s.slurm_job_id, s.slurm_array_task = (
                shard.shard, shard.shards, shard.node, shard.slurm_job_id, shard.slurm_array_task)
        self._save()

    def _save(self) -> None:
        self.state.updated = time.time()
        self.state.write(self.path)

    def clock_started(self, k: int, n: int, point: ClockPoint) -> None:
        s = self.state
        s.state, s.clock, s.clocks, s.freq, s.trials_done, s.knob = "running", k + 1, n, point.label, 0, point.knob
        self._save()

    def trial_done(self, k: int, n: int, point: ClockPoint, row: TrialRow) -> None:
        self.state.trials_done += 1
        if row.ok:
            self.state.last_j_per_image = row.j_per_image
        self._save()

    def clock_done(self, k: int, n: int, point: ClockPoint, summary: list[SummaryRow]) -> None:
        self._save()

    def ended(self, state: str, error: str | None, exit_code: int) -> None:
        """The process's last word: how the sweep ended, why, and the exit code it gives."""
        s = self.state
        s.state, s.error, s.exit_code, s.input_error = state, error, exit_code, exit_code == EXIT_INPUT
        self._save()


def ended_by(e: BaseException, obs: StatusFileObserver | None, log) -> int:
    """A worker's (the daemon's or a SLURM node's) last word on an exception: one line in the log and
    in status.json, and the exit code. An error sweepd does not expect is a bug: its traceback is logged."""
    if isinstance(e, SweepdError):
        code, line = e.exit_code, e.line()
        log.error("%s", line)
    elif isinstance(e, OSError):  # the system said no (disk full, permissions): not a bug
        code, line = EXIT_FAILED, os_line(e)
        log.error("%s", line)
    else:
        code, line = EXIT_INTERNAL, f"internal error (a bug in sweepd): {type(e).__name__}: {e}"
        log.exception("%s", line)
    if obs is not None:
        try:
            obs.ended("failed", line, code)
        except OSError:
            pass
    return code


def last_error(path) -> str:
    """The last error line of a log (else its last line): the reason a child process gives."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "worker failed"
    errors = [line for line in lines if "ERROR" in line or "error:" in line]
    return (errors or lines or ["worker failed"])[-1][-500:]
