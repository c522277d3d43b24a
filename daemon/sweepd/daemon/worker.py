"""`sweepd worker SWEEP_ID`: run one queued sweep in its own process and report progress
(status.json and the exit codes live in :mod:`sweepd.engine.status`, which SLURM nodes share).

The daemon starts it with stdout and stderr going to results/job_<ID>/sweep.log. Progress goes to
results/job_<ID>/status.json (written atomically), which the daemon and `sweepd status` read; the
exit code tells the daemon how the sweep ended (see EXIT_CODES).
"""

from __future__ import annotations

import json
import logging

from sweepd.configfile import ConfigError
from sweepd.engine import runner
from sweepd.engine.status import (EXIT_DONE, EXIT_FAILED, EXIT_GPU, EXIT_INPUT, EXIT_INTERRUPTED,  # noqa: F401
                                  StatusFileObserver, status_path)
from sweepd.engine.store import JobConflict
from sweepd.freqplan import ClockPlanError
from sweepd.gpu.base import GpuError
from sweepd.paths import Layout
from sweepd.queue import Queue
from sweepd.request import SweepRequest

log = logging.getLogger(__name__)

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
        from sweepd.report.build import write_report

        write_report(outcome.store.dir, row["job_id"])
    except (ConfigError, ClockPlanError, JobConflict, ValueError) as e:
        log.error("%s", e)
        return EXIT_INPUT
    except GpuError as e:
        log.error("GPU: %s", e)
        return EXIT_GPU
    obs.write(state=outcome.status, error=outcome.error)
    log.info("sweep %s %s%s", sweep_id, outcome.status, f": {outcome.error}" if outcome.error else "")
    return {"done": EXIT_DONE, "interrupted": EXIT_INTERRUPTED}.get(outcome.status, EXIT_FAILED)
