"""The sweep: which clocks are measured, in what order, and when the baseline is checked again.

A list of batch sizes is measured first, at the highest clock (:func:`~sweepd.engine.phases.batch_phase`). Then
either the plan's clocks one after another, or, in adaptive mode, the clock the search (:mod:`sweepd.engine.search`)
asks for next until it stops. The first trial at the first (highest) clock fixes the image count for the whole
sweep, so every clock does the same work with the same seeds; its images are the reference that every other
image's PSNR is measured against. How one clock, one trial and one window are measured is
:mod:`sweepd.engine.phases` and :mod:`sweepd.engine.measure`; a resumed sweep measures only what is missing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sweepd.engine import search
from sweepd.engine.imagerows import ImageRecorder
from sweepd.engine.measure import Measurer, Workload
from sweepd.engine.phases import Observer, batch_phase, drift_check, measure_clock
from sweepd.engine.stop import StopFlag
from sweepd.engine.store import JobStore
from sweepd.engine.summary import by_clock
from sweepd.freqplan import ClockPoint
from sweepd.gpu.base import GpuDevice
from sweepd.gpu.locks import ClockGuard
from sweepd.gpu.sampler import Sampler
from sweepd.records.manifest import SearchRecord
from sweepd.request import SweepRequest

__all__ = ["Observer", "Sweep", "Workload"]


@dataclass
class Sweep:
    request: SweepRequest
    device: GpuDevice
    store: JobStore
    plan: list[ClockPoint]
    guard: ClockGuard
    stop: StopFlag
    observer: Observer
    sleep: Callable[[float], None] | None = None  # how settle and cool-down pass; default: the device's own clock
    continues: bool = False  # an srun step after the first of its driver's (clock_control = "slurm"): the same
    # sweep going on, not one resumed after a stop, so no drift check for having resumed

    @property
    def checks_drift(self) -> bool:
        """The baseline (first, highest) clock is measured again at the end, every ``baseline_every`` clocks and
        when a resumed sweep continues; not in a one-clock sweep."""
        return len(self.plan) > 1 and self.request.frequencies.mode != "baseline"

    def run(self, workload: Workload) -> None:
        """Measure every clock not yet complete. Raises StopRequested when asked to stop."""
        m = Measurer(self.request, self.device, self.store, self.guard, self.stop,
                     ImageRecorder(self.request, self.device, self.store, self.plan), self.sleep or self.device.wait)
        with Sampler(self.device) as sampler:
            if self.request.workload.batch_search:
                batch_phase(m, workload, sampler, self.plan[0])
            if self.request.frequencies.mode == "adaptive":
                self._search(m, workload, sampler)
            else:
                self._down_the_plan(m, workload, sampler)

    def _down_the_plan(self, m: Measurer, workload: Workload, sampler: Sampler) -> None:
        """Every clock not yet complete, in the plan's order, and the baseline again where :meth:`_drift_owed` says:
        decided from the job's rows alone, so a sweep spread over processes (resumed, or one srun step per
        clock) checks the baseline where one process would have."""
        protocol = self.request.protocol
        pending = self._pending()
        if self.checks_drift and not self.continues and self.store.clock_done(self.plan[0], protocol) and \
                (pending or not self.store.last_was_drift_check()):
            drift_check(m, workload, sampler, self.plan, "resumed")  # this process's baseline, before going on
        while True:
            why = self._drift_owed(pending)
            if why:
                drift_check(m, workload, sampler, self.plan, why)
            if not pending:
                return
            measure_clock(m, workload, sampler, self.plan, pending[0], self.observer)
            pending = self._pending()

    def _pending(self) -> list[int]:
        return [k for k, p in enumerate(self.plan) if not self.store.clock_done(p, self.request.protocol)]

    def _drift_owed(self, pending: list[int]) -> str | None:
        """Whether the baseline is measured again now: after the last clock, and after every ``baseline_every``
        clocks since the last check (the baseline's own first measurement counted; never right after it)."""
        trials, protocol = self.store.trials, self.request.protocol
        if not self.checks_drift or not trials or trials[-1].drift_check \
                or not self.store.clock_done(self.plan[0], protocol) or trials[-1].setting == self.plan[0].setting:
            return None
        if not pending:
            return "end of the sweep"
        since = next((i + 1 for i in range(len(trials) - 1, -1, -1) if trials[i].drift_check), 0)
        clocks = {t.setting for t in trials[since:]}
        return "baseline_every" if protocol.baseline_every and len(clocks) >= protocol.baseline_every else None

    def _search(self, m: Measurer, workload: Workload, sampler: Sampler) -> None:
        """Adaptive mode: measure the clock the search asks for next, one at a time, until it stops. Each
        decision depends only on the clocks completed so far, so a resumed sweep makes the same ones."""
        protocol, freqs = self.request.protocol, self.request.frequencies
        candidates = [p.freq_mhz for p in self.plan]
        if self.store.clock_done(self.plan[0], protocol) and not self.continues:
            drift_check(m, workload, sampler, self.plan, "resumed")
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
            measure_clock(m, workload, sampler, self.plan, candidates.index(d.next_mhz[0]), self.observer)
        if len(done) > 1 and not self.store.last_was_drift_check():  # a clock was measured since the last check
            drift_check(m, workload, sampler, self.plan, "end of the sweep")
