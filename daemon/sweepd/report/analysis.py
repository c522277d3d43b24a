"""Which clock, and what it saves: optima by energy, EDP and ED2P, each with and without a slowdown
bound, and the flags that say when not to trust a number."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sweepd.engine.summary import METRICS, Drift, Range, bottleneck, by_clock, reference_trials, summarize, worst_drift
from sweepd.records.rows import SummaryRow, TrialRow, clock_label
from sweepd.report import optima as optima_mod
from sweepd.report.data import JobResults
from sweepd.report.batch import BatchKnob, knob
from sweepd.report.gputime import GpuTime, breakdown
from sweepd.report.optima import Optimum
from sweepd.stats import significantly_greater

POWER_CHECK = 0.05  # counter energy vs the 10 Hz power samples' energy in one window


@dataclass
class Analysis:
    job: JobResults
    rows: list[SummaryRow]
    baseline: int | None  # the reference clock (the highest measured)
    bound_pct: float
    optima: list[Optimum] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    ranges: list[Range] = field(default_factory=list)
    drift: Drift | None = None
    gpu_time: GpuTime | None = None
    batch: BatchKnob | None = None  # a batch-size list's answer
    remeasured: bool = False  # the baseline drifted beyond the target: savings are against its re-measurement

    @property
    def reference(self) -> str:
        """What savings are measured against, in words."""
        return f"{clock_label(self.baseline)} MHz" + (" as measured again" if self.remeasured else "")

    def best(self, metric: str, bounded: bool) -> Optimum | None:
        return next((o for o in self.optima if o.metric == metric and o.bounded == bounded), None)

    @property
    def recommended(self) -> Optimum | None:
        """The clock to run at: an adaptive search's answer for its objective, else the minimum of the batch-size
        list's objective, else the minimum EDP."""
        s, b = self.job.manifest.search, self.job.manifest.batch
        return self.best(s.objective if s is not None else b.objective if b is not None else "edp", False)

    @property
    def bottleneck_sentences(self) -> list[str]:
        return [_sentence(r) for r in self.ranges]

    def to_json(self) -> dict:
        return {"job_id": self.job.job_id, "sweep_id": self.job.manifest.sweep_id, "gpu": self.job.gpu_name,
                "simulated": self.job.simulated, "baseline_mhz": self.baseline, "slowdown_bound_pct": self.bound_pct,
                "clocks": [r.model_dump(mode="json") for r in self.rows],
                "bottleneck": [asdict(r) for r in self.ranges], "bottleneck_text": self.bottleneck_sentences,
                "drift_pct": None if self.drift is None else round(self.drift.pct, 2),
                "optima": [asdict(o) for o in self.optima], "flags": self.flags,
                "gpu_time": None if self.gpu_time is None else asdict(self.gpu_time),
                "search": None if self.job.manifest.search is None else self.job.manifest.search.model_dump(mode="json"),
                "batch": None if self.batch is None else asdict(self.batch)}


def _span(r: Range) -> str:
    return f"at {clock_label(r.from_mhz)} MHz" if r.from_mhz == r.to_mhz else \
        f"from {clock_label(r.from_mhz)} to {clock_label(r.to_mhz)} MHz"


def _sentence(r: Range) -> str:
    if r.bound == "host" and r.from_mhz == r.to_mhz:  # one clock: nothing to say about lower ones
        return (f"host-bound {_span(r)}: the GPU waits for the host part of the time there; a larger batch_size, "
                "CUDA graphs or torch.compile would use the GPU better")
    if r.bound == "host":
        return (f"host-bound {_span(r)}: the clock does not change the time per image here, so down to "
                f"{clock_label(r.to_mhz)} MHz the energy saving is free; a larger batch_size, CUDA graphs or "
                "torch.compile would use the GPU better")
    if r.bound == "gpu":
        return f"GPU-bound {_span(r)}: the GPU's work sets the pace (time per image grows as the clock falls, or the GPU is busy throughout)"
    return (f"{_span(r)} the time per image does not change with the clock and the GPU reports no utilisation: "
            "host-bound or memory-bound cannot be told apart")


def analyse(job: JobResults, bound_pct: float = 5.0, cv_limit: float = 0.05, lock_tolerance_mhz: int = 15) -> Analysis:
    order = job.plan or sorted({t.freq_mhz for t in job.trials}, key=lambda f: -(f or 0))
    limit = job.manifest.request.protocol.target_ci_pct
    rows = summarize(job.trials, order, limit)
    a = Analysis(job, rows, rows[0].freq_mhz if rows else None, bound_pct, ranges=bottleneck(rows),
                 drift=worst_drift(job.trials), gpu_time=breakdown(job))
    trials, ref = by_clock(job.trials), reference_trials(job.trials, order, limit)
    a.remeasured = a.baseline is not None and bool(ref) and all(t.drift_check for t in ref)
    s = job.manifest.search
    for name in METRICS:
        for bounded in (False, True):
            # an adaptive sweep's answer for its objective is the search's: the clock its fit rates best among
            # those not significantly worse than the best measured
            chosen = s.chosen_mhz if s is not None and s.objective == name and not bounded else None
            o = optima_mod.find(name, bounded, rows, trials, ref, bound_pct, chosen)
            if o is not None:
                a.optima.append(o)
    a.flags = flags(job, rows, cv_limit, lock_tolerance_mhz) + _doubts(a, limit, trials, ref)
    a.batch = knob(job, a.recommended)
    return a


def _doubts(a: Analysis, limit: float, trials: dict[int | None, list[TrialRow]], ref: list[TrialRow]) -> list[str]:
    """Drift, savings inside the noise, lower clocks faster than the reference, counter vs power."""
    out = []
    d = a.drift
    if d is not None and d.exceeds(limit):
        out.append(f"{clock_label(d.freq_mhz)} MHz measured again ({d.n} trials) differs from its first measurement by "
                   f"{d.j_pct:+.1f}% J/image (±{d.j_ci95_pct:.1f}%) and {d.s_pct:+.1f}% s/image (±{d.s_ci95_pct:.1f}%), "
                   f"beyond the ±{limit:g}% target: drift, or a cold first measurement; savings are against the "
                   "re-measurement, and the earliest clocks are doubtful")
    for o in a.optima:
        if o.bounded or o.freq_mhz == a.baseline:
            continue
        if o.energy_saving_ci95 is None:
            out.append(f"{o.name(a.bound_pct)} at {clock_label(o.freq_mhz)} MHz: one trial, no confidence interval; "
                       "every clock with one trial counts as equivalent")
        elif not o.saving_certain:
            lo, hi = o.energy_saving_ci95
            out.append(f"{o.name(a.bound_pct)} at {clock_label(o.freq_mhz)} MHz saves {o.energy_saving_pct:.1f}% "
                       f"(95% CI {lo:.1f} to {hi:.1f}%): not distinguishable from no saving")
    s_ref = [float(t.s_per_image) for t in ref]
    faster = [r.label for r in a.rows[1:] if r.freq_mhz is not None and a.baseline is not None
              and r.freq_mhz < a.baseline and significantly_greater(s_ref, [float(t.s_per_image) for t in trials[r.freq_mhz]])]
    if faster:
        out.append(f"{', '.join(faster)} MHz ran significantly faster per image than the reference "
                   f"{clock_label(a.baseline)} MHz: a lower clock cannot be faster, so timing noise, drift or a "
                   "host-bound workload is larger than the clock's effect; the savings here are doubtful")
    off: dict[int | None, list[str]] = {}
    m = a.job.manifest
    averaged = any(g.power_reading == "1 s average" for g in [m.gpu, *(m.gpus_used or [])] if g is not None)
    for t in [] if averaged else a.job.trials:  # 1 s averages lag a 2 s window: a difference says nothing
        if t.ok and t.energy_j and t.energy_j_power and abs(t.energy_j - t.energy_j_power) > _power_tolerance(t):
            off.setdefault(t.freq_mhz, []).append(f"trial {t.trial}: {t.energy_j:.0f} J vs {t.energy_j_power:.0f} J")
    for f, what in off.items():
        out.append(f"{clock_label(f)} MHz: the energy counter and the 10 Hz power samples differ by more than "
                   f"{POWER_CHECK:.0%} and than the samples' own spread explains ({'; '.join(what)}): one of the two "
                   "readings is off")
    return out


def _power_tolerance(t: TrialRow) -> float:
    """How far a window's counter energy may lie from its power samples' before one reading is called off: 5 %, or
    3 standard errors of the samples' mean where their spread is larger (a bursty load sampled at 10 Hz)."""
    return max(POWER_CHECK * t.energy_j_power, 3 * (t.energy_j_power_se or 0.0))


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
            ci = "no CI (one trial)" if r.ci95_pct is None else f"95 % CI of ±{r.ci95_pct:.2f}%"
            out.append(f"{r.label} MHz: J/image has {ci} after {r.n} trials, wider than the target "
                       f"±{p.target_ci_pct:g}% (protocol.max_trials = {p.max_trials})")
        if r.cv > cv_limit:
            out.append(f"{r.label} MHz: J/image varies by CV {r.cv * 100:.1f}% "
                       f"(> {cv_limit * 100:.0f}%) over {r.n} trials")
    for t in job.trials:
        if not t.ok and not (t.batch_trial and t.out_of_memory):  # a refused size: said with the sizes
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
