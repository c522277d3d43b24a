"""A fake ``pynvml`` (nvidia-ml-py) for machines without a GPU.

Only sweepd's NVML backend is under test; this module stands in for the driver. It implements
the calls sweepd makes with NVML's names, return codes and error classes, serves real clock tables
(parsed from the nvidia-smi dumps that ship with sweepd), and records every setter call.

Configured through the environment so that subprocesses (``sweepd run``) use it too when
``tests/fakes`` is first on PYTHONPATH:

- FAKE_NVML_GPUS: comma-separated models, default "A100" (A100, H100, V100)
- FAKE_NVML_LOG: file to append one JSON line per setter call (for subprocess tests)
- FAKE_NVML_DENY_SET=1: setters raise NVMLError_NoPermission (a non-root user)
- FAKE_NVML_ABSENT=1: nvmlInit raises NVMLError_LibraryNotFound (no driver)
- FAKE_NVML_ENERGY_FAIL_AT=N: the N-th energy read (1-based) raises NVMLError_Unknown (each window reads 4
  times: 5 is the start of the second window)
- FAKE_NVML_CAP_MHZ=F: the observed SM clock never exceeds F and reports sw_power_cap
- FAKE_NVML_POWER=average: the instant-power field answers NOT_SUPPORTED in its value (an older driver), so
  only nvmlDeviceGetPowerUsage's 1 s average is left
- FAKE_NVML_UTIL_PCT=P: nvmlDeviceGetUtilizationRates reports P % GPU utilisation (default 97; "unsupported": NOT_SUPPORTED)
- FAKE_NVML_API_RESTRICTED=0: anyone may set application clocks (an admin's `nvidia-smi -acp UNRESTRICTED`); by
  default they are root's (with FAKE_NVML_DENY_SET=1, setting them is refused)
- FAKE_NVML_MIG=1: the GPUs are in MIG mode (nvmlDeviceGetMigMode; a V100 has no MIG: NOT_SUPPORTED)
- FAKE_NVML_STATE=FILE: the clocks (and the power limit) set on each GPU live in this JSON file, which every process
  reads: what a privileged party (zeusd, slurmstepd) sets is what a sweep's process observes, as on one real machine
- power limits (milliwatts, as NVML): each board's default and range are the real board's (A100 PCIe 250 W,
  150-250; H100 NVL 400 W, 200-400; V100 PCIe 250 W, 100-250); under a limit the GPU runs at the highest clock whose
  power fits it (the fake's power grows linearly with the clock), as firmware would on average
"""

from __future__ import annotations

import json
import os
import threading
import time

NVML_SUCCESS = 0
NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_UNKNOWN = 999

NVML_CLOCK_SM = 1
NVML_TEMPERATURE_GPU = 0


class NVMLError(Exception):
    _valClassMapping: dict[int, type] = {}

    def __new__(cls, value):
        if cls is NVMLError:
            cls = NVMLError._valClassMapping.get(value, cls)
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def __init__(self, value):
        self.value = value

    def __str__(self):
        return {1: "Uninitialized", 2: "Invalid Argument", 3: "Not Supported", 4: "Insufficient Permissions",
                6: "Not Found", 9: "Driver Not Loaded", 12: "NVML Shared Library Not Found"}.get(self.value, "Unknown Error")


def _subclass(name, value):
    def new(cls, *args):
        obj = Exception.__new__(cls)
        obj.value = value
        return obj

    def init(self, *args):
        self.value = value

    cls = type(name, (NVMLError,), {"__new__": new, "__init__": init})
    NVMLError._valClassMapping[value] = cls
    globals()[name] = cls


for _name, _val in [("NVMLError_Uninitialized", 1), ("NVMLError_InvalidArgument", 2),
                    ("NVMLError_NotSupported", 3), ("NVMLError_NoPermission", 4), ("NVMLError_NotFound", 6),
                    ("NVMLError_DriverNotLoaded", 9), ("NVMLError_LibraryNotFound", 12), ("NVMLError_Unknown", 999)]:
    _subclass(_name, _val)


def _dump_tables():
    from sweepd.gpu import clockdump
    from sweepd.gpu.simmodel import BOARDS

    return {m: (b.name.replace(" (simulated)", ""), clockdump.load_packaged(b.dump)) for m, b in BOARDS.items()}


_UUID_TAIL = {"A100": "a100", "H100": "b100", "V100": "c100"}


CLOCK_FIELDS = ("locked", "mem_locked", "app", "power_limit")  # power_limit: (milliwatts,)
POWER_LIMITS_W = {"A100": (250, 150, 250), "H100": (400, 200, 400), "V100": (250, 100, 250)}  # default, min, max


class _Device:
    def __init__(self, index, model):
        name, table = _dump_tables()[model]
        self.index, self.model, self.name, self.table = index, model, name, table
        self.uuid = f"GPU-0000000{index}-0000-4000-8000-00000000{_UUID_TAIL[model]}"
        self._clocks = {"locked": None, "mem_locked": None, "app": None, "power_limit": None}  # app: (memory, graphics)
        self.t0 = time.monotonic()

    def __getattr__(self, name):
        if name in CLOCK_FIELDS:
            return _shared(self)[name]
        raise AttributeError(name)

    def __setattr__(self, name, value):
        if name in CLOCK_FIELDS:
            clocks = _shared(self)
            clocks[name] = tuple(value) if value is not None else None
            _store(self, clocks)
        else:
            object.__setattr__(self, name, value)


def _shared(dev):
    """This GPU's clocks: its own, or the state file's (FAKE_NVML_STATE) as any process on the machine sees them."""
    path = os.environ.get("FAKE_NVML_STATE")
    if not path:
        return dev._clocks
    try:
        with open(path) as fh:
            mine = json.load(fh).get(dev.uuid, {})
    except (OSError, ValueError):
        mine = {}
    return {k: tuple(mine[k]) if mine.get(k) is not None else None for k in CLOCK_FIELDS}


def _store(dev, clocks):
    path = os.environ.get("FAKE_NVML_STATE")
    if not path:
        dev._clocks = clocks
        return
    import fcntl

    # read-modify-write under a lock every process takes: two SLURM steps setting two GPUs at once (their
    # TaskProlog) must not lose one another's clock
    with _lock, open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with open(path) as fh:
                state = json.load(fh)
        except (OSError, ValueError):
            state = {}
        state[dev.uuid] = {k: list(v) if v is not None else None for k, v in clocks.items()}
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w") as fh:
            json.dump(state, fh)
        os.replace(tmp, path)


_lock = threading.Lock()
_state = {"init": 0, "devices": None, "energy_reads": 0}
calls: list[tuple] = []  # in-process record of setter calls: (name, uuid, args...)


def _log(name, dev, *args):
    calls.append((name, dev.uuid, *args))
    path = os.environ.get("FAKE_NVML_LOG")
    if path:
        with open(path, "a") as fh:
            fh.write(json.dumps({"call": name, "uuid": dev.uuid, "args": list(args), "pid": os.getpid()}) + "\n")


def reset_fake():
    """Tests call this between cases."""
    with _lock:
        _state.update(init=0, devices=None, energy_reads=0)
        calls.clear()


def _devices():
    if _state["devices"] is None:
        models = os.environ.get("FAKE_NVML_GPUS", "A100").split(",")
        _state["devices"] = [_Device(i, m.strip()) for i, m in enumerate(models) if m.strip()]
    return _state["devices"]


def _check_init():
    if _state["init"] <= 0:
        raise NVMLError(NVML_ERROR_UNINITIALIZED)


def nvmlInit():
    if os.environ.get("FAKE_NVML_ABSENT") == "1":
        raise NVMLError(NVML_ERROR_LIBRARY_NOT_FOUND)
    _state["init"] += 1


def nvmlShutdown():
    _check_init()
    _state["init"] -= 1


def nvmlSystemGetDriverVersion():
    return "999.99-fake"


def nvmlSystemGetNVMLVersion():
    return "13.999-fake"


def nvmlDeviceGetCount():
    _check_init()
    return len(_devices())


def nvmlDeviceGetHandleByIndex(i):
    _check_init()
    devs = _devices()
    if not 0 <= i < len(devs):
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return devs[i]


def nvmlDeviceGetHandleByUUID(uuid):
    _check_init()
    for d in _devices():
        if d.uuid == uuid:
            return d
    raise NVMLError(NVML_ERROR_NOT_FOUND)


def nvmlDeviceGetName(h):
    return h.name


def nvmlDeviceGetUUID(h):
    return h.uuid


def nvmlDeviceGetIndex(h):
    return h.index


def nvmlDeviceGetSupportedMemoryClocks(h):
    return list(h.table)


def nvmlDeviceGetSupportedGraphicsClocks(h, mem):
    if mem is None:
        raise TypeError("memory clock is required")
    if mem not in h.table:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return list(h.table[mem])


def _deny():
    if os.environ.get("FAKE_NVML_DENY_SET") == "1":
        raise NVMLError(NVML_ERROR_NO_PERMISSION)


def nvmlDeviceSetGpuLockedClocks(h, lo, hi):
    _deny()
    supported = {f for fs in h.table.values() for f in fs}
    if lo not in supported or hi not in supported:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    h.locked = (lo, hi)
    _log("nvmlDeviceSetGpuLockedClocks", h, lo, hi)


def nvmlDeviceResetGpuLockedClocks(h):
    _deny()
    h.locked = None
    _log("nvmlDeviceResetGpuLockedClocks", h)


def nvmlDeviceSetMemoryLockedClocks(h, lo, hi):
    _deny()
    if h.model == "V100":
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    h.mem_locked = (lo, hi)
    _log("nvmlDeviceSetMemoryLockedClocks", h, lo, hi)


def nvmlDeviceResetMemoryLockedClocks(h):
    _deny()
    if h.model == "V100":
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    h.mem_locked = None
    _log("nvmlDeviceResetMemoryLockedClocks", h)


NVML_RESTRICTED_API_SET_APPLICATION_CLOCKS = 0
NVML_FEATURE_DISABLED, NVML_FEATURE_ENABLED = 0, 1
NVML_DEVICE_MIG_DISABLE, NVML_DEVICE_MIG_ENABLE = 0, 1


def _restricted():
    return os.environ.get("FAKE_NVML_API_RESTRICTED", "1") != "0"


def nvmlDeviceGetAPIRestriction(h, api):
    if api != NVML_RESTRICTED_API_SET_APPLICATION_CLOCKS:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    return NVML_FEATURE_ENABLED if _restricted() else NVML_FEATURE_DISABLED


def nvmlDeviceSetApplicationsClocks(h, mem, graphics):
    if _restricted():
        _deny()
    if mem not in h.table or graphics not in h.table[mem]:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    h.app = (mem, graphics)
    _log("nvmlDeviceSetApplicationsClocks", h, mem, graphics)


def nvmlDeviceResetApplicationsClocks(h):
    if _restricted():
        _deny()
    h.app = None
    _log("nvmlDeviceResetApplicationsClocks", h)


def nvmlDeviceGetMigMode(h):
    if h.model == "V100":
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    mode = NVML_DEVICE_MIG_ENABLE if os.environ.get("FAKE_NVML_MIG") == "1" else NVML_DEVICE_MIG_DISABLE
    return [mode, mode]


def _running_mhz(h):
    """A locked clock, else the application clock, else the highest; under a power limit, at most the highest clock
    whose power fits it."""
    locked, app, limit = h.locked, h.app, h.power_limit  # read once: another thread (the sampler's) may reset them
    if locked:
        f = locked[0]
    elif app:
        f = app[1]
    else:
        f = max(next(iter(h.table.values())))
    if limit:
        fits = [c for c in next(iter(h.table.values())) if c <= f and _watts_at(h, c) * 1000 <= limit[0]]
        f = max(fits) if fits else min(next(iter(h.table.values())))
    return f


def _watts_at(h, f):
    return 60.0 + 160.0 * f / max(next(iter(h.table.values())))


def _watts(h):
    return _watts_at(h, _running_mhz(h))


def nvmlDeviceGetPowerManagementDefaultLimit(h):
    return POWER_LIMITS_W[h.model][0] * 1000


def nvmlDeviceGetPowerManagementLimitConstraints(h):
    _, lo, hi = POWER_LIMITS_W[h.model]
    return [lo * 1000, hi * 1000]


def nvmlDeviceGetPowerManagementLimit(h):
    return h.power_limit[0] if h.power_limit else nvmlDeviceGetPowerManagementDefaultLimit(h)


def nvmlDeviceGetEnforcedPowerLimit(h):
    return nvmlDeviceGetPowerManagementLimit(h)


def nvmlDeviceSetPowerManagementLimit(h, milliwatts):
    _deny()
    lo, hi = nvmlDeviceGetPowerManagementLimitConstraints(h)
    if not lo <= milliwatts <= hi:
        raise NVMLError(NVML_ERROR_INVALID_ARGUMENT)
    h.power_limit = None if milliwatts == nvmlDeviceGetPowerManagementDefaultLimit(h) else (int(milliwatts),)
    _log("nvmlDeviceSetPowerManagementLimit", h, int(milliwatts))


def nvmlDeviceGetTotalEnergyConsumption(h):
    with _lock:
        _state["energy_reads"] += 1
        n = _state["energy_reads"]
    if os.environ.get("FAKE_NVML_ENERGY_FAIL_AT") == str(n):
        raise NVMLError(NVML_ERROR_UNKNOWN)
    elapsed = time.monotonic() - h.t0
    # the counter moves in steps; 1 ms here (an H100's; older boards: 20-100 ms), so the engine's wait for the
    # next step (a poll 1 ms later) takes exactly two reads: each window reads the counter 4 times
    elapsed -= elapsed % 0.001
    return int(_watts(h) * elapsed * 1000)


def nvmlDeviceGetPowerUsage(h):
    return int(_watts(h) * 1000)


NVML_FI_DEV_POWER_INSTANT = 186
NVML_VALUE_TYPE_UNSIGNED_INT = 1


class c_nvmlValue_t:
    def __init__(self, ui):
        self.dVal, self.uiVal, self.ulVal, self.ullVal, self.sllVal, self.siVal, self.usVal = float(ui), ui, ui, ui, ui, ui, ui


class c_nvmlFieldValue_t:
    def __init__(self, field_id, ret, value):
        self.fieldId, self.scopeId, self.timestamp, self.latencyUsec = field_id, 0, int(time.time() * 1e6), 0
        self.valueType, self.nvmlReturn, self.value = NVML_VALUE_TYPE_UNSIGNED_INT, ret, c_nvmlValue_t(value)


def nvmlDeviceGetFieldValues(h, field_ids):
    """NVML answers per value: an unknown or unsupported field has its own nvmlReturn, the call itself succeeds."""
    out = []
    for f in field_ids:
        ok = f == NVML_FI_DEV_POWER_INSTANT and os.environ.get("FAKE_NVML_POWER") != "average"
        out.append(c_nvmlFieldValue_t(f, NVML_SUCCESS if ok else NVML_ERROR_NOT_SUPPORTED, int(_watts(h) * 1000) if ok else 0))
    return out


def nvmlDeviceGetTemperatureV(h, sensor):
    return 45


class c_nvmlMemory_t:
    def __init__(self, total, free, used):
        self.total, self.free, self.used = total, free, used


def nvmlDeviceGetMemoryInfo(h):
    from sweepd.gpu.simmodel import BOARDS

    total = int(BOARDS[h.model].memory_gib * 2**30)
    return c_nvmlMemory_t(total, total - 2**30, 2**30)


class c_nvmlUtilization_t:
    def __init__(self, gpu, memory):
        self.gpu, self.memory = gpu, memory


def nvmlDeviceGetUtilizationRates(h):
    pct = os.environ.get("FAKE_NVML_UTIL_PCT", "97")
    if pct == "unsupported":  # e.g. some vGPU and MIG configurations
        raise NVMLError(NVML_ERROR_NOT_SUPPORTED)
    return c_nvmlUtilization_t(int(pct), 40)


def _cap():
    cap = os.environ.get("FAKE_NVML_CAP_MHZ")
    return int(cap) if cap else None


def nvmlDeviceGetClockInfo(h, kind):
    f = _running_mhz(h)
    cap = _cap()
    return min(f, cap) if cap else f


def nvmlDeviceGetCurrentClocksEventReasons(h):
    cap = _cap()
    f = h.locked[0] if h.locked else (h.app[1] if h.app else 0)
    return 0x4 if cap and f > cap else 0
