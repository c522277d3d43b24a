"""A sweep process's own record of progress, and how it ends: `results/job_<ID>/status.json`
(written atomically by the worker, read by the daemon, `sweepd status` and the SLURM executor) and
the exit codes. Shared by the daemon's workers and SLURM nodes, so it lives below both."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sweepd import atomic
from sweepd.freqplan import ClockPoint
from sweepd.paths import Layout

EXIT_DONE, EXIT_FAILED, EXIT_INPUT, EXIT_GPU, EXIT_INTERRUPTED = 0, 1, 2, 3, 4


def status_path(layout: Layout, job_id: str) -> Path:
    return layout.job_results(job_id) / "status.json"


def read_status(layout: Layout, job_id: str) -> dict:
    return read_status_file(status_path(layout, job_id))


def read_status_file(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class StatusFileObserver:
    """Implements :class:`sweepd.engine.sweep.Observer` by rewriting status.json."""

    def __init__(self, path: Path, job_id: str, sweep_id: str, trials_per_clock: int, **extra: object):
        self.path = path
        self.state = {"sweep_id": sweep_id, "job_id": job_id, "pid": os.getpid(), "state": "starting",
                      "clock": 0, "clocks": 0, "freq": None, "trials_done": 0, "trials_per_clock": trials_per_clock,
                      "last_j_per_image": None, **extra}
        self.write()

    def write(self, **fields: object) -> None:
        self.state.update(fields, updated=time.time())
        atomic.write_json(self.path, self.state)

    def clock_started(self, k: int, n: int, point: ClockPoint) -> None:
        self.write(state="running", clock=k + 1, clocks=n, freq=point.label, trials_done=0)

    def trial_done(self, k: int, n: int, point: ClockPoint, row: dict) -> None:
        self.write(trials_done=self.state["trials_done"] + 1,
                   last_j_per_image=row.get("j_per_image") if row["status"] == "ok" else self.state["last_j_per_image"])

    def clock_done(self, k: int, n: int, point: ClockPoint, summary: list[dict]) -> None:
        self.write()


def last_error(path) -> str:
    """The last error line of a log (else its last line): the reason a child process gives."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return "worker failed"
    errors = [line for line in lines if "ERROR" in line or "error:" in line]
    return (errors or lines or ["worker failed"])[-1][-500:]
