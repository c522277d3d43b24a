"""Per-clock statistics from trials.csv rows: only successful trials count."""

from __future__ import annotations

import statistics
from typing import Iterable, Mapping

SUMMARY_FIELDS = [
    "freq_mhz", "n", "s_per_image_mean", "s_per_image_std", "j_per_image_mean", "j_per_image_std", "cv",
    "avg_power_w", "edp", "ed2p", "energy_saving_pct_vs_max", "time_change_pct_vs_max", "backend", "simulated",
]


def _f(v: object) -> float:
    return float(v)  # type: ignore[arg-type]


def summarize(trials: Iterable[Mapping[str, object]], order: list[str]) -> list[dict]:
    """One row per clock that has at least one ok trial, in plan order (``order`` holds freq keys).

    The reference for savings and slowdown is the first clock in ``order`` with data: the highest.
    """
    by_clock: dict[str, list[Mapping[str, object]]] = {}
    meta: dict[str, object] = {}
    for row in trials:
        meta = {"backend": row["backend"], "simulated": row["simulated"]}
        if row["status"] == "ok":
            by_clock.setdefault(str(row["freq_mhz"]), []).append(row)
    out, ref = [], None
    for key in order:
        rows = by_clock.get(key)
        if not rows:
            continue
        j = [_f(r["j_per_image"]) for r in rows]
        s = [_f(r["s_per_image"]) for r in rows]
        p = [_f(r["avg_power_w"]) for r in rows]
        jm, sm = statistics.fmean(j), statistics.fmean(s)
        jsd = statistics.stdev(j) if len(j) > 1 else 0.0
        row = {"freq_mhz": key, "n": len(rows), "s_per_image_mean": sm,
               "s_per_image_std": statistics.stdev(s) if len(s) > 1 else 0.0,
               "j_per_image_mean": jm, "j_per_image_std": jsd, "cv": jsd / jm if jm else 0.0,
               "avg_power_w": statistics.fmean(p), "edp": jm * sm, "ed2p": jm * sm * sm, **meta}
        ref = ref or row
        row["energy_saving_pct_vs_max"] = (1 - jm / ref["j_per_image_mean"]) * 100
        row["time_change_pct_vs_max"] = (sm / ref["s_per_image_mean"] - 1) * 100
        out.append(row)
    return out


def optimum(rows: list[dict], metric: str) -> dict | None:
    """The clock with the lowest ``metric`` (j_per_image_mean, edp or ed2p)."""
    return min(rows, key=lambda r: float(r[metric]), default=None)
