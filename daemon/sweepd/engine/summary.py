"""Per-clock statistics from trials.csv rows (only successful trials count), what sets the pace at each
clock (the GPU or the host), and how far the baseline clock drifted between its measurements.

The reference for savings and slowdown is the highest clock. It is measured first and again at the
end of the sweep (``role = "drift"`` rows): when the two differ by more than the precision target, the
first measurement is not trusted (it may be a cold start right after the model loaded) and the
re-measurement is the reference instead; the report flags it either way.

A clock is ``gpu``-bound when its time per image is significantly longer than at the highest clock
(Welch's test on the trials' s/image, one-sided at 5 % split over the clocks below the top; every lower clock
then is too: time only grows as the clock falls), or when it is not but the GPU is busy (a median utilisation of at least ``HOST_UTIL_PCT``): then the
GPU's work sets the pace, even if the clock hardly changes it (memory-bound kernels). It is ``host``-bound,
and its energy saving free, only when the GPU idles part of the time and an equivalence test shows the time
flat: the upper 95 % confidence bound of its slowdown (one-sided, Bonferroni over the clocks below the top) is
within ``equivalence_margin_pct``. A clock neither shown slower nor shown flat is ``unresolved``: absence of
evidence is not a claim. Without utilisation readings a flat clock is ``unknown``.

Drift is judged on J/image and s/image at once, each at 2.5 % (two tests, 5 % in all), so a sweep without
drift is flagged in at most about 5 % of sweeps.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Iterable

from sweepd.records.rows import SummaryRow, TrialRow
from sweepd.stats import ALPHA, ci95_pct, ratio_ci95, significantly_greater, welch_diff
from sweepd.vocab import Bound, Objective, Role

HOST_UTIL_PCT = 90.0
DRIFT_ALPHA = ALPHA / 2  # J/image and s/image: two looks at the same re-measurement
EQUIVALENCE_MARGIN_PCT = 2.0  # the default of protocol.equivalence_margin_pct


@dataclass(frozen=True)
class Drift:
    """The baseline clock measured again: how far its mean J/image and s/image moved, in %, each with the
    half-width of that change at 97.5 % (Welch, two metrics at 2.5 % each; inf with a single trial on either
    side)."""
    setting: int | None  # the clock (MHz) or, in a power sweep, the limit (W)
    n: int
    j_pct: float
    s_pct: float
    j_ci95_pct: float
    s_ci95_pct: float

    @property
    def pct(self) -> float:
        """The larger change of the two (signed)."""
        return self.j_pct if abs(self.j_pct) >= abs(self.s_pct) else self.s_pct

    def exceeds(self, limit_pct: float) -> bool:
        """A change beyond the precision target that is also beyond its own noise."""
        return any(abs(x) > max(limit_pct, half) for x, half in ((self.j_pct, self.j_ci95_pct),
                                                                  (self.s_pct, self.s_ci95_pct)))


@dataclass(frozen=True)
class Range:
    """Consecutive clocks (from high to low) with the same bottleneck."""
    from_mhz: int | None
    to_mhz: int | None
    bound: Bound


def desc(order: Iterable[int | None]) -> list[int | None]:
    """Clocks from the highest down (the baseline, None, first: there is only ever that one)."""
    return sorted(order, key=lambda f: -1 if f is None else -f)


def by_clock(trials: Iterable[TrialRow], drift_checks: bool = False) -> dict[int | None, list[TrialRow]]:
    """The successful measurements of each clock, in the order they were first measured (re-measurements for
    drift and batch-size windows left out; with ``drift_checks``, only the re-measurements)."""
    out: dict[int | None, list[TrialRow]] = {}
    for row in trials:
        if row.ok and row.role == (Role.DRIFT if drift_checks else None):
            out.setdefault(row.setting, []).append(row)
    return out


def drifts(trials: list[TrialRow]) -> list[Drift]:
    """Each clock measured again for drift, against its first measurement."""
    first = by_clock(trials)
    out = []
    for f, rows in by_clock(trials, drift_checks=True).items():
        if not first.get(f):
            continue
        change = []
        for k in ("j_per_image", "s_per_image"):
            a, b = [float(getattr(r, k)) for r in rows], [float(getattr(r, k)) for r in first[f]]
            d, half = welch_diff(a, b, DRIFT_ALPHA)
            m = statistics.fmean(b)
            change += [d / m * 100, half / m * 100]
        out.append(Drift(f, len(rows), change[0], change[2], change[1], change[3]))
    return out


def worst_drift(trials: list[TrialRow]) -> Drift | None:
    return max(drifts(trials), key=lambda d: abs(d.pct), default=None)


def reference_trials(trials: list[TrialRow], order: list[int | None], drift_limit_pct: float | None
                     ) -> list[TrialRow]:
    """The trials savings are measured against: the highest clock's, or its re-measurement when the first
    measurement drifted from it by more than ``drift_limit_pct``."""
    clocks = by_clock(trials)
    top = next((f for f in desc(order) if clocks.get(f)), None)
    if top is None and not clocks.get(None):
        return []
    if drift_limit_pct is not None:
        d = next((d for d in drifts(trials) if d.setting == top), None)
        if d is not None and d.exceeds(drift_limit_pct):
            return by_clock(trials, drift_checks=True)[top]
    return clocks.get(top, [])


def _pooled_std(rows: list[TrialRow]) -> float:
    """The SM clock's spread over a setting's trials: within each window and between their means."""
    pairs = [(r.sm_clock_mean_mhz, r.sm_clock_std_mhz or 0.0) for r in rows if r.sm_clock_mean_mhz is not None]
    mean = statistics.fmean(m for m, _ in pairs)
    return round(statistics.fmean(sd * sd + (m - mean) ** 2 for m, sd in pairs) ** 0.5, 1)


def _s(rows: list[TrialRow]) -> list[float]:
    return [float(r.s_per_image) for r in rows]


def _bound(slower: bool, util: float | None, flat: bool) -> Bound:
    """``slower``: significantly slower than the top clock (or below one that is); ``util``: the median of the
    trials' GPU utilisation (a host stall in one window does not decide); ``flat``: its slowdown is shown to be
    within the equivalence margin."""
    if slower:
        return Bound.GPU
    if util is None:
        return Bound.UNKNOWN
    if util >= HOST_UTIL_PCT:
        return Bound.GPU
    return Bound.HOST if flat else Bound.UNRESOLVED


def slowdown_upper(s: list[float], top: list[float], looks: int) -> float:
    """The upper confidence bound of a clock's slowdown against the top clock, in %: one-sided at 5 % split over
    ``looks`` clocks (inf with a single trial on either side)."""
    r, lo, hi = ratio_ci95(s, top, 2 * ALPHA / max(looks, 1))
    return float("inf") if hi is None else (hi - 1) * 100


def summarize(trials: Iterable[TrialRow], order: list[int | None],
              drift_limit_pct: float | None = None, margin_pct: float = EQUIVALENCE_MARGIN_PCT) -> list[SummaryRow]:
    """One row per clock of ``order`` that has at least one ok trial, from the highest clock down; savings and
    slowdown against :func:`reference_trials` (whose clock's row is that reference: never itself against its own
    re-measurement)."""
    trials = list(trials)
    clocks = by_clock(trials)
    backend, simulated = (trials[-1].backend, trials[-1].simulated) if trials else (None, False)
    ref = reference_trials(trials, order, drift_limit_pct)
    if not ref:
        return []
    ref_j = statistics.fmean(float(r.j_per_image) for r in ref)
    ref_s = statistics.fmean(float(r.s_per_image) for r in ref)
    top: list[TrialRow] | None = None
    slower = False  # a higher clock was already significantly slower than the top: the GPU sets the pace below it
    out: list[SummaryRow] = []
    looks = max(1, sum(1 for f in order if clocks.get(f)) - 1)  # the clocks below the top a range may claim
    for freq in desc(order):
        rows = clocks.get(freq)
        if not rows:
            continue
        if top is None and ref and ref[0].setting == freq:
            rows = ref  # the reference clock's row is the reference (its re-measurement, when it drifted)
        top = top or rows
        j = [float(r.j_per_image) for r in rows]
        s = [float(r.s_per_image) for r in rows]
        p = [float(r.avg_power_w) for r in rows]
        u = [r.gpu_util_pct for r in rows if r.gpu_util_pct is not None]
        util = round(statistics.fmean(u), 1) if u else None
        slower = slower or (rows is not top and significantly_greater(s, _s(top), 2 * ALPHA / looks))
        # the top clock is the reference: whether the GPU idles there is its utilisation alone
        flat = rows is top or (not slower and slowdown_upper(s, _s(top), looks) <= margin_pct)
        bound = _bound(slower, statistics.median(u) if u else None, flat)
        jm, sm = statistics.fmean(j), statistics.fmean(s)
        jsd = statistics.stdev(j) if len(j) > 1 else 0.0
        clk = [r.sm_clock_mean_mhz for r in rows if r.sm_clock_mean_mhz is not None]
        out.append(SummaryRow(
            freq_mhz=rows[0].freq_mhz, power_limit_w=rows[0].power_limit_w, n=len(rows), s_per_image_mean=sm,
            s_per_image_std=statistics.stdev(s) if len(s) > 1 else 0.0,
            j_per_image_mean=jm, j_per_image_std=jsd, cv=jsd / jm if jm else 0.0,
            avg_power_w=statistics.fmean(p), edp=jm * sm, ed2p=jm * sm * sm,
            energy_saving_pct_vs_max=(1 - jm / ref_j) * 100, time_change_pct_vs_max=(sm / ref_s - 1) * 100,
            backend=backend, simulated=simulated, ci95_pct=ci95_pct(j) if len(j) > 1 else None,
            s_ci95_pct=ci95_pct(s) if len(s) > 1 else None, gpu_util_pct=util, bound=bound,
            sm_clock_mean_mhz=round(statistics.fmean(clk), 1) if clk else None,
            sm_clock_std_mhz=_pooled_std(rows) if clk else None))
    return out


def bottleneck(rows: list[SummaryRow]) -> list[Range]:
    """The clocks (rows from high to low) grouped into ranges of the same bound."""
    out: list[Range] = []
    for r in rows:
        b = r.bound or Bound.UNKNOWN
        if out and out[-1].bound == b:
            out[-1] = Range(out[-1].from_mhz, r.setting, b)
        else:
            out.append(Range(r.setting, r.setting, b))
    return out


def objective(metric: Objective | str, j_per_image: float, s_per_image: float) -> float:
    """An objective's value: J/image (energy), J x s per image (EDP) or J x s^2 (ED2P)."""
    return Objective(metric).of(j_per_image, s_per_image)


def per_trial(metric: Objective | str, row: TrialRow) -> float:
    """One trial's value of an objective."""
    return Objective(metric).of(float(row.j_per_image), float(row.s_per_image))


def optimum(rows: list[SummaryRow], metric: str) -> SummaryRow | None:
    """The clock with the lowest ``metric`` (j_per_image_mean, edp or ed2p)."""
    return min(rows, key=lambda r: float(getattr(r, metric)), default=None)
