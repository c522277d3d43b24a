"""The time per image an adaptive search compares clocks by: a knee-aware roofline fitted to every clock
measured so far, in place of each clock's own noisy mean.

Time per image follows a roofline in the core clock ``f``: below a ridge clock ``k`` the work is
compute-bound and part of it takes 1/f longer; above it something else sets the pace. Two shapes, each two
coefficients ``a, b >= 0`` and a ridge from the clock table:

    sloped:  t(f) = a + b / f  above k,   (a * k + b) / f  below   (above: partly memory-bound, partly not;
                                                                    below: all of it compute-bound)
    flat:    t(f) = a + b / k  above k,   a + b / f        below   (above: the host or memory sets the pace;
                                                                    below: a part ``a`` never scales)

The simulated boards follow the first; a real H200 at batch 4 looks like the second (flat above about
1300 MHz, t = 0.09 + 240/f s below). Both are fitted by least squares on relative errors (each clock
weighted by its number of trials) and the one with the smaller misfit is used.

Why: a clock's time per image is the noisiest figure of a sweep (the host stalls and jitters; on that H200,
3-17 % between 2 s trials above the knee, against 1-4 % for J/image), and EDP and ED2P take it squared and
cubed, so clock-by-clock means rank neighbouring clocks by noise. The roofline pools every measured clock
into each clock's time, so the objective's noise is mostly J/image's. It keeps the kink: a smooth
``a + b/f`` through all clocks erases the knee the answer sits at. Where the fit misses the measured times
by more than their noise it is not used (each clock keeps its own mean); where the times are too noisy to
place a ridge (the H200's top clocks), it comes out as nearly a smooth curve. Either way the answer is a
measured clock, and the report's equivalent set comes from the measured trials, not from this fit.
`bench/adaptive.py` shows what it buys on the simulated boards.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from sweepd.stats import least_squares

MIN_CLOCKS = 3  # two coefficients and a ridge
SHAPES = ("sloped", "flat")


@dataclass(frozen=True)
class Roofline:
    shape: str
    ridge_mhz: int
    a: float
    b: float

    def time(self, f: int) -> float:
        return sum(c * x for c, x in zip((self.a, self.b), basis(self.shape, f, self.ridge_mhz)))


def basis(shape: str, f: int, ridge: int) -> tuple[float, float]:
    """What ``a`` and ``b`` multiply at ``f`` (b per GHz, to keep the normal equations well scaled)."""
    if shape == "flat":
        return 1.0, 1000.0 / min(f, ridge)
    return max(f, ridge) / f, 1000.0 / f


def fit(times: dict[int, list[float]], supported: list[int]) -> Roofline | None:
    """The roofline (of either shape) through each clock's times (s/image), or None where it does not describe
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
    best: tuple[float, Roofline] | None = None
    for shape in SHAPES:
        for ridge in (f for f in supported if clocks[0] <= f <= clocks[-1]):
            (a, b), sse = least_squares([list(basis(shape, f, ridge)) for f in clocks], [means[f] for f in clocks], ws)
            if a >= 0 and b >= 0 and (best is None or sse < best[0] - 1e-15):
                best = (sse, Roofline(shape, ridge, a, b))
    misfit_df = len(clocks) - MIN_CLOCKS
    if best is None or (misfit_df and best[0] / misfit_df > f99(misfit_df, noise_df) * max(noise, 1e-12)):
        return None
    return best[1]


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
    line = fit(times, supported)
    return {f: line.time(f) if line else statistics.fmean(v) for f, v in times.items() if v}
