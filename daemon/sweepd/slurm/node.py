"""`sweepd worker --spec FILE --shard K`: one shard of a SLURM sweep, run by the job script on a node.

It reads the request from the spec file the daemon wrote (never the daemon's queue: that SQLite
file stays on the daemon's local disk), measures its share of the clocks into
results/job_<ID>/shards/<K>/ and reports progress in status.json there, written atomically. The job
id is SLURM's array job id, or --job-id on a resubmission. Exit codes are the local worker's.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sweepd import paths
from sweepd import logsetup
from sweepd.engine import clockcontrol, runner
from sweepd.engine.status import ShardPlace, StatusFileObserver, ended_by
from sweepd.records.status import WorkerStatus
from sweepd.engine.store import read_shard_manifest, shard_dir
from sweepd.errors import EXIT_DONE, InputError, RecordError
from sweepd.paths import Layout
from sweepd.records.shardspec import ShardSpec
from sweepd.request import SweepRequest
from sweepd.slurm import steps
from sweepd.vocab import ClockControl

log = logging.getLogger(__name__)


def allocated_gpu(req: SweepRequest, env: dict | None = None) -> SweepRequest:
    """Run on the GPU SLURM allocated (SLURM_JOB_GPUS / CUDA_VISIBLE_DEVICES) unless the request names one."""
    env = os.environ if env is None else env
    if req.gpu.index is not None or req.gpu.uuid:
        return req
    visible = env.get("SLURM_JOB_GPUS") or env.get("SLURM_STEP_GPUS") or env.get("CUDA_VISIBLE_DEVICES") or ""
    first = visible.split(",")[0].strip()
    if first.startswith(("GPU-", "MIG-")):
        chosen = {"uuid": first}
    elif first.isdigit():
        chosen = {"index": int(first)}
    else:
        return req
    return req.model_copy(update={"gpu": req.gpu.model_validate(req.gpu.model_dump() | chosen)})


def simulated_board(req: SweepRequest, shard: int) -> SweepRequest:
    """On the simulated GPU, each shard that no GPU was allocated to runs on a board of its own (index = shard):
    as array tasks on a real cluster, each gets another chip (``gpu.sim_power_offsets_pct`` by index)."""
    if req.gpu.backend != "sim" or req.gpu.index is not None or req.gpu.uuid:
        return req
    return req.model_copy(update={"gpu": req.gpu.model_validate(req.gpu.model_dump() | {"index": shard})})


def job_id_for(spec: ShardSpec, override: str | None, env: dict | None = None) -> str:
    env = os.environ if env is None else env
    job_id = override or spec.job_id or env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID")
    if not job_id:
        raise InputError("no job id: run under SLURM (SLURM_ARRAY_JOB_ID) or pass --job-id")
    return paths.check_job_id(job_id)


def already_done(layout: Layout, job_id: str, shard: int, req: SweepRequest) -> bool:
    m = read_shard_manifest(layout, job_id, shard)
    return m is not None and m.done and m.request_sha256 == req.fingerprint()


def read_spec(path: Path) -> ShardSpec:
    try:
        return ShardSpec.read(path)
    except RecordError as e:  # the spec is this process's input
        raise InputError(str(e)) from None


def main(spec_path: Path, shard: int, layout: Layout, job_id: str | None = None) -> int:
    logsetup.terminal(logging.INFO, "%(asctime)s sweepd worker: %(levelname)s: %(message)s")
    obs = None
    try:
        spec = read_spec(Path(spec_path))
        req = allocated_gpu(spec.request)
        sweep_id, split = spec.sweep_id, int(spec.split or req.split)
        if not 0 <= shard < split:
            raise InputError(f"--shard {shard}: this sweep has shards 0 to {split - 1}")
        req = simulated_board(req, shard)
        job = job_id_for(spec, job_id)
        where = ShardPlace.here(shard, split)
        obs = StatusFileObserver(WorkerStatus.path_in(shard_dir(layout, job, shard)), job, sweep_id, req.protocol.most, where)
        if already_done(layout, job, shard, req):  # a resubmission that raced the previous attempt's end
            log.info("shard %d of sweep %s is already done", shard, sweep_id)
            obs.ended("done", None, EXIT_DONE)
            return EXIT_DONE
        log.info("sweep %s job %s shard %d/%d on %s", sweep_id, job, shard, split, where.node)
        outcome = measure(req, layout, job, obs, sweep_id, (shard, split))
    except Exception as e:
        return ended_by(e, obs, log)
    obs.ended(outcome.status, outcome.error, outcome.exit_code)
    log.info("shard %d of sweep %s %s%s", shard, sweep_id, outcome.status, f": {outcome.error}" if outcome.error else "")
    return outcome.exit_code


def measure(req: SweepRequest, layout: Layout, job: str, obs: StatusFileObserver, sweep_id: str,
            shard: tuple[int, int]) -> runner.SweepOutcome:
    """The shard, in this process, or (clock_control = "slurm", or "auto" where this process may not set clocks)
    as srun --gpu-freq steps inside this array task, each reporting in the shard's status.json."""
    if req.gpu.clock_control not in (ClockControl.AUTO, ClockControl.SLURM):
        return runner.run(req, layout, job, obs, sweep_id=sweep_id, shard=shard)
    prepared = runner.prepare(req, layout, job, shard)
    try:
        stepped = clockcontrol.in_steps(req, prepared.device, layout, prepared.controls, prepared.plan[0])
    finally:
        prepared.device.close()
    if not stepped:
        return runner.run(req, layout, job, obs, sweep_id=sweep_id, shard=shard)
    log.info("shard %d: each clock is an srun --gpu-freq step", shard[0])
    return steps.measure(req, layout, job, prepared.plan, sweep_id=sweep_id, shard=shard)
