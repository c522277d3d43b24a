"""How the simulated GPU runs under a power cap (`nvmlDeviceSetPowerManagementLimit`, `nvidia-smi -pl`).

Assumptions, none of them measured by sweepd yet (a GPU machine's `bench/gpu_knobs.sh` is to replace them):

- **The firmware regulates a cap by the clock** (DVFS): under a limit the GPU runs at the highest clocks whose
  average power fits it. Between two supported clocks it *dithers*: it spends a share of the time at the clock
  above the limit and the rest at the one below, so that the average power is the limit. That is why a capped
  GPU's observed clock has a spread where a locked one has none, and why a cap and a lock at the same mean clock
  can differ (the literature on inference, 2025-26, finds locking the clock saves more than capping power).
- **Each batch starts above the limit**: the controller reacts to the power it measured, so the first
  ``OVERSHOOT_S`` of a busy batch after an idle gap run at the uncapped clock, drawing its power.
- Power at a clock is the calibrated model's (:mod:`sweepd.gpu.simmodel`); a cap never raises the clock above a
  locked one, and a cap above the locked clock's power changes nothing.
- A cap below the lowest clock's power leaves the GPU at its lowest clock, drawing more than the limit. The
  simulated boards' clock-independent power share comes from fitting the SD anchors (A100 68 %, H100 85 % of
  full-clock power), higher than a real H200's sweep shows (about half): caps near a simulated board's minimum
  hit that floor where a real board would likely not (BENCHMARKS.md, issue #29).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

OVERSHOOT_S = 0.05  # assumed: one reaction of the power controller (its loop runs every few tens of ms)


@dataclass(frozen=True)
class CapMix:
    """Where a capped GPU runs: a time share ``hi_share`` at ``hi_mhz``, the rest at ``lo_mhz``."""
    lo_mhz: int
    hi_mhz: int
    hi_share: float

    @property
    def mean_mhz(self) -> float:
        return self.hi_share * self.hi_mhz + (1 - self.hi_share) * self.lo_mhz

    def clock_at(self, k: int) -> int:
        """The clock of the k-th 100 ms sample: hi for a ``hi_share`` of them, spread evenly (the dithering)."""
        return self.hi_mhz if int((k + 1) * self.hi_share) > int(k * self.hi_share) else self.lo_mhz

    def slowdown(self, slowdown_at: Callable[[float], float]) -> float:
        """Time per unit of work against the highest clock's: the work done at each clock in its share of the time."""
        rate = self.hi_share / slowdown_at(self.hi_mhz) + (1 - self.hi_share) / slowdown_at(self.lo_mhz)
        return 1.0 / rate

    def watts(self, watts_at: Callable[[float], float]) -> float:
        return self.hi_share * watts_at(self.hi_mhz) + (1 - self.hi_share) * watts_at(self.lo_mhz)


def mix(limit_w: float, top_mhz: int, clocks: list[int], watts_at: Callable[[float], float]) -> CapMix | None:
    """The capped GPU's clocks when ``top_mhz`` (the locked clock, or the highest) would draw more than ``limit_w``;
    None when it fits. Below the lowest clock's power the GPU stays at the lowest clock (a cap cannot do better)."""
    if watts_at(top_mhz) <= limit_w:
        return None
    below = sorted(c for c in clocks if c <= top_mhz)
    fits = [c for c in below if watts_at(c) <= limit_w]
    if not fits:
        return CapMix(below[0], below[0], 0.0)
    lo = fits[-1]
    hi = next(c for c in below if c > lo)
    share = (limit_w - watts_at(lo)) / (watts_at(hi) - watts_at(lo))
    return CapMix(lo, hi, min(1.0, max(0.0, share)))
