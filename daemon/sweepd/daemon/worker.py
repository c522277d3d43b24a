"""`sweepd worker SWEEP_ID`: run one queued sweep in its own process and report progress.

The daemon starts it with stdout and stderr going to results/job_<ID>/sweep.log. Progress goes to
results/job_<ID>/status.json (written atomically), which the daemon and `sweepd status` read; the
exit code tells the daemon how the sweep ended (see EXIT_CODES).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from sweepd import atomic
from sweepd.configfile import ConfigError
from sweepd.engine import runner
from sweepd.engine.store import JobConflict
from sweepd.freqplan import ClockPlanError, ClockPoint
from sweepd.gpu.base import GpuError
from sweepd.paths import Layout
from sweepd.queue import Queue
from sweepd.request import SweepRequest

log = logging.getLogger(__name__)

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


def request_for(row) -> SweepRequest:
    data = json.loads(row["request"])
    if row["gpu_index"] is not None and not data["gpu"].get("uuid"):
        data["gpu"]["index"] = row["gpu_index"]  # the daemon pins a sweep to the GPU it first ran on
    return SweepRequest.model_validate(data)


def main(sweep_id: str, layout: Layout) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s sweepd worker: %(levelname)s: %(message)s")
    queue = Queue(layout.state / "queue.sqlite")
    row = queue.get(sweep_id)
    queue.close()
    if row is None:
        log.error("no sweep %s in the queue", sweep_id)
        return EXIT_INPUT
    try:
        req = request_for(row)
        obs = StatusFileObserver(status_path(layout, row["job_id"]), row["job_id"], sweep_id, req.protocol.trials)
        outcome = runner.run(req, layout, row["job_id"], obs, sweep_id=sweep_id)
    except (ConfigError, ClockPlanError, JobConflict, ValueError) as e:
        log.error("%s", e)
        return EXIT_INPUT
    except GpuError as e:
        log.error("GPU: %s", e)
        return EXIT_GPU
    obs.write(state=outcome.status, error=outcome.error)
    log.info("sweep %s %s%s", sweep_id, outcome.status, f": {outcome.error}" if outcome.error else "")
    return {"done": EXIT_DONE, "interrupted": EXIT_INTERRUPTED}.get(outcome.status, EXIT_FAILED)
