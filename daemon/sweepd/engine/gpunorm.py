"""A split sweep measured on several GPUs, normalised per GPU.

GPUs of one model differ by several percent in power and up to ~20 % in speed (Sinha et al., SC22), so a curve
stitched from clocks measured on different GPUs is a curve of the GPUs, not of the clock. Every shard of a split
sweep therefore measures the reference (highest) clock on its own GPU, first and last (`engine.runner`: a shard's
plan starts with it; its end-of-sweep baseline check measures it again); the merge marks a later shard's rows at
that clock ``role = "reference"`` (shard 0's first measurement stays the sweep's reference).

Each GPU's **offset** is its reference measurement against the first GPU's (mean J/image and s/image, a ratio
with its 95 % CI). Normalising divides a GPU's rows by its offsets, so that a saving read off the merged curve
(clock on GPU k against GPU 0's reference) equals the ratio within GPU k (clock on GPU k against GPU k's own
reference); the answer's intervals are taken within each GPU too (:func:`references`). Sweeps on one GPU pass
through unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from sweepd.records.rows import TrialRow
from sweepd.stats import ALPHA, ratio_ci95
from sweepd.vocab import Role

REFERENCE = Role.REFERENCE  # a later shard's own measurement of the reference clock


@dataclass(frozen=True)
class GpuOffset:
    """One GPU against the first, at the reference clock: (ratio - 1) in % with 95 % CIs."""
    gpu: int | None  # the GPU's index on its node
    uuid: str
    shards: list[int]
    n: int
    energy_offset_pct: float
    energy_offset_ci95: list[float] | None
    time_offset_pct: float
    time_offset_ci95: list[float] | None

    def differs(self) -> bool:
        """Beyond the noise: the energy or the time offset's 95 % CI excludes zero."""
        return any(ci is not None and (ci[0] > 0 or ci[1] < 0)
                   for ci in (self.energy_offset_ci95, self.time_offset_ci95))


def reference_rows(trials: list[TrialRow], top: int | None) -> dict[str, list[TrialRow]]:
    """Each GPU's successful measurements of the reference clock: the first GPU's first measurement (role None),
    a later shard's own (role "reference")."""
    out: dict[str, list[TrialRow]] = {}
    for r in trials:
        if r.ok and r.setting == top and r.role in (None, REFERENCE):
            out.setdefault(r.gpu_uuid or "", []).append(r)
    return out


def _split(trials: list[TrialRow], top: int | None) -> tuple[str, dict[str, list[TrialRow]]] | None:
    """(the first GPU's uuid, each GPU's reference rows with the first GPU's first), or None for one GPU."""
    refs = reference_rows(trials, top)
    first = next((r.gpu_uuid or "" for r in trials if r.ok and r.setting == top and r.role is None), None)
    if first is None or len(refs) < 2:
        return None
    return first, {first: refs.pop(first), **refs}


def _pct(a: list[float], b: list[float]) -> tuple[float, list[float] | None]:
    r, lo, hi = ratio_ci95(a, b, ALPHA)
    return (r - 1) * 100, None if lo is None else [(lo - 1) * 100, (hi - 1) * 100]


def _mean(rows: list[TrialRow], key: str) -> float:
    return sum(float(getattr(r, key)) for r in rows) / len(rows)


def offsets(trials: list[TrialRow], top: int | None, index_of: dict[str, int | None] | None = None,
            shard_of: dict[str, list[int]] | None = None) -> list[GpuOffset]:
    """Every GPU's offset against the first, the first GPU first (empty for a sweep on one GPU)."""
    split = _split(trials, top)
    if split is None:
        return []
    first, refs = split
    out = []
    for uuid, rows in refs.items():
        if uuid == first:
            j, jci, s, sci = 0.0, [0.0, 0.0], 0.0, [0.0, 0.0]
        else:
            j, jci = _pct([float(r.j_per_image) for r in rows], [float(r.j_per_image) for r in refs[first]])
            s, sci = _pct([float(r.s_per_image) for r in rows], [float(r.s_per_image) for r in refs[first]])
        out.append(GpuOffset((index_of or {}).get(uuid), uuid, (shard_of or {}).get(uuid, []), len(rows),
                             j, jci, s, sci))
    return out


def normalised(trials: list[TrialRow], top: int | None) -> list[TrialRow]:
    """The rows with each GPU's J/image and s/image divided by its offsets against the first GPU (the same rows
    when one GPU measured them all, or a GPU has no measurement of the reference clock to scale by)."""
    split = _split(trials, top)
    if split is None:
        return trials
    first, refs = split
    scale = {u: (_mean(rows, "j_per_image") / _mean(refs[first], "j_per_image"),
                 _mean(rows, "s_per_image") / _mean(refs[first], "s_per_image")) for u, rows in refs.items()}
    out = []
    for r in trials:
        fj, fs = scale.get(r.gpu_uuid or "", (1.0, 1.0))
        if (fj, fs) == (1.0, 1.0) or not r.ok or r.j_per_image is None:
            out.append(r)
            continue
        out.append(r.model_copy(update={"j_per_image": r.j_per_image / fj, "s_per_image": r.s_per_image / fs,
                                        "avg_power_w": r.avg_power_w * fs / fj if r.avg_power_w else r.avg_power_w}))
    return out


def references(trials: list[TrialRow], top: int | None, ref: list[TrialRow]) -> dict[str, list[TrialRow]]:
    """The reference each GPU's savings are taken against, by GPU uuid: its own measurement of the reference clock
    (``trials`` normalised), or ``ref`` (the sweep's) on the first GPU; empty for a sweep measured on one."""
    split = _split(trials, top)
    if split is None:
        return {}
    first, refs = split
    return {u: (ref if u == first else rows) for u, rows in refs.items()}
