"""The daemon's SLURM side: submit queued SLURM sweeps as job arrays, follow their shards, resubmit the
ones that were killed, cancel on request, and merge when every shard is done.

The sweep's row stays `running` from submission until the merge ends; each shard's row says what
SLURM last said of it. Job states come from one `squeue` call per poll (scontrol or sacct for jobs
it no longer lists), read together with the status.json each shard's worker writes.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from sweepd import audit
from sweepd.engine.status import last_error, read_shard_status
from sweepd.engine.store import read_shard_manifest
from sweepd.errors import SweepdError
from sweepd.paths import Layout
from sweepd.queue import Queue
from sweepd.records.queuerows import ShardRow, SweepRow
from sweepd.slurm.transition import Decision, Step, adopted_array, sweep_end, transition
from sweepd.vocab import RunState, ShardState, SweepState
from sweepd.request import SweepRequest
from sweepd.settings import Settings
from sweepd.slurm import commands
from sweepd.slurm.commands import JobState, SlurmError, SlurmUnreachable
from sweepd.slurm.script import JobScript, shard_seconds, submission_dir, time_limit_minutes

log = logging.getLogger(__name__)


@dataclass
class Merge:
    proc: subprocess.Popen
    log: IO[bytes]
    path: Path


@dataclass
class SlurmExecutor:
    layout: Layout
    queue: Queue
    settings: Settings
    merges: dict[str, Merge] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    last_poll: float = 0.0
    submit_after: float = 0.0  # after SLURM did not answer a submission: wait a poll interval
    warned: str = ""

    # what the daemon asks --------------------------------------------------------------------
    def sweeps(self) -> list:
        return [r for r in self.queue.list((SweepState.RUNNING,)) if r.slurm]

    def busy(self) -> bool:
        return bool(self.merges or self.sweeps() or
                    any(r.slurm for r in self.queue.list((SweepState.QUEUED,))))

    def step(self) -> None:
        self.submit_ready()
        self.reap_merges()
        if time.monotonic() - self.last_poll >= self.settings.slurm.poll_interval_s:
            self.poll()

    def env(self) -> dict:
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)  # the job must not talk to the daemon's systemd
        return env

    # submitting ------------------------------------------------------------------------------
    def submit_ready(self) -> None:
        if time.monotonic() < self.submit_after:
            return
        while (row := self.queue.claim_next("slurm", None, executor="slurm")) is not None:
            if not self.submit(row):
                self.submit_after = time.monotonic() + self.settings.slurm.poll_interval_s
                break

    def script(self, row: SweepRow) -> JobScript:
        return JobScript(row.id, row.request, self.settings.slurm, self.layout)

    def estimate_s(self, req: SweepRequest) -> float | None:
        """One shard's expected run time (the simulated GPU's clock table stands in for the node's)."""
        try:
            from sweepd.gpu.sim import SimulatedGpu
            from sweepd.report.estimate import estimate

            return shard_seconds(estimate(req, self.layout, SimulatedGpu(req.gpu.sim_model)).duration_s, req.split)
        except (SweepdError, OSError) as e:  # an estimate that cannot be made never stops a submission: the minimum applies
            log.warning("no time estimate for the SLURM job (%s): using slurm.time_min_minutes", e)
            return None

    def submit(self, row) -> bool:
        """First submission: the whole array. False when SLURM did not answer (try again later)."""
        sid = row.id
        try:
            js = self.script(row)
            user_job = js.req.job_id
            js.write_spec(user_job)
            minutes = time_limit_minutes(js.req, self.settings.slurm, self.estimate_s(js.req))
            path = js.write(1, f"0-{js.req.split - 1}", minutes)
            array = commands.sbatch(path, options=[f"--output={js.log_pattern()}"], env=self.env())
        except SlurmUnreachable as e:
            self.queue.back_to_queue(sid, f"waiting for SLURM: {e}")
            self._warn(f"SLURM did not take sweep {sid}, trying again: {e}")
            return False
        except (SweepdError, OSError) as e:
            self.queue.finish(sid, SweepState.FAILED, None, f"not submitted: {e}")
            audit.record(self.layout.state, SweepState.FAILED, sweep_id=sid, error=str(e))
            log.error("sweep %s: not submitted: %s", sid, e)
            return True
        job = user_job or array
        self.queue.set_submitted(sid, job, array, {k: f"{array}_{k}" for k in range(js.req.split)}, minutes)
        audit.record(self.layout.state, "submitted", sweep_id=sid, job_id=job, slurm_job_id=array,
                     shards=js.req.split, time_limit_min=minutes)
        log.info("sweep %s submitted to SLURM as job %s (%d shard(s), %d min each)", sid, array, js.req.split, minutes)
        return True

    def resubmit(self, row, sh, killed_by_time_limit: bool) -> None:
        """Shard k again, as a one-task array, resuming from its last completed clock."""
        sid, k = row.id, sh.shard
        js = self.script(row)
        last = (sh.history[-1].minutes if sh.history else None) or self.settings.slurm.time_min_minutes
        # killed by its time limit: the estimate was short, so the rest gets twice the room
        minutes = time_limit_minutes(js.req, self.settings.slurm, self.estimate_s(js.req),
                                     at_least=2 * last if killed_by_time_limit else 0)
        try:
            path = js.write(sh.attempts + 1, str(k), minutes)
            new = commands.sbatch(path, args=["--job-id", row.job_id], options=[f"--output={js.log_pattern()}"],
                                  env=self.env())
        except SlurmError as e:
            self._warn(f"sweep {sid} shard {k}: resubmission failed, trying again: {e}")
            return
        self.queue.update_shard(sid, k, resubmitted_as=f"{new}_{k}", minutes=minutes)
        audit.record(self.layout.state, "resubmitted", sweep_id=sid, job_id=row.job_id, shard=k,
                     slurm_id=f"{new}_{k}", attempt=sh.attempts + 1)
        log.info("sweep %s shard %d resubmitted as SLURM job %s_%d (attempt %d, %d min)", sid, k, new, k,
                 sh.attempts + 1, minutes)

    # following -------------------------------------------------------------------------------
    def poll(self) -> None:
        self.last_poll = time.monotonic()
        rows = self.sweeps()
        if not rows:
            return
        try:
            known = commands.squeue()
        except SlurmError as e:
            self._warn(f"squeue: {e}; SLURM sweeps keep their last known state")
            return
        self.warned = ""
        for row in rows:
            try:
                self.follow(row, known)
            except SlurmUnreachable as e:
                self._warn(f"sweep {row.id}: {e}")
                return
            except (SlurmError, OSError) as e:  # one sweep's trouble must not stop the daemon or the others
                self._warn(f"sweep {row.id}: {e}")

    def follow(self, row, known: dict[str, JobState]) -> None:
        sid = row.id
        if row.slurm_job_id is None:
            self.adopt(row, known)
            return
        if row.cancel_requested and sid not in self.cancelled:
            self.cancel(row)
        for sh in self.queue.shards(sid):
            if ShardState(sh.state).final:
                continue
            status = read_shard_status(self.layout, row.job_id, sh.shard)
            js = None if sh.state == ShardState.INTERRUPTED else commands.job_state(sh.slurm_id, known)
            ended = js is None or not js.active  # only an ended job's sweep.json is read, not every poll's
            d = transition(sh, js, status, results_done=ended and self.shard_status(row, sh.shard) == RunState.DONE,
                           cancel_requested=row.cancel_requested, max_retries=self.settings.slurm.max_retries)
            self.carry_out(row, sh, d)
        self.finish_if_over(row)

    def carry_out(self, row: SweepRow, sh: ShardRow, d: Decision) -> None:
        """Do what :func:`~sweepd.slurm.transition.transition` decided for shard ``sh``."""
        sid, k = row.id, sh.shard
        if d.step is Step.WAIT:
            return
        if d.step is Step.TRACK:
            self.queue.update_shard(sid, k, state=d.state, slurm_state=d.slurm_state)
            return
        self.queue.update_shard(sid, k, state=d.state, slurm_state=d.slurm_state, ended=d.end, error=d.error)
        if d.step is Step.DONE:
            log.info("sweep %s shard %d done (SLURM job %s, %s)", sid, k, sh.slurm_id, d.slurm_state)
        elif d.step in (Step.RETRY, Step.FAIL) and d.end is not None:
            audit.record(self.layout.state, f"shard {d.state}", sweep_id=sid, shard=k, slurm_id=sh.slurm_id,
                         why=d.error)
            log.warning("sweep %s shard %d %s: %s", sid, k, d.state, d.error)
        if d.step is Step.RETRY:
            fresh = next(s for s in self.queue.shards(sid) if s.shard == k)
            self.resubmit(row, fresh, d.killed_by_time_limit)

    def shard_status(self, row: SweepRow, k: int) -> RunState | None:
        """The status in the shard's sweep.json: done once its last clock is committed."""
        m = read_shard_manifest(self.layout, row.job_id, k)
        return m.status if m else None

    def finish_if_over(self, row: SweepRow) -> None:
        end = sweep_end(self.queue.shards(row.id), bool(row.cancel_requested))
        if end is None:
            return
        if end.state is not None:
            self._finish(row, end.state, end.error)
        elif row.id not in self.merges:
            self.start_merge(row)

    def _finish(self, row: SweepRow, state: SweepState, error: str | None) -> None:
        self.queue.finish(row.id, state, None, error)
        audit.record(self.layout.state, state, sweep_id=row.id, job_id=row.job_id, error=error)
        log.info("sweep %s %s%s", row.id, state, f": {error}" if error else "")

    def adopt(self, row: SweepRow, known: dict[str, JobState]) -> None:
        """A sweep claimed but not recorded as submitted (the daemon died around sbatch): find its
        array by job name, or submit it again."""
        array = adopted_array(row.id, known)
        if array is None:
            self.queue.back_to_queue(row.id, "resubmitting: the daemon stopped while submitting it")
            return
        req = row.request
        self.queue.set_submitted(row.id, req.job_id or array, array, {k: f"{array}_{k}" for k in range(req.split)})
        log.warning("sweep %s: found its SLURM job %s after a restart", row.id, array)

    # cancelling and merging ------------------------------------------------------------------
    def cancel(self, row) -> None:
        try:
            cancel_shards(self.queue, row)
        except SlurmUnreachable:
            raise  # try again at the next poll
        except SlurmError as e:  # e.g. a job that ended since the last poll: nothing left to stop
            log.warning("sweep %s: %s", row.id, e)
        self.cancelled.add(row.id)

    def start_merge(self, row) -> None:
        path = submission_dir(self.layout, row.id) / "merge.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(path, "ab")
        argv = [sys.executable, "-m", "sweepd", "merge", row.job_id, "--root", str(self.layout.root),
                "--images-dir", str(self.layout.images), "--results-dir", str(self.layout.results)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=self.env())
        self.merges[row.id] = Merge(proc, logf, path)
        log.info("sweep %s: all shards done; merging into %s", row.id, self.layout.job_results(row.job_id))

    def reap_merges(self) -> None:
        for sid, m in list(self.merges.items()):
            rc = m.proc.poll()
            if rc is None:
                continue
            del self.merges[sid]
            m.log.close()
            row = self.queue.get(sid)
            if rc == 0:
                self._finish(row, SweepState.DONE, None)
            else:
                self._finish(row, SweepState.FAILED, f"merge: {last_error(m.path)} (log: {m.path})")

    def stop(self, timeout_s: float = 30.0) -> None:
        """At shutdown: SLURM jobs go on; a merge is waited for briefly (it is run again after a restart)."""
        deadline = time.monotonic() + timeout_s
        while self.merges and time.monotonic() < deadline:
            self.reap_merges()
            time.sleep(0.1)
        for m in self.merges.values():
            m.proc.kill()
            m.proc.wait()
            m.log.close()
        self.merges.clear()

    def _warn(self, msg: str) -> None:
        if msg != self.warned:
            log.warning("%s", msg)
            self.warned = msg


def cancel_shards(queue: Queue, row: SweepRow) -> list[str]:
    """scancel every shard still pending or running; their workers stop after the current trial."""
    shards = queue.shards(row.id)
    ids = [sh.slurm_id for sh in shards if sh.state in (ShardState.PENDING, ShardState.RUNNING)]
    commands.scancel(ids)
    for sh in shards:
        if sh.state == ShardState.INTERRUPTED:  # nothing runs: cancelled at once
            queue.update_shard(row.id, sh.shard, state=ShardState.CANCELLED, error="cancelled by user")
    return ids
