"""The sweep loop's schedule constants, which the loop (:mod:`sweepd.engine.sweep`) follows and the estimate
(:mod:`sweepd.report.estimate`, and through it SLURM time limits) counts with: one copy. No heavy imports."""

from __future__ import annotations

# The first clock is the reference every saving is measured against: its warm-up goes on until this many
# batches in a row run within 10 % of the fastest, at most FIRST_WARMUP_MAX batches or FIRST_WARMUP_MAX_S.
FIRST_WARMUP_BATCHES = 3
FIRST_WARMUP_MAX = 30
FIRST_WARMUP_MAX_S = 10.0


def first_warmup_images(warmup: int, batch: int) -> int:
    """The images the first clock's warm-up is counted at: a steady run of FIRST_WARMUP_BATCHES batches after as
    many unsteady ones (the first runs of a real GPU are slow), and never fewer than ``warmup``; none when the
    protocol asks for no warm-up."""
    return max(warmup, 2 * FIRST_WARMUP_BATCHES * batch) if warmup else 0
