"""Clock locks that cannot outlive a sweep.

NVML clock locks persist after the process that set them exits. :class:`ClockGuard` writes a
record under ``state/gpu-locks/`` before the first lock and removes it only after a reset, resets
on normal exit, on error (``with``), and at interpreter exit; signals are turned into an orderly
exit by :mod:`sweepd.engine.stop`. If a process dies anyway (SIGKILL, OOM killer, power), the next
sweepd start finds its record and resets that GPU (:func:`repair_stale_locks`).
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import time
from pathlib import Path
from typing import Callable, Collection

from sweepd import paths
from sweepd.errors import InputError
from sweepd.procs import PidFile, pid_alive
from sweepd.gpu.base import GpuDevice, GpuError, GpuPermissionError
from sweepd.records.base import RecordError
from sweepd.records.gpulock import ClockLockRecord, ProductionLock
from sweepd.gpu import zeusd
from sweepd.gpu.zeusd import Zeusd
from sweepd.vocab import ClockControl

log = logging.getLogger(__name__)


class GpuBusyError(GpuError):
    """Another live sweepd process holds this GPU's clocks."""


class NextClock(Exception):
    """A SLURM step (clock_control = "slurm") was asked for a clock other than its own: the step ends there, and
    its driver starts the next one at ``freq_mhz``. Not an error: how a sweep moves from one step to the next."""

    def __init__(self, freq_mhz: int, memory_mhz: int | None):
        super().__init__(f"next clock {freq_mhz} MHz")
        self.freq_mhz, self.memory_mhz = freq_mhz, memory_mhz


class SlurmSetsNoClock(InputError):
    """srun --gpu-freq ran a step at another clock than it was asked for: this cluster's SLURM does not set GPU
    clocks (gres.conf without AutoDetect=nvml, or --gpu-freq disabled)."""


SLURM_CLOCK_TOLERANCE_MHZ = 7  # under one step of every supported GPU's clock table (A100/H100: 15 MHz)


def read_records(records: Path) -> list[ClockLockRecord]:
    out = []
    for path in sorted(Path(records).glob("*.json")):
        try:
            owner = paths.foreign_owner(path.lstat())
        except OSError:
            continue
        if owner is not None:  # a record this user's sweepd did not write locks nothing (planted: pid 1 "busy")
            log.warning("ignoring lock record %s: owned by uid %d, not by this user", path, owner)
            continue
        try:
            rec = ClockLockRecord.read(path)
        except RecordError as e:
            log.warning("ignoring lock record: %s", e)
            continue
        rec.path = path
        out.append(rec)
    return out


def repair_stale_locks(records: Path, opener: Callable[[ClockLockRecord], GpuDevice],
                       production: Path | None = None) -> list[str]:
    """Reset every GPU whose lock record belongs to a dead process on this host, then put back its production
    settings (``sweepd clock set``, recorded under ``production``), as the sweep's own release would have: the
    reset takes the clock lock and the cap alike. Returns what was done."""
    done = []
    host = socket.gethostname()
    for rec in read_records(records):
        if rec.host != host or pid_alive(rec.pid):
            continue
        try:
            with opener(rec) as dev:
                if rec.power_limit_w is not None:
                    reset_power(dev, rec.control, rec.zeusd_socket)
                reset(dev, rec.control, rec.zeusd_socket)
                line = f"reset clocks of {rec.name or rec.uuid} left locked by dead pid {rec.pid}"
                back = _restore_production(dev, rec, production)
        except GpuError as e:
            done.append(f"could not reset clocks of {rec.uuid} left locked by pid {rec.pid}: {e}")
            continue
        rec.path.unlink(missing_ok=True)
        done.append(line + (f"; {back}" if back else ""))
    return done


def _restore_production(dev: GpuDevice, rec: ClockLockRecord, production: Path | None) -> str | None:
    """The production lock or cap of the GPU a dead sweep held, set again (through zeusd where that sweep used it)."""
    if production is None:
        return None
    prod = ProductionLock.read_or_none(ProductionLock.path_for(production, rec.uuid))
    if prod is None:
        return None
    try:
        restore_production(dev, prod, rec.control, rec.zeusd_socket)
    except GpuError as e:
        return f"its production setting ({prod.what}) not put back: {e}"
    return f"production setting put back ({prod.what})"


def restore_production(device: GpuDevice, prod: ProductionLock, control: ClockControl, zeusd_socket: str | None,
                       knobs: Collection[str] = ("clock", "power")) -> None:
    """Set ``prod``'s lock and cap again (of ``knobs``: those a sweep reset or lifted), through zeusd where the sweep
    used it (``control``), else as NVML locks: a production lock is a lock, whatever control the sweep had."""
    how = ClockControl.ZEUSD if control is ClockControl.ZEUSD else ClockControl.LOCK
    if prod.freq_mhz is not None and "clock" in knobs:
        set_clock(device, how, prod.freq_mhz, prod.mem_mhz, zeusd_socket)
    if prod.power_limit_w is not None and "power" in knobs:
        set_power(device, how, prod.power_limit_w, zeusd_socket)


def set_clock(device: GpuDevice, control: ClockControl, sm_mhz: int, memory_mhz: int | None,
              zeusd_socket: str | None = None) -> None:
    """One clock, the way `control` sets it."""
    if control is ClockControl.APPLICATION:
        device.set_application_clocks(sm_mhz, memory_mhz if memory_mhz is not None else device.memory_clocks()[0])
    elif control is ClockControl.ZEUSD and not device.simulated:
        Zeusd(zeusd.socket_path(zeusd_socket)).lock(device.index, sm_mhz, memory_mhz)
    else:
        device.lock_clocks(sm_mhz, memory_mhz)


def set_power(device: GpuDevice, control: ClockControl, watts: int, zeusd_socket: str | None = None) -> None:
    """A power limit, the way `control` sets it (zeusd's `set_power_limit`, else NVML)."""
    if control is ClockControl.ZEUSD and not device.simulated:
        device.power_limits_w().check(watts, device.name)
        Zeusd(zeusd.socket_path(zeusd_socket)).set_power_limit(device.index, watts)
    else:
        device.set_power_limit(watts)


def reset_power(device: GpuDevice, control: ClockControl, zeusd_socket: str | None = None) -> None:
    """The board's default power limit back (zeusd has no reset: its default, read through NVML, is set)."""
    if control is ClockControl.ZEUSD and not device.simulated:
        Zeusd(zeusd.socket_path(zeusd_socket)).set_power_limit(device.index, device.power_limits_w().default_w)
    else:
        device.reset_power_limit()


def reset(device: GpuDevice, control: ClockControl, zeusd_socket: str | None = None) -> None:
    """Undo what `control` set."""
    if control is ClockControl.APPLICATION:
        device.reset_application_clocks()
    elif control is ClockControl.ZEUSD and not device.simulated:
        Zeusd(zeusd.socket_path(zeusd_socket)).reset(device.index)
    else:
        device.reset_clocks()


class GpuClaim:
    """One sweep per GPU: this process's claim on a GPU for a whole sweep, taken before the model loads (two runs
    started seconds apart used to both pass the busy check, which looks for a clock-lock record written only at
    the first lock). An exclusive ``flock`` on ``<records>/<uuid>.claim``: the kernel drops it when the process
    ends, however it ends, so it never needs repair. The file names the holder's pid for the refusal's words."""

    def __init__(self, device: GpuDevice, records: Path):
        self.device = device
        self.file = PidFile(Path(records) / f"{device.uuid}.claim", 0o600)

    def __enter__(self) -> "GpuClaim":
        held, holder = self.file.try_acquire()
        if not held:
            raise GpuBusyError(f"{self.device.name} ({self.device.uuid}) is being swept by pid {holder or '?'}: "
                               "one sweep per GPU; run this one when that one ends, or on another GPU")
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.release()


class AllRefused(GpuPermissionError):
    """Every control a sweep could set its clocks with was refused at its first clock."""


class ClockGuard:
    """Locks clocks on one device and guarantees the reset."""

    def __init__(self, device: GpuDevice, records: Path, production: Path | None = None,
                 control: ClockControl | list[ClockControl] = ClockControl.LOCK, zeusd_socket: str | None = None,
                 step_mhz: int | None = None):
        """``production``: where ``sweepd clock set`` records production locks; one for this GPU is restored
        after the reset. ``control``: locked clocks, application clocks, or locked clocks through zeusd (at
        ``zeusd_socket``); or a list of them in order (clock_control = "auto"): at the first clock each is tried
        in turn until one is not refused, and the sweep keeps it. ``step_mhz`` (control "slurm"): the clock
        `srun --gpu-freq` gave this step; slurmstepd sets and resets it, this guard checks it and ends the step
        (:class:`NextClock`) when the sweep needs another."""
        self.device = device
        self.step_mhz = step_mhz
        self.candidates = list(control) if isinstance(control, list) else [control]
        self.control = self.candidates[0]
        self.refused: list[tuple[ClockControl, str]] = []  # (control, why) of each refused at the first clock
        # auto: what was not even tried, and why; asked only for the line when every candidate is refused
        self.unavailable: Callable[[], list[tuple[ClockControl, str]]] = list
        self.zeusd_path = zeusd.socket_path(zeusd_socket)
        self.records = Path(records)
        self.production = production
        self.path = ClockLockRecord.path_for(self.records, device.uuid)
        self.locked: tuple[int, int | None] | None = None
        self.capped: int | None = None  # a power limit this guard set (W)
        self.paused: set[str] = set()  # the production settings this sweep lifted ("clock", "power"): put back

    @property
    def zeusd_socket(self) -> str | None:
        return self.zeusd_path if self.control is ClockControl.ZEUSD else None

    def __enter__(self) -> "ClockGuard":
        for rec in read_records(self.records):
            if rec.uuid == self.device.uuid and rec.host == socket.gethostname() \
                    and rec.pid != os.getpid() and pid_alive(rec.pid):
                raise GpuBusyError(f"{self.device.name} ({self.device.uuid}) is being swept by pid {rec.pid}")
        atexit.register(self.release)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        atexit.unregister(self.release)

    def lock(self, sm_mhz: int, memory_mhz: int | None) -> None:
        if self.control is ClockControl.SLURM:
            self._step_clock(sm_mhz, memory_mhz)
            return
        if self.locked is not None:
            self.locked = (sm_mhz, memory_mhz)
            set_clock(self.device, self.control, sm_mhz, memory_mhz, self.zeusd_socket)
            return
        for control in self.candidates[len(self.refused):]:  # the first clock: each candidate until one works
            self.control = control
            self._record(control)
            self.locked = (sm_mhz, memory_mhz)
            try:
                set_clock(self.device, control, sm_mhz, memory_mhz, self.zeusd_socket)
            except GpuPermissionError as e:
                try:  # refused outright: whatever went through is undone
                    reset(self.device, control, self.zeusd_socket)
                except GpuPermissionError:
                    pass  # refused both ways: nothing was set
                self.locked = None
                if self.capped is None:
                    self.path.unlink(missing_ok=True)
                if len(self.candidates) == 1:
                    raise
                self.refused.append((control, str(e).partition(": permission denied")[0] + ": permission denied"))
                continue
            if self.refused:
                log.warning("clock_control = auto: %s, after %s", control,
                            "; ".join(f"{c} refused ({why})" for c, why in self.refused))
            self._pause_production(clock=False)
            return
        why = "; ".join(f"{c}: {w}" for c, w in self.refused + self.unavailable())
        raise AllRefused(f"[gpu] clock_control = \"auto\": every clock control was refused at the first clock on "
                         f"{self.device.name}: {why}"
                         + "; an administrator can enable one (root for sweepd, `nvidia-smi -acp UNRESTRICTED`, zeusd, "
                           "or SLURM's gpu/nvml plugin for srun --gpu-freq); clock_control = \"observe\" measures "
                           "without setting clocks")

    def _record(self, control: ClockControl) -> None:
        """What this guard holds, on disk before it is set: the repair's guide if the process dies."""
        ClockLockRecord(uuid=self.device.uuid, control=control, zeusd_socket=self.zeusd_socket,
                        power_limit_w=self.capped, index=self.device.index, name=self.device.name,
                        backend=self.device.backend, pid=os.getpid(), host=socket.gethostname(),
                        since=time.strftime("%Y-%m-%dT%H:%M:%S%z")).write(self.path)

    def cap_power(self, watts: int) -> None:
        """Cap the board's power at ``watts`` through the control (NVML as root, or zeusd; "auto": the first of them
        not refused, at the first limit); reset to the default on every exit path, and by the next start's repair
        after a SIGKILL (the record names the cap before it is set)."""
        if self.capped is not None or self.locked is not None:  # the control is chosen
            self.capped = int(watts)
            self._record(self.control)
            set_power(self.device, self.control, watts, self.zeusd_socket)
            return
        for control in self.candidates[len(self.refused):]:
            self.control = control
            self.capped = int(watts)
            self._record(control)
            try:
                set_power(self.device, control, watts, self.zeusd_socket)
                self._pause_production(clock=True)
            except BaseException as e:
                self.capped = None
                self.path.unlink(missing_ok=True)
                if not isinstance(e, GpuPermissionError) or len(self.candidates) == 1:
                    raise
                self.refused.append((control, str(e).partition(": permission denied")[0] + ": permission denied"))
                continue
            return
        raise AllRefused(f"[gpu] clock_control = \"auto\": every control that sets a power limit was refused on "
                         f"{self.device.name}: " + "; ".join(f"{c}: {w}" for c, w in self.refused)
                         + "; an administrator can enable one (root for sweepd, or zeusd)")

    def _step_clock(self, sm_mhz: int, memory_mhz: int | None) -> None:
        """clock_control = "slurm": this step runs at the clock srun gave it; another clock ends the step."""
        if self.step_mhz is None:
            raise InputError('[gpu] clock_control = "slurm": clocks are set by srun --gpu-freq steps, which `sweepd '
                             'run` starts inside an allocation; this process is not one of them')
        if sm_mhz != self.step_mhz:
            raise NextClock(sm_mhz, memory_mhz)
        if self.locked is not None:
            return
        if self.device.simulated:  # the simulated GPU's clock lives in this process: it plays slurmstepd
            self.device.lock_clocks(sm_mhz, memory_mhz)
        else:
            seen = self.device.sm_clock_mhz()
            if abs(seen - sm_mhz) > SLURM_CLOCK_TOLERANCE_MHZ:
                raise SlurmSetsNoClock(
                    f'[gpu] clock_control = "slurm": this step asked srun for --gpu-freq={sm_mhz} and '
                    f"{self.device.name} runs at {seen} MHz: this cluster's SLURM does not set GPU clocks, so no "
                    "clock sweep can be measured here; an administrator can enable it (AutoDetect=nvml in "
                    "gres.conf, SLURM built with NVML), or ask for --gpu-freq support")
        self.locked = (sm_mhz, memory_mhz)

    def _production(self) -> ProductionLock | None:
        if self.production is None:
            return None
        return ProductionLock.read_or_none(ProductionLock.path_for(self.production, self.device.uuid))

    def _pause_production(self, clock: bool) -> None:
        """At the sweep's first setting: the other knob's production setting is lifted for the sweep (a power sweep
        leaves the clock to the firmware; a clock sweep measures without a cap); :meth:`release` puts it back.
        Where this control cannot lift it (application clocks cannot reset a cap), the sweep goes on under it, and
        says so."""
        rec = self._production()
        if rec is None:
            return
        knob, held = ("clock", rec.freq_mhz) if clock else ("power", rec.power_limit_w)
        if held is None:
            return
        try:
            if clock:
                reset(self.device, self.control, self.zeusd_socket)
            else:
                reset_power(self.device, self.control, self.zeusd_socket)
        except GpuError as e:
            log.warning("the production %s of %s (%s) stays for this sweep, measured under it: %s",
                        "clock lock" if clock else "power cap", self.device.name, rec.what, e)
            return
        self.paused.add(knob)

    def release(self) -> None:
        back = set(self.paused) | ({"power"} if self.capped is not None else set()) | \
            ({"clock"} if self.locked is not None and self.control is not ClockControl.SLURM else set())
        if self.capped is not None:
            reset_power(self.device, self.control, self.zeusd_socket)  # raises if it fails: the record stays
            self.capped = None
            if self.locked is None:
                self.path.unlink(missing_ok=True)
        if self.locked is not None:
            if self.control is ClockControl.SLURM:  # slurmstepd resets the clock when the step ends
                if self.device.simulated:
                    self.device.reset_clocks()
                self.locked = None
                return
            reset(self.device, self.control, self.zeusd_socket)  # raises if it fails: the record stays for repair
            self.locked = None
            self.path.unlink(missing_ok=True)
        rec = self._production() if back else None
        self.paused.clear()
        if rec is not None:  # what this sweep reset or lifted, put back
            restore_production(self.device, rec, self.control, self.zeusd_socket, back)
            log.info("restored the production setting of %s: %s", self.device.name, rec.what)
