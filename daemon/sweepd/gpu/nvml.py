"""A real NVIDIA GPU through NVML (``pip install nvidia-ml-py``, module ``pynvml``).

Each NVML call used by sweepd has one small method here, and each NVML error code one exception
of :mod:`sweepd.gpu.base`, so nothing above this module touches pynvml. Tests run it against a
fake ``pynvml`` module (tests/fakes/pynvml); on a GPU machine it runs against the driver.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from sweepd.records.manifest import GpuInfo
from sweepd.gpu.base import (
    PowerLimits,
    GpuDevice,
    GpuError,
    GpuNotFound,
    GpuNotSupported,
    GpuPermissionError,
    GpuUnavailable,
)
from sweepd.vocab import PowerReading

POWER_PERMISSION_HINT = (
    "setting a power limit needs root or CAP_SYS_ADMIN; without them an administrator's zeusd "
    "([gpu] clock_control = \"zeusd\") sets it; application clocks and srun --gpu-freq set only clocks"
)
PERMISSION_HINT = (
    "locking GPU clocks needs root or CAP_SYS_ADMIN; without them, [gpu] clock_control = \"application\" sets "
    "application clocks where an administrator allowed everyone (`nvidia-smi -acp UNRESTRICTED`; `sweepd gpus` "
    "says whether), and clock_control = \"observe\" measures at whatever clock the GPU runs without setting it"
)


def _pynvml():
    try:
        import pynvml
    except ImportError as e:  # pragma: no cover - a dependency of sweepd
        raise GpuUnavailable("the nvidia-ml-py package (module pynvml) is not installed") from e
    return pynvml


@contextlib.contextmanager
def nvml_errors(what: str, hint: str | None = None) -> Iterator[None]:
    """Translate pynvml's errors (by NVML return code) into sweepd's (``hint``: what a permission error says to do,
    the clock setters' by default)."""
    nv = _pynvml()
    try:
        yield
    except nv.NVMLError as e:
        code = getattr(e, "value", None)
        text = f"{what}: {e}"
        if code == nv.NVML_ERROR_NO_PERMISSION:
            raise GpuPermissionError(f"{what}: permission denied: {hint or PERMISSION_HINT}") from None
        if code == nv.NVML_ERROR_NOT_SUPPORTED:
            raise GpuNotSupported(f"{what}: not supported on this GPU or driver") from None
        if code in (nv.NVML_ERROR_LIBRARY_NOT_FOUND, nv.NVML_ERROR_DRIVER_NOT_LOADED):
            raise GpuUnavailable(f"{what}: no NVIDIA driver ({e})") from None
        if code in (nv.NVML_ERROR_NOT_FOUND, nv.NVML_ERROR_INVALID_ARGUMENT):
            raise GpuNotFound(text) from None
        raise GpuError(text) from None


# nvmlFieldValue_t.valueType -> the member of its value union that holds it (nvmlValueType_t)
FIELD_VALUE = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def init() -> None:
    with nvml_errors("nvmlInit"):
        _pynvml().nvmlInit()


def shutdown() -> None:
    with contextlib.suppress(Exception):
        _pynvml().nvmlShutdown()


def device_count() -> int:
    with nvml_errors("nvmlDeviceGetCount"):
        return _pynvml().nvmlDeviceGetCount()


class NvmlGpu(GpuDevice):
    backend = "nvml"
    simulated = False

    def __init__(self, index: int | None = None, uuid: str | None = None):
        nv = _pynvml()
        init()
        self._nv = nv
        try:
            if uuid is not None:
                with nvml_errors(f"GPU {uuid}"):
                    self._h = nv.nvmlDeviceGetHandleByUUID(uuid)
            else:
                count = device_count()
                index = 0 if index is None else index
                if index >= count:
                    raise GpuNotFound(f"GPU index {index} does not exist; this machine has {count} GPU(s)")
                with nvml_errors(f"GPU {index}"):
                    self._h = nv.nvmlDeviceGetHandleByIndex(index)
            with nvml_errors("reading the GPU's identity"):
                self.name = _text(nv.nvmlDeviceGetName(self._h))
                self.uuid = _text(nv.nvmlDeviceGetUUID(self._h))
                self.index = nv.nvmlDeviceGetIndex(self._h) if hasattr(nv, "nvmlDeviceGetIndex") else (index or 0)
        except BaseException:
            shutdown()
            raise
        self._memory_locked = False
        self._instant: bool | None = None  # whether the instant-power field answers; None until asked

    def memory_clocks(self) -> list[int]:
        with nvml_errors("nvmlDeviceGetSupportedMemoryClocks"):
            return sorted(self._nv.nvmlDeviceGetSupportedMemoryClocks(self._h), reverse=True)

    def graphics_clocks(self, memory_mhz: int) -> list[int]:
        with nvml_errors(f"nvmlDeviceGetSupportedGraphicsClocks at memory {memory_mhz} MHz"):
            return sorted(set(self._nv.nvmlDeviceGetSupportedGraphicsClocks(self._h, memory_mhz)), reverse=True)

    def lock_clocks(self, sm_mhz: int, memory_mhz: int | None = None) -> None:
        with nvml_errors(f"locking the core clock at {sm_mhz} MHz"):
            self._nv.nvmlDeviceSetGpuLockedClocks(self._h, sm_mhz, sm_mhz)
        if memory_mhz is not None:
            try:
                with nvml_errors(f"locking the memory clock at {memory_mhz} MHz"):
                    self._nv.nvmlDeviceSetMemoryLockedClocks(self._h, memory_mhz, memory_mhz)
                self._memory_locked = True
            except GpuNotSupported:
                pass  # before Ampere: the memory clock stays where the driver puts it

    def reset_clocks(self) -> None:
        with nvml_errors("resetting the locked core clock"):
            self._nv.nvmlDeviceResetGpuLockedClocks(self._h)
        with contextlib.suppress(GpuNotSupported):
            with nvml_errors("resetting the locked memory clock"):
                self._nv.nvmlDeviceResetMemoryLockedClocks(self._h)
        self._memory_locked = False

    def set_application_clocks(self, sm_mhz: int, memory_mhz: int) -> None:
        try:
            with nvml_errors(f"setting the application clocks to {sm_mhz} MHz (memory {memory_mhz} MHz)"):
                self._nv.nvmlDeviceSetApplicationsClocks(self._h, memory_mhz, sm_mhz)
        except GpuPermissionError:
            raise GpuPermissionError(
                f"setting application clocks on {self.name}: permission denied: only root may set them on this "
                "GPU; an administrator can allow everyone with `nvidia-smi -acp UNRESTRICTED` (NVML's API "
                "restriction), or use [gpu] clock_control = \"lock\" as root") from None

    def reset_application_clocks(self) -> None:
        with nvml_errors("resetting the application clocks"):
            self._nv.nvmlDeviceResetApplicationsClocks(self._h)

    def application_clocks_restricted(self) -> bool | None:
        nv = self._nv
        try:
            with nvml_errors("nvmlDeviceGetAPIRestriction"):
                state = nv.nvmlDeviceGetAPIRestriction(self._h, nv.NVML_RESTRICTED_API_SET_APPLICATION_CLOCKS)
        except GpuError:
            return None
        return state == nv.NVML_FEATURE_ENABLED

    def mig_enabled(self) -> bool:
        nv = self._nv
        try:
            with nvml_errors("nvmlDeviceGetMigMode"):
                current, _pending = nv.nvmlDeviceGetMigMode(self._h)
        except GpuNotSupported:  # a GPU without MIG (before Ampere, or not a data-centre part)
            return False
        return current == nv.NVML_DEVICE_MIG_ENABLE

    def power_limits_w(self) -> PowerLimits | None:
        nv, h = self._nv, self._h
        try:
            with nvml_errors("reading the power limit"):
                lo, hi = nv.nvmlDeviceGetPowerManagementLimitConstraints(h)
                default = nv.nvmlDeviceGetPowerManagementDefaultLimit(h)
                current = nv.nvmlDeviceGetPowerManagementLimit(h)
        except GpuError:
            return None
        return PowerLimits(round(current / 1000), round(default / 1000), round(lo / 1000), round(hi / 1000))

    def set_power_limit(self, watts: int) -> None:
        limits = self.power_limits_w()
        if limits is not None:
            limits.check(watts, self.name)
        with nvml_errors(f"setting the power limit to {watts} W", POWER_PERMISSION_HINT):
            self._nv.nvmlDeviceSetPowerManagementLimit(self._h, int(watts) * 1000)

    def reset_power_limit(self) -> None:
        with nvml_errors("resetting the power limit", POWER_PERMISSION_HINT):
            default = self._nv.nvmlDeviceGetPowerManagementDefaultLimit(self._h)
            self._nv.nvmlDeviceSetPowerManagementLimit(self._h, default)

    def energy_mj(self) -> int:
        with nvml_errors("nvmlDeviceGetTotalEnergyConsumption"):
            return int(self._nv.nvmlDeviceGetTotalEnergyConsumption(self._h))

    def power_w(self) -> float:
        """Instant power where the driver has the field (NVML_FI_DEV_POWER_INSTANT; Zeus reads the same), else
        nvmlDeviceGetPowerUsage: averaged over 1 s on Ampere and newer except the A100, so on an H100 or H200 it lags
        a 2 s window by up to a second and misses up to a fifth of a bursty window's energy."""
        watts = None if self._instant is False else self._instant_w()
        if self._instant is None:  # decided once per GPU, as sweep.json records it: a later failed read of the
            self._instant = watts is not None  # field falls back for that sample alone
        if watts is not None:
            return watts
        with nvml_errors("nvmlDeviceGetPowerUsage"):
            return self._nv.nvmlDeviceGetPowerUsage(self._h) / 1000.0

    def _instant_w(self) -> float | None:
        nv = self._nv
        field = getattr(nv, "NVML_FI_DEV_POWER_INSTANT", None)
        if field is None or not hasattr(nv, "nvmlDeviceGetFieldValues"):
            return None  # an nvidia-ml-py older than the field
        try:
            with nvml_errors("nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT)"):
                value = nv.nvmlDeviceGetFieldValues(self._h, [field])[0]
        except GpuError:
            return None
        if value.nvmlReturn != nv.NVML_SUCCESS:
            return None  # a driver that does not know the field answers per value
        return getattr(value.value, FIELD_VALUE.get(value.valueType, "uiVal")) / 1000.0

    def power_reading(self) -> PowerReading:
        if self._instant is None:
            with contextlib.suppress(GpuError):
                self.power_w()
        return PowerReading.INSTANT if self._instant else PowerReading.AVERAGE_1S

    def temperature_c(self) -> float:
        nv = self._nv
        with nvml_errors("reading the temperature"):
            if hasattr(nv, "nvmlDeviceGetTemperatureV"):
                return float(nv.nvmlDeviceGetTemperatureV(self._h, nv.NVML_TEMPERATURE_GPU))
            return float(nv.nvmlDeviceGetTemperature(self._h, nv.NVML_TEMPERATURE_GPU))

    def utilization_pct(self) -> float | None:
        with nvml_errors("nvmlDeviceGetUtilizationRates"):
            return float(self._nv.nvmlDeviceGetUtilizationRates(self._h).gpu)

    def total_memory_gib(self) -> float | None:
        try:
            with nvml_errors("nvmlDeviceGetMemoryInfo"):
                return self._nv.nvmlDeviceGetMemoryInfo(self._h).total / 2**30
        except GpuError:
            return None

    def sm_clock_mhz(self) -> int:
        with nvml_errors("nvmlDeviceGetClockInfo(SM)"):
            return int(self._nv.nvmlDeviceGetClockInfo(self._h, self._nv.NVML_CLOCK_SM))

    def clock_event_reasons(self) -> int:
        nv = self._nv
        fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or nv.nvmlDeviceGetCurrentClocksThrottleReasons
        with nvml_errors("reading clock event reasons"):
            return int(fn(self._h))

    def info(self) -> GpuInfo:
        out = super().info()
        with contextlib.suppress(Exception):
            out.driver = _text(self._nv.nvmlSystemGetDriverVersion())
        with contextlib.suppress(Exception):
            out.nvml = _text(self._nv.nvmlSystemGetNVMLVersion())
        return out

    def close(self) -> None:
        shutdown()
