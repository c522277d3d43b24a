"""`sweepd worker SWEEP_ID`: run one queued sweep in its own process and report progress
(status.json and the exit codes live in :mod:`sweepd.engine.status` and :mod:`sweepd.errors`,
which SLURM nodes share).

The daemon starts it with stdout and stderr going to results/job_<ID>/sweep.log. Progress goes to
results/job_<ID>/status.json (written atomically), which the daemon and `sweepd status` read; the
exit code tells the daemon how the sweep ended.
"""

from __future__ import annotations

import logging

from sweepd import logsetup
from sweepd.engine.status import StatusFileObserver, ended_by, status_path
from sweepd.errors import EXIT_INPUT
from sweepd.ops import sweeps
from sweepd.paths import Layout
from sweepd.queue import Queue

log = logging.getLogger(__name__)


def main(sweep_id: str, layout: Layout) -> int:
    logsetup.terminal(logging.INFO, "%(asctime)s sweepd worker: %(levelname)s: %(message)s")
    obs = None
    try:
        queue = Queue(layout.queue_db)
        row = queue.get(sweep_id)
        queue.close()
        if row is None:
            log.error("no sweep %s in the queue", sweep_id)
            return EXIT_INPUT
        req = row.request
        obs = StatusFileObserver(status_path(layout, row.job_id), row.job_id, sweep_id, req.protocol.most)
        # a sweep run again (resumed, or its worker killed while writing the report) that is done is not measured
        outcome = sweeps.measure_and_report(req, layout, row.job_id, obs, sweep_id=sweep_id, finish_done=True)
    except Exception as e:
        return ended_by(e, obs, log)
    obs.ended(outcome.status, outcome.error, outcome.exit_code)
    log.info("sweep %s %s%s", sweep_id, outcome.status, f": {outcome.error}" if outcome.error else "")
    return outcome.exit_code
