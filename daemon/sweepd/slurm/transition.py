"""What the SLURM executor does with one shard at one poll, decided without touching anything: a pure
function of the shard's row, what SLURM says of its job and what its worker's status.json says. The executor
(:mod:`sweepd.slurm.executor`) carries the decision out (queue writes, audit, sbatch), so every branch of
the resubmit logic is tested here without SLURM."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from sweepd.errors import EXIT_INTERNAL
from sweepd.records.queuerows import AttemptEnd, ShardRow
from sweepd.records.status import WorkerStatus
from sweepd.slurm.commands import JobState
from sweepd.vocab import RunState, ShardState, SweepState

TIME_LIMIT_STATES = ("TIMEOUT", "DEADLINE")


class Step(Enum):
    WAIT = "wait"  # nothing new
    TRACK = "track"  # still pending or running: record SLURM's state
    DONE = "done"  # the shard's results are complete
    CANCELLED = "cancelled"  # ended because the user cancelled the sweep
    RETRY = "retry"  # ended before its results were complete: submit it again
    FAIL = "fail"  # ended, and another attempt cannot help or is not allowed


@dataclass(frozen=True)
class Decision:
    step: Step
    state: ShardState | None = None  # the shard's new state (RETRY: interrupted until resubmitted)
    slurm_state: str | None = None  # what SLURM said, as the shard row shows it
    error: str | None = None
    end: AttemptEnd | None = None  # the attempt that ended, when one did at this poll
    killed_by_time_limit: bool = False  # RETRY: the next attempt gets twice the time


def _said(js: JobState) -> str:
    return js.state + (f" ({js.reason})" if js.reason not in ("", "None", "(null)") else "")


def transition(sh: ShardRow, js: JobState | None, status: WorkerStatus | None, *, results_done: bool,
               cancel_requested: bool, max_retries: int) -> Decision:
    """The next step for shard ``sh`` whose SLURM job is ``js`` (None: SLURM has forgotten it and there is no
    accounting), ``status`` its worker's status.json (None when absent), ``results_done`` whether its
    sweep.json says done."""
    if sh.state == ShardState.INTERRUPTED:  # ended earlier, and its resubmission failed: again
        return _retry_or_fail(sh, sh.error or "interrupted", None, False, max_retries)
    if status is not None and status.slurm_array_task != sh.slurm_id:
        status = None  # written by an earlier attempt: says nothing of this one
    if js is None:  # the status file tells how it ended
        js = JobState(sh.slurm_id or "", "", "COMPLETED" if status and status.state == RunState.DONE else "UNKNOWN",
                      "")
    if js.active:
        state = ShardState.PENDING if js.state in ("PENDING", "CONFIGURING") else ShardState.RUNNING
        if (state, _said(js)) == (sh.state, sh.slurm_state):
            return Decision(Step.WAIT)
        return Decision(Step.TRACK, state, _said(js))
    end = AttemptEnd(slurm_state=js.state, worker_state=status.state if status else None)
    if (status and status.state == RunState.DONE) or results_done:
        # complete, even when SLURM's time limit struck as the worker exited
        return Decision(Step.DONE, ShardState.DONE, js.state, end=end)
    if cancel_requested:
        return Decision(Step.CANCELLED, ShardState.CANCELLED, js.state, "cancelled by user", end)
    why = f"SLURM job {sh.slurm_id} ended {_said(js)}"
    if status and status.error:
        why += f"; worker: {status.error}"
    if status and status.retry_cannot_help:
        blame = ("a bug in sweepd (traceback in the shard's log)" if status.exit_code == EXIT_INTERNAL
                 else "the request is at fault")
        return Decision(Step.FAIL, ShardState.FAILED, js.state, f"{why} (not retried: {blame})", end)
    return _retry_or_fail(sh, why, end, js.state in TIME_LIMIT_STATES, max_retries)


def _retry_or_fail(sh: ShardRow, why: str, end: AttemptEnd | None, killed_by_time_limit: bool,
                   max_retries: int) -> Decision:
    slurm_state = end.slurm_state if end else None
    if sh.attempts - 1 >= max_retries:
        return Decision(Step.FAIL, ShardState.FAILED, slurm_state,
                        f"{why}; gave up after {sh.attempts} attempts (slurm.max_retries)", end)
    return Decision(Step.RETRY, ShardState.INTERRUPTED, slurm_state, why, end, killed_by_time_limit)


@dataclass(frozen=True)
class SweepEnd:
    """How a split sweep ends once every shard has: merged (``state`` None: the merge decides) or not."""
    state: SweepState | None
    error: str | None = None


def sweep_end(shards: list[ShardRow], cancel_requested: bool) -> SweepEnd | None:
    """None while a shard has not ended; else merge when all are done, or the sweep's end and why."""
    if not shards or any(not ShardState(sh.state).final for sh in shards):
        return None
    if all(sh.state == ShardState.DONE for sh in shards):
        return SweepEnd(None)
    if cancel_requested:
        return SweepEnd(SweepState.CANCELLED, "cancelled by user")
    failed = "; ".join(f"shard {sh.shard}: {sh.error}" for sh in shards if sh.state == ShardState.FAILED)
    return SweepEnd(SweepState.FAILED, failed or "a shard did not finish")


def adopted_array(sweep_id: str, known: dict[str, JobState]) -> str | None:
    """The SLURM array a sweep claimed but not recorded as submitted belongs to (the daemon died around sbatch),
    found by its job name among what squeue lists; None: it was never submitted, submit it again."""
    tasks = [j for j in known.values() if j.name == f"sweepd-{sweep_id}" and "_" in j.job_id]
    return tasks[0].job_id.split("_")[0] if tasks else None
