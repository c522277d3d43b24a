"""The time per image an adaptive search compares clocks by: a knee-aware roofline fitted to every clock
measured so far, in place of each clock's own noisy mean.

At batch sizes that keep the GPU busy, time per image follows a roofline in the core clock ``f``: above a
ridge clock ``k`` part of the work waits on memory (or the host) and does not speed up with the clock; below
it the work is compute-bound and takes 1/f longer:

    t(f) = a + b / f                 for f >= k
    t(f) = (a * k + b) / f           below,       i.e.  t(f) = a * max(f, k) / f + b / f,   a, b >= 0

Two coefficients and a ridge from the clock table, fitted by least squares on relative errors (each clock
weighted by its number of trials). Why: a clock's time per image is the noisiest figure of a sweep (the host
stalls and jitters; on a real H200 at batch 4, 3-17 % between 2 s trials above the knee, against 1-4 % for
J/image), and EDP and ED2P take it squared and cubed, so clock-by-clock means rank neighbouring clocks by
noise. The roofline pools every measured clock into each clock's time, so the objective's noise is mostly
J/image's. It keeps the kink: a smooth ``a + b/f`` through all clocks erases the knee the answer sits at.

Its limits: on a real H200 at batch 4 the time below the knee falls a little slower than 1/f (t * f drops
16 % from 1185 to 510 MHz), so the fit is a few per cent off at the lowest clocks, far from any answer; the
answer is still a measured clock, and the report's equivalent set comes from the measured trials, not from
this fit. `bench/adaptive.py` shows what it buys on the simulated boards.
"""

from __future__ import annotations

import math
import statistics

from sweepd.stats import least_squares

MIN_CLOCKS = 3  # two coefficients and a ridge


def basis(f: int, ridge: int) -> list[float]:
    return [max(f, ridge) / f, 1000.0 / f]


def fit(times: dict[int, list[float]], supported: list[int]) -> tuple[int, float, float] | None:
    """(ridge, a, b) of the roofline through each clock's times (s/image), or None where it does not describe
    them: fewer than MIN_CLOCKS clocks, no repeated trials to say how noisy a clock's time is, no ridge (between
    the lowest and highest measured clock) with a, b >= 0, or misfits beyond the noise: the misfit's relative
    variance against the trials' (pooled over clocks) above F's 99th percentile."""
    clocks = sorted(f for f, v in times.items() if v)
    if len(clocks) < MIN_CLOCKS:
        return None
    means = {f: statistics.fmean(times[f]) for f in clocks}
    noise_df = sum(len(times[f]) - 1 for f in clocks)
    if not noise_df:
        return None
    noise = sum((x / means[f] - 1) ** 2 for f in clocks for x in times[f]) / noise_df
    ws = [len(times[f]) / means[f] ** 2 for f in clocks]
    best: tuple[float, int, float, float] | None = None
    for ridge in (f for f in supported if clocks[0] <= f <= clocks[-1]):
        (a, b), sse = least_squares([basis(f, ridge) for f in clocks], [means[f] for f in clocks], ws)
        if a >= 0 and b >= 0 and (best is None or sse < best[0] - 1e-15):
            best = (sse, ridge, a, b)
    misfit_df = len(clocks) - MIN_CLOCKS
    if best is None or (misfit_df and best[0] / misfit_df > f99(misfit_df, noise_df) * max(noise, 1e-12)):
        return None
    return best[1:]


def f99(d1: int, d2: int) -> float:
    """The F distribution's 99th percentile (Paulson's approximation: within 1 % from 10 degrees of freedom in
    the noise, too high below that, so a fit is kept rather than refused on little evidence; inf for d2 = 1)."""
    z, a, b = 2.3263, 2 / (9 * d2), 2 / (9 * d1)
    p, q = 1 - a, 1 - b
    lead = p * p - z * z * a
    if lead <= 0:
        return math.inf
    u = (p * q + math.sqrt(max(p * p * q * q - lead * (q * q - z * z * b), 0.0))) / lead
    return u ** 3


def pooled(times: dict[int, list[float]], supported: list[int]) -> dict[int, float]:
    """Each measured clock's time per image from the roofline through all of them; each clock's own mean where
    there is no fit."""
    fitted = fit(times, supported)
    if fitted is None:
        return {f: statistics.fmean(v) for f, v in times.items() if v}
    ridge, a, b = fitted
    return {f: a * x + b * y for f in times if times[f] for x, y in [basis(f, ridge)]}
