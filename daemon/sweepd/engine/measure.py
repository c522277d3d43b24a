"""The measurer: everything the sweep's phases do to the GPU, one trial at a time.

It locks a clock and settles (:meth:`Measurer.settle`), warms up after a change (:meth:`Measurer.warm_up`) and
measures one window (:meth:`Measurer.window`, a :class:`Window`), which :meth:`Measurer.trial` turns into the
trial's row and its images' rows. It keeps the device-time books (settle, warm-up, counter waits, the total).

Measurement protocol per window: synchronize, read the energy counter and the device's clock (``now_ns``:
perf_counter_ns on a real GPU, the simulated clock on the sim), generate images in batches until the window lasts
at least ``min_window_s`` (and the sweep's image count is reached), synchronize, read both again. The first window
of the sweep fixes the image count of every later one, so every clock does the same work with the same seeds.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np

from sweepd.engine.imagerows import ImageRecorder
from sweepd.engine.schedule import FIRST_WARMUP_BATCHES, FIRST_WARMUP_MAX, FIRST_WARMUP_MAX_S
from sweepd.engine.stop import StopFlag, StopRequested
from sweepd.engine.store import JobStore
from sweepd.freqplan import ClockPoint
from sweepd.gpu.base import BENIGN_REASONS, GpuDevice, GpuError, Sample, decode_reasons, is_window_failure
from sweepd.gpu.locks import ClockGuard
from sweepd.gpu.sampler import Sampler
from sweepd.records.rows import ImageRow, PowerRow, TrialRow
from sweepd.request import SweepRequest
from sweepd.vocab import PowerReading, Role, TrialStatus

log = logging.getLogger(__name__)

MIN_POWER_SAMPLES = 10  # a window's power samples needed to check its counter energy (1 s at 10 Hz)


class Workload(Protocol):
    def generate(self, first_index: int, count: int) -> list[np.ndarray]: ...
    def set_compiled(self, on: bool) -> None: ...  # torch.compile the denoiser, or go back to the eager one
    def synchronize(self) -> None: ...
    def prompt_for(self, index: int) -> str: ...
    def release_memory(self) -> None: ...  # what a failed window may have left on the GPU


@dataclass(frozen=True)
class Window:
    """One measured window: its images, when it started and ended on the device's clock, the energy the counter
    gave for it, each image's seconds (its batch's time over the batch's size) and the idle energy after its last
    image that the counter's reading holds (None: not known, no correction)."""
    images: list[np.ndarray]
    start_ns: int
    end_ns: int
    energy_mj: int
    per_image_s: list[float]
    tail_mj: float | None

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def joules(self) -> float:
        return (self.energy_mj - (self.tail_mj or 0)) / 1000


@dataclass(frozen=True)
class PowerEnergy:
    """A window's energy from its power samples (their mean times the window's length), and that figure's standard
    error from the samples' spread: a check on the counter."""
    joules: float
    se: float


@dataclass
class Measurer:
    request: SweepRequest
    device: GpuDevice
    store: JobStore
    guard: ClockGuard
    stop: StopFlag
    images: ImageRecorder
    sleep: Callable[[float], None]  # how settle and cool-down pass (the device's own clock by default)
    batch_now: int | None = None  # the size the batch-size phase is measuring
    compile_now: bool | None = None  # the compile setting the knob phase is measuring
    _warmed: bool = False
    _mark: int = field(default=0)  # the device time accounted up to

    def __post_init__(self) -> None:
        self._mark = self.device.now_ns()

    @property
    def compiled(self) -> bool:
        """Whether the denoiser runs compiled: the setting the knob phase is measuring, the one it chose, or the
        request's."""
        rec = self.store.manifest.batch
        if self.compile_now is not None:
            return self.compile_now
        if rec is not None and rec.chosen_compile is not None:
            return rec.chosen_compile
        return self.request.workload.compile_options[0]

    @property
    def batch(self) -> int:
        """Images per generate() call: the size the batch phase is measuring, the one it chose, or the request's."""
        chosen = self.store.manifest.batch.chosen if self.store.manifest.batch else None
        return self.batch_now or chosen or self.request.workload.batch_sizes[0]

    @property
    def controls_clocks(self) -> bool:
        return self.request.gpu.clock_control.sets_clocks and self.request.frequencies.mode != "baseline"

    # the device's time ---------------------------------------------------------------------
    def settle(self, point: ClockPoint) -> None:
        t0 = self.device.now_ns()
        if point.power_limit_w is not None:  # a power sweep: the limit is set, the clock left to the firmware
            self.guard.cap_power(point.power_limit_w)
        elif self.controls_clocks:
            self.guard.lock(point.freq_mhz, point.mem_mhz)
        self.sleep(self.request.protocol.settle_s)
        self.store.device_time().settle_s += (self.device.now_ns() - t0) / 1e9

    def cool_down(self) -> None:
        if self.request.protocol.cooldown_s:
            self.sleep(self.request.protocol.cooldown_s)

    def account(self) -> None:
        """Add the device time since the last call to the sweep's total and write it down (a killed sweep
        keeps what its finished clocks took)."""
        now = self.device.now_ns()
        self.store.device_time().total_s += (now - self._mark) / 1e9
        self._mark = now
        self.store.write_manifest()

    def warm_up(self, workload: Workload, full: bool = False) -> None:
        """Unmeasured images after a clock change. First runs are slower (allocator, kernel selection),
        and the first clock is the reference every saving is measured against: there, warm-up goes on
        until FIRST_WARMUP_BATCHES batches in a row run within 10 % of the fastest (at most
        FIRST_WARMUP_MAX batches or FIRST_WARMUP_MAX_S seconds). ``full``: whole batches (a new batch size)."""
        w, b = self.request.protocol.warmup, self.batch
        workload.set_compiled(self.compiled)
        first, self._warmed = not self._warmed, True
        times: list[float] = []
        start = self.device.now_ns()
        try:
            while True:
                done = len(times) * b
                steady = len(times) >= FIRST_WARMUP_BATCHES and \
                    all(t <= 1.1 * min(times) for t in times[-FIRST_WARMUP_BATCHES:])
                if done >= w and (not first or not w or steady or len(times) >= FIRST_WARMUP_MAX
                                  or (self.device.now_ns() - start) / 1e9 > FIRST_WARMUP_MAX_S):
                    return
                t0 = self.device.now_ns()
                n = b if first or full else min(b, w - done)
                with self.device.busy(n):  # warm-up is GPU work too: the GPU draws power and heats up
                    workload.generate(0, n)
                    workload.synchronize()
                times.append((self.device.now_ns() - t0) / 1e9)
        finally:
            self.store.device_time().warmup_s += (self.device.now_ns() - start) / 1e9

    # one trial -----------------------------------------------------------------------------
    def trial(self, workload: Workload, sampler: Sampler, k: int, point: ClockPoint, trial: int,
              role: Role | None = None) -> tuple[TrialRow, list[ImageRow]]:
        """Measure one window and make its rows. A window that fails as the hardware may (out of memory, a CUDA or
        NVML error, the disk) is a failed row and the sweep goes on; anything else is a bug and is raised."""
        first = role is None and not any(r.setting == point.setting and r.role is None for r in self.store.trials)
        try:
            w = self.window(workload, fix=role != Role.BATCH)
        except (StopRequested, KeyboardInterrupt):
            raise
        except Exception as e:
            if not is_window_failure(e):
                raise
            log.warning("trial %d at %s failed: %s", trial, point.label, e)
            return self.failed(workload, point, trial, role, e), []
        row = self.row(point, trial, role, w, sampler.window(w.start_ns, w.end_ns))
        if role == Role.BATCH:  # timing windows of one size: not compared with the reference, not kept
            return row, self.images.rows(workload, w.images, point, trial, w.per_image_s, keep=False, compare=False)
        return row, self.images.rows(workload, w.images, point, trial, w.per_image_s, self.images.keeps(k, first))

    def failed(self, workload: Workload, point: ClockPoint, trial: int, role: Role | None, e: Exception) -> TrialRow:
        """A failed trial's row, with its error; the GPU memory the failure may have left is released."""
        workload.release_memory()
        return self._row(point, trial, role, images=0, status=TrialStatus.FAILED,
                         error=f"{type(e).__name__}: {e}"[:500])

    def row(self, point: ClockPoint, trial: int, role: Role | None, w: Window, samples: list[Sample]) -> TrialRow:
        n, secs, joules = len(w.images), w.seconds, w.joules
        reasons = 0
        for s in samples:
            reasons |= s.reasons
        check = power_energy(samples, secs)
        row = self._row(
            point, trial, role, images=n, time_s=secs, energy_j=joules, j_per_image=joules / n,
            s_per_image=secs / n, avg_power_w=joules / secs,
            observed_sm_clock_mhz=int(statistics.median(s.sm_mhz for s in samples)) if samples else None,
            sm_clock_mean_mhz=round(statistics.fmean(s.sm_mhz for s in samples), 1) if samples else None,
            sm_clock_std_mhz=round(statistics.pstdev(s.sm_mhz for s in samples), 1) if samples else None,
            throttle_reasons=decode_reasons(reasons & ~BENIGN_REASONS),
            temp_c=round(statistics.fmean(s.temp_c for s in samples), 1) if samples else None, status=TrialStatus.OK,
            s_per_image_median=statistics.median(w.per_image_s) if w.per_image_s else None,
            gpu_util_pct=_mean_util(samples), energy_tail_j=None if w.tail_mj is None else w.tail_mj / 1000,
            energy_j_power=check.joules if check else None, energy_j_power_se=check.se if check else None)
        if joules <= 0:
            row.status = TrialStatus.FAILED
            row.error = f"the energy counter did not advance over {secs:.3f} s; raise protocol.min_window_s"
        return row

    def _row(self, point: ClockPoint, trial: int, role: Role | None, **measured) -> TrialRow:
        """A row saying where and how this trial was measured, and what it measured."""
        return TrialRow(sweep_id=self.store.sweep_id, job_id=self.store.job_id, backend=self.device.backend,
                        simulated=self.device.simulated, gpu_name=self.device.name, gpu_uuid=self.device.uuid,
                        freq_mhz=point.freq_mhz, mem_clock_mhz=point.mem_mhz, power_limit_w=point.power_limit_w,
                        trial=trial, steps=self.request.workload.steps, role=role, batch_size=self.batch,
                        compiled=self.compiled or None, **measured)

    def window(self, workload: Workload, fix: bool = True) -> Window:
        """One measured window (see the module's text). The sweep's first window fixes the image count of every
        later one (``fix``; not a batch-size window: its batch differs)."""
        req = self.request
        b, min_ns = self.batch, int(req.protocol.min_window_s * 1e9)
        fixed = req.protocol.images_per_trial
        target = fixed or (self.store.manifest.images_per_trial if fix else None) or 0
        workload.set_compiled(self.compiled)
        if fixed:
            min_ns = 0  # a fixed count: exactly that many images per trial, however long they take
        images: list[np.ndarray] = []
        per_image: list[float] = []
        workload.synchronize()
        wait0 = self.device.now_ns()
        e0 = self.device.energy_update_mj()  # the window starts on a fresh step of the counter ...
        t0 = self.device.now_ns()
        while len(images) < target or self.device.now_ns() - t0 < min_ns:
            n = min(b, target - len(images)) if fixed else b
            start = self.device.now_ns()
            with self.device.busy(n):
                batch = workload.generate(len(images), n)
                workload.synchronize()
            images.extend(batch)
            per_image += [(self.device.now_ns() - start) / 1e9 / max(len(batch), 1)] * len(batch)
        t1 = self.device.now_ns()
        e1 = self.device.energy_update_mj()  # ... and ends on the first step that covers its last image
        t_step = self.device.now_ns()
        self.store.device_time().counter_s += (t0 - wait0 + t_step - t1) / 1e9
        if not target and fix:
            self.store.set_images_per_trial(len(images))
        return Window(images, t0, t1, e1 - e0, per_image, self._tail_mj(t_step - t1, e1 - e0))

    def _tail_mj(self, wait_ns: int, window_mj: int) -> float | None:
        """The idle energy the window's counter reading holds after its last image (the wait for the counter's next
        step: up to 100 ms of an idle GPU, +0.3 % J/image on a 2 s window), from the instant power then; None where
        power is a 1 s average (it still reads the busy window: no correction)."""
        gpu = self.store.manifest.gpu
        if gpu is not None and gpu.power_reading == PowerReading.AVERAGE_1S:
            return None
        try:
            watts = self.device.power_w()
        except GpuError:
            return None
        return min(watts * wait_ns / 1e6, window_mj / 2)

    def power_rows(self, point: ClockPoint, samples: list[Sample]) -> list[PowerRow]:
        if not samples:
            return []
        t0 = samples[0].t_ns
        return [PowerRow(freq_mhz=point.freq_mhz, power_limit_w=point.power_limit_w, t_s=(s.t_ns - t0) / 1e9,
                         power_w=s.power_w, temp_c=s.temp_c, sm_clock_mhz=s.sm_mhz, throttle_reasons=decode_reasons(s.reasons),
                         simulated=self.device.simulated) for s in samples]


def power_energy(samples: list[Sample], secs: float) -> PowerEnergy | None:
    """The window's energy from its power samples and its standard error, from at least MIN_POWER_SAMPLES of them."""
    if len(samples) < MIN_POWER_SAMPLES:
        return None
    watts = [s.power_w for s in samples]
    return PowerEnergy(statistics.fmean(watts) * secs, statistics.stdev(watts) / len(watts) ** 0.5 * secs)


def _mean_util(samples: list[Sample]) -> float | None:
    utils = [s.util_pct for s in samples if s.util_pct is not None]
    return round(statistics.fmean(utils), 1) if utils else None
