"""The optimal clock for an objective, and how sure we are: its equivalent set and its savings' CIs.

The best clock is the one with the lowest mean objective over its trials. Its **equivalent set** is
every candidate clock whose trials are not significantly worse (Welch's test at 95 %: the confidence
interval of the difference of means reaches zero); with a single trial on either side nothing can be
told apart, so every such clock is equivalent. The energy saving and time change against the
reference carry 95 % confidence intervals (delta method on the ratio of means); a saving whose
interval contains zero is not a saving anyone can claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sweepd.engine.summary import per_trial
from sweepd.records.rows import SummaryRow, TrialRow
from sweepd.stats import ratio_ci95, significantly_greater

NAMES = {"energy": "minimum energy", "edp": "minimum EDP", "ed2p": "minimum ED2P"}


@dataclass
class Optimum:
    metric: str  # energy | edp | ed2p
    bounded: bool  # within the slowdown bound
    freq_mhz: int | None
    equivalent_mhz: list[int | None]
    energy_saving_pct: float
    energy_saving_ci95: list[float] | None  # [low, high]; None with a single trial
    time_change_pct: float
    time_change_ci95: list[float] | None
    j_per_image: float
    s_per_image: float
    freq: int | None = field(default=None)  # the same as freq_mhz (the key of sweepd 0.1)

    def __post_init__(self) -> None:
        self.freq = self.freq_mhz

    def name(self, bound_pct: float) -> str:
        return NAMES[self.metric] + (f" within +{bound_pct:g}% time" if self.bounded else "")

    @property
    def saving_certain(self) -> bool:
        """The energy saving's CI lies above zero (False without a CI, or for the reference itself)."""
        return bool(self.energy_saving_ci95) and self.energy_saving_ci95[0] > 0


def _change(a: list[float], ref: list[float]) -> tuple[float, list[float] | None]:
    """(mean(a) / mean(ref) - 1) in %, with its 95 % CI; [0, 0] when ``a`` is the reference itself."""
    r, lo, hi = ratio_ci95(a, ref)
    if a is ref:
        return 0.0, [0.0, 0.0]
    return (r - 1) * 100, None if lo is None else [(lo - 1) * 100, (hi - 1) * 100]


def find(metric: str, bounded: bool, rows: list[SummaryRow], trials: dict[int | None, list[TrialRow]],
         ref: list[TrialRow], bound_pct: float, chosen: int | None = None) -> Optimum | None:
    """The optimum of ``metric`` among ``rows`` (within ``bound_pct`` slowdown when ``bounded``): the lowest mean,
    or ``chosen`` (an adaptive search's answer) when it is one of them."""
    cands = [r for r in rows if trials.get(r.freq_mhz) and (not bounded or r.time_change_pct_vs_max <= bound_pct)]
    if not cands or not ref:
        return None
    values = {r.freq_mhz: [per_trial(metric, t) for t in trials[r.freq_mhz]] for r in cands}
    best = min(cands, key=lambda r: sum(values[r.freq_mhz]) / len(values[r.freq_mhz]))
    best = next((r for r in cands if r.freq_mhz == chosen), best)
    equivalent = [r.freq_mhz for r in cands
                  if not significantly_greater(values[r.freq_mhz], values[best.freq_mhz])]
    rows_best = trials[best.freq_mhz]
    same = rows_best is ref or rows_best == ref
    j = [float(t.j_per_image) for t in rows_best]
    s = [float(t.s_per_image) for t in rows_best]
    j_ref = j if same else [float(t.j_per_image) for t in ref]
    s_ref = s if same else [float(t.s_per_image) for t in ref]
    dj, dj_ci = _change(j, j_ref)
    ds, ds_ci = _change(s, s_ref)
    return Optimum(metric, bounded, best.freq_mhz, equivalent, -dj, None if dj_ci is None else [-dj_ci[1], -dj_ci[0]],
                   ds, ds_ci, best.j_per_image_mean, best.s_per_image_mean)
