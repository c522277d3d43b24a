"""A sweep measured in SLURM job steps (``[gpu] clock_control = "slurm"``), for users who may not set clocks
themselves: inside an allocation (an sbatch script or salloc), `sweepd run` becomes the driver and each clock is an
`srun --gpu-freq=<MHz>,memory=<MHz>` step, whose slurmstepd (root) sets the clock before the step starts and resets
it when it ends (SLURM's gpu/nvml plugin).

The driver measures nothing and never loads the model. Its first step is a probe at the plan's lowest clock (a
clock the GPU does not run at by itself): a process that only reads the SM clock, so that a cluster whose SLURM
sets no clock stops after one step, in seconds, with the line naming the fix. Then each step runs the sweep
itself (:func:`sweepd.engine.runner.run` with the step's :class:`~sweepd.records.step.StepSpec`): it loads the
model, measures what the sweep needs at its clock and, at the first other clock the sweep asks for, writes that
clock to ``next.json`` (``state/slurm-steps/<ID>/``) and ends; the driver starts the next step there. Which clock comes next (the plan, the
adaptive search, the baseline's re-measurements) is decided by the sweep from the job's rows, as in one process;
a driver killed and started again resumes like any sweep.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

from sweepd.engine.runner import SweepOutcome
from sweepd.engine.store import JobStore
from sweepd.errors import EXIT_FAILED, EXIT_INTERRUPTED, RecordError, SlurmError
from sweepd.freqplan import ClockPoint
from sweepd.paths import Layout
from sweepd.records.step import StepHandoff, StepSpec
from sweepd.request import SweepRequest
from sweepd.slurm import commands
from sweepd.vocab import RunState

log = logging.getLogger(__name__)

Launch = Callable[[StepSpec, Path], int]  # runs one step (its spec written at the path); returns its exit status


def gpu_freq(freq_mhz: int, memory_mhz: int | None) -> str:
    """srun's --gpu-freq value: the SM clock, and the memory clock where the plan names one (older SLURM sets
    application clocks, which need both)."""
    return f"{freq_mhz}" + (f",memory={memory_mhz}" if memory_mhz else "")


def srun(spec: StepSpec, path: Path) -> int:
    """The real launcher: `srun --gpu-freq=... python -m sweepd step <spec>` on the allocation's GPU."""
    return commands.srun_step([sys.executable, "-m", "sweepd", "step", str(path)],
                              gpu_freq(spec.freq_mhz, spec.memory_mhz))


def max_steps(plan: list[ClockPoint], request: SweepRequest) -> int:
    """More steps than any sweep of this plan takes (each clock, each re-measurement of the baseline, a resume's
    check): past it the driver stops, as a bug would be looping."""
    return 2 * len(plan) + request.protocol.drift_checks(len(plan)) + 4


def measure(request: SweepRequest, layout: Layout, job: str, plan: list[ClockPoint], launch: Launch = srun,
            sweep_id: str | None = None, shard: tuple[int, int] | None = None) -> SweepOutcome:
    """The sweep (or shard ``(k, n)`` of it, the daemon's SLURM executor) in steps, and how it ended as its files
    say: the last step's status, or interrupted when a step died without a last word."""
    rc = drive(request, layout, job, plan, launch, sweep_id, shard)
    store = JobStore(layout, job, shard)
    if not store.read_back(plan):
        why = f"the first step ended with exit status {rc} (its own line is above); nothing was measured"
        return SweepOutcome(RunState.FAILED, store, plan, why, exit_code=rc or EXIT_FAILED)
    m = store.manifest
    if m.status.final:
        return SweepOutcome(m.status, store, plan, m.error, bool(m.resumed_at), rc)
    # a step that died without a last word (killed, or srun itself failed): what it committed resumes
    why = f"a step ended with exit status {rc}" + (f" (signal {rc - 128})" if rc > 128 else "") + \
        "; what the steps committed is kept and resumes"
    store.set_status(RunState.INTERRUPTED, why)
    return SweepOutcome(RunState.INTERRUPTED, store, plan, why, bool(m.resumed_at), EXIT_INTERRUPTED)


def drive(request: SweepRequest, layout: Layout, job: str, plan: list[ClockPoint], launch: Launch = srun,
          sweep_id: str | None = None, shard: tuple[int, int] | None = None) -> int:
    """Run the sweep step by step; returns the exit status of the sweep (0 done; the failing step's otherwise,
    which printed its own line)."""
    here = layout.job_steps(job, shard[0] if shard else None)
    here.mkdir(parents=True, exist_ok=True)
    where = dict(job_id=job, driver_pid=os.getpid(), root=str(layout.root), images=str(layout.images),
                 results=str(layout.results), request=request, sweep_id=sweep_id,
                 shard=shard[0] if shard else None, shards=shard[1] if shard else None)
    try:
        return _drive(request, plan, launch, StepSpec.path_in(here), StepHandoff.path_in(here), where)
    finally:
        shutil.rmtree(here, ignore_errors=True)


def _drive(request: SweepRequest, plan: list[ClockPoint], launch: Launch, spec_path: Path, next_path: Path,
           where: dict) -> int:
    lowest = min(plan, key=lambda p: p.freq_mhz or 0)
    step = StepSpec(step=0, freq_mhz=lowest.freq_mhz, memory_mhz=lowest.mem_mhz, probe=True, **where)
    log.info("clock_control = slurm: probing srun --gpu-freq=%s (does this cluster's SLURM set GPU clocks?)",
             gpu_freq(step.freq_mhz, step.memory_mhz))
    rc = _one(launch, step, spec_path)
    if rc:
        return rc
    nxt = plan[0]
    for n in range(1, max_steps(plan, request) + 1):
        step = StepSpec(step=n, freq_mhz=nxt.freq_mhz, memory_mhz=nxt.mem_mhz, continues=n > 1, **where)
        next_path.unlink(missing_ok=True)
        log.info("step %d: srun --gpu-freq=%s", n, gpu_freq(step.freq_mhz, step.memory_mhz))
        rc = _one(launch, step, spec_path)
        if rc:
            return rc
        try:
            handoff = StepHandoff.read(next_path)
        except RecordError as e:
            raise SlurmError(f"step {n} at {step.freq_mhz} MHz ended without saying what comes next ({e}); "
                             "what it measured is kept: run the same command again to resume") from None
        if handoff.next_mhz is None:
            return 0
        nxt = ClockPoint(handoff.next_mhz, handoff.next_memory_mhz)
    raise RuntimeError(f"a sweep of {len(plan)} clocks took more than {max_steps(plan, request)} steps")


def _one(launch: Launch, step: StepSpec, path: Path) -> int:
    step.write(path)
    rc = launch(step, path)
    if rc:
        log.error("step %d at %d MHz ended with exit status %d", step.step, step.freq_mhz, rc)
    return rc
