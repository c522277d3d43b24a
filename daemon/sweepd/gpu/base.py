"""The one GPU interface everything above the device layer uses, and its errors.

Two backends implement it: :mod:`sweepd.gpu.nvml` (a real NVIDIA GPU through ``pynvml``) and
:mod:`sweepd.gpu.sim` (a simulated H100/A100/V100). The sweep engine cannot tell them apart,
except that ``simulated`` is True for the second and every output says so.
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ContextManager

from sweepd.errors import GpuError, InputError, SweepdError
from sweepd.records.manifest import GpuInfo
from sweepd.vocab import PowerReading

# NVML's clock event ("throttle") reason bits, named as in nvml.h (nvmlClocksEventReason*).
CLOCK_EVENT_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
}
COUNTER_WAIT_S = 0.25  # the longest wait for the energy counter's next step (they come every 20-100 ms)
COUNTER_POLL_S = 0.001

# Reasons that say nothing about a lock being missed: idle between kernels, and the lock itself.
BENIGN_REASONS = 0x1 | 0x2


def decode_reasons(mask: int) -> str:
    names = [name for bit, name in CLOCK_EVENT_REASONS.items() if mask & bit]
    unknown = mask & ~sum(CLOCK_EVENT_REASONS)
    if unknown:
        names.append(f"0x{unknown:x}")
    return "|".join(names)


@dataclass(frozen=True)
class Sample:
    """One reading of the ~10 Hz power sampler (:mod:`sweepd.gpu.sampler`), or of the simulated GPU's own trace."""
    t_ns: int  # the device's now_ns(), the clock trial windows are measured with
    power_w: float
    temp_c: float
    sm_mhz: int
    reasons: int
    util_pct: float | None = None  # GPU utilisation (% of the sample period the GPU was busy)


class GpuUnavailable(GpuError):
    """No driver, no NVML library, or no GPU at all."""


class GpuNotFound(GpuError):
    """The requested index or UUID does not exist."""


class GpuPermissionError(GpuError):
    """Setting clocks needs root or CAP_SYS_ADMIN (the message says so: no "GPU:" prefix)."""
    prefix = ""


class OutOfMemory(GpuError):
    """A batch did not fit in the GPU's memory (what CUDA reports as out of memory)."""


def is_out_of_memory(e: BaseException) -> bool:
    """A GPU memory failure: the simulated GPU's, torch's OutOfMemoryError, or a CUDA error saying so."""
    return isinstance(e, OutOfMemory) or type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower()


def is_window_failure(e: BaseException) -> bool:
    """What may fail one measured window without being a bug in sweepd: an error sweepd expects (the GPU or its
    driver said no), the system saying no (OSError), the GPU's memory, or a CUDA error (torch's
    ``AcceleratorError``, or a ``RuntimeError`` naming CUDA). A window that fails otherwise is a bug: it fails the
    sweep with its traceback rather than become a failed row."""
    if isinstance(e, (SweepdError, OSError)) or is_out_of_memory(e):
        return True
    return type(e).__name__ == "AcceleratorError" or (isinstance(e, RuntimeError) and "CUDA" in str(e))


class PowerLimitOutOfRange(InputError):
    """A power limit outside the board's range (nvmlDeviceGetPowerManagementLimitConstraints): the input's fault."""


@dataclass(frozen=True)
class PowerLimits:
    """A board's power limit in watts: the one in force, the default, and the range it may be set in."""
    current_w: int
    default_w: int
    min_w: int
    max_w: int

    def check(self, watts: int, name: str) -> None:
        """Raises PowerLimitOutOfRange naming the range when ``watts`` is outside it."""
        if not self.min_w <= watts <= self.max_w:
            raise PowerLimitOutOfRange(f"a power limit of {watts} W on {name}: the board takes {self.min_w} to "
                                       f"{self.max_w} W (default {self.default_w} W)")


class GpuNotSupported(GpuError):
    """This GPU or driver does not support the call (e.g. memory locks before Ampere, energy before Volta)."""


class GpuDevice(ABC):
    backend: str = ""
    simulated: bool = False
    index: int = 0
    name: str = ""
    uuid: str = ""

    @abstractmethod
    def memory_clocks(self) -> list[int]:
        """Supported memory clocks in MHz, highest first."""

    @abstractmethod
    def graphics_clocks(self, memory_mhz: int) -> list[int]:
        """Supported core (graphics/SM) clocks in MHz at that memory clock, highest first."""

    @abstractmethod
    def lock_clocks(self, sm_mhz: int, memory_mhz: int | None = None) -> None:
        """Lock the core clock (and the memory clock where the GPU supports it)."""

    @abstractmethod
    def reset_clocks(self) -> None:
        """Undo every lock; safe to call when nothing is locked."""

    def set_application_clocks(self, sm_mhz: int, memory_mhz: int) -> None:
        """Set the application clocks (nvmlDeviceSetApplicationsClocks): what the GPU runs at under load, where
        no locked clock overrides them."""
        raise GpuNotSupported(f"{self.name}: application clocks are not supported by the {self.backend} backend")

    def reset_application_clocks(self) -> None:
        """Back to the default application clocks; safe to call when none were set."""

    def application_clocks_restricted(self) -> bool | None:
        """Whether only root may set application clocks (nvmlDeviceGetAPIRestriction), or None if it cannot tell."""
        return None

    def mig_enabled(self) -> bool:
        """Whether the GPU is in MIG mode (nvmlDeviceGetMigMode): NVML cannot meter a MIG slice's power or energy."""
        return False

    def power_limits_w(self) -> PowerLimits | None:
        """The board's power limit now, its default and the range it may be set in (None: cannot be read)."""
        return None

    def set_power_limit(self, watts: int) -> None:
        """Cap the board's power (nvmlDeviceSetPowerManagementLimit; root, like locking clocks)."""
        raise GpuNotSupported(f"{self.name}: power limits are not supported by the {self.backend} backend")

    def reset_power_limit(self) -> None:
        """Back to the default limit; safe to call when none was set."""

    @abstractmethod
    def energy_mj(self) -> int:
        """The hardware energy counter in millijoules (monotonic, moves in steps)."""

    @abstractmethod
    def power_w(self) -> float: ...

    @abstractmethod
    def temperature_c(self) -> float: ...

    @abstractmethod
    def sm_clock_mhz(self) -> int:
        """The SM clock the GPU runs at now (a lock is a request, not a guarantee)."""

    @abstractmethod
    def clock_event_reasons(self) -> int:
        """Bit mask of why the clock is held below the maximum now (see CLOCK_EVENT_REASONS)."""

    def busy(self, images: int = 1) -> ContextManager[None]:
        """Wrap the work (``images`` images) whose time and energy are measured. Real GPUs need nothing here."""
        return contextlib.nullcontext()

    def utilization_pct(self) -> float | None:
        """The share of the last sample period the GPU was busy (nvmlDeviceGetUtilizationRates), or None."""
        return None

    def total_memory_gib(self) -> float | None:
        """The board's memory (nvmlDeviceGetMemoryInfo), or None where it cannot be read."""
        return None

    # A device that writes its own trace (the simulated GPU, on its own clock) instead of being sampled.
    synthesizes_samples = False

    def pop_samples(self) -> list[Sample]:
        """The samples such a device wrote since the last call."""
        return []

    def now_ns(self) -> int:
        """The clock that measured windows are timed with: ``perf_counter_ns`` on a real GPU, the
        simulated GPU's own (virtual) clock on the sim."""
        return time.perf_counter_ns()

    def wait(self, seconds: float) -> None:
        """Let ``seconds`` pass on that clock (settle, cool down)."""
        if seconds > 0:
            time.sleep(seconds)

    def energy_update_mj(self, limit_s: float = COUNTER_WAIT_S, poll_s: float = COUNTER_POLL_S) -> int:
        """The energy counter's next published value: it moves in steps (every 20-100 ms), so a window read at
        an arbitrary moment is off by up to one step at each end; one that starts on a fresh step and ends on
        the first step after its last image is off only by the idle energy of that short wait. Gives the
        current value after ``limit_s`` without a change (an idle GPU whose counter did not move)."""
        e0, t0 = self.energy_mj(), self.now_ns()
        while self.now_ns() - t0 < limit_s * 1e9:
            self.wait(poll_s)
            e = self.energy_mj()
            if e != e0:
                return e
        return e0

    def info(self) -> GpuInfo:
        """What identifies this GPU in a sweep's manifest."""
        return GpuInfo(backend=self.backend, simulated=self.simulated, index=self.index, name=self.name,
                       uuid=self.uuid, power_reading=self.power_reading())

    def power_reading(self) -> PowerReading:
        """What :meth:`power_w` reads: "instant" power, or a "1 s average" that lags the work by up to a second."""
        return PowerReading.INSTANT

    def close(self) -> None:
        pass

    def __enter__(self) -> "GpuDevice":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

