"""A batch-size or compile list's answer (``[workload] batch_size = [...]``, ``compile = [false, true]``): each
setting's J/image and s/image at the highest clock, the settings refused, and what each knob contributes to the
joint answer: compiling against eager at the chosen size, the chosen size against the smallest one measured (both
at the highest clock, compiled as chosen), then the recommended clock against the highest (at the chosen setting),
and all together (savings multiply: 1 - (1 - k)(1 - b)(1 - c))."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from sweepd.engine import batching
from sweepd.records.rows import clock_label
from sweepd.report.data import JobResults
from sweepd.report.optima import Optimum
from sweepd.stats import ratio_ci95
from sweepd.vocab import Knob


@dataclass
class SizeFigures:
    size: int
    trials: int
    j_per_image: float | None
    s_per_image: float | None
    refused: str | None  # why the setting was dropped (out of memory, a compile error), or None
    compiled: bool = False

    @property
    def label(self) -> str:
        return f"{self.size} compiled" if self.compiled else str(self.size)


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
    chosen_compile: bool = False  # the clocks ran the denoiser compiled
    compile_saving_pct: float | None = None  # J/image, compiled vs eager at the chosen size (both measured)
    compile_saving_ci95: list[float] | None = None
    knob: Knob = Knob.CLOCK  # what freq_mhz and clock_mhz hold: clocks, or a power sweep's limits (W)

    def line(self, simulated: bool) -> str:
        k = self.knob
        measured = ", ".join(f"{s.label}: {s.j_per_image:.1f} J/image, {s.s_per_image:.3f} s/image"
                             for s in self.sizes if s.j_per_image is not None)
        refused = "".join(f"; batch {s.label} refused: {s.refused}" for s in self.sizes if s.refused)
        head = (f"batch sizes at {k.show(self.freq_mhz)} ({measured}){refused}; "
                f"the clocks were measured at batch {self.chosen}{', compiled' if self.chosen_compile else ''} "
                f"(lowest {self.objective})")
        parts = []
        if self.compile_saving_pct is not None:
            parts.append(f"compile: {-self.compile_saving_pct:+.1f}%{_ci(self.compile_saving_ci95)} J/image vs eager"
                         + ("" if self.chosen_compile else " (not taken)"))
        if self.batch_saving_pct is not None:
            parts.append(f"batch {self.chosen}: {-self.batch_saving_pct:+.1f}%{_ci(self.batch_saving_ci95)} "
                         f"J/image vs batch {self.against}")
        if parts and self.clock_saving_pct is not None:
            parts.append(f"then {k.show(self.clock_mhz)}: {-self.clock_saving_pct:+.1f}%")
            parts.append(f"together {-self.total_saving_pct:+.1f}%")
        return head + (". " + "; ".join(parts) if parts else "") + (" (simulated)" if simulated else "")


def _ci(ci: list[float] | None) -> str:
    return "" if ci is None else f" (95% CI {-ci[1]:+.1f} to {-ci[0]:+.1f}%)"


def _saving(a: batching.BatchSize, b: batching.BatchSize) -> tuple[float, list[float] | None]:
    """a's J/image against b's, as a saving in % and its 95 % CI."""
    r, lo, hi = ratio_ci95([float(t.j_per_image) for t in a.trials], [float(t.j_per_image) for t in b.trials])
    return round((1 - r) * 100, 2), None if lo is None else [round((1 - hi) * 100, 2), round((1 - lo) * 100, 2)]


def knob(job: JobResults, recommended: Optimum | None) -> BatchKnob | None:
    """None unless the request had a list of batch sizes or of compile settings."""
    rec = job.manifest.batch
    if rec is None:
        return None
    found = batching.sizes(job.trials, batching.variants_of(rec))
    top = next((t.setting for t in job.trials if t.batch_trial), None)
    out = BatchKnob(top, rec.objective, rec.chosen, None, chosen_compile=bool(rec.chosen_compile),
                    knob=job.manifest.request.knob)
    for s in found:
        js = [float(t.j_per_image) for t in s.trials]
        out.sizes.append(SizeFigures(s.size, len(s.trials), statistics.fmean(js) if js else None,
                                     statistics.fmean(float(t.s_per_image) for t in s.trials) if js else None,
                                     s.refused, s.compiled))
    usable = {(s.size, s.compiled): s for s in found if s.trials and s.refused is None}
    chosen = usable.get((rec.chosen, bool(rec.chosen_compile)))
    if chosen is None:
        return out
    compiled, eager = usable.get((chosen.size, True)), usable.get((chosen.size, False))
    if compiled is not None and eager is not None:  # what compiling saves at the chosen size (chosen or not)
        out.compile_saving_pct, out.compile_saving_ci95 = _saving(compiled, eager)
    base = min((s for v, s in usable.items() if v[1] == chosen.compiled), key=lambda s: s.size)
    out.against = base.size
    if base.size != chosen.size:
        out.batch_saving_pct, out.batch_saving_ci95 = _saving(chosen, base)
    if recommended is not None and (out.batch_saving_pct is not None or out.compile_saving_pct is not None):
        c = recommended.energy_saving_pct
        out.clock_mhz, out.clock_saving_pct = recommended.freq_mhz, round(c, 2)
        k = out.compile_saving_pct if chosen.compiled else None  # in the answer only where the clocks ran compiled
        keep = (1 - (out.batch_saving_pct or 0) / 100) * (1 - (k or 0) / 100) * (1 - c / 100)
        out.total_saving_pct = round((1 - keep) * 100, 2)
    return out
