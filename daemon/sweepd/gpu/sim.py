"""A simulated H100, A100 or V100 for machines without a GPU.

Clock tables come from real ``nvidia-smi`` dumps; time and power follow :mod:`sweepd.gpu.simmodel`.
The measured work really runs (on the CPU); :meth:`SimulatedGpu.busy` then holds each batch until
its simulated duration has passed: ``nominal x slowdown(clock) x HEADROOM``, where ``nominal`` is
the fastest this same batch has run so far (the work's cost without the OS's hiccups). A shared CPU
jitters by 5-20 % from trial to trial where a GPU varies by about 2 %; the headroom absorbs
ordinary jitter, and a stall longer than it still shows. The wall-clock time a sweep measures is
the simulated time, and the energy counter integrates the simulated power over real time,
publishing a new value every 100 ms like the real counter. Every result is labelled ``simulated``.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import uuid as uuidlib
from typing import Iterator

from sweepd.gpu import clockdump
from sweepd.gpu.base import GpuDevice, GpuNotFound, GpuNotSupported
from sweepd.gpu.simmodel import BOARDS, SimModel, calibrate
from sweepd.records.manifest import GpuInfo

COUNTER_STEP_S = 0.1
AMBIENT_C = 30.0
THERMAL_C_PER_W = 0.12
THERMAL_TAU_S = 20.0
HEADROOM = 1.25


class SimulatedGpu(GpuDevice):
    backend = "sim"
    simulated = True

    def __init__(self, model: str = "A100", index: int = 0, clock=time.monotonic, sleep=time.sleep):
        if model not in BOARDS:
            raise GpuNotFound(f"no simulated GPU {model!r}; choose one of {', '.join(BOARDS)}")
        board = BOARDS[model]
        self.model: SimModel = calibrate(model)
        self.table = clockdump.load_packaged(board["dump"])
        self.index = index
        self.name = board["name"]
        self.uuid = "GPU-" + str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"sweepd-sim/{model}/{index}"))
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._locked_sm: int | None = None
        self._locked_mem: int | None = None
        self._busy = False
        self._nominal_s: float | None = None  # the fastest batch so far
        t0 = self._clock()
        self._t0 = t0
        # Energy is piecewise linear in time: (time, joules so far, watts from then on).
        self._segments: list[tuple[float, float, float]] = [(t0, 0.0, self.model.p_idle_w)]
        self._temp_c, self._temp_t = AMBIENT_C + THERMAL_C_PER_W * self.model.p_idle_w, t0

    # clocks ---------------------------------------------------------------------------------
    def memory_clocks(self) -> list[int]:
        return list(self.table)

    def graphics_clocks(self, memory_mhz: int) -> list[int]:
        if memory_mhz not in self.table:
            raise GpuNotSupported(f"memory clock {memory_mhz} MHz is not supported; supported: {self.memory_clocks()}")
        return list(self.table[memory_mhz])

    def lock_clocks(self, sm_mhz: int, memory_mhz: int | None = None) -> None:
        mem = memory_mhz if memory_mhz is not None else self.memory_clocks()[0]
        if sm_mhz not in self.graphics_clocks(mem):
            raise GpuNotSupported(f"{sm_mhz} MHz is not a supported core clock at memory {mem} MHz")
        with self._lock:
            self._locked_sm, self._locked_mem = sm_mhz, memory_mhz

    def reset_clocks(self) -> None:
        with self._lock:
            self._locked_sm = self._locked_mem = None

    @property
    def effective_mhz(self) -> int:
        return self._locked_sm or self.model.f_max

    # energy and power -----------------------------------------------------------------------
    def _set_power(self, watts: float) -> None:
        now = self._clock()
        with self._lock:
            self._segments.append((now, self._energy_at(now), watts))
            del self._segments[:-64]

    def _energy_at(self, t: float) -> float:
        for start, joules, watts in reversed(self._segments):
            if start <= t:
                return joules + watts * (t - start)
        start, joules, _ = self._segments[0]
        return joules

    def energy_mj(self) -> int:
        now = self._clock()
        published = self._t0 + math.floor((now - self._t0) / COUNTER_STEP_S + 1e-9) * COUNTER_STEP_S
        with self._lock:
            return int(self._energy_at(published) * 1000)

    def power_w(self) -> float:
        with self._lock:
            return self._segments[-1][2]

    def temperature_c(self) -> float:
        now = self._clock()
        with self._lock:
            target = AMBIENT_C + THERMAL_C_PER_W * self._segments[-1][2]
            self._temp_c += (target - self._temp_c) * (1 - math.exp(-(now - self._temp_t) / THERMAL_TAU_S))
            self._temp_t = now
            return round(self._temp_c, 1)

    def sm_clock_mhz(self) -> int:
        return self.effective_mhz

    def clock_event_reasons(self) -> int:
        return 0 if self._busy else 0x1  # idle between windows, no capping while busy

    @contextlib.contextmanager
    def busy(self) -> Iterator[None]:
        """Run one batch of work, then hold until its simulated duration at the locked clock has passed."""
        f = self.effective_mhz
        self._busy = True
        self._set_power(self.model.busy_power_w(f))
        start = self._clock()
        try:
            yield
            real = self._clock() - start
            self._nominal_s = real if self._nominal_s is None else min(self._nominal_s, real)
            extra = self._nominal_s * self.model.slowdown(f) * HEADROOM - real
            if extra > 0:
                self._sleep(extra)
        finally:
            self._set_power(self.model.p_idle_w)
            self._busy = False

    def info(self) -> GpuInfo:
        return super().info().model_copy(update={"sim_model": self.model.gpu, "driver": "simulated"})
