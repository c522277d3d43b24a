"""Small statistics for the measurement protocol: Student's t quantiles and confidence intervals.

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
