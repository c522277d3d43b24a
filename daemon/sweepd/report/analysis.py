"""Which clock, and what it saves: optima by energy, EDP and ED2P, each with and without a slowdown
bound, and the flags that say when not to trust a number."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sweepd.engine.summary import METRICS, optimum, summarize
from sweepd.records.rows import SummaryRow, clock_label
from sweepd.report.data import JobResults


@dataclass
class Optimum:
    metric: str  # energy | edp | ed2p
    bounded: bool
    freq: int | None
    energy_saving_pct: float
    time_change_pct: float
    j_per_image: float
    s_per_image: float


@dataclass
class Analysis:
    job: JobResults
    rows: list[SummaryRow]
    baseline: int | None  # the reference clock (the highest measured)
    bound_pct: float
    optima: list[Optimum] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def best(self, metric: str, bounded: bool) -> Optimum | None:
        return next((o for o in self.optima if o.metric == metric and o.bounded == bounded), None)

    def to_json(self) -> dict:
        return {"job_id": self.job.job_id, "sweep_id": self.job.manifest.sweep_id, "gpu": self.job.gpu_name,
                "simulated": self.job.simulated, "baseline_mhz": self.baseline, "slowdown_bound_pct": self.bound_pct,
                "clocks": [r.model_dump(mode="json") for r in self.rows],
                "optima": [asdict(o) for o in self.optima], "flags": self.flags}


def analyse(job: JobResults, bound_pct: float = 5.0, cv_limit: float = 0.05, lock_tolerance_mhz: int = 15) -> Analysis:
    order = job.plan or sorted({t.freq_mhz for t in job.trials}, key=lambda f: -(f or 0))
    rows = summarize(job.trials, order)
    a = Analysis(job, rows, rows[0].freq_mhz if rows else None, bound_pct)
    for name, col in METRICS.items():
        for bounded in (False, True):
            r = optimum([r for r in rows if not bounded or r.time_change_pct_vs_max <= bound_pct], col)
            if r is not None:
                a.optima.append(Optimum(name, bounded, r.freq_mhz, r.energy_saving_pct_vs_max,
                                        r.time_change_pct_vs_max, r.j_per_image_mean, r.s_per_image_mean))
    a.flags = flags(job, rows, cv_limit, lock_tolerance_mhz)
    return a


def flags(job: JobResults, rows: list[SummaryRow], cv_limit: float, tol: int) -> list[str]:
    out = []
    req = job.manifest.request
    controlled = req.gpu.clock_control == "lock" and req.frequencies.mode != "baseline"
    missed: dict[int, list[str]] = {}
    for t in job.trials:
        if not t.ok or not controlled or not t.observed_sm_clock_mhz or not t.freq_mhz:
            continue
        if abs(t.observed_sm_clock_mhz - t.freq_mhz) > tol:
            missed.setdefault(t.freq_mhz, []).append(
                f"trial {t.trial} ran at {t.observed_sm_clock_mhz} MHz"
                + (f" ({t.throttle_reasons})" if t.throttle_reasons else ""))
    for f, what in missed.items():
        out.append(f"{f} MHz: the observed clock missed the lock: " + "; ".join(what))
    p = req.protocol
    for r in rows:
        if p.sequential and (r.ci95_pct is None or r.ci95_pct > p.target_ci_pct):
            ci = "no CI (one trial)" if r.ci95_pct is None else f"95 % CI of ±{r.ci95_pct:.1f}%"
            out.append(f"{r.label} MHz: J/image has {ci} after {r.n} trials, wider than the target "
                       f"±{p.target_ci_pct:g}% (protocol.max_trials = {p.max_trials})")
        if r.cv > cv_limit:
            out.append(f"{r.label} MHz: J/image varies by CV {r.cv * 100:.1f}% "
                       f"(> {cv_limit * 100:.0f}%) over {r.n} trials")
    if rows and rows[0].s_per_image_mean:
        top = rows[0]
        for r in rows[1:]:
            if not r.s_per_image_mean or not r.freq_mhz or not top.freq_mhz:
                continue
            if r.freq_mhz >= top.freq_mhz:
                continue
            faster = (top.s_per_image_mean - r.s_per_image_mean) / top.s_per_image_mean
            if faster > max(0.02, 2 * max(r.cv, top.cv)):
                out.append(f"{r.freq_mhz} MHz ran {faster * 100:.0f}% faster per image than {top.freq_mhz} MHz: "
                           "a lower clock cannot be faster, so timing noise (or a host-bound workload) is larger "
                           "than the clock's effect; the savings here are doubtful")
    for t in job.trials:
        if not t.ok:
            out.append(f"{clock_label(t.freq_mhz)} MHz trial {t.trial} failed: {t.error} (not in the table)")
    differ: dict[int | None, int] = {}
    for im in job.images:
        if im.differs:
            differ[im.freq_mhz] = differ.get(im.freq_mhz, 0) + 1
    for f, n in differ.items():
        out.append(f"{clock_label(f)} MHz: {n} image(s) differ from the reference clock's (PSNR < inf)")
    m = job.manifest
    if m.merged_shards:
        counts = sorted({s.images_per_trial for s in m.shard_parts if s.images_per_trial})
        out.append(f"measured in {m.merged_shards} shards (a SLURM job array) on "
                   f"{len(m.gpus or [])} GPU(s): each trial row names its GPU; image PSNR is "
                   "against each shard's own first clock" + (f"; images per trial differ by shard: {counts}"
                                                             if len(counts) > 1 else ""))
    if not m.done:
        out.append(f"the sweep is {m.status}: the table covers the clocks measured so far")
    return out
