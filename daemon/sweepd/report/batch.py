"""A batch-size list's answer (``[workload] batch_size = [...]``): each size's J/image and s/image at the
highest clock, the sizes refused, and what each knob contributes to the joint answer: the chosen size
against the smallest one measured (both at the highest clock), then the recommended clock against the
highest (both at the chosen size), and the two together (savings multiply: 1 - (1 - b)(1 - c))."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from sweepd.engine import batching
from sweepd.records.rows import clock_label
from sweepd.report.data import JobResults
from sweepd.report.optima import Optimum
from sweepd.stats import ratio_ci95


@dataclass
class SizeFigures:
    size: int
    trials: int
    j_per_image: float | None
    s_per_image: float | None
    refused: str | None  # why the size was dropped (out of memory), or None


@dataclass
class BatchKnob:
    freq_mhz: int | None  # where the sizes were measured: the highest clock
    objective: str
    chosen: int | None
    against: int | None  # the smallest size measured, what the batch saving is against
    sizes: list[SizeFigures] = field(default_factory=list)
    batch_saving_pct: float | None = None  # J/image, chosen size vs ``against``, at the highest clock
    batch_saving_ci95: list[float] | None = None
    clock_mhz: int | None = None  # the recommended clock, at the chosen size
    clock_saving_pct: float | None = None
    total_saving_pct: float | None = None

    def line(self, simulated: bool) -> str:
        measured = ", ".join(f"{s.size}: {s.j_per_image:.1f} J/image, {s.s_per_image:.3f} s/image"
                             for s in self.sizes if s.j_per_image is not None)
        refused = "".join(f"; batch {s.size} refused: {s.refused}" for s in self.sizes if s.refused)
        head = (f"batch sizes at {clock_label(self.freq_mhz)} MHz ({measured}){refused}; "
                f"the clocks were measured at batch {self.chosen} (lowest {self.objective})")
        if self.batch_saving_pct is None:
            return head + (" (simulated)" if simulated else "")
        ci = "" if self.batch_saving_ci95 is None else \
            f" (95% CI {-self.batch_saving_ci95[1]:+.1f} to {-self.batch_saving_ci95[0]:+.1f}%)"
        parts = [f"batch {self.chosen}: {-self.batch_saving_pct:+.1f}%{ci} J/image vs batch {self.against}"]
        if self.clock_saving_pct is not None:
            parts.append(f"then {clock_label(self.clock_mhz)} MHz: {-self.clock_saving_pct:+.1f}%")
            parts.append(f"together {-self.total_saving_pct:+.1f}%")
        return head + ". " + "; ".join(parts) + (" (simulated)" if simulated else "")


def knob(job: JobResults, recommended: Optimum | None) -> BatchKnob | None:
    """None unless the request had a list of batch sizes."""
    rec = job.manifest.batch
    if rec is None:
        return None
    found = batching.sizes(job.trials, rec.sizes)
    top = next((t.freq_mhz for t in job.trials if t.batch_trial), None)
    out = BatchKnob(top, rec.objective, rec.chosen, None)
    for s in found:
        js = [float(t.j_per_image) for t in s.trials]
        out.sizes.append(SizeFigures(s.size, len(s.trials), statistics.fmean(js) if js else None,
                                     statistics.fmean(float(t.s_per_image) for t in s.trials) if js else None,
                                     s.refused))
    usable = [s for s in found if s.trials and s.refused is None]
    if rec.chosen is None or not usable:
        return out
    base = min(usable, key=lambda s: s.size)
    chosen = next(s for s in usable if s.size == rec.chosen)
    out.against = base.size
    if base.size == chosen.size:
        return out
    r, lo, hi = ratio_ci95([float(t.j_per_image) for t in chosen.trials], [float(t.j_per_image) for t in base.trials])
    out.batch_saving_pct = round((1 - r) * 100, 2)
    out.batch_saving_ci95 = None if lo is None else [round((1 - hi) * 100, 2), round((1 - lo) * 100, 2)]
    if recommended is not None:
        c = recommended.energy_saving_pct
        out.clock_mhz, out.clock_saving_pct = recommended.freq_mhz, round(c, 2)
        out.total_saving_pct = round((1 - (1 - out.batch_saving_pct / 100) * (1 - c / 100)) * 100, 2)
    return out
