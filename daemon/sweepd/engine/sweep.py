"""The sweep loop: for each clock, lock it, settle, warm up, measure trials, record, move on.

Measurement protocol per trial: synchronize, read the energy counter and the device's clock
(``now_ns``: perf_counter_ns on a real GPU, the simulated clock on the sim),
generate images in batches until the window lasts at least ``min_window_s`` (and the sweep's
image count is reached), synchronize, read both again. The first trial at the first (highest)
clock fixes the image count for the whole sweep, so every clock does the same work with the same
seeds; its images are the reference that every other image's PSNR is measured against.

A list of batch sizes is measured first, at the highest clock (:mod:`sweepd.engine.batching`); an
adaptive search then picks each next clock (:mod:`sweepd.engine.search`), other modes go down the plan.
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sweepd.engine.stop import StopFlag, StopRequested
from sweepd.engine.imagerows import ImageRecorder
from sweepd.engine.store import JobStore
from sweepd.engine import batching, search
from sweepd.engine.summary import by_clock, drifts
from sweepd.engine.schedule import FIRST_WARMUP_BATCHES, FIRST_WARMUP_MAX, FIRST_WARMUP_MAX_S
from sweepd.freqplan import ClockPoint
from sweepd.errors import SweepdError
from sweepd.gpu.base import BENIGN_REASONS, GpuDevice, GpuError, decode_reasons, is_out_of_memory, is_window_failure
from sweepd.gpu.locks import ClockGuard
from sweepd.gpu.sampler import Sampler
from sweepd.records.manifest import SearchRecord
from sweepd.records.rows import PowerRow, SummaryRow, TrialRow
from sweepd.request import SweepRequest
from sweepd.vocab import PowerReading, Role, TrialStatus

log = logging.getLogger(__name__)
progress_log = logging.getLogger("sweepd.progress")  # per-clock lines for sweep.log (the terminal has its own)


def _log_clock(k: int, n: int, point: ClockPoint, summary: list[SummaryRow]) -> None:
    row = next((r for r in summary if r.freq_mhz == point.freq_mhz), None)
    if row is None:
        progress_log.info("clock %d/%d %s: every trial failed", k + 1, n, point.label)
        return
    progress_log.info("clock %d/%d %s: %d trials, %.3f s/image, %.2f J/image (CV %.1f%%), %.0f W", k + 1, n,
                      point.label, row.n, row.s_per_image_mean, row.j_per_image_mean, row.cv * 100, row.avg_power_w)

MIN_POWER_SAMPLES = 10  # a window's power samples needed to check its counter energy (1 s at 10 Hz)


class Observer(Protocol):
    def clock_started(self, k: int, n: int, point: ClockPoint) -> None: ...
    def trial_done(self, k: int, n: int, point: ClockPoint, row: TrialRow) -> None: ...
    def clock_done(self, k: int, n: int, point: ClockPoint, summary: list[SummaryRow]) -> None: ...


class Workload(Protocol):
    def generate(self, first_index: int, count: int) -> list[np.ndarray]: ...
    def synchronize(self) -> None: ...
    def prompt_for(self, index: int) -> str: ...
    def release_memory(self) -> None: ...  # what a failed window may have left on the GPU


@dataclass
class Sweep:
    request: SweepRequest
    device: GpuDevice
    store: JobStore
    plan: list[ClockPoint]
    guard: ClockGuard
    stop: StopFlag
    observer: Observer
    sleep: object = None  # how settle and cool-down pass; default: the device's own clock (device.wait)
    shard: tuple[int, int] = (0, 1)  # (k, n): this plan is clocks k, k+n, ... of the whole sweep
    _warmed: bool = False
    _mark: int = 0  # the device time accounted up to
    _batch_now: int | None = None  # the size the batch-size phase is measuring
    images: ImageRecorder | None = None  # set by run()

    @property
    def batch(self) -> int:
        """Images per generate() call: the size the batch phase is measuring, the one it chose, or the request's."""
        chosen = self.store.manifest.batch.chosen if self.store.manifest.batch else None
        return self._batch_now or chosen or self.request.workload.batch_sizes[0]

    @property
    def controls_clocks(self) -> bool:
        return self.request.gpu.clock_control == "lock" and self.request.frequencies.mode != "baseline"

    # ----------------------------------------------------------------------------------------
    @property
    def checks_drift(self) -> bool:
        """The baseline (first, highest) clock is measured again at the end, every ``baseline_every`` clocks and
        when a resumed sweep continues; not in a one-clock sweep."""
        return len(self.plan) > 1 and self.request.frequencies.mode != "baseline"

    def run(self, workload: Workload) -> None:
        """Measure every clock not yet complete. Raises StopRequested when asked to stop."""
        self.images = ImageRecorder(self.request, self.device, self.store, self.plan)
        self.sleep = self.sleep or self.device.wait
        self._mark = self.device.now_ns()
        protocol = self.request.protocol
        with Sampler(self.device) as sampler:
            if self.request.workload.batch_search:
                self._batch_phase(workload, sampler)
            if self.request.frequencies.mode == "adaptive":
                return self._search(workload, sampler)
            pending = [(k, p) for k, p in enumerate(self.plan) if not self.store.clock_done(p, protocol)]
            if self.checks_drift and self.store.clock_done(self.plan[0], protocol) and \
                    (pending or not self.store.last_was_drift_check()):
                self._drift_check(workload, sampler, "resumed")  # this process's baseline, before going on
            for i, (k, point) in enumerate(pending):
                self._measure_clock(workload, sampler, k, point)
                last = i == len(pending) - 1
                if self.checks_drift and k and protocol.check_after(i, last):
                    self._drift_check(workload, sampler, "end of the sweep" if last else "baseline_every")

    def _search(self, workload: Workload, sampler: Sampler) -> None:
        """Adaptive mode: measure the clock the search asks for next, one at a time, until it stops. Each
        decision depends only on the clocks completed so far, so a resumed sweep makes the same ones."""
        protocol, freqs = self.request.protocol, self.request.frequencies
        candidates = [p.freq_mhz for p in self.plan]
        measured_here = 0
        if self.store.clock_done(self.plan[0], protocol):
            self._drift_check(workload, sampler, "resumed")
        while True:
            done = {f: [search.Trial(float(t.j_per_image), float(t.s_per_image_median or t.s_per_image))
                        for t in rows] for f, rows in by_clock(self.store.trials).items()
                    if f in candidates and self.store.clock_done(self.plan[candidates.index(f)], protocol)}
            d = search.decide(candidates, done, freqs.search_objective, freqs.max_slowdown_pct)
            evaluated = list(done)  # by_clock keeps the order clocks were first measured in
            self.store.set_search(SearchRecord(
                objective=freqs.search_objective, evaluated_mhz=evaluated, supported_count=len(candidates),
                fraction=round(len(evaluated) / len(candidates), 3), chosen_mhz=d.chosen_mhz,
                stopped_because=d.stopped_because, notes=d.notes))
            if not d.next_mhz:
                break
            k = candidates.index(d.next_mhz[0])
            self._measure_clock(workload, sampler, k, self.plan[k])
            measured_here += 1
        if measured_here and len(done) > 1:
            self._drift_check(workload, sampler, "end of the sweep")

    def _batch_phase(self, workload: Workload, sampler: Sampler) -> None:
        """Each batch size at the highest clock (:mod:`sweepd.engine.batching`); the clocks then use the best."""
        req, point = self.request, self.plan[0]
        wanted, protocol = req.workload.batch_sizes, req.protocol
        if not batching.phase_done(self.store.trials, wanted, protocol):
            self.stop.check()
            self._settle(point)
            for b in wanted:
                self._batch_now = b
                try:
                    self._measure_size(workload, sampler, point, b)
                finally:
                    self._batch_now = None
            sampler.take()  # power.csv keeps each clock's own trace only
            self._account()
        rec = batching.record(self.store.trials, wanted, req.frequencies.search_objective)
        self.store.set_batch(rec)
        if rec.chosen is None:
            why = "; ".join(f"{b}: {e}" for b, e in rec.refused.items()) or "every window failed"
            raise NoBatchSize(f"no batch size of {wanted} could be measured ({why})")
        progress_log.info("batch sizes %s at %s: the clocks are measured at batch %d%s", wanted, point.label,
                          rec.chosen, "".join(f"; {b} refused ({e})" for b, e in rec.refused.items()))

    def _measure_size(self, workload: Workload, sampler: Sampler, point: ClockPoint, b: int) -> None:
        protocol = self.request.protocol
        if batching.size_done(self.store.trials, b, protocol):
            return
        self.stop.check()
        try:
            self._warm_up(workload, full=True)
        except Exception as e:  # a batch too large for the GPU fails here first: the size is refused
            if not is_out_of_memory(e):
                raise
            log.warning("batch %d at %s does not fit: %s", b, point.label, e)
            self.store.commit_trial(self._failed(workload, self._base(point, self.store.next_trial(point), Role.BATCH),
                                                 e), [])
            return
        while not batching.size_done(self.store.trials, b, protocol):  # an out-of-memory window ends it too
            self.stop.check()
            row, image_rows = self._trial(workload, sampler, 0, point, self.store.next_trial(point), role=Role.BATCH)
            self.store.commit_trial(row, image_rows)
            progress_log.info("batch %d at %s, window %d: %s", b, point.label, row.trial,
                              f"{row.j_per_image:.2f} J/image, {row.s_per_image:.3f} s/image" if row.ok else row.error)

    def _measure_clock(self, workload: Workload, sampler: Sampler, k: int, point: ClockPoint) -> None:
        protocol = self.request.protocol
        self.stop.check()
        self.observer.clock_started(k, len(self.plan), point)
        self._settle(point)
        self._warm_up(workload)
        sampler.take()
        first = True
        while not self.store.clock_done(point, protocol):  # fixed trials, or until the CI target
            trial = self.store.next_trial(point)  # after a batch-size phase's windows at this clock
            if not first and protocol.cooldown_s:
                self.sleep(protocol.cooldown_s)
            self.stop.check()
            row, image_rows = self._trial(workload, sampler, k, point, trial)
            self.store.commit_trial(row, image_rows)
            self.observer.trial_done(k, len(self.plan), point, row)
            first = False
        summary = self.store.commit_clock(self._power_rows(point, sampler.take()), self.plan)
        self._account()
        self.observer.clock_done(k, len(self.plan), point, summary)
        _log_clock(k, len(self.plan), point, summary)

    def _settle(self, point: ClockPoint) -> None:
        t0 = self.device.now_ns()
        if self.controls_clocks:
            self.guard.lock(point.freq_mhz, point.mem_mhz)
        self.sleep(self.request.protocol.settle_s)
        self.store.device_time().settle_s += (self.device.now_ns() - t0) / 1e9

    def _account(self) -> None:
        """Add the device time since the last call to the sweep's total and write it down (a killed sweep
        keeps what its finished clocks took)."""
        now = self.device.now_ns()
        self.store.device_time().total_s += (now - self._mark) / 1e9
        self._mark = now
        self.store.write_manifest()

    def _drift_check(self, workload: Workload, sampler: Sampler, why: str) -> None:
        """Measure the baseline clock again (``protocol.least`` trials, rows with role "drift"): its first
        measurement is the reference of every saving, so a drift since (or a cold start then) must show. A drift
        beyond the target and its noise takes the re-measurement to as many trials as the first had: savings are
        then taken against it, at the same precision."""
        protocol, point = self.request.protocol, self.plan[0]
        self.stop.check()
        self._settle(point)
        self._warm_up(workload)
        for _ in range(protocol.least):
            self._drift_trial(workload, sampler, point)
        d = self._drift(point)
        if d is not None and d.exceeds(protocol.target_ci_pct):
            # savings will be taken against the re-measurement: it gets as many trials as the first measurement had
            first = len(by_clock(self.store.trials).get(point.freq_mhz, []))
            for _ in range(max(0, first - d.n)):
                self._drift_trial(workload, sampler, point)
        sampler.take()  # power.csv keeps each clock's own trace only
        self.store.write_summary(self.plan)
        self._account()
        d = self._drift(point)
        if d is not None:
            progress_log.info("baseline %s measured again (%s): J/image %+.1f%%, s/image %+.1f%% since its first "
                              "measurement", point.label, why, d.j_pct, d.s_pct)

    def _drift_trial(self, workload: Workload, sampler: Sampler, point: ClockPoint) -> None:
        if self.request.protocol.cooldown_s:
            self.sleep(self.request.protocol.cooldown_s)
        self.stop.check()
        row, image_rows = self._trial(workload, sampler, 0, point, self.store.next_trial(point), role=Role.DRIFT)
        self.store.commit_trial(row, image_rows)

    def _drift(self, point: ClockPoint):
        return next((d for d in drifts(self.store.trials) if d.freq_mhz == point.freq_mhz), None)

    def _warm_up(self, workload: Workload, full: bool = False) -> None:
        """Unmeasured images after a clock change. First runs are slower (allocator, kernel selection),
        and the first clock is the reference every saving is measured against: there, warm-up goes on
        until FIRST_WARMUP_BATCHES batches in a row run within 10 % of the fastest (at most
        FIRST_WARMUP_MAX batches or FIRST_WARMUP_MAX_S seconds). ``full``: whole batches (a new batch size)."""
        w, b = self.request.protocol.warmup, self.batch
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

    def _base(self, point: ClockPoint, trial: int, role: str | None) -> dict:
        """What every row of this trial says about where and how it was measured."""
        return dict(sweep_id=self.store.sweep_id, job_id=self.store.job_id, backend=self.device.backend,
                    simulated=self.device.simulated, gpu_name=self.device.name, gpu_uuid=self.device.uuid,
                    freq_mhz=point.freq_mhz, mem_clock_mhz=point.mem_mhz, trial=trial,
                    steps=self.request.workload.steps, role=role, batch_size=self.batch)

    @staticmethod
    def _failed(workload: Workload, base: dict, e: Exception) -> TrialRow:
        """A failed trial's row, with its error; the GPU memory the failure may have left is released."""
        workload.release_memory()
        return TrialRow(**base, images=0, status=TrialStatus.FAILED, error=f"{type(e).__name__}: {e}"[:500])

    def _trial(self, workload: Workload, sampler: Sampler, k: int, point: ClockPoint, trial: int,
               role: str | None = None):
        base = self._base(point, trial, role)
        first = role is None and not any(r.freq_mhz == point.freq_mhz and r.role is None for r in self.store.trials)
        try:
            images, t_ns, e_mj, t0, t1, per_image, tail_mj = self._window(workload, fix=role != Role.BATCH)
        except (StopRequested, KeyboardInterrupt):
            raise
        except Exception as e:  # a failed window is recorded, never analysed, and the sweep goes on; a bug is raised
            if not is_window_failure(e):
                raise
            log.warning("trial %d at %s failed: %s", trial, point.label, e)
            return self._failed(workload, base, e), []
        n, secs, joules = len(images), t_ns / 1e9, (e_mj - (tail_mj or 0)) / 1000
        samples = sampler.window(t0, t1)
        reasons = 0
        for s in samples:
            reasons |= s.reasons
        row = TrialRow(
            **base, images=n, time_s=secs, energy_j=joules, j_per_image=joules / n, s_per_image=secs / n,
            avg_power_w=joules / secs,
            observed_sm_clock_mhz=int(statistics.median(s.sm_mhz for s in samples)) if samples else None,
            throttle_reasons=decode_reasons(reasons & ~BENIGN_REASONS),
            temp_c=round(statistics.fmean(s.temp_c for s in samples), 1) if samples else None, status=TrialStatus.OK,
            s_per_image_median=statistics.median(per_image) if per_image else None,
            gpu_util_pct=_mean_util(samples), energy_tail_j=None if tail_mj is None else tail_mj / 1000,
            **_power_energy(samples, secs))
        if joules <= 0:
            row.status = TrialStatus.FAILED
            row.error = f"the energy counter did not advance over {secs:.3f} s; raise protocol.min_window_s"
        if role == Role.BATCH:  # timing windows of one size: not compared with the reference, not kept
            return row, self.images.rows(workload, images, point, trial, per_image, keep=False, compare=False)
        return row, self.images.rows(workload, images, point, trial, per_image, self.images.keeps(k, first))

    def _window(self, workload: Workload, fix: bool = True):
        """One measured window. Returns (images, elapsed ns, energy mJ, start ns, end ns, seconds per image
        for each image: its batch's time over the batch's size). The sweep's first window fixes the image
        count of every later one (``fix``; not a batch-size window: its batch differs)."""
        req = self.request
        b, min_ns = self.batch, int(req.protocol.min_window_s * 1e9)
        fixed = req.protocol.images_per_trial
        target = fixed or (self.store.manifest.images_per_trial if fix else None) or 0
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
        return images, t1 - t0, e1 - e0, t0, t1, per_image, self._tail_mj(t_step - t1, e1 - e0)

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

    def _power_rows(self, point: ClockPoint, samples: list) -> list[PowerRow]:
        if not samples:
            return []
        t0 = samples[0].t_ns
        return [PowerRow(freq_mhz=point.freq_mhz, t_s=(s.t_ns - t0) / 1e9, power_w=s.power_w, temp_c=s.temp_c,
                         sm_clock_mhz=s.sm_mhz, throttle_reasons=decode_reasons(s.reasons),
                         simulated=self.device.simulated) for s in samples]


class NoBatchSize(SweepdError):
    """Every size of a batch-size list was refused (out of memory) or failed."""


def _power_energy(samples: list, secs: float) -> dict[str, float]:
    """The window's energy from its power samples (their mean times the window's length) and that figure's
    standard error (from the samples' spread), with at least MIN_POWER_SAMPLES of them: a check on the counter."""
    if len(samples) < MIN_POWER_SAMPLES:
        return {}
    watts = [s.power_w for s in samples]
    return {"energy_j_power": statistics.fmean(watts) * secs,
            "energy_j_power_se": statistics.stdev(watts) / len(watts) ** 0.5 * secs}


def _mean_util(samples: list) -> float | None:
    utils = [s.util_pct for s in samples if s.util_pct is not None]
    return round(statistics.fmean(utils), 1) if utils else None
