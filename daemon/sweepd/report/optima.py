"""The optimal clock for an objective, and how sure we are: its equivalent set and its savings' CIs.

The best clock is the candidate with the lowest mean objective over its trials. Its **equivalent set** holds
every candidate that no other candidate beats significantly: multiple comparisons with the best (Hsu), each a
one-sided Welch test at 5 % divided among the other candidates (Bonferroni), so the truly best clock is in the
set in at least 95 % of sweeps however many clocks compete. With a single trial nothing can be told apart.

**Bounded** answers (at most ``bound_pct`` slower than the reference) decide feasibility under uncertainty: the
answer is the best clock whose measured slowdown is within the bound, and a clock belongs to its equivalent set
unless it is significantly slower than the bound allows (its time change's 95 % CI lies wholly above it) or a
clock that is surely within the bound (CI wholly below) beats it significantly. Clocks of the set whose slowdown
may lie on either side of the bound are named (``uncertain_mhz``).

The energy saving and time change against the reference carry 95 % confidence intervals (delta method on the
ratio of means) that allow for the choice: the answer is the best of its equivalent set, and the best of several
noisy means is biased towards a larger saving (the winner's curse), so its intervals are simultaneous over the
set (each at 5 % / set size, Bonferroni); a clock picked from one holds them at 95 % whichever it is. The reference is never compared with itself: when it is the best clock, the answer is to stay
at the reference, and ``next_best`` gives the best other candidate with its intervals.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sweepd.engine.summary import per_trial
from sweepd.records.rows import SummaryRow, TrialRow
from sweepd.stats import ALPHA, ratio_ci95, significantly_greater
from sweepd.vocab import Objective

@dataclass
class Optimum:
    metric: Objective
    bounded: bool  # within the slowdown bound
    freq_mhz: int | None  # the setting: a clock, or in a power sweep a limit in W (report --json: power_limit_w)
    equivalent_mhz: list[int | None]
    energy_saving_pct: float
    energy_saving_ci95: list[float] | None  # [low, high]; None with a single trial
    time_change_pct: float
    time_change_ci95: list[float] | None
    j_per_image: float
    s_per_image: float
    freq: int | None = field(default=None)  # the same as freq_mhz (the key of sweepd 0.1)
    is_reference: bool = False  # the best clock is the reference itself: stay there (see next_best)
    next_best: "Optimum | None" = None  # then: the best other candidate, with its intervals
    uncertain_mhz: list[int | None] = field(default_factory=list)  # bounded: set members maybe beyond the bound

    def __post_init__(self) -> None:
        self.freq = self.freq_mhz

    def name(self, bound_pct: float) -> str:
        return self.metric.title + (f" within +{bound_pct:g}% time" if self.bounded else "")

    @property
    def shown(self) -> "Optimum":
        """The figures the answer states: this clock's, or the next best's when this is the reference."""
        return self.next_best if self.is_reference and self.next_best is not None else self

    @property
    def saving_certain(self) -> bool:
        """The energy saving's CI lies above zero (False without a CI, or for the reference itself)."""
        return not self.is_reference and bool(self.energy_saving_ci95) and self.energy_saving_ci95[0] > 0


def _change(a: list[float], ref: list[float], alpha: float = ALPHA) -> tuple[float, list[float] | None]:
    """(mean(a) / mean(ref) - 1) in %, with its (1 - alpha) CI."""
    r, lo, hi = ratio_ci95(a, ref, alpha)
    return (r - 1) * 100, None if lo is None else [(lo - 1) * 100, (hi - 1) * 100]


def _figures(metric: str, bounded: bool, rows: list[TrialRow], ref: list[TrialRow], best: SummaryRow,
             equivalent: list[int | None], is_ref: bool) -> Optimum:
    j, s = [float(t.j_per_image) for t in rows], [float(t.s_per_image) for t in rows]
    alpha = ALPHA / max(1, len(equivalent))  # the answer was picked among these: 95 % over all of them at once
    if is_ref:
        dj, dj_ci, ds, ds_ci = 0.0, None, 0.0, None
    else:
        dj, dj_ci = _change(j, [float(t.j_per_image) for t in ref], alpha)
        ds, ds_ci = _change(s, [float(t.s_per_image) for t in ref], alpha)
    return Optimum(metric, bounded, best.setting, equivalent, -dj, None if dj_ci is None else [-dj_ci[1], -dj_ci[0]],
                   ds, ds_ci, best.j_per_image_mean, best.s_per_image_mean, is_reference=is_ref)


def _beaten(values: dict[int | None, list[float]], f: int | None, by: list[int | None]) -> bool:
    """Some clock of ``by`` is significantly better than ``f`` (one-sided Welch at 5 % split among ``by``)."""
    others = [g for g in by if g != f]
    if not others:
        return False
    alpha = 2 * ALPHA / len(others)  # two-sided level whose one-sided half is 5 % / comparisons
    return any(significantly_greater(values[f], values[g], alpha) for g in others)


def _time_ci(rows: list[TrialRow], ref: list[TrialRow]) -> tuple[float, list[float] | None]:
    return _change([float(t.s_per_image) for t in rows], [float(t.s_per_image) for t in ref])


def find(metric: Objective, bounded: bool, rows: list[SummaryRow], trials: dict[int | None, list[TrialRow]],
         ref: list[TrialRow], bound_pct: float, chosen: int | None = None,
         refs: dict[str, list[TrialRow]] | None = None) -> Optimum | None:
    """The optimum of ``metric`` among ``rows`` (within ``bound_pct`` slowdown when ``bounded``): the lowest mean,
    or ``chosen`` (an adaptive search's answer) when it is one of them. ``rows[0]`` is the reference clock; its
    trials are taken as ``ref`` (its re-measurement when the first measurement drifted). ``refs``: a split sweep's
    reference on each GPU (by uuid, :func:`sweepd.engine.gpunorm.references`): a clock's intervals are taken
    against its own GPU's."""
    metric = Objective(metric)
    if not rows or not ref:
        return None
    top = rows[0].setting
    mine = {r.setting: (ref if r.setting == top else trials.get(r.setting, [])) for r in rows}
    present = [r for r in rows if mine[r.setting]]
    own = {f: (refs or {}).get(ts[0].gpu_uuid or "", ref) if ts else ref for f, ts in mine.items()}
    time = {r.setting: ((0.0, [0.0, 0.0]) if r.setting == top else _time_ci(mine[r.setting], own[r.setting]))
            for r in present}
    if bounded:
        cands = [r for r in present if time[r.setting][0] <= bound_pct]  # within the bound as measured
        plausible = [r for r in present if time[r.setting][1] is None or time[r.setting][1][0] <= bound_pct]
        sure = [r.setting for r in present if time[r.setting][1] is not None and time[r.setting][1][1] <= bound_pct]
    else:
        cands = plausible = present
        sure = [r.setting for r in present]
    if not cands:
        return None
    values = {r.setting: [per_trial(metric, t) for t in mine[r.setting]] for r in present}
    mean = {f: sum(v) / len(v) for f, v in values.items()}
    best = min(cands, key=lambda r: mean[r.setting])
    best = next((r for r in cands if r.setting == chosen), best)
    equivalent = [r.setting for r in plausible if r.setting == best.setting or not _beaten(values, r.setting, sure)]
    o = _figures(metric, bounded, mine[best.setting], own[best.setting], best, equivalent, best.setting == top)
    if bounded:
        o.uncertain_mhz = [f for f in equivalent if time[f][1] is None or time[f][1][0] <= bound_pct < time[f][1][1]]
    if o.is_reference:  # the best other: within the bound as measured, else one that may be
        others = [r for r in cands if r.setting != top] or [r for r in plausible if r.setting != top]
        if others:
            nb = min(others, key=lambda r: mean[r.setting])
            o.next_best = _figures(metric, bounded, mine[nb.setting], own[nb.setting], nb, equivalent, False)
    return o
