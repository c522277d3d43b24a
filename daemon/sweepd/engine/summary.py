"""Per-clock statistics from trials.csv rows: only successful trials count."""

from __future__ import annotations

import statistics
from typing import Iterable

from sweepd.records.rows import SummaryRow, TrialRow
from sweepd.stats import ci95_pct


def summarize(trials: Iterable[TrialRow], order: list[int | None]) -> list[SummaryRow]:
    """One row per clock that has at least one ok trial, in plan order (``order`` holds the clocks).

    The reference for savings and slowdown is the first clock in ``order`` with data: the highest.
    """
    by_clock: dict[int | None, list[TrialRow]] = {}
    backend, simulated = None, False
    for row in trials:
        backend, simulated = row.backend, row.simulated
        if row.ok:
            by_clock.setdefault(row.freq_mhz, []).append(row)
    out: list[SummaryRow] = []
    ref: SummaryRow | None = None
    for freq in order:
        rows = by_clock.get(freq)
        if not rows:
            continue
        j = [float(r.j_per_image) for r in rows]
        s = [float(r.s_per_image) for r in rows]
        p = [float(r.avg_power_w) for r in rows]
        jm, sm = statistics.fmean(j), statistics.fmean(s)
        jsd = statistics.stdev(j) if len(j) > 1 else 0.0
        ref_j, ref_s = (ref.j_per_image_mean, ref.s_per_image_mean) if ref else (jm, sm)
        row = SummaryRow(freq_mhz=freq, n=len(rows), s_per_image_mean=sm,
                         s_per_image_std=statistics.stdev(s) if len(s) > 1 else 0.0,
                         j_per_image_mean=jm, j_per_image_std=jsd, cv=jsd / jm if jm else 0.0,
                         avg_power_w=statistics.fmean(p), edp=jm * sm, ed2p=jm * sm * sm,
                         energy_saving_pct_vs_max=(1 - jm / ref_j) * 100, time_change_pct_vs_max=(sm / ref_s - 1) * 100,
                         backend=backend, simulated=simulated, ci95_pct=ci95_pct(j) if len(j) > 1 else None)
        ref = ref or row
        out.append(row)
    return out


METRICS = {"energy": "j_per_image_mean", "edp": "edp", "ed2p": "ed2p"}


def optimum(rows: list[SummaryRow], metric: str) -> SummaryRow | None:
    """The clock with the lowest ``metric`` (j_per_image_mean, edp or ed2p)."""
    return min(rows, key=lambda r: float(getattr(r, metric)), default=None)
