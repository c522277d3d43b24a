"""Running a sweep, the use case `sweepd run`, `sweepd demo` and the daemon's worker share: which request, whether
it may start, measuring what is missing, and the report.

- :func:`new_request`: a request file with the command line's overrides, checked as the daemon checks it;
- :func:`resume_request`: an unfinished job's own request, refused while something else measures that job;
- :func:`prepare`: every check that needs no model (folders, room for the images, GPU, clocks), and what the run
  is about to do;
- :func:`measure_and_report`: the sweep, then its report. ``done`` in sweep.json is final: a job already done with
  this request is not measured again, its report is written (again) instead, which is how a worker killed while
  writing the report is finished by the next one;
- :func:`measure_in_steps`, :func:`run_step`: the same with clock_control = "slurm", one srun step per clock
  (:mod:`sweepd.slurm.steps` drives them; each step is :func:`run_step`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sweepd import configfile, paths
from sweepd.configfile import ConfigError
from sweepd.engine import clockcontrol, runner
from sweepd.engine.phases import Observer
from sweepd.engine.runner import SweepOutcome
from sweepd.engine.stop import StopFlag
from sweepd.engine.store import JobStore
from sweepd.errors import InputError, RecordError
from sweepd.freqplan import ClockPoint
from sweepd.paths import Layout
from sweepd.records.manifest import SweepManifest
from sweepd.records.step import StepSpec
from sweepd.request import SweepRequest, load_request
from sweepd.vocab import RunState

log = logging.getLogger(__name__)


def new_request(path: Path, no_save_images: bool = False, custom_frequencies: str | None = None) -> SweepRequest:
    """A request file for a foreground run, with the old framework's flags as overrides."""
    req = allocated(apply_flags(load_request(path), no_save_images, custom_frequencies))
    from sweepd.workload import modelcheck

    modelcheck.check(req.workload.model, str(path))
    if req.split > 1:  # `run` measures here, on one GPU; `executor` only matters to the daemon
        raise InputError(f"split: {req.split}: a split sweep runs as a SLURM job array; submit it to a daemon "
                         'with executor = "slurm" (sweepd submit), or set split = 1 to run it here')
    return req


def apply_flags(request: SweepRequest, no_save_images: bool, custom: str | None) -> SweepRequest:
    """The old framework's flags, as overrides of the request."""
    data = request.model_dump(mode="json", by_alias=True)
    if no_save_images:
        data["images"]["mode"] = "benchmark"
    if custom is not None:
        try:
            clocks = [int(x) for x in custom.replace(" ", "").split(",") if x]
        except ValueError:
            raise ConfigError("--custom-frequencies", [f"{custom!r}: expected MHz values separated by commas"]) from None
        data["frequencies"].update(mode="custom", list=clocks)
    return configfile.validate(SweepRequest, data, "command line")


def resume_request(layout: Layout, job: str) -> SweepRequest:
    """The request an unfinished job was started with. Refused, before anything is written, while the job is
    queued or running in this root's daemon or a live process measures it (its sweep.json names the pid)."""
    from sweepd.storage.protection import is_active

    path = SweepManifest.path_in(layout.job_results(job))
    if not path.exists():
        raise InputError(f"--resume {job}: no sweep at {path}")
    try:
        manifest = SweepManifest.read(path)
    except RecordError as e:
        raise InputError(str(e)) from None
    if is_active(layout, job):
        raise InputError(f"--resume {job}: the job is queued or running now (this root's daemon, or process "
                         f"{manifest.pid} measuring it); nothing was changed")
    return allocated(manifest.request)


@dataclass(frozen=True)
class Prepared:
    """What a foreground run is about to do, once everything that needs no model has been checked."""
    job: str
    plan: list[ClockPoint]
    simulated: bool
    expected_clocks: int  # the clocks it will measure (an adaptive search: about EXPECTED_EVALUATIONS)
    clocks_text: str  # "10 clock(s)", or the adaptive search in words
    in_steps: bool = False  # clock_control = "slurm": each clock an srun --gpu-freq step (measure_in_steps)


def prepare(request: SweepRequest, layout: Layout, job_id: str | None, force: bool = False) -> Prepared:
    """Folders writable, the images' room (unless ``force`` or resuming), the GPU and the clocks: each fails with
    its own line before the model loads."""
    job = runner.resolve_job_id(request, job_id)
    for folder in (layout.state, layout.results, layout.images):  # one clear line, before anything else
        paths.ensure_writable(folder)
    if not force and not SweepManifest.path_in(layout.job_results(job)).exists():  # a resume already has its room
        from sweepd.fit import check

        check(request, layout)
    device, plan, _, controls = runner.prepare(request, layout, job)  # fails fast on a bad GPU or clock
    simulated = device.simulated
    try:
        steps = clockcontrol.in_steps(request, device, layout, controls, plan[0])
    finally:
        device.close()
    expected, text = len(plan), f"{len(plan)} {request.knob.noun}(s)"
    if request.frequencies.mode == "adaptive":
        from sweepd.report.estimate import EXPECTED_EVALUATIONS

        expected = min(len(plan), EXPECTED_EVALUATIONS)
        text = (f"an adaptive search ({request.frequencies.search_objective}) over {len(plan)} clocks "
                f"(about {expected} measured)")
    return Prepared(job, plan, simulated, expected, text, steps)


def measure_and_report(request: SweepRequest, layout: Layout, job: str, observer: Observer,
                       stop: StopFlag | None = None, sweep_id: str | None = None,
                       finish_done: bool = False) -> SweepOutcome:
    """Measure what the job is missing, then write its report (report.html, report.json). ``finish_done`` (a
    resume, a queued sweep run again): a job already done with this very request is not measured again, done is
    final, and only its report is written. Otherwise a done job is refused as any reuse of its id is."""
    outcome = (finish_done and _already_done(request, layout, job)) or \
        runner.run(request, layout, job, observer, stop, sweep_id)
    from sweepd.report.build import write_report

    write_report(outcome.store.dir, job)
    return outcome


def measure_in_steps(request: SweepRequest, layout: Layout, job: str, plan: list[ClockPoint],
                     launch: Callable[[StepSpec, Path], int] | None = None) -> SweepOutcome:
    """clock_control = "slurm": the sweep as srun steps, one per clock (``launch``: how a step runs; srun by
    default). This process only drives them; the last step writes the report."""
    from sweepd.slurm import steps

    done = _already_done(request, layout, job)
    if done:
        from sweepd.report.build import write_report

        write_report(done.store.dir, job)
        return done
    return steps.measure(request, layout, job, plan, launch or steps.srun)


def run_step(spec: StepSpec, observer: Observer) -> SweepOutcome:
    """One srun step of :func:`measure_in_steps`: the sweep measured at the step's clock, until it needs another
    (status "running": the driver starts the next step) or is done (then its report is written)."""
    outcome = runner.run(allocated(spec.request), spec.layout, spec.job_id, observer, sweep_id=spec.sweep_id,
                         shard=spec.split, step=spec)
    if outcome.status is RunState.DONE and spec.split is None:  # a shard's report is the merge's
        from sweepd.report.build import write_report

        write_report(outcome.store.dir, spec.job_id)
    return outcome


def shard_observer(spec: StepSpec) -> Observer:
    """A shard's step reports where its driver (`sweepd worker --spec`) does: the shard's status.json."""
    from sweepd.engine.status import ShardPlace, StatusFileObserver
    from sweepd.engine.store import shard_dir
    from sweepd.records.status import WorkerStatus

    k, n = spec.split
    return StatusFileObserver(WorkerStatus.path_in(shard_dir(spec.layout, spec.job_id, k)), spec.job_id,
                              spec.sweep_id or "", spec.request.protocol.most, ShardPlace.here(k, n))


def probe_step(spec: StepSpec) -> int:
    """The first srun step: the clock SLURM set, checked (one line, exit 2, if it set none)."""
    return runner.probe_step(allocated(spec.request), spec.layout, spec)


def allocated(request: SweepRequest) -> SweepRequest:
    """Inside a SLURM allocation, the GPU SLURM gave this job (unless the request names one): its index among the
    node's GPUs (SLURM_JOB_GPUS), which CUDA_VISIBLE_DEVICES renumbers from 0. Outside one, and on the simulated
    GPU, the request as it is."""
    if request.gpu.backend == "sim" or not os.environ.get("SLURM_JOB_ID"):
        return request
    from sweepd.slurm.node import allocated_gpu

    return allocated_gpu(request)


def _already_done(request: SweepRequest, layout: Layout, job: str) -> SweepOutcome | None:
    store = JobStore(layout, job)
    old = SweepManifest.read_or_none(store.manifest_path)
    if old is None or not old.done or old.request_sha256 != request.fingerprint():
        return None  # a done job with another request is refused by the store, as any reuse of a job id is
    store.manifest = old
    log.info("job %s is already done (%s): its report is written again, nothing is measured", job, store.dir)
    plan = [ClockPoint(f, None) for f in old.plan_mhz]
    return SweepOutcome(RunState.DONE, store, plan, resumed=True)
