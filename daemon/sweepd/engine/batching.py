"""Batch size and torch.compile as knobs besides the clock (``[workload] batch_size = [1, 2, 4, 8]``,
``compile = [false, true]``): before the clocks, each setting (a batch size, compiled or not: a *variant*) is
measured at the highest clock (trials with ``role = "batch"``, as many as the protocol asks for any clock);
a size that does not fit in the GPU's memory fails its first window or its warm-up with the error
(CUDA out of memory), a denoiser that cannot be compiled with its compile error: recorded, the setting refused,
never a crash. The variant with the lowest mean objective (``frequencies.objective``, default EDP) is the one
every clock is then measured at.

What is decided here depends only on trials.csv's rows, so a resumed sweep decides the same; a phase
interrupted half-way is measured again from its start (the store drops its rows).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from sweepd.engine import stopping
from sweepd.engine.summary import per_trial
from sweepd.records.manifest import BatchRecord
from sweepd.records.rows import TrialRow
from sweepd.request import Protocol


Variant = tuple[int, bool]  # (batch size, compiled)


@dataclass
class BatchSize:
    size: int
    trials: list[TrialRow]  # the variant's successful windows
    refused: str | None  # why the variant was dropped (its error), or None
    compiled: bool = False

    @property
    def label(self) -> str:
        return f"{self.size} compiled" if self.compiled else str(self.size)


def _windows(rows: list[TrialRow], v: Variant) -> list[TrialRow]:
    return [r for r in rows if r.batch_trial and r.batch_size == v[0] and bool(r.compiled) == v[1]]


def _refusal(rows: list[TrialRow]) -> str | None:
    return next((r.error for r in rows if r.out_of_memory or r.compile_failed), None)


def sizes(rows: list[TrialRow], wanted: list[Variant]) -> list[BatchSize]:
    """Each wanted variant's batch-phase windows, in the request's order."""
    out = []
    for v in wanted:
        mine = _windows(rows, v)
        out.append(BatchSize(v[0], [r for r in mine if r.ok], _refusal(mine), v[1]))
    return out


def size_done(rows: list[TrialRow], size: Variant, protocol: Protocol) -> bool:
    """The variant has its windows (like any clock: the fixed count, the CI target or max_trials), or is refused."""
    mine = _windows(rows, size)
    if _refusal(mine) is not None:
        return True
    before = [[float(r.j_per_image) for r in _windows(rows, b) if r.ok and r.j_per_image is not None]
              for b in _sizes_before(rows, size)]
    return stopping.windows_done(protocol, [float(r.j_per_image) for r in mine if r.ok and r.j_per_image is not None],
                                 len(mine), before)


def _sizes_before(rows: list[TrialRow], size: Variant) -> list[Variant]:
    """The variants whose windows started before ``size``'s (all of them, if it has none yet)."""
    out: list[Variant] = []
    for r in rows:
        if not r.batch_trial:
            continue
        v = (r.batch_size, bool(r.compiled))
        if v == size:
            break
        if v not in out:
            out.append(v)
    return out


def phase_done(rows: list[TrialRow], wanted: list[Variant], protocol: Protocol) -> bool:
    return all(size_done(rows, v, protocol) for v in wanted)


def record(rows: list[TrialRow], wanted: list[Variant], metric: str) -> BatchRecord:
    """The phase as it stands: variants, the refused ones with their error, and the best of the rest."""
    found = sizes(rows, wanted)
    usable = [s for s in found if s.trials and s.refused is None]
    best = min(usable, key=lambda s: statistics.fmean(per_trial(metric, t) for t in s.trials)) if usable else None
    return BatchRecord(sizes=sorted({v[0] for v in wanted}, key=[v[0] for v in wanted].index), objective=metric,
                       chosen=best.size if best else None, compile=sorted({v[1] for v in wanted}),
                       chosen_compile=best.compiled if best else None,
                       refused={s.label: s.refused for s in found if s.refused})


def variants_of(rec: BatchRecord) -> list[Variant]:
    """A phase's variants as its record has them (a record older than the compile knob: eager only)."""
    return [(b, c) for c in (rec.compile or [False]) for b in rec.sizes]
