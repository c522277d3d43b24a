"""How a sweep sets its clocks, decided before anything is measured: a GPU NVML can meter (MIG refused), the control
the request names and this user has, and for "auto" the first that works here.

`check_device` runs before the model loads and sets nothing (`sweepd.gpu.controls` asks the device and the
process's credentials). `control_for` with a layout runs once the sweep holds its GPU: "auto" tries each control
it may have by setting the highest clock and resetting it (a driver can refuse even root: a container without
CAP_SYS_ADMIN on the host's GPU), through a ClockGuard, so that a crash in between is repaired like any lock.
"""

from __future__ import annotations

import logging
import os

from sweepd.errors import InputError
from sweepd.gpu.base import GpuDevice, GpuNotSupported, GpuPermissionError
from sweepd.gpu.controls import AUTO_ORDER, availability
from sweepd.gpu.locks import ClockGuard
from sweepd.paths import Layout
from sweepd.records.gpulock import ProductionLock
from sweepd.request import SweepRequest
from sweepd.vocab import ClockControl

log = logging.getLogger(__name__)


class MigMode(GpuNotSupported):
    """A GPU in MIG mode, or a MIG slice: NVML cannot meter a slice's power or energy."""


def check_device(request: SweepRequest, device: GpuDevice, layout: Layout) -> None:
    """Before the model loads: a GPU whose energy NVML can meter, and a clock control this user may use."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if device.mig_enabled() or "MIG-" in visible:
        which = f"CUDA_VISIBLE_DEVICES={visible} names a MIG slice" if "MIG-" in visible \
            else f"{device.name} ({device.uuid}) is in MIG mode"
        raise MigMode(f"{which}: NVML cannot meter a MIG slice's power or energy, so no sweep can be measured on "
                      "it; sweep a whole GPU with MIG disabled (an administrator's `nvidia-smi -i N -mig 0`)")
    if not request.gpu.clock_control.sets_clocks or request.frequencies.mode == "baseline":
        return
    control = control_for(request, device)
    can = availability(device, control, request.gpu.zeusd_socket)
    if can.usable is False:
        raise GpuPermissionError(f"[gpu] clock_control = \"{control}\" on {device.name}: {can.why}; `sweepd gpus` "
                                 "lists the clock controls this user has")
    production = ProductionLock.read_or_none(ProductionLock.path_for(layout.production_locks, device.uuid))
    if control is ClockControl.APPLICATION and production is not None:
        raise InputError(f"[gpu] clock_control = \"application\": {device.name} is locked at {production.freq_mhz} "
                         "MHz (`sweepd clock set`), and locked clocks override application clocks: `sweepd clock "
                         "reset` first, or sweep with clock_control = \"lock\"")


def control_for(request: SweepRequest, device: GpuDevice, layout: Layout | None = None) -> ClockControl:
    """How this sweep sets clocks on this GPU. "auto": the first control this user has here (decided again on
    every start: a sweep resumed elsewhere takes what it has there), or one line of what was tried, why each is
    not available, and what an administrator could enable. Never observe unless asked. With ``layout`` (the
    sweep holds the GPU), each candidate is tried, not only asked about."""
    if request.frequencies.mode == "baseline":
        return ClockControl.OBSERVE  # a baseline sets no clock
    if request.gpu.clock_control is not ClockControl.AUTO:
        return request.gpu.clock_control
    tried = [availability(device, c, request.gpu.zeusd_socket) for c in AUTO_ORDER]
    for i, a in enumerate(tried):
        if a.usable is False:
            continue
        refused = None if layout is None else probe(device, a.control, layout, request.gpu.zeusd_socket)
        if refused is None:
            log.info("clock_control = auto: %s (%s)", a.control, a.why)
            return a.control
        tried[i] = type(a)(a.control, False, f"tried, refused: {refused}")
    raise GpuPermissionError(
        f"[gpu] clock_control = \"auto\": sweepd cannot set clocks on {device.name}: "
        + "; ".join(f"{a.control}: {a.why}" for a in tried)
        + "; slurm: SLURM's --gpu-freq steps are not supported by this sweepd yet. An administrator can enable "
          "one (root for sweepd, `nvidia-smi -acp UNRESTRICTED`, or zeusd); clock_control = \"observe\" "
          "measures at whatever clock the GPU runs, without setting it")


def probe(device: GpuDevice, control: ClockControl, layout: Layout, zeusd_socket: str | None) -> str | None:
    """Set the GPU's highest clock through `control` and reset it (a production lock restored after): None if
    that works, else why not."""
    top = device.graphics_clocks(device.memory_clocks()[0])[0]
    try:
        with ClockGuard(device, layout.gpu_locks, layout.production_locks, control, zeusd_socket) as guard:
            guard.lock(top, None)
    except GpuPermissionError as e:  # the refusal itself; its advice comes once, at the end of auto's line
        why, denied, _advice = str(e).partition(": permission denied")
        return why + denied
    return None
