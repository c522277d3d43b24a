"""Which clock controls this user may use on a GPU, and why not the others (`sweepd gpus`, and the check before a
sweep loads its model). Asked of the device layer and the process's own credentials; nothing is set to find out."""

from __future__ import annotations

import os
from dataclasses import dataclass

from sweepd.gpu import zeusd
from sweepd.gpu.base import GpuDevice
from sweepd.gpu.zeusd import Zeusd
from sweepd.vocab import ClockControl

CAP_SYS_ADMIN = 21  # capability bit (linux/capability.h)


@dataclass(frozen=True)
class Availability:
    control: ClockControl
    usable: bool | None  # None: it cannot be told without trying
    why: str


def privileged() -> bool:
    """Root, or CAP_SYS_ADMIN in this process's effective set: what NVML asks before it locks a clock."""
    if os.geteuid() == 0:
        return True
    try:
        with open("/proc/self/status") as fh:
            caps = next((line.split()[1] for line in fh if line.startswith("CapEff:")), "0")
        return bool(int(caps, 16) >> CAP_SYS_ADMIN & 1)
    except (OSError, ValueError):
        return False


def availability(device: GpuDevice, control: ClockControl, zeusd_socket: str | None = None) -> Availability:
    """``zeusd_socket``: where zeusd is asked ([gpu] zeusd_socket; default ZEUSD_SOCK_PATH, then zeusd's own)."""
    if control is ClockControl.SLURM:
        return slurm_steps()
    if device.simulated:
        return Availability(control, True, "simulated: the clock lives in sweepd alone")
    if device.mig_enabled():
        return Availability(control, False, "MIG mode: NVML cannot meter a MIG slice's power or energy")
    if control is ClockControl.OBSERVE:
        return Availability(control, True, "measures at whatever clock the GPU runs; sets none")
    if control is ClockControl.LOCK:
        if privileged():
            return Availability(control, True, "root or CAP_SYS_ADMIN")
        return Availability(control, False, "locking clocks needs root or CAP_SYS_ADMIN")
    if control is ClockControl.ZEUSD:
        ok, why = Zeusd(zeusd.socket_path(zeusd_socket)).can_control()
        return Availability(control, ok, why)
    restricted = device.application_clocks_restricted()
    if restricted is None:
        return Availability(control, None, "the driver does not say who may set application clocks")
    if not restricted:
        return Availability(control, True, "anyone: an administrator lifted the API restriction")
    if privileged():
        return Availability(control, True, "root")
    return Availability(control, False, "restricted to root; an administrator can allow everyone with "
                                        "`nvidia-smi -acp UNRESTRICTED`")


def slurm_steps(env: dict | None = None) -> Availability:
    """SLURM's `srun --gpu-freq`: each clock its own job step, so only inside an allocation (a batch script or
    salloc), and only where slurmstepd's gpu/nvml plugin sets clocks, which the first step tells."""
    job = (os.environ if env is None else env).get("SLURM_JOB_ID")
    if not job:
        return Availability(ClockControl.SLURM, False, "not inside a SLURM allocation: run sweepd in an sbatch "
                                                       "script or salloc, where each clock is an srun --gpu-freq step")
    return Availability(ClockControl.SLURM, None, f"inside SLURM job {job}: whether srun --gpu-freq sets clocks "
                                                  "here, the first step tells")


AUTO_ORDER = (ClockControl.LOCK, ClockControl.APPLICATION, ClockControl.ZEUSD)  # what "auto" tries, in order


def all_controls(device: GpuDevice) -> list[Availability]:
    return [availability(device, c) for c in ClockControl if c is not ClockControl.AUTO]
