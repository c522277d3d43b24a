"""This sweep next to the ML.ENERGY leaderboard: the published J/image of the matching model and GPU (at the GPU's
default clock; the leaderboard never changes it), this sweep's at its highest clock, then what the clock adds. Said
only where the comparison was asked for (``workload.preset``) or the model is one the leaderboard measured; what
differs (model, GPU, steps, resolution, batch) is named, so a tiny stand-in is never taken for the real model."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict

from sweepd import families
from sweepd.report.analysis import Analysis


class Published(BaseModel):
    """One published figure (``report/data/mlenergy.json``)."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    leaderboard: str
    model: str
    family: families.Family
    gpu: str
    batch: int
    steps: int
    width: int
    height: int
    j_per_image: float
    s_per_image: float | None
    date: str


@cache
def published() -> tuple[Published, ...]:
    data = json.loads(resources.files("sweepd.report").joinpath("data/mlenergy.json").read_text())
    return tuple(Published.model_validate(e) for e in data["entries"])


def match(model: str, gpu_name: str, preset: str | None) -> Published | None:
    """The published figure to compare with: the same model if the leaderboard has it, else (a preset) the family's;
    on the same GPU where there is one, at batch 1."""
    family = families.of_model(model)
    mine = [p for p in published() if (p.leaderboard == preset if preset else p.model == model)
            and p.family == family]
    if not mine:
        return None
    return min(mine, key=lambda p: (p.model != model, p.gpu not in gpu_name, p.batch != 1))


def line(a: Analysis) -> str | None:
    w, job = a.job.manifest.request.workload, a.job
    family = families.of_model(w.model)
    p = match(w.model, job.gpu_name, w.preset)
    if p is None:
        if w.preset and family is not None:
            return (f"ML.ENERGY {w.preset}: no published {families.FAMILIES[family].title} figure in sweepd's data "
                    "(report/data/mlenergy.json), so nothing to compare with")
        return None
    top = next((r for r in a.rows if r.setting == a.baseline), None)
    if top is None:
        return None
    batch = (job.manifest.batch.chosen if job.manifest.batch is not None else None) or w.batch_sizes[0]
    differs = []
    if w.model != p.model:
        differs.append(f"model ({w.model} here, {p.model} there)")
    if p.gpu not in job.gpu_name or job.simulated:
        sim = " (simulated)" if job.simulated and "simulated" not in job.gpu_name else ""
        differs.append(f"GPU ({job.gpu_name}{sim} here, {p.gpu} there)")
    if w.steps != p.steps:
        differs.append(f"steps ({w.steps} here, {p.steps} there)")
    if (w.width, w.height) != (p.width, p.height):
        differs.append(f"resolution ({w.width}x{w.height} here, {p.width}x{p.height} there)")
    if batch != p.batch:
        differs.append(f"batch ({batch} here, {p.batch} there)")
    latency = f", {p.s_per_image:.2f} s/image" if p.s_per_image else ""
    out = (f"ML.ENERGY {p.leaderboard} ({p.date}) {p.gpu} {p.model}: {p.j_per_image:.0f} J/image{latency} (batch "
           f"{p.batch}, {p.steps} steps, {p.width}x{p.height}, default clock); here at {a.knob.show(top.setting)} "
           f"{top.j_per_image_mean:.1f} J ({(top.j_per_image_mean / p.j_per_image - 1) * 100:+.1f} %)")
    o = a.recommended
    if o is not None and o.freq_mhz != a.baseline:
        out += (f"; at {a.knob.show(o.freq_mhz)} {o.j_per_image:.1f} J ({-o.energy_saving_pct:+.1f} % against "
                f"{a.knob.show(top.setting)})")
    return out + ("; differs: " + "; ".join(differs) if differs else "; same model, GPU and settings")
