"""The SLURM executor on a thread of its own, so the daemon's loop never waits for SLURM.

A SLURM command can take up to 20 s (and a submission also estimates the sweep's duration); the
main loop must keep answering the spool, reaping local workers and pinging the systemd watchdog
meanwhile. This thread runs :class:`~sweepd.slurm.executor.SlurmExecutor` with its own queue
connection (SQLite serialises the two), wakes when the main loop has news (`kick`) or when a poll or
a merge is due, and leaves a snapshot (busy or not, one status line per sweep) for the main loop.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from sweepd.paths import Layout
from sweepd.errors import SweepdError
from sweepd.queue import Queue
from sweepd.settings import Settings
from sweepd.slurm.executor import SlurmExecutor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    busy: bool = False  # SLURM sweeps queued or running, or a merge under way
    lines: list[str] = field(default_factory=list)  # "slurm job 75: 1 running, 1 done" per sweep


class SlurmLoop:
    def __init__(self, layout: Layout, settings: Settings):
        self.queue = Queue(layout.queue_db)
        self.executor = SlurmExecutor(layout, self.queue, settings)
        self._wake, self._stopping = threading.Event(), threading.Event()
        self.snapshot = self._take()  # before the first step: --once must not exit before it has looked
        self.thread = threading.Thread(target=self._run, name="sweepd-slurm", daemon=True)

    @property
    def settings(self) -> Settings:
        return self.executor.settings

    @settings.setter
    def settings(self, value: Settings) -> None:
        self.executor.settings = value

    def start(self) -> None:
        self.thread.start()

    def kick(self) -> None:
        """Something may have changed (a request accepted, a cancel): step soon."""
        self._wake.set()

    def busy(self) -> bool:
        return self.snapshot.busy

    def _take(self) -> Snapshot:
        lines = []
        for row in self.executor.sweeps():
            shards = self.queue.shards(row.id)
            n = {s: sum(1 for sh in shards if sh.state == s) for s in ("running", "pending", "done")}
            lines.append(f"slurm job {row.job_id}: " + ", ".join(f"{v} {k}" for k, v in n.items() if v)
                         + (" (merging)" if row.id in self.executor.merges else ""))
        return Snapshot(self.executor.busy(), lines)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.executor.step()
                self.snapshot = self._take()
            except (SweepdError, OSError) as e:  # the queue or state/ failing now: one line, tried again at the next poll
                log.error("the SLURM executor could not go on (%s); trying again at the next poll", e)
            except Exception:  # a bug: logged with its traceback, and tried again at the next poll
                log.exception("the SLURM executor failed; trying again")
            wait = 0.5 if self.executor.merges else self.settings.slurm.poll_interval_s
            self._wake.wait(wait)
            self._wake.clear()

    def stop(self, timeout_s: float = 60.0) -> None:
        """SLURM jobs go on without the daemon; a merge is waited for briefly (run again after a restart)."""
        self._stopping.set()
        self._wake.set()
        if self.thread.is_alive():
            self.thread.join(timeout_s)
        self.executor.stop()
        self.queue.close()
