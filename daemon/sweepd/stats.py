"""Small statistics for the measurement protocol: Student's t quantiles and confidence intervals, and a weighted
least-squares solver for the adaptive search's fits.

Welch's test compares two clocks' trials without assuming equal spread.

No SciPy: the two-sided 95 % quantiles of Student's t for 1-30 degrees of freedom are tabulated, and
1.96 (the normal's) stands beyond."""

from __future__ import annotations

import math
import statistics
from typing import Sequence

_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
        2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
        2.045, 2.042]


def t95(df: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom."""
    if df < 1:
        return math.inf
    return _T95[df - 1] if df <= len(_T95) else 1.96


def ci95_half(values: Sequence[float]) -> float:
    """Half-width of the 95 % confidence interval of the mean (inf with fewer than two values)."""
    if len(values) < 2:
        return math.inf
    return t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def ci95_pct(values: Sequence[float]) -> float:
    """That half-width in % of the mean (inf with fewer than two values or a zero mean)."""
    mean = statistics.fmean(values) if values else 0.0
    return ci95_half(values) / abs(mean) * 100 if mean else math.inf


def _se2(values: Sequence[float]) -> float:
    """The squared standard error of the mean."""
    return statistics.variance(values) / len(values)


def _welch_df(a: Sequence[float], b: Sequence[float]) -> int:
    """Welch-Satterthwaite degrees of freedom (rounded down; at least 1)."""
    va, vb = _se2(a), _se2(b)
    if va + vb == 0:
        return len(a) + len(b) - 2
    return max(1, int((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))))


def welch_diff(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(mean(a) - mean(b), the 95 % half-width of that difference by Welch's t). The half-width is inf
    when either sample has fewer than two values: nothing can be said about its spread."""
    d = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return d, math.inf
    return d, t95(_welch_df(a, b)) * math.sqrt(_se2(a) + _se2(b))


def significantly_greater(a: Sequence[float], b: Sequence[float]) -> bool:
    """mean(a) > mean(b) beyond the 95 % confidence interval of the difference (Welch)."""
    d, half = welch_diff(a, b)
    return d > half


def ratio_ci95(a: Sequence[float], b: Sequence[float]) -> tuple[float, float | None, float | None]:
    """mean(a) / mean(b) with its 95 % confidence interval (delta method, Welch's degrees of freedom);
    (ratio, None, None) when either sample has fewer than two values."""
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    r = ma / mb
    if len(a) < 2 or len(b) < 2 or not ma or not mb:
        return r, None, None
    se = abs(r) * math.sqrt(_se2(a) / ma**2 + _se2(b) / mb**2)
    half = t95(_welch_df(a, b)) * se
    return r, r - half, r + half


def least_squares(rows: list[list[float]], ys: list[float], ws: list[float]) -> tuple[list[float], float]:
    """Weighted least squares by the normal equations (tiny systems: a few coefficients, a few dozen rows); returns
    (coefficients, weighted SSE)."""
    m = len(rows[0])
    a = [[sum(w * r[i] * r[j] for r, w in zip(rows, ws)) for j in range(m)] for i in range(m)]
    b = [sum(w * r[i] * y for r, y, w in zip(rows, ys, ws)) for i in range(m)]
    for i in range(m):  # a small ridge keeps a singular system (too few points on one side) solvable
        a[i][i] += 1e-9 * (a[i][i] or 1.0)
    for c in range(m):  # Gaussian elimination with partial pivoting
        p = max(range(c, m), key=lambda r: abs(a[r][c]))
        a[c], a[p], b[c], b[p] = a[p], a[c], b[p], b[c]
        if abs(a[c][c]) < 1e-300:
            continue
        for r in range(c + 1, m):
            f = a[r][c] / a[c][c]
            for k in range(c, m):
                a[r][k] -= f * a[c][k]
            b[r] -= f * b[c]
    x = [0.0] * m
    for c in reversed(range(m)):
        x[c] = (b[c] - sum(a[c][k] * x[k] for k in range(c + 1, m))) / a[c][c] if abs(a[c][c]) > 1e-300 else 0.0
    sse = sum(w * (sum(ci * ri for ci, ri in zip(x, r)) - y) ** 2 for r, y, w in zip(rows, ys, ws))
    return x, sse
