"""Run one sweep request end to end: open the GPU, plan, open the job, load the model, sweep.

Everything that can be checked without the model (GPU, clocks, job id) is checked before the
model loads, so a bad request fails in a second, not after a minute of loading.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import NamedTuple

from sweepd import paths
from sweepd.engine.clockcontrol import check_device, unavailable
from sweepd.engine.stop import StopFlag, StopRequested, early
from sweepd.engine.store import JobStore
from sweepd.errors import EXIT_DONE, EXIT_FAILED, EXIT_INTERRUPTED, InputError, SweepdError, os_line
from sweepd.engine.sweep import Observer, Sweep
from sweepd.freqplan import ClockPoint, measuring_order, plan_for
from sweepd.gpu import open_device
from sweepd.gpu.base import GpuDevice
from sweepd.gpu.locks import ClockGuard, GpuClaim, NextClock, repair_stale_locks
from sweepd.gpu.simmodel import gib_fixed, gib_needed, gib_per_image, s_per_image
from sweepd.paths import Layout
from sweepd.records.gpulock import ClockLockRecord
from sweepd.records.step import StepHandoff, StepSpec
from sweepd.request import SweepRequest
from sweepd.vocab import ClockControl, RunState

log = logging.getLogger(__name__)


@dataclass
class SweepOutcome:
    """How a sweep ended, when it ended as sweepd expects (a bug is raised instead, see :func:`run`)."""
    status: RunState  # done, failed or interrupted; running: a SLURM step handed the sweep on to the next
    store: JobStore
    plan: list[ClockPoint]
    error: str | None = None
    resumed: bool = False
    exit_code: int = EXIT_DONE  # the process's exit code for this ending (sweepd.errors)


def open_for(request: SweepRequest) -> GpuDevice:
    g, w = request.gpu, request.workload
    return open_device(g.backend, index=g.index, uuid=g.uuid, sim_model=g.sim_model, sim_noise=g.sim_noise,
                       sim_host_s_per_image=g.sim_host_s_per_image, sim_cold_start_s=g.sim_cold_start_s,
                       sim_seed=w.seed, sim_memory_gib=g.sim_memory_gib,
                       sim_s_per_image=s_per_image(g.sim_model, w.model, w.steps, w.width, w.height),
                       sim_gib_per_image=gib_per_image(w.model, w.width, w.height), sim_gib_fixed=gib_fixed(w.model),
                       sim_power_offsets_pct=g.sim_power_offsets_pct, sim_speed_offsets_pct=g.sim_speed_offsets_pct)


class WontFitGpu(InputError):
    """The smallest batch the request asks for needs more GPU memory than the board has."""


def check_memory(request: SweepRequest, device: GpuDevice) -> None:
    """Before the model loads: the request's smallest batch at its image size against the board's memory, by the
    figures the simulated GPU runs out of memory at (:func:`~sweepd.gpu.simmodel.gib_needed`: the family's weights and
    workspace, and each image's activations by its pixels). A list of batch sizes refuses its larger ones itself."""
    w = request.workload
    total = device.total_memory_gib()
    b = min(w.batch_sizes)
    per_image = gib_per_image(w.model, w.width, w.height)
    need = gib_needed(b, per_image, gib_fixed(w.model))
    if total is not None and need > total:
        raise WontFitGpu(f"workload: {w.width} x {w.height} at batch {b} needs about {need:.1f} GiB of GPU memory "
                         f"({need - b * per_image:.1f} GiB for the model, {per_image:.1f} GiB per image at this size); "
                         f"{device.name} has {total:.0f} GiB: a smaller image or batch_size")


def repair_locks(layout: Layout) -> list[str]:
    """Reset GPUs whose clocks a dead sweep left locked (a simulated GPU's locks die with its process), and put
    back their production settings."""
    def opener(rec: ClockLockRecord) -> GpuDevice:
        if rec.backend == "sim":
            return open_device("sim")
        return open_device("nvml", uuid=rec.uuid)

    done = repair_stale_locks(layout.gpu_locks, opener, layout.production_locks)
    for line in done:
        log.warning("%s", line)
    return done


def resolve_job_id(request: SweepRequest, override: str | None = None) -> str:
    return paths.check_job_id(override or request.job_id or paths.job_id_from_env() or paths.new_local_job_id())


def shard_plan(plan: list, shard: int, shards: int) -> list:
    """Shard k of n takes clocks k, k+n, k+2n, ... (highest first): every shard sees high and low clocks,
    and shard 0 measures the highest, the baseline every saving is measured against. (``prepare`` puts the
    highest first in every other shard's plan as well: each GPU measures its own reference, first and last.)"""
    return plan[shard::shards]


class Prepared(NamedTuple):
    device: GpuDevice
    plan: list[ClockPoint]  # in measuring order
    store: JobStore
    controls: list[ClockControl]  # how clocks will be set (engine.clockcontrol.control_for)


def prepare(request: SweepRequest, layout: Layout, job_id: str, shard: tuple[int, int] | None = None) -> Prepared:
    """Open the GPU and check the clocks and the job id; writes nothing. The caller closes the device.
    With ``shard`` (k, n): only that shard's share of the clocks."""
    from sweepd.workload import modelcheck

    modelcheck.check(request.workload.model)  # before the GPU, the job folder or 8 s of model loading
    device = open_for(request)
    try:
        controls = check_device(request, device, layout)
        plan = plan_for(request, device)
        check_memory(request, device)
        order, seed = request.protocol.order, request.workload.seed
        if request.frequencies.mode == "adaptive":
            order = "descending"  # the search decides what comes after the highest clock
        if shard is None:
            return Prepared(device, measuring_order(plan, order, seed), JobStore(layout, job_id), controls)
        if not 0 <= shard[0] < shard[1] or shard[1] > len(plan):
            raise InputError(f"shard {shard[0]} of {shard[1]}: the sweep has {len(plan)} clocks; "
                             "split must be at most the number of clocks")
        store = JobStore(layout, job_id, shard, [p.setting for p in plan])
        mine = shard_plan(plan, *shard)
        if shard[0]:  # every GPU measures the reference itself: savings are ratios within one GPU
            mine = [plan[0], *mine]
        return Prepared(device, measuring_order(mine, order, seed), store, controls)
    except BaseException:
        device.close()
        raise


def run_blank(request: SweepRequest, layout: Layout, job_id: str, shard: tuple[int, int] | None = None,
              step: StepSpec | None = None) -> JobStore:
    """A whole sweep with :class:`~sweepd.engine.blank.BlankWorkload` instead of the model, on the simulated GPU:
    the engine and its files exactly as :func:`run` has them, in a fraction of a second (benchmarks, tests).
    ``step``: one SLURM step of it, as :func:`run`'s."""
    from sweepd.engine.blank import BlankWorkload, QuietObserver

    device, plan, store, control = prepare(request, layout, job_id, shard)
    with device, GpuClaim(device, layout.gpu_locks):
        store.open(request, device.info(), plan)
        with ClockGuard(device, layout.gpu_locks, layout.production_locks,
                        control=[ClockControl.SLURM] if step else control, zeusd_socket=request.gpu.zeusd_socket,
                        step_mhz=step.freq_mhz if step else None) as guard:
            try:
                Sweep(request, device, store, plan, guard, StopFlag(), QuietObserver(),
                      continues=bool(step and step.continues)).run(BlankWorkload())
            except NextClock as e:
                _hand_off(layout, step, e)
                return store
        store.set_status(RunState.DONE)
        _hand_off(layout, step, None)
    return store


def _hand_off(layout: Layout, step: StepSpec | None, e: NextClock | None) -> None:
    """A SLURM step's last word to its driver: the clock the sweep needs next (``e``), or none: done."""
    assert step is not None or e is None, "only a SLURM step's guard hands over"
    if step is not None:
        StepHandoff(step=step.step, next_mhz=e and e.freq_mhz, next_memory_mhz=e and e.memory_mhz).write(
            StepHandoff.path_in(layout.job_steps(step.job_id, step.shard)))


def probe_step(request: SweepRequest, layout: Layout, step: StepSpec) -> int:
    """A SLURM sweep's first step: whether srun --gpu-freq set the clock it was asked for (raises
    :class:`~sweepd.gpu.locks.SlurmSetsNoClock` if not). Loads no model, measures nothing; returns the clock seen."""
    device = prepare(request, layout, step.job_id).device
    with device, ClockGuard(device, layout.gpu_locks, control=ClockControl.SLURM, step_mhz=step.freq_mhz) as guard:
        guard.lock(step.freq_mhz, step.memory_mhz)
        return device.sm_clock_mhz()


def run(request: SweepRequest, layout: Layout, job_id: str, observer: Observer,
        stop: StopFlag | None = None, sweep_id: str | None = None, shard: tuple[int, int] | None = None,
        step: StepSpec | None = None) -> SweepOutcome:
    """``step``: this process is one `srun --gpu-freq` step of a sweep with clock_control = "slurm"
    (:mod:`sweepd.slurm.steps`): it measures what the sweep needs at the step's clock and hands back
    (``step-next.json``) at the first other clock the sweep asks for."""
    from sweepd.workload.pipeline import Workload  # torch is imported here, in the sweep process only

    device, plan, store, controls = prepare(request, layout, job_id, shard)
    stop = stop or early() or StopFlag()
    with device, GpuClaim(device, layout.gpu_locks):  # one sweep per GPU, claimed before anything is written
        repair_locks(layout)
        # "auto": its candidates, tried in turn at the first clock (in this process: srun steps are the
        # driver's, ops.sweeps); a step: the clock srun gave it
        control = [ClockControl.SLURM] if step else [c for c in controls if c is not ClockControl.SLURM] or controls
        resumed = store.open(request, device.info(), plan, sweep_id)
        if step and step.driver_pid:  # the sweep's process is the driver: live between steps too (protection)
            store.manifest.pid = step.driver_pid
            store.write_manifest()
        stop.install()
        try:
            with ClockGuard(device, layout.gpu_locks, layout.production_locks, control,
                            request.gpu.zeusd_socket, step.freq_mhz if step else None) as guard:
                guard.unavailable = lambda: unavailable(request, device, control)  # asked only if all refuse
                stop.check()  # cancelled while starting: do not load the model for nothing
                t0 = time.monotonic()
                workload = Workload(request.workload, paths.cache_dir(), gpu_uuid=device.uuid,
                                    simulated=device.simulated)
                store.model_loaded(workload.info(), time.monotonic() - t0)
                Sweep(request, device, store, plan, guard, stop, observer,
                      continues=bool(step and step.continues)).run(workload)
            store.set_status(RunState.DONE)
            _hand_off(layout, step, None)
            return SweepOutcome(RunState.DONE, store, plan, resumed=resumed)
        except NextClock as e:  # a SLURM step: the sweep goes on in the next step, at this clock
            _hand_off(layout, step, e)
            return SweepOutcome(RunState.RUNNING, store, plan, resumed=resumed)
        except (StopRequested, KeyboardInterrupt) as e:
            _final_status(store, RunState.INTERRUPTED, f"stopped by {e or 'request'}")
            return SweepOutcome(RunState.INTERRUPTED, store, plan, f"stopped by {e or 'request'}", resumed, EXIT_INTERRUPTED)
        except OSError as e:  # results could not be written (disk full, quota, read-only)
            msg = f"cannot write results ({os_line(e)}); what was committed before is kept and resumes"
            log.error("sweep %s failed: %s", job_id, msg)
            _final_status(store, RunState.FAILED, msg)
            return SweepOutcome(RunState.FAILED, store, plan, msg, resumed, EXIT_FAILED)
        except SweepdError as e:  # the GPU, the input or the model said no: its own line and exit code
            log.error("sweep %s failed: %s", job_id, e.line())
            _final_status(store, RunState.FAILED, e.line())
            return SweepOutcome(RunState.FAILED, store, plan, e.line(), resumed, e.exit_code)
        except Exception as e:  # a bug: sweep.json says so, and the caller shows the traceback and exits 70
            _final_status(store, RunState.FAILED, f"internal error (a bug in sweepd): {type(e).__name__}: {e}")
            raise
        finally:
            stop.restore()


def _final_status(store: JobStore, status: RunState, error: str) -> None:
    """sweep.json's last word, if the disk still takes it; else the last one written stands (never 'done')."""
    try:
        store.set_status(status, error)
    except OSError as e:
        log.error("could not record %s in sweep.json: %s", status, e.strerror or e)
