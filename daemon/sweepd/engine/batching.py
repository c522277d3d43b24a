"""Batch size as a second knob (``[workload] batch_size = [1, 2, 4, 8]``): before the clocks, each size is
measured at the highest clock (trials with ``role = "batch"``, as many as the protocol asks for any clock);
a size that does not fit in the GPU's memory fails its first window or its warm-up with the error
(CUDA out of memory), which is recorded and the size refused, never a crash. The size with the lowest mean
objective (``frequencies.objective``, default EDP) is the one every clock is then measured at.

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


@dataclass
class BatchSize:
    size: int
    trials: list[TrialRow]  # the size's successful windows
    refused: str | None  # why the size was dropped (its error), or None


def _windows(rows: list[TrialRow], size: int) -> list[TrialRow]:
    return [r for r in rows if r.batch_trial and r.batch_size == size]


def sizes(rows: list[TrialRow], wanted: list[int]) -> list[BatchSize]:
    """Each wanted size's batch-phase windows, in the request's order."""
    out = []
    for b in wanted:
        mine = _windows(rows, b)
        oom = next((r.error for r in mine if r.out_of_memory), None)
        out.append(BatchSize(b, [r for r in mine if r.ok], oom))
    return out


def size_done(rows: list[TrialRow], size: int, protocol: Protocol) -> bool:
    """The size has its windows (like any clock: the fixed count, the CI target or max_trials), or is refused."""
    mine = _windows(rows, size)
    if any(r.out_of_memory for r in mine):
        return True
    before = [[float(r.j_per_image) for r in _windows(rows, b) if r.ok and r.j_per_image is not None]
              for b in _sizes_before(rows, size)]
    return stopping.windows_done(protocol, [float(r.j_per_image) for r in mine if r.ok and r.j_per_image is not None],
                                 len(mine), before)


def _sizes_before(rows: list[TrialRow], size: int) -> list[int]:
    """The batch sizes whose windows started before ``size``'s (all of them, if it has none yet)."""
    out: list[int] = []
    for r in rows:
        if not r.batch_trial:
            continue
        if r.batch_size == size:
            break
        if r.batch_size not in out:
            out.append(r.batch_size)
    return out


def phase_done(rows: list[TrialRow], wanted: list[int], protocol: Protocol) -> bool:
    return all(size_done(rows, b, protocol) for b in wanted)


def record(rows: list[TrialRow], wanted: list[int], metric: str) -> BatchRecord:
    """The phase as it stands: sizes, the refused ones with their error, and the best of the rest."""
    found = sizes(rows, wanted)
    usable = [s for s in found if s.trials and s.refused is None]
    best = min(usable, key=lambda s: statistics.fmean(per_trial(metric, t) for t in s.trials)).size if usable else None
    return BatchRecord(sizes=list(wanted), objective=metric, chosen=best,
                       refused={str(s.size): s.refused for s in found if s.refused})
