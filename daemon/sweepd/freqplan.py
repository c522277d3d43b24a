"""Which clocks (or, in a power sweep, which power limits) a sweep visits, checked against the GPU, highest first.

The highest clock (limit) comes first because it is the reference: savings, slowdowns and image PSNR
are all measured against it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from sweepd.configfile import short_value
from sweepd.errors import InputError
from sweepd.gpu.base import GpuDevice
from sweepd.request import Frequencies, Power, SweepRequest
from sweepd.vocab import Knob


@dataclass(frozen=True)
class ClockPoint:
    """One setting of the sweep's knob: a locked clock, or (a power sweep) a power limit with the clock left free."""
    freq_mhz: int | None  # None: baseline, the GPU picks its own clock
    mem_mhz: int | None
    power_limit_w: int | None = None  # a power sweep's limit (freq_mhz None: the firmware moves the clock)

    @property
    def setting(self) -> int | None:
        """The knob's value here, as rows record it (:attr:`sweepd.records.rows.TrialRow.setting`)."""
        return self.power_limit_w if self.power_limit_w is not None else self.freq_mhz

    @property
    def knob(self) -> Knob:
        return Knob.CLOCK if self.power_limit_w is None else Knob.POWER_LIMIT

    @property
    def noun(self) -> str:
        return self.knob.noun

    @property
    def label(self) -> str:
        if self.power_limit_w is not None:
            return f"{self.power_limit_w}W"
        return "baseline" if self.freq_mhz is None else f"{self.freq_mhz}MHz"

    @property
    def key(self) -> str:
        """How the setting appears in the CSVs (freq_mhz, or power_limit_w)."""
        return "" if self.setting is None else str(self.setting)


def representative(n: int) -> set[int]:
    """Positions (0 = highest clock) whose images research mode keeps: the max, the min and every 10th."""
    return {k for k in range(n) if k % 10 == 0} | ({n - 1} if n else set())


class ClockPlanError(InputError):
    def __init__(self, field: str, value: object, reason: str):
        self.field, self.value, self.reason = field, value, reason
        super().__init__(f"{field}: {short_value(value)}: {reason}")


MAX_NAMED = 5  # unsupported clocks named one by one in an error; the rest are counted


def nearest(supported: list[int], f: int) -> list[int]:
    """The supported clocks just below and just above f."""
    asc = sorted(supported)
    i = bisect.bisect_left(asc, f)
    return [x for x in (asc[i - 1] if i > 0 else None, asc[i] if i < len(asc) else None) if x is not None]


def plan_clocks(freqs: Frequencies, device: GpuDevice) -> list[ClockPoint]:
    mems = device.memory_clocks()
    mem = freqs.memory_mhz if freqs.memory_mhz is not None else mems[0]
    if mem not in mems:
        raise ClockPlanError("frequencies.memory_mhz", mem, f"not a memory clock of {device.name}; supported: {mems}")
    supported = device.graphics_clocks(mem)
    if freqs.mode == "baseline":
        return [ClockPoint(None, None)]
    if freqs.mode in ("dvfs", "adaptive"):  # adaptive: the candidates; the search picks which to measure
        clocks = [f for f in supported if f >= freqs.floor_mhz][:: freqs.stride]
        if not clocks:
            raise ClockPlanError("frequencies.floor_mhz", freqs.floor_mhz,
                                 f"above every supported clock of {device.name} (highest {supported[0]} MHz)")
        return [ClockPoint(f, mem) for f in clocks]
    problems = []
    for i, f in enumerate(freqs.clocks or []):
        if f not in supported:
            near = " or ".join(f"{x} MHz" for x in nearest(supported, f))
            problems.append(f"[{i}] {f} MHz is not supported by {device.name} at memory {mem} MHz; nearest: {near}")
    if problems:
        more = f"{len(problems)} unsupported clocks, the first {MAX_NAMED}: " if len(problems) > MAX_NAMED else ""
        raise ClockPlanError("frequencies.list", freqs.clocks, more + "; ".join(problems[:MAX_NAMED]))
    return [ClockPoint(f, mem) for f in sorted(freqs.clocks or [], reverse=True)][:: freqs.stride]


def plan_for(request: SweepRequest, device: GpuDevice) -> list[ClockPoint]:
    """The settings a request sweeps on this GPU: its power limits ([power]) or its clocks."""
    return plan_limits(request.power, device) if request.power is not None else plan_clocks(request.frequencies, device)


def plan_limits(power: Power, device: GpuDevice) -> list[ClockPoint]:
    """A power sweep's limits, highest first, each within the board's range
    (``nvmlDeviceGetPowerManagementLimitConstraints``); one outside it is refused naming the range."""
    have = device.power_limits_w()
    if power.limits is not None:
        out = [w for w in power.limits if not have.min_w <= w <= have.max_w]
        if out:
            raise ClockPlanError("power.limits", power.limits,
                                 f"{', '.join(f'{w} W' for w in out)} outside what {device.name} takes: {have.min_w} "
                                 f"to {have.max_w} W (default {have.default_w} W)")
        limits = sorted(power.limits, reverse=True)
    else:
        low = power.min_w if power.min_w is not None else have.min_w
        if not have.min_w <= low <= have.max_w:
            raise ClockPlanError("power.min_w", low, f"outside what {device.name} takes: {have.min_w} to {have.max_w} W")
        assert power.step_w is not None
        limits = list(range(have.max_w, low - 1, -power.step_w))
    return [ClockPoint(None, None, w) for w in limits]


def measuring_order(plan: list[ClockPoint], order: str, seed: int) -> list[ClockPoint]:
    """The order clocks are measured in. The highest always comes first: it is the reference every saving and
    every image is compared with, and it is measured again at the end. After it:

    - ``descending``: from high to low;
    - ``serpentine``: down through every other clock, then back up through the rest, so that neighbouring
      clocks are measured far apart in time and in opposite directions (a slow drift shows as a zig-zag,
      not as a smooth clock effect);
    - ``shuffled``: in a random order drawn from ``seed`` (the request's seed: the same request, the same order).
    """
    import random

    head, rest = plan[:1], plan[1:]
    if order == "serpentine":
        rest = rest[::2] + rest[1::2][::-1]
    elif order == "shuffled":
        rest = list(rest)
        random.Random(f"sweepd-order/{seed}").shuffle(rest)
    return head + rest
