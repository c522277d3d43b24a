"""A simulated H100, A100 or V100 for machines without a GPU.

Clock tables come from real ``nvidia-smi`` dumps; time and power follow :mod:`sweepd.gpu.simmodel`.
The simulated GPU keeps its own clock, which never looks at this machine's: the work really runs
(the CPU renders the images), but :meth:`SimulatedGpu.busy` then advances the simulated clock by what
the batch would take on the board, and the sweep times its windows with that clock
(:meth:`now_ns`). A batch of ``b`` images takes

    max(b * s_per_image * slowdown(clock) * batch_factor(b), b * host_s_per_image) * jitter * (stall, sometimes)

(``batch_factor``: what batching saves per image; a batch larger than the board's memory fails as CUDA
out of memory would).
``s_per_image`` is the modelled work at the highest clock (:func:`~sweepd.gpu.simmodel.s_per_image`);
the host side (``sim_host_s_per_image``, 0 by default) is a floor the clock cannot go below, as
on a real host-bound GPU; the noise (``sim_noise``: "measured" or "none") is the measured noise of
a real machine, drawn from a generator seeded with the request's seed, so a sweep is reproducible and
its answer the same on an idle or a loaded machine. The GPU draws busy power for its share of the
batch and idle power for the rest; the energy counter integrates that over the simulated clock and
publishes every 100 ms like the real counter. Every result is labelled ``simulated``.
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import uuid as uuidlib
from dataclasses import dataclass
from typing import Iterator

from sweepd.gpu import clockdump, simcap
from sweepd.gpu.base import GpuDevice, GpuNotFound, GpuNotSupported, OutOfMemory, PowerLimits, Sample
from sweepd.gpu.simmodel import (BOARDS, GIB_FIXED, GIB_PER_IMAGE_512, NOISE, POWER_LIMITS_W, SimModel, batch_factor,
                                  calibrate, gib_needed)
from sweepd.records.manifest import GpuInfo

COUNTER_STEP_S = 0.1
SW_POWER_CAP = 0x4  # NVML's clocks event reason for a clock lowered to hold the power limit
AMBIENT_C = 30.0
THERMAL_C_PER_W = 0.12
THERMAL_TAU_S = 20.0
COLD_FACTOR = 1.6  # the H200 run of 2026-11-27: 1.2 s/image right after the model loaded, 0.67-0.77 s later


@dataclass(frozen=True)
class BatchTime:
    total_s: float  # the batch's wall time: the slower of the GPU and the host, times the noise
    gpu_s: float  # the part of it the GPU was busy


@dataclass(frozen=True)
class Truth:
    """What a sweep at one clock estimates, from the simulator's model and noise (no sampling error)."""
    j_per_image: float
    s_per_image: float


class SimulatedGpu(GpuDevice):
    backend = "sim"
    simulated = True

    synthesizes_samples = True  # the 10 Hz trace is written on the simulated clock (see pop_samples)

    def __init__(self, model: str = "A100", index: int = 0, noise: str = "none", host_s_per_image: float = 0.0,
                 seed: int = 0, s_per_image: float = 0.1, cold_start_s: float = 0.0, memory_gib: float | None = None,
                 gib_per_image: float | None = None, power_offset_pct: float = 0.0, speed_offset_pct: float = 0.0,
                 gib_fixed: float = GIB_FIXED):
        """``s_per_image``: the workload's modelled seconds per image at the highest clock
        (:func:`~sweepd.gpu.simmodel.s_per_image`); ``cold_start_s``: for this long on the simulated clock
        the host side runs ``COLD_FACTOR`` times slower (a cold start right after the model loaded);
        ``memory_gib``: the board's memory (default: the real board's), which a batch must fit in
        (:func:`~sweepd.gpu.simmodel.gib_needed`: ``gib_fixed`` for the weights, ``gib_per_image`` per image;
        default: SD at 512x512);
        ``power_offset_pct`` / ``speed_offset_pct``: this chip against the model, as GPUs of one model differ (a few
        % in power, up to ~20 % in speed: Sinha et al., SC22): power (busy and idle) times 1 + p/100, the GPU's
        time per image divided by 1 + s/100."""
        if model not in BOARDS:
            raise GpuNotFound(f"no simulated GPU {model!r}; choose one of {', '.join(BOARDS)}")
        if noise not in NOISE:
            raise GpuNotFound(f"no simulated noise {noise!r}; choose one of {', '.join(NOISE)}")
        board = BOARDS[model]
        self.model: SimModel = calibrate(model)
        self.table = clockdump.load_packaged(board.dump)
        self.index = index
        self.name = board.name
        self.uuid = "GPU-" + str(uuidlib.uuid5(uuidlib.NAMESPACE_URL, f"sweepd-sim/{model}/{index}"))
        self.noise = NOISE[noise]
        self.host_s_per_image = max(0.0, host_s_per_image)
        self.s_per_image = max(1e-6, s_per_image) / (1 + speed_offset_pct / 100)
        self.power_scale = 1 + power_offset_pct / 100
        self.idle_w = self.model.p_idle_w * self.power_scale
        self.cold_start_s = max(0.0, cold_start_s)
        self.memory_gib = memory_gib or board.memory_gib
        self.gib_per_image = gib_per_image or GIB_PER_IMAGE_512
        self.gib_fixed = gib_fixed
        self._rng = random.Random(f"sweepd-sim/{model}/{index}/{seed}")
        self._lock = threading.Lock()
        self._locked_sm: int | None = None
        self._limit_w: int | None = None  # a power cap (gpu.simcap), None: the board's default
        self._locked_mem: int | None = None
        self._busy = False
        self._now = 0.0  # the simulated clock, in seconds
        self._util = 0.0  # the GPU's share of the last batch's time
        # Energy is piecewise linear in time: (time, joules so far, watts from then on).
        self._segments: list[tuple[float, float, float]] = [(0.0, 0.0, self.idle_w)]
        self._temp_c, self._temp_t = AMBIENT_C + THERMAL_C_PER_W * self.idle_w, 0.0
        self._trace: list[Sample] = []

    def now_ns(self) -> int:
        return int(self._now * 1e9)

    def wait(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                start, self._now = self._now, self._now + seconds
                self._trace_span(start, self._now, self.idle_w, 0x1, 0.0)

    # the 10 Hz trace, on the simulated clock (a sampling thread would see the CPU's time instead) ------
    def _trace_span(self, start: float, end: float, watts: float, reasons: int, util: float,
                    cap: simcap.CapMix | None = None) -> None:
        """The 10 Hz sampler's readings in [start, end): one at every multiple of 100 ms (at most 600); under a cap
        each reads the clock the firmware dithers to at that moment."""
        k0, k1 = math.ceil(start / COUNTER_STEP_S - 1e-9), math.ceil(end / COUNTER_STEP_S - 1e-9)
        for k in range(k0, k1, max(1, -(-(k1 - k0) // 600))):
            t = k * COUNTER_STEP_S
            f = cap.clock_at(k) if cap is not None else self.effective_mhz
            self._trace.append(Sample(int(t * 1e9), watts, self.temperature_at(t, watts), f,
                                      reasons, round(util, 1)))
        del self._trace[:-20000]

    def pop_samples(self) -> list[Sample]:
        """The samples since the last call, as a 10 Hz sampler sees them."""
        with self._lock:
            out, self._trace = self._trace, []
        return out

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

    def set_application_clocks(self, sm_mhz: int, memory_mhz: int) -> None:
        """The simulated GPU runs at its application clocks as at a lock (no locked clock here overrides them)."""
        self.lock_clocks(sm_mhz, memory_mhz)

    def reset_application_clocks(self) -> None:
        self.reset_clocks()

    def power_limits_w(self) -> PowerLimits:
        default, lo, hi = POWER_LIMITS_W[self.model.gpu]
        return PowerLimits(self._limit_w or default, default, lo, hi)

    def set_power_limit(self, watts: int) -> None:
        """A cap, as firmware regulates it (:mod:`sweepd.gpu.simcap`: dithering clocks, an overshoot per batch)."""
        limits = self.power_limits_w()
        limits.check(watts, self.name)
        with self._lock:
            self._limit_w = None if watts == limits.default_w else int(watts)

    def reset_power_limit(self) -> None:
        with self._lock:
            self._limit_w = None

    def cap(self) -> simcap.CapMix | None:
        """Where the cap puts the clock while busy; None: no cap, or one the clock's power fits under."""
        return None if self._limit_w is None else self.cap_at(self._limit_w, self.effective_mhz)

    def cap_at(self, limit_w: float, f_mhz: int) -> simcap.CapMix | None:
        """Where a ``limit_w`` cap puts the clock of a GPU that would otherwise run at ``f_mhz``."""
        mem = self._locked_mem if self._locked_mem in self.table else self.memory_clocks()[0]
        return simcap.mix(limit_w, f_mhz, self.graphics_clocks(mem), self.busy_w)

    def application_clocks_restricted(self) -> bool | None:
        return False

    @property
    def effective_mhz(self) -> int:
        return self._locked_sm or self.model.f_max

    # energy and power -----------------------------------------------------------------------
    def _energy_at(self, t: float) -> float:
        for start, joules, watts in reversed(self._segments):
            if start <= t:
                return joules + watts * (t - start)
        start, joules, _ = self._segments[0]
        return joules

    def energy_mj(self) -> int:
        published = math.floor(self._now / COUNTER_STEP_S + 1e-9) * COUNTER_STEP_S
        with self._lock:
            return int(self._energy_at(published) * 1000)

    def power_w(self) -> float:
        with self._lock:
            return self._segments[-1][2]

    def temperature_c(self) -> float:
        with self._lock:
            return self.temperature_at(self._now, self._segments[-1][2])

    def temperature_at(self, t: float, watts: float) -> float:
        """Temperature at simulated time ``t`` drawing ``watts`` since the last reading (the caller holds the lock)."""
        if t > self._temp_t:
            target = AMBIENT_C + THERMAL_C_PER_W * watts
            self._temp_c += (target - self._temp_c) * (1 - math.exp(-(t - self._temp_t) / THERMAL_TAU_S))
            self._temp_t = t
        return round(self._temp_c, 1)

    def sm_clock_mhz(self) -> int:
        cap = self.cap()
        return round(cap.mean_mhz) if cap is not None and self._busy else self.effective_mhz

    def clock_event_reasons(self) -> int:
        return 0 if self._busy else 0x1  # idle between windows, no capping while busy

    def batch_s_noise_free(self, images: int, f_mhz: float, cap: simcap.CapMix | None = None) -> float:
        """The GPU seconds of a batch at ``f_mhz`` (under ``cap``: the clocks it dithers between, the first moments
        at ``f_mhz``), before any noise."""
        slow = self.model.slowdown(f_mhz)
        gpu = images * self.s_per_image * slow * batch_factor(images)
        if cap is not None:  # uncapped for its first moments, then the rest of the work at the capped clocks' pace
            over = min(simcap.OVERSHOOT_S, gpu)
            gpu = over + (gpu - over) * cap.slowdown(self.model.slowdown) / slow
        return gpu

    def batch_s(self, images: int, f_mhz: float, cap: simcap.CapMix | None = None) -> BatchTime:
        """The seconds and GPU seconds of a batch at ``f_mhz`` (under ``cap``): the slower of the GPU and the host,
        times the noise."""
        gpu = self.batch_s_noise_free(images, f_mhz, cap)
        total = max(gpu, images * self.host_s_per_image)
        if self._now < self.cold_start_s:
            total *= COLD_FACTOR
        n = self.noise
        if n.jitter:
            total *= math.exp(self._rng.gauss(0.0, n.jitter))
        if n.stall_p and self._rng.random() < n.stall_p:
            total *= self._rng.uniform(n.stall_min, n.stall_max)
        return BatchTime(total, min(gpu, total))

    def busy_w(self, f_mhz: float) -> float:
        return self.model.busy_power_w(f_mhz) * self.power_scale

    def expected(self, f_mhz: float, images: int = 1, limit_w: float | None = None) -> Truth:
        """The truth a sweep estimates: the expected J/image and s/image of a batch of ``images`` at ``f_mhz`` (under
        a power limit of ``limit_w``: as :meth:`busy` runs a capped batch) under this GPU's noise (no cold start),
        integrated over the jitter and the stalls. Not the noise-free model: a stall stretches a batch at idle power
        and a fast draw is capped at the board's work, so the noisy mean J/image lies about 1 % below the model's,
        and that is what any number of trials converges to."""
        import numpy as np

        cap = None if limit_w is None else self.cap_at(limit_w, int(f_mhz))
        gpu = self.batch_s_noise_free(images, f_mhz, cap)
        base = max(gpu, images * self.host_s_per_image)
        busy_w, idle_w = (cap.watts(self.busy_w) if cap else self.busy_w(f_mhz)), self.idle_w
        over_w = self.busy_w(f_mhz) - busy_w  # a capped batch's first moments draw the uncapped power
        n = self.noise
        z = np.linspace(-8, 8, 8001)
        wz = np.exp(-z * z / 2)
        wz /= wz.sum()
        jit = np.exp(n.jitter * z) if n.jitter else np.ones(1)
        wz = wz if n.jitter else np.ones(1)
        stalls = [(1.0 - n.stall_p, np.ones(1))]
        if n.stall_p:
            stalls.append((n.stall_p, np.linspace(n.stall_min, n.stall_max, 201)))
        e_total = e_gpu = e_over = 0.0
        for p, factors in stalls:
            m = np.outer(factors, jit)  # every (stall, jitter) pair, weighted evenly in the stall, normally in z
            total = base * m
            share = np.minimum(gpu, total)
            e_total += p * float((total.mean(axis=0) * wz).sum())
            e_gpu += p * float((share.mean(axis=0) * wz).sum())
            if cap is not None:
                e_over += p * float((np.minimum(simcap.OVERSHOOT_S, share).mean(axis=0) * wz).sum())
        joules = e_gpu * busy_w + e_over * over_w + (e_total - e_gpu) * idle_w
        return Truth(joules / images, e_total / images)

    def total_memory_gib(self) -> float:
        return self.memory_gib

    def utilization_pct(self) -> float:
        """The GPU's busy share of the last batch, as nvmlDeviceGetUtilizationRates reports it."""
        return round(self._util * 100, 1)

    @contextlib.contextmanager
    def busy(self, images: int = 1) -> Iterator[None]:
        """Run one batch of work (on the CPU), then advance the simulated clock by its simulated time. A batch
        that needs more memory than the board has fails before it starts, as CUDA would (:class:`OutOfMemory`)."""
        need = gib_needed(images, self.gib_per_image, self.gib_fixed)
        if need > self.memory_gib:
            raise OutOfMemory(f"CUDA out of memory (simulated): a batch of {images} needs about {need:.1f} GiB; "
                              f"the simulated {self.model.gpu} has {self.memory_gib:g} GiB")
        f, cap = self.effective_mhz, self.cap()
        t = self.batch_s(images, f, cap)
        total, gpu = t.total_s, t.gpu_s
        busy_w, idle_w = (cap.watts(self.busy_w) if cap else self.busy_w(f)), self.idle_w
        gpu_j = gpu * busy_w
        if cap is not None:  # the controller reacts late: the batch's first moments run uncapped, above the limit
            over = min(simcap.OVERSHOOT_S, gpu)
            gpu_j += over * (self.busy_w(f) - busy_w)
        watts = (gpu_j + (total - gpu) * idle_w) / total if total > 0 else idle_w
        self._busy = True
        try:
            yield
            with self._lock:
                start = self._now
                self._segments.append((start, self._energy_at(start), watts))
                self._now = start + total
                self._segments.append((self._now, self._energy_at(self._now), idle_w))
                del self._segments[:-64]
                self._util = gpu / total if total > 0 else 0.0
                self._trace_span(start, self._now, watts, SW_POWER_CAP if cap else 0, 100 * self._util, cap)
        finally:
            self._busy = False

    def info(self) -> GpuInfo:
        return super().info().model_copy(update={"sim_model": self.model.gpu, "driver": "simulated"})
