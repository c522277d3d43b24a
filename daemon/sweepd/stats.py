"""Small statistics for the measurement protocol: Student's t quantiles and confidence intervals, Welch's test,
ratio CIs, and a weighted least-squares solver for the adaptive search's fits.

No SciPy: Student's t distribution function is the regularized incomplete beta function (its continued
fraction, as in Numerical Recipes), and a quantile is found by bisection on it, for any degrees of freedom,
fractional ones too (Welch's). ``alpha`` is always the two-sided error rate: a one-sided test at level a uses
``alpha = 2 a``; a family of k tests is corrected by Bonferroni (``alpha / k``).
"""

from __future__ import annotations

import math
import statistics
from functools import lru_cache
from typing import Sequence

ALPHA = 0.05


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln) * _betacf(b, a, 1 - x) / b


def t_tail(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom (t >= 0)."""
    return 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))


@lru_cache(maxsize=4096)
def t_quantile(alpha: float, df: float) -> float:
    """The two-sided ``1 - alpha`` quantile of Student's t: P(|T| > q) = alpha (inf with df < 1 or alpha <= 0)."""
    if df < 1 or alpha <= 0:
        return math.inf
    if alpha >= 1:
        return 0.0
    if df > 1e7:
        return statistics.NormalDist().inv_cdf(1 - alpha / 2)
    lo, hi = 0.0, 1.0
    while t_tail(hi, df) > alpha / 2:
        hi *= 2
    for _ in range(80):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_tail(mid, df) > alpha / 2 else (lo, mid)
    return (lo + hi) / 2


def t95(df: float) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom."""
    return t_quantile(ALPHA, round(df, 6))


def ci95_half(values: Sequence[float], alpha: float = ALPHA) -> float:
    """Half-width of the (1 - alpha) confidence interval of the mean (inf with fewer than two values)."""
    if len(values) < 2:
        return math.inf
    return t_quantile(alpha, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def ci95_pct(values: Sequence[float], alpha: float = ALPHA) -> float:
    """That half-width in % of the mean (inf with fewer than two values or a zero mean)."""
    mean = statistics.fmean(values) if values else 0.0
    return ci95_half(values, alpha) / abs(mean) * 100 if mean else math.inf


def _se2(values: Sequence[float]) -> float:
    """The squared standard error of the mean."""
    return statistics.variance(values) / len(values)


def welch_df(a: Sequence[float], b: Sequence[float]) -> float:
    """Welch-Satterthwaite degrees of freedom, not rounded (len(a) + len(b) - 2 when neither sample varies)."""
    va, vb = _se2(a), _se2(b)
    if va + vb == 0:
        return float(len(a) + len(b) - 2)
    return (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))


def welch_diff(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> tuple[float, float]:
    """(mean(a) - mean(b), the (1 - alpha) half-width of that difference by Welch's t). The half-width is inf
    when either sample has fewer than two values: nothing can be said about its spread."""
    d = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return d, math.inf
    return d, t_quantile(alpha, round(welch_df(a, b), 6)) * math.sqrt(_se2(a) + _se2(b))


def significantly_greater(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> bool:
    """mean(a) > mean(b) beyond the (1 - alpha) confidence interval of the difference (Welch): a one-sided test at
    level alpha / 2."""
    d, half = welch_diff(a, b, alpha)
    return d > half


def ratio_ci95(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA
               ) -> tuple[float, float | None, float | None]:
    """mean(a) / mean(b) with its (1 - alpha) confidence interval (delta method, Welch's degrees of freedom);
    (ratio, None, None) when either sample has fewer than two values."""
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    r = ma / mb
    if len(a) < 2 or len(b) < 2 or not ma or not mb:
        return r, None, None
    sa, sb = _se2(a) / ma**2, _se2(b) / mb**2  # relative squared standard errors
    df = (sa + sb) ** 2 / (sa**2 / (len(a) - 1) + sb**2 / (len(b) - 1)) if sa + sb else len(a) + len(b) - 2.0
    half = t_quantile(alpha, round(df, 6)) * abs(r) * math.sqrt(sa + sb)
    return r, r - half, r + half


def _gamma_p(a: float, x: float) -> float:
    """The regularized lower incomplete gamma function P(a, x) (series, or continued fraction above a + 1)."""
    if x <= 0:
        return 0.0
    ln = -x + a * math.log(x) - math.lgamma(a)
    if x < a + 1:
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1
            term *= x / ap
            total += term
            if abs(term) < abs(total) * 1e-15:
                break
        return total * math.exp(ln)
    tiny = 1e-300
    b, c, d = x + 1 - a, 1 / tiny, 1 / (x + 1 - a)
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = 1 / (d if abs(d) > tiny else tiny)
        c = b + an / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return 1.0 - math.exp(ln) * h


@lru_cache(maxsize=1024)
def chi2_quantile(p: float, df: float) -> float:
    """The p quantile of the chi-square distribution with ``df`` degrees of freedom."""
    lo, hi = 0.0, max(1.0, df)
    while _gamma_p(df / 2, hi / 2) < p:
        hi *= 2
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _gamma_p(df / 2, mid / 2) < p else (lo, mid)
    return (lo + hi) / 2


def pooled_cv(groups: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The spread of values around their own group's mean, relative to it, pooled over groups (a sweep's clocks):
    (coefficient of variation, degrees of freedom)."""
    ss, df = 0.0, 0
    for g in groups:
        if len(g) < 2:
            continue
        m = statistics.fmean(g)
        if not m:
            continue
        ss += sum((x / m - 1) ** 2 for x in g)
        df += len(g) - 1
    return (math.sqrt(ss / df) if df else math.nan), df


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
