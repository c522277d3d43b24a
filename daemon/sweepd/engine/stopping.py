"""How many trials a clock gets under the sequential protocol, decided so that the interval reported for it
still covers 95 %.

Stopping when a clock's own interval first looks narrow stops on the trials whose spread happened to be small:
those intervals are too narrow (81-83 % coverage against the simulated GPU's truth). So a clock's own trials
never decide when it stops. Its count is planned from the spread the sweep has measured at the clocks before
it (the coefficient of variation of J/image, pooled over those clocks: :func:`sweepd.stats.pooled_cv`): the
fewest trials, between ``min_trials`` and ``max_trials``, whose 95 % CI at that spread is within
``target_ci_pct``. The interval reported is then an ordinary t interval over a count fixed in advance.

The first clock measured (the reference of every saving) has no clocks before it: it is planned from its own
first ``min_trials`` trials, with their spread taken at its 90 % upper confidence bound (chi-square), so that it
stops early only when its spread is small beyond doubt (a GPU without noise), never by luck; it is decided once,
after those trials, so the later ones cannot stop it either.

A clock noisier than the ones before it gets fewer trials than its target needs: its interval is still honest,
only wider, and the report says which clocks missed the target. Everything here is a function of trials.csv's
rows, so a resumed sweep plans alike.
"""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Sequence

from sweepd.records.rows import TrialRow
from sweepd.request import Protocol
from sweepd.stats import chi2_quantile, pooled_cv, t95

PILOT_UPPER = 0.10  # the first clock's pilot spread is taken at its (1 - this) upper confidence bound


def plan_for(protocol: Protocol, cv: float) -> int:
    """The fewest trials in [min_trials, max_trials] whose 95 % CI of the mean is within the target at this CV."""
    if not protocol.sequential:
        return protocol.most
    if math.isnan(cv):
        return protocol.most
    for n in range(protocol.least, protocol.most + 1):
        if t95(n - 1) * cv / math.sqrt(n) * 100 <= protocol.target_ci_pct:
            return n
    return protocol.most


def pilot_cv(values: Sequence[float]) -> float:
    """A pilot's CV at its upper confidence bound."""
    m = statistics.fmean(values)
    if len(values) < 2 or not m:
        return math.nan
    cv = statistics.stdev(values) / abs(m)
    df = len(values) - 1
    return cv * math.sqrt(df / chi2_quantile(PILOT_UPPER, df))


def needed(protocol: Protocol, own: Sequence[float], before: Sequence[Sequence[float]]) -> int | None:
    """Trials the clock needs: from the spread of the groups measured ``before`` it, else (the first) from its own
    first min_trials values (None until it has them)."""
    if not protocol.sequential:
        return protocol.most
    cv, df = pooled_cv(before)
    if df:
        return plan_for(protocol, cv)
    if len(own) < protocol.least:
        return None
    return plan_for(protocol, pilot_cv(own[:protocol.least]))


def _j(rows: Iterable[TrialRow]) -> list[float]:
    return [float(r.j_per_image) for r in rows if r.ok and r.j_per_image is not None]


def groups_before(trials: Sequence[TrialRow], freq_mhz: int | None) -> list[list[float]]:
    """The J/image of each clock first measured before ``freq_mhz`` was (all of them, if it has no row yet):
    first measurements only, no drift or batch-size windows."""
    out: dict[int | None, list[TrialRow]] = {}
    for r in trials:
        if r.role is not None:
            continue
        if r.setting == freq_mhz:
            break
        out.setdefault(r.setting, []).append(r)
    return [_j(rows) for rows in out.values()]


def done(protocol: Protocol, trials: Sequence[TrialRow], freq_mhz: int | None) -> bool:
    """The clock has its trials: max_trials attempted, or as many successful ones as it needs."""
    mine = [r for r in trials if r.setting == freq_mhz and r.role is None]
    if len(mine) >= protocol.most:
        return True
    own = _j(mine)
    n = needed(protocol, own, groups_before(trials, freq_mhz))
    return n is not None and len(own) >= n


def windows_done(protocol: Protocol, own: Sequence[float], attempted: int, before: Sequence[Sequence[float]]) -> bool:
    """The same rule for a group of windows outside trials.csv's clock rows (a batch size's)."""
    if attempted >= protocol.most:
        return True
    n = needed(protocol, own, before)
    return n is not None and len(own) >= n
