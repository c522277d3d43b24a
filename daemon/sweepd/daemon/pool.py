"""One worker slot per configured GPU; each runs one `sweepd worker` child process at a time."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import IO

from sweepd import audit
from sweepd.engine.status import last_error, read_status
from sweepd.errors import EXIT_DONE, EXIT_INTERRUPTED, os_line
from sweepd.engine.runner import repair_locks
from sweepd.engine.stop import PARENT_ENV
from sweepd.paths import Layout
from sweepd.queue import Queue
from sweepd.records.queuerows import SweepRow
from sweepd.settings import Settings
from sweepd.vocab import SweepState

log = logging.getLogger(__name__)


@dataclass
class Running:
    sweep_id: str
    job_id: str
    proc: subprocess.Popen
    log: IO[bytes]
    stop_sent: bool = False


class WorkerPool:
    def __init__(self, layout: Layout, queue: Queue, settings: Settings):
        self.layout, self.queue, self.settings = layout, queue, settings
        self.running: dict[str, Running] = {}

    @property
    def slots(self) -> dict[str, int]:
        return {f"gpu{g}": int(g) for g in self.settings.gpus}

    def idle(self) -> bool:
        return not self.running

    def start_ready(self) -> None:
        for slot, index in self.slots.items():
            if slot in self.running:
                continue
            row = self.queue.claim_next(slot, index)
            if row is None:
                continue
            try:
                self._spawn(slot, row)
            except OSError as e:  # results/ full or read-only, no process to be had: the sweep waits, queued
                self.queue.back_to_queue(row.id, f"its worker could not start: {os_line(e)}")
                raise

    def _spawn(self, slot: str, row: SweepRow) -> None:
        results = self.layout.job_results(row.job_id)
        results.mkdir(parents=True, exist_ok=True)
        logf = open(results / "sweep.log", "ab")
        # the worker sets its own parent-death signal (engine/stop.py): no preexec_fn in this threaded daemon
        env = os.environ | {"SWEEPD_IMAGES_DIR": str(self.layout.images), "SWEEPD_RESULTS_DIR": str(self.layout.results),
                            "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())}
        env.pop("NOTIFY_SOCKET", None)  # only the daemon talks to systemd
        try:
            proc = subprocess.Popen([sys.executable, "-m", "sweepd", "worker", row.id, "--root", str(self.layout.root)],
                                    stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        except BaseException:
            logf.close()
            raise
        self.running[slot] = Running(row.id, row.job_id, proc, logf)  # followed from now on, whatever the queue says
        self.queue.set_pid(row.id, proc.pid)
        audit.record(self.layout.state, "started", sweep_id=row.id, job_id=row.job_id, worker=slot, pid=proc.pid)
        log.info("started sweep %s (job %s) on %s, pid %d", row.id, row.job_id, slot, proc.pid)

    def handle_cancels(self) -> None:
        for r in self.running.values():
            row = self.queue.get(r.sweep_id)
            if row is not None and row.cancel_requested and not r.stop_sent:
                log.info("cancelling sweep %s: stopping its worker after the current trial", r.sweep_id)
                self._stop(r)

    def _stop(self, r: Running) -> None:
        if r.proc.poll() is None:
            r.proc.send_signal(signal.SIGTERM)
        r.stop_sent = True

    def reap(self) -> None:
        """Record each ended worker's end in the queue. A worker stays listed (its slot busy) until the queue has
        recorded it: a queue that is locked, full or read-only now (QueueFault) records it at a later step."""
        for slot, r in list(self.running.items()):
            rc = r.proc.poll()
            if rc is not None:
                self._finished(r, rc)
                del self.running[slot]
                r.log.close()

    def _finished(self, r: Running, rc: int) -> None:
        row = self.queue.get(r.sweep_id)
        status = read_status(self.layout, r.job_id)
        error = status.error if status else None
        cancelled = row is not None and row.cancel_requested
        if rc == EXIT_DONE:
            state = SweepState.DONE
        elif rc == EXIT_INTERRUPTED and cancelled:
            state, error = SweepState.CANCELLED, "cancelled by user (stopped after its current trial; clocks reset)"
        elif rc == EXIT_INTERRUPTED:
            state = SweepState.INTERRUPTED
        elif rc < 0 and cancelled:  # cancelled before its stop handler was in place
            state = SweepState.CANCELLED
            error = f"cancelled by user (the worker ended by {signal.Signals(-rc).name} while starting)"
            repair_locks(self.layout)
        elif rc < 0:  # killed by a signal: SIGKILL, OOM killer, segfault
            state = SweepState.INTERRUPTED
            error = f"worker killed by {signal.Signals(-rc).name}"
            repair_locks(self.layout)
        else:
            state = SweepState.FAILED
            error = error or last_error(self.layout.job_results(r.job_id) / "sweep.log")
        self.queue.finish(r.sweep_id, state, rc, error)
        audit.record(self.layout.state, state, sweep_id=r.sweep_id, job_id=r.job_id, exit_status=rc, error=error)
        log.info("sweep %s %s (exit %d)%s", r.sweep_id, state, rc, f": {error}" if error else "")
        if state == SweepState.INTERRUPTED and rc < 0:
            resume_or_fail(self.queue, self.settings, r.sweep_id)

    def stop_all(self, timeout_s: float) -> None:
        for r in self.running.values():
            self._stop(r)
        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            self.reap()
            time.sleep(0.1)
        for r in self.running.values():
            log.warning("worker of sweep %s did not stop in %.0f s: killing it", r.sweep_id, timeout_s)
            r.proc.kill()
            r.proc.wait()
        self.reap()


def resume_or_fail(queue: Queue, settings: Settings, sweep_id: str) -> None:
    row = queue.get(sweep_id)
    if row is None or row.state != SweepState.INTERRUPTED or settings.on_interrupted != "resume":
        return
    if row.resumes >= settings.max_resumes:
        queue.finish(sweep_id, SweepState.FAILED, row.exit_status,
                     f"{row.error or 'interrupted'}; gave up after {row.resumes} resumes (max_resumes)")
        return
    queue.requeue(sweep_id)
    log.info("sweep %s will resume from its last completed clock", sweep_id)
