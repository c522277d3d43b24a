"""The sweep's phases, each over one :class:`~sweepd.engine.measure.Measurer`:

- :func:`batch_phase`: each size of a batch-size list at the highest clock; the clocks then use the best
  (:mod:`sweepd.engine.batching`);
- :func:`measure_clock`: one clock: lock, settle, warm up, trials until the protocol is satisfied, its summary;
- :func:`drift_check`: the baseline (first, highest) clock measured again, so that a drift since its first
  measurement (or a cold start then) shows.

Which clocks are measured, and in what order, is :mod:`sweepd.engine.sweep`'s."""

from __future__ import annotations

import logging
from typing import Protocol

from sweepd.engine import batching
from sweepd.engine.measure import Measurer, Workload
from sweepd.engine.summary import Drift, by_clock, drifts
from sweepd.errors import CompileFailed, SweepdError
from sweepd.freqplan import ClockPoint
from sweepd.gpu.base import is_out_of_memory
from sweepd.gpu.sampler import Sampler
from sweepd.records.rows import SummaryRow, TrialRow
from sweepd.vocab import Role

log = logging.getLogger(__name__)
progress_log = logging.getLogger("sweepd.progress")  # per-clock lines for sweep.log (the terminal has its own)


class Observer(Protocol):
    def clock_started(self, k: int, n: int, point: ClockPoint) -> None: ...
    def trial_done(self, k: int, n: int, point: ClockPoint, row: TrialRow) -> None: ...
    def clock_done(self, k: int, n: int, point: ClockPoint, summary: list[SummaryRow]) -> None: ...


class NoBatchSize(SweepdError):
    """Every size of a batch-size list was refused (out of memory) or failed."""


def measure_clock(m: Measurer, workload: Workload, sampler: Sampler, plan: list[ClockPoint], k: int,
                  observer: Observer) -> None:
    point, protocol, n = plan[k], m.request.protocol, len(plan)
    m.stop.check()
    observer.clock_started(k, n, point)
    m.settle(point)
    m.warm_up(workload)
    sampler.take()
    first = True
    while not m.store.clock_done(point, protocol):  # fixed trials, or until the CI target
        trial = m.store.next_trial(point)  # after a batch-size phase's windows at this clock
        if not first:
            m.cool_down()
        m.stop.check()
        row, image_rows = m.trial(workload, sampler, k, point, trial)
        m.store.commit_trial(row, image_rows)
        observer.trial_done(k, n, point, row)
        first = False
    summary = m.store.commit_clock(m.power_rows(point, sampler.take()), plan)
    m.account()
    observer.clock_done(k, n, point, summary)
    _log_clock(k, n, point, summary)


def drift_check(m: Measurer, workload: Workload, sampler: Sampler, plan: list[ClockPoint], why: str) -> None:
    """Measure the baseline clock again (``protocol.least`` trials, rows with role "drift"): its first
    measurement is the reference of every saving, so a drift since (or a cold start then) must show. A drift
    beyond the target and its noise takes the re-measurement to as many trials as the first had: savings are
    then taken against it, at the same precision."""
    protocol, point = m.request.protocol, plan[0]
    m.stop.check()
    m.settle(point)
    m.warm_up(workload)
    for _ in range(protocol.least):
        _drift_trial(m, workload, sampler, point)
    d = _drift(m, point)
    if d is not None and d.exceeds(protocol.target_ci_pct):
        # savings will be taken against the re-measurement: it gets as many trials as the first measurement had
        first = len(by_clock(m.store.trials).get(point.setting, []))
        for _ in range(max(0, first - d.n)):
            _drift_trial(m, workload, sampler, point)
    sampler.take()  # power.csv keeps each clock's own trace only
    m.store.write_summary(plan)
    m.account()
    d = _drift(m, point)
    if d is not None:
        progress_log.info("baseline %s measured again (%s): J/image %+.1f%%, s/image %+.1f%% since its first "
                          "measurement", point.label, why, d.j_pct, d.s_pct)


def _drift_trial(m: Measurer, workload: Workload, sampler: Sampler, point: ClockPoint) -> None:
    m.cool_down()
    m.stop.check()
    row, image_rows = m.trial(workload, sampler, 0, point, m.store.next_trial(point), role=Role.DRIFT)
    m.store.commit_trial(row, image_rows)


def _drift(m: Measurer, point: ClockPoint) -> Drift | None:
    return next((d for d in drifts(m.store.trials) if d.setting == point.setting), None)


def batch_phase(m: Measurer, workload: Workload, sampler: Sampler, point: ClockPoint) -> None:
    """Each batch size and compile setting at the highest clock; the clocks then use the best. Raises NoBatchSize
    if none works."""
    req = m.request
    wanted, protocol = req.workload.variants, req.protocol
    if not batching.phase_done(m.store.trials, wanted, protocol):
        m.stop.check()
        m.settle(point)
        for v in wanted:
            m.batch_now, m.compile_now = v
            try:
                _measure_size(m, workload, sampler, point, v)
            finally:
                m.batch_now = m.compile_now = None
        sampler.take()  # power.csv keeps each clock's own trace only
        m.account()
    rec = batching.record(m.store.trials, wanted, req.frequencies.search_objective)
    m.store.set_batch(rec)
    if rec.chosen is None:
        why = "; ".join(f"{b}: {e}" for b, e in rec.refused.items()) or "every window failed"
        both = " (compiled or not)" if len(req.workload.compile_options) > 1 else ""
        raise NoBatchSize(f"no batch size of {req.workload.batch_sizes}{both} could be measured ({why})")
    progress_log.info("batch sizes %s at %s: the clocks are measured at batch %d%s%s", rec.sizes, point.label,
                      rec.chosen, ", compiled" if rec.chosen_compile else "",
                      "".join(f"; {b} refused ({e})" for b, e in rec.refused.items()))


def _measure_size(m: Measurer, workload: Workload, sampler: Sampler, point: ClockPoint,
                  v: batching.Variant) -> None:
    protocol = m.request.protocol
    if batching.size_done(m.store.trials, v, protocol):
        return
    m.stop.check()
    b = v[0]
    try:
        m.warm_up(workload, full=True)  # compiling happens here, in the first compiled call
    except Exception as e:  # a batch too large for the GPU, or a model that cannot compile: the setting is refused
        if not (is_out_of_memory(e) or isinstance(e, CompileFailed)):
            raise
        log.warning("batch %d%s at %s refused: %s", b, " compiled" if v[1] else "", point.label, e)
        m.store.commit_trial(m.failed(workload, point, m.store.next_trial(point), Role.BATCH, e), [])
        return
    while not batching.size_done(m.store.trials, v, protocol):  # an out-of-memory window ends it too
        m.stop.check()
        row, image_rows = m.trial(workload, sampler, 0, point, m.store.next_trial(point), role=Role.BATCH)
        m.store.commit_trial(row, image_rows)
        progress_log.info("batch %d at %s, window %d: %s", b, point.label, row.trial,
                          f"{row.j_per_image:.2f} J/image, {row.s_per_image:.3f} s/image" if row.ok else row.error)


def _log_clock(k: int, n: int, point: ClockPoint, summary: list[SummaryRow]) -> None:
    row = next((r for r in summary if r.setting == point.setting), None)
    if row is None:
        progress_log.info("%s %d/%d %s: every trial failed", point.noun, k + 1, n, point.label)
        return
    progress_log.info("%s %d/%d %s: %d trials, %.3f s/image, %.2f J/image (CV %.1f%%), %.0f W", point.noun, k + 1,
                      n, point.label, row.n, row.s_per_image_mean, row.j_per_image_mean, row.cv * 100, row.avg_power_w)
