"""Adaptive search over clocks (``[frequencies] mode = "adaptive"``): which clock to measure next, and when
to stop. A pure function of what has been measured, so a killed sweep that resumes from its trials.csv
reaches the same decisions.

The energy curve of a GPU has one minimum over most of its clock range, at a knee: above it voltage falls
with the clock, so energy drops while time hardly changes; below it voltage stays at its minimum while
time keeps growing as 1/f, so energy and EDP rise steeply. A cubic ``a*f^3 + b`` misfits that kink. The
search therefore:

1. measures a coarse set: the highest clock, the lowest, and three evenly between (by table index);
2. fits a knee-aware model around the best measured clock: a V (a line on each side of a knee clock), the
   knee chosen by least squares over the table, averaged over bootstrap resamples of the trials
   (:func:`expected`): with noisy trials the knee is uncertain, and the average's minimum leans to the
   side where missing it costs less;
3. measures that minimum, then the clocks next to it in the table (the lower one first: below the
   knee the curve is steep), refitting after each clock;
4. stops when that minimum and both its neighbours in the table are measured, or when
   ``max_evaluations`` is reached.

If the measured curve is not unimodal within its confidence intervals (an interior clock significantly
worse than a lower and a higher clock that are both better), it measures the gaps around that bump
before trusting the fit, and says so. The objective of each trial is its J/image times a time per image
taken from a roofline through every measured clock (:mod:`sweepd.engine.roofline`: a clock's own time is
the sweep's noisiest figure, and EDP squares it), each clock's time being its trials' median per-image
times (host stalls are noise, not the clock's effect); the slowdown bound is checked on the measured
times. The answer is the measured clock the averaged fit rates best among those not significantly worse
than the best measured.
"""

from __future__ import annotations

import random
import statistics
from dataclasses import dataclass, field

from sweepd.engine import roofline
from sweepd.vocab import Objective
from sweepd.engine.summary import objective as objective_value
from sweepd.stats import least_squares, significantly_greater

COARSE = 5
MAX_EVALUATIONS = 16
BOOTSTRAP = 32


@dataclass(frozen=True)
class Trial:
    j_per_image: float
    s_per_image: float


@dataclass
class Decision:
    next_mhz: list[int]  # what to measure next (empty: stop)
    chosen_mhz: int | None  # the answer so far
    stopped_because: str | None = None
    notes: list[str] = field(default_factory=list)


def value(metric: str, t: Trial) -> float:
    return objective_value(metric, t.j_per_image, t.s_per_image)


def coarse(n: int) -> list[int]:
    """Indices (0: the highest clock) of the coarse set."""
    return sorted({round(i * (n - 1) / (COARSE - 1)) for i in range(COARSE)}) if n > COARSE else list(range(n))


def span(points: dict[int, list[float]]) -> list[int]:
    """The best measured clock (lowest mean) and up to two measured neighbours on each side: locally the curve
    is two lines; further out it bends."""
    means = {f: statistics.fmean(v) for f, v in points.items()}
    best = min(means, key=means.get)
    clocks = sorted(points)
    i = clocks.index(best)
    return clocks[max(0, i - 2): i + 3]


def fit(points: dict[int, list[float]], supported: list[int], near: list[int] | None = None
        ) -> tuple[int, dict[int, float]]:
    """A V with its tip at a knee, fitted by weighted least squares to the best measured clock and up to two
    measured neighbours on each side (locally the curve is two lines; further out it bends). Returns (the knee,
    the fitted objective at each supported clock in that span). Weights: each clock's trials over its
    variance (a clock with one trial gets the others' pooled variance)."""
    means = {f: statistics.fmean(v) for f, v in points.items()}
    near = near or span(points)
    multi = [statistics.variance(points[f]) / means[f] ** 2 for f in near if len(points[f]) > 1]
    pooled = statistics.fmean(multi) if multi else 1e-4
    ws = [len(points[f]) / max(statistics.variance(points[f]) / means[f] ** 2 if len(points[f]) > 1 else pooled,
                                 pooled / 4, 1e-8) for f in near]
    scale = (max(near) - min(near)) or 1.0
    inside = [f for f in supported if near[0] <= f <= near[-1]]
    fitted: tuple[float, int, list[float]] | None = None
    for knee in inside:
        rows = [[1.0, max(0.0, f - knee) / scale, max(0.0, knee - f) / scale] for f in near]
        coef, sse = least_squares(rows, [means[f] for f in near], ws)
        if fitted is None or sse < fitted[0] - 1e-12:
            fitted = (sse, knee, coef)
    _, knee, (c0, up, down) = fitted
    curve = {f: c0 + up * max(0.0, f - knee) / scale + down * max(0.0, knee - f) / scale for f in inside}
    return knee, curve


def expected(points: dict[int, list[float]], supported: list[int]) -> dict[int, float]:
    """The V fit averaged over BOOTSTRAP resamples of each clock's trials, at each supported clock of the fit's
    span: the objective to expect at a clock given what the measurements leave uncertain. Where the knee is
    uncertain, this average's minimum lies on the side where missing the knee costs less (above it the
    objective rises slowly, below it steeply), not at the single best fit's knee. The resamples are seeded by
    the measurements themselves, so the same trials always give the same curve (a resumed sweep decides alike)."""
    near = span(points)
    rng = random.Random(repr(sorted((f, round(sum(v), 9)) for f, v in points.items())))
    total: dict[int, float] = {}
    for _ in range(BOOTSTRAP):
        sample = {f: [v[rng.randrange(len(v))] for _ in v] if len(v) > 1 else v for f, v in points.items()}
        for f, y in fit(sample, supported, near)[1].items():
            total[f] = total.get(f, 0.0) + y / BOOTSTRAP
    return total


def _choose(points: dict[int, list[float]], curve: dict[int, float]) -> int:
    """Among the measured clocks not significantly worse than the best measured mean, the one the fit rates best:
    the fit pools neighbouring clocks' trials, the test keeps it from overruling what was measured."""
    best = min(points, key=lambda f: statistics.fmean(points[f]))
    near = [f for f in points if not significantly_greater(points[f], points[best])]
    return min(near, key=lambda f: curve.get(f, statistics.fmean(points[f])))


def _bumps(points: dict[int, list[float]]) -> list[int]:
    """Measured clocks significantly worse than both a lower and a higher measured clock."""
    clocks = sorted(points)
    out = []
    for i, f in enumerate(clocks[1:-1], start=1):
        lower = [g for g in clocks[:i] if significantly_greater(points[f], points[g])]
        higher = [g for g in clocks[i + 1:] if significantly_greater(points[f], points[g])]
        if lower and higher:
            out.append(f)
    return out


def decide(supported: list[int], measured: dict[int, list[Trial]], objective: str = "edp",
           max_slowdown_pct: float | None = None, max_evaluations: int = MAX_EVALUATIONS) -> Decision:
    """``supported``: the clocks allowed, highest first; ``measured``: each evaluated clock's trials."""
    idx = {f: i for i, f in enumerate(supported)}
    first = [supported[i] for i in coarse(len(supported))]
    todo = [f for f in first if f not in measured]
    if todo:
        return Decision(todo, None)
    top_s = statistics.fmean(t.s_per_image for t in measured[supported[0]])
    s_fit = roofline.pooled({f: [t.s_per_image for t in ts] for f, ts in measured.items()}, supported) \
        if Objective(objective).time_power else {}  # energy does not use time: no fit to make
    feasible = {f: [value(objective, Trial(t.j_per_image, s_fit.get(f, t.s_per_image))) for t in ts]
                for f, ts in measured.items() if ts and (
        max_slowdown_pct is None or statistics.fmean(t.s_per_image for t in ts) <= top_s * (1 + max_slowdown_pct / 100))}
    if not feasible:
        return Decision([], supported[0], "no clock is within the slowdown bound")
    notes = []
    curve = expected(feasible, supported)
    knee = min(curve, key=curve.get)  # the clock the measurements expect to be best
    chosen = _choose(feasible, curve)
    if len(measured) >= max_evaluations:
        return Decision([], chosen, f"max_evaluations ({max_evaluations}) reached", notes)
    bumps = _bumps(feasible)
    if bumps:
        notes.append("the measured curve is not unimodal within its confidence intervals at "
                      f"{', '.join(map(str, bumps))} MHz: measured more densely there")
        gaps = _gaps([idx[b] for b in bumps], [idx[f] for f in measured], supported)
        if gaps:
            return Decision(gaps, chosen, None, notes)
    if knee not in measured:
        return Decision([knee], chosen, None, notes)
    # the knee is measured: its neighbours in the table tell on which side the optimum lies
    k = idx[knee]
    nxt = [supported[j] for j in (k + 1, k - 1) if 0 <= j < len(supported) and supported[j] not in measured]
    if nxt:
        return Decision(nxt[:1], chosen, None, notes)
    return Decision([], chosen, "the fitted optimum and the clocks next to it in the table are measured", notes)


def _gaps(bumps: list[int], ev: list[int], supported: list[int]) -> list[int]:
    """The clocks halfway between each bump and its nearest measured neighbours (by table index); a halfway
    clock lies strictly between two measured ones, so it is never measured yet."""
    out = []
    for b in bumps:
        for j in (max((e for e in ev if e < b), default=None), min((e for e in ev if e > b), default=None)):
            if j is not None and abs(j - b) > 1:
                f = supported[(b + j) // 2]
                if f not in out:
                    out.append(f)
    return out
