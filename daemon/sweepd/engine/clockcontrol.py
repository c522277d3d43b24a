"""How a sweep sets its clocks, decided before anything is measured: a GPU NVML can meter (MIG refused), the control
the request names and this user has, and for "auto" the first that works here.

`check_device` runs before the model loads and sets nothing (`sweepd.gpu.controls` asks the device and the
process's credentials); `control_for` gives the ClockGuard its candidates, which it tries at the first clock.
"""

from __future__ import annotations

import logging
import os

from sweepd.errors import InputError
from sweepd.gpu.base import GpuDevice, GpuNotSupported, GpuPermissionError
from sweepd.freqplan import ClockPoint
from sweepd.gpu.controls import AUTO_ORDER, availability, slurm_steps
from sweepd.gpu.locks import ClockGuard
from sweepd.paths import Layout
from sweepd.records.gpulock import ProductionLock
from sweepd.request import SweepRequest
from sweepd.vocab import ClockControl

log = logging.getLogger(__name__)


class MigMode(GpuNotSupported):
    """A GPU in MIG mode, or a MIG slice: NVML cannot meter a slice's power or energy."""


def check_device(request: SweepRequest, device: GpuDevice, layout: Layout) -> list[ClockControl]:
    """Before the model loads: a GPU whose energy NVML can meter, and a clock control this user may use; returns
    :func:`control_for`'s candidates."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if device.mig_enabled() or "MIG-" in visible:
        which = f"CUDA_VISIBLE_DEVICES={visible} names a MIG slice" if "MIG-" in visible \
            else f"{device.name} ({device.uuid}) is in MIG mode"
        raise MigMode(f"{which}: NVML cannot meter a MIG slice's power or energy, so no sweep can be measured on "
                      "it; sweep a whole GPU with MIG disabled (an administrator's `nvidia-smi -i N -mig 0`)")
    if not request.gpu.clock_control.sets_clocks or request.frequencies.mode == "baseline":
        return [ClockControl.OBSERVE]
    controls = control_for(request, device, layout)  # "auto": only what may be available; none says so here
    control = controls[0]
    can = availability(device, control, request.gpu.zeusd_socket) if request.gpu.clock_control is not \
        ClockControl.AUTO else None
    if can is not None and can.usable is False and control is ClockControl.SLURM:
        raise InputError(f'[gpu] clock_control = "slurm": {can.why}')
    if can is not None and can.usable is False:
        raise GpuPermissionError(f"[gpu] clock_control = \"{control}\" on {device.name}: {can.why}; `sweepd gpus` "
                                 "lists the clock controls this user has")
    production = ProductionLock.read_or_none(ProductionLock.path_for(layout.production_locks, device.uuid))
    if controls == [ClockControl.APPLICATION] and production is not None and production.freq_mhz is not None:
        raise InputError(f"[gpu] clock_control = \"application\": {device.name} is locked at {production.freq_mhz} "
                         "MHz (`sweepd clock set`), and locked clocks override application clocks: `sweepd clock "
                         "reset` first, or sweep with clock_control = \"lock\"")
    return controls


def unavailable(request: SweepRequest, device: GpuDevice, candidates: list[ClockControl]
                ) -> list[tuple[ClockControl, str]]:
    """For "auto": the controls it did not even try here, and why (the line said when every candidate is refused)."""
    if request.gpu.clock_control is not ClockControl.AUTO:
        return []
    others = [availability(device, c, request.gpu.zeusd_socket) for c in AUTO_ORDER if c not in candidates]
    if ClockControl.SLURM not in candidates:
        others.append(slurm_steps())
    return [(a.control, a.why) for a in others]


def control_for(request: SweepRequest, device: GpuDevice, layout: Layout | None = None) -> list[ClockControl]:
    """How this sweep sets clocks on this GPU: the request's control, or for "auto" every control this user may
    have here, in order (decided again on every start: a sweep resumed elsewhere takes what it has there); the
    first clock tries them in turn (:class:`~sweepd.gpu.locks.ClockGuard`), since a driver may refuse even what
    looks available (root in a container without CAP_SYS_ADMIN on the host's GPU). None at all: one line of
    what was tried, why each is not available and what an administrator could enable, before the model loads.
    Never observe unless asked. With ``layout``: a GPU with a production lock (`sweepd clock set`) is not offered
    application clocks, which locked clocks override. Inside a SLURM allocation "slurm" comes last: a process
    tries the others itself (ops.sweeps.prepare), and srun steps are what is left when none works."""
    if request.frequencies.mode == "baseline":
        return [ClockControl.OBSERVE]  # a baseline sets no clock
    if request.gpu.clock_control is not ClockControl.AUTO:
        return [request.gpu.clock_control]
    if request.power is not None:
        return _power_controls(request, device)
    tried = [availability(device, c, request.gpu.zeusd_socket) for c in AUTO_ORDER]
    production = None if layout is None else ProductionLock.read_or_none(
        ProductionLock.path_for(layout.production_locks, device.uuid))
    if production is not None and production.freq_mhz is not None:
        tried = [a if a.control is not ClockControl.APPLICATION else
                 type(a)(a.control, False, "a production lock (`sweepd clock set`) would override it") for a in tried]
    maybe = [a.control for a in tried if a.usable is not False]
    steps = slurm_steps()  # last: a step per clock costs a model load each
    if steps.usable is not False:
        return [*maybe, ClockControl.SLURM]  # the others first (ops.sweeps.prepare tries them before the model)
    if maybe:
        return maybe
    raise GpuPermissionError(
        f"[gpu] clock_control = \"auto\": sweepd cannot set clocks on {device.name}: "
        + "; ".join(f"{a.control}: {a.why}" for a in [*tried, steps])
        + ". An administrator can enable one (root for sweepd, `nvidia-smi -acp UNRESTRICTED`, zeusd, or "
          "SLURM's gpu/nvml plugin for srun --gpu-freq); clock_control = \"observe\" measures at whatever clock "
          "the GPU runs, without setting it")


def _power_controls(request: SweepRequest, device: GpuDevice) -> list[ClockControl]:
    """"auto" in a power sweep: the controls that set a power limit (NVML as root, zeusd), in that order."""
    tried = [availability(device, c, request.gpu.zeusd_socket) for c in AUTO_ORDER if c.sets_power_limits]
    maybe = [a.control for a in tried if a.usable is not False]
    if maybe:
        return maybe
    raise GpuPermissionError(
        f"[gpu] clock_control = \"auto\": sweepd cannot set a power limit on {device.name}: "
        + "; ".join(f"{a.control}: {a.why}" for a in tried)
        + ". Power limits are set by NVML as root or through zeusd (application clocks and srun --gpu-freq set "
          "only clocks); an administrator can enable one")


def in_steps(request: SweepRequest, device: GpuDevice, layout: Layout, controls: list[ClockControl],
             first: ClockPoint) -> bool:
    """Whether the sweep runs as srun steps (clock_control = "slurm"), decided before the model loads: asked for,
    or "auto" inside an allocation where this process cannot set clocks itself. That is tried: each other candidate
    at the first clock, then reset (nothing stays set), since a driver may refuse what looks available."""
    mine = [c for c in controls if c is not ClockControl.SLURM]
    if ClockControl.SLURM not in controls or not mine:
        return not mine
    try:
        with ClockGuard(device, layout.gpu_locks, layout.production_locks, mine, request.gpu.zeusd_socket) as guard:
            guard.lock(first.freq_mhz, first.mem_mhz)
    except GpuPermissionError as e:
        log.info("clock_control = auto: %s; each clock is an srun --gpu-freq step", e)
        return True
    return False
