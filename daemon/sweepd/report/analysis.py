"""Which clock, and what it saves: optima by energy, EDP and ED2P, each with and without a slowdown
bound, and the flags that say when not to trust a number."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sweepd.engine import gpunorm
from sweepd.engine.gpunorm import GpuOffset
from sweepd.engine.summary import (Drift, Range, bottleneck, by_clock, desc, reference_trials, summarize,
                                   worst_drift)
from sweepd.records.rows import SummaryRow, clock_label
from sweepd.report import optima as optima_mod
from sweepd.report.data import JobResults
from sweepd.report.batch import BatchKnob, knob
from sweepd.report.gputime import GpuTime, breakdown
from sweepd.report.optima import Optimum
from sweepd.report import doubts
from sweepd.report.doubts import Flag
from sweepd.vocab import Bound, Knob, Objective


@dataclass
class Analysis:
    job: JobResults
    rows: list[SummaryRow]
    baseline: int | None  # the reference clock (the highest measured)
    bound_pct: float
    optima: list[Optimum] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    ranges: list[Range] = field(default_factory=list)
    drift: Drift | None = None
    gpu_time: GpuTime | None = None
    batch: BatchKnob | None = None  # a batch-size list's answer
    remeasured: bool = False  # the baseline drifted beyond the target: savings are against its re-measurement
    margin_pct: float = 2.0  # a slowdown within this counts as none (protocol.equivalence_margin_pct)
    gpu_offsets: list[GpuOffset] = field(default_factory=list)  # a split sweep's GPUs against the first

    @property
    def knob(self) -> Knob:
        """What the sweep turned: clocks, or power limits (then ``baseline`` and each optimum's ``freq_mhz`` hold
        a limit in W, and ``to_json`` names them ``power_limit_w``)."""
        return self.job.manifest.request.knob

    @property
    def flag_lines(self) -> list[str]:
        """The flags as a person reads them: at most about five lines (``flags`` keeps each one)."""
        return doubts.lines(self.flags, len(self.rows), self.knob.noun)

    @property
    def reference(self) -> str:
        """What savings are measured against, in words."""
        return f"{self.knob.show(self.baseline)}" + (" as measured again" if self.remeasured else "")

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
        return [_sentence(r, self.margin_pct, self.knob) for r in self.ranges]

    def to_json(self) -> dict:
        return {"job_id": self.job.job_id, "sweep_id": self.job.manifest.sweep_id, "gpu": self.job.gpu_name,
                "simulated": self.job.simulated, "knob": self.knob.value,
                "baseline_mhz" if self.knob is Knob.CLOCK else "baseline_w": self.baseline,
                "slowdown_bound_pct": self.bound_pct,
                "clocks": [r.model_dump(mode="json") for r in self.rows],
                "bottleneck": [asdict(r) for r in self.ranges], "bottleneck_text": self.bottleneck_sentences,
                "drift_pct": None if self.drift is None else round(self.drift.pct, 2),
                "optima": [_in_units(asdict(o), self.knob) for o in self.optima],
                "flags": [asdict(f) for f in self.flags],
                "flag_lines": self.flag_lines, "gpu_offsets": [asdict(g) for g in self.gpu_offsets],
                "gpu_time": None if self.gpu_time is None else asdict(self.gpu_time),
                "search": None if self.job.manifest.search is None else self.job.manifest.search.model_dump(mode="json"),
                "batch": None if self.batch is None else asdict(self.batch)}


def _in_units(o: dict, knob: Knob) -> dict:
    """An optimum as JSON: a power sweep's settings under their own names (power_limit_w, equivalent_w, ...)."""
    if knob is Knob.CLOCK:
        return o
    names = {"freq_mhz": "power_limit_w", "equivalent_mhz": "equivalent_w", "uncertain_mhz": "uncertain_w"}
    out = {names.get(k, k): v for k, v in o.items() if k != "freq"}
    if out.get("next_best"):
        out["next_best"] = _in_units(out["next_best"], knob)
    return out


def _span(r: Range, k: Knob = Knob.CLOCK) -> str:
    return f"at {k.show(r.from_mhz)}" if r.from_mhz == r.to_mhz else \
        f"from {clock_label(r.from_mhz)} to {k.show(r.to_mhz)}"


def _sentence(r: Range, margin_pct: float, k: Knob = Knob.CLOCK) -> str:
    if r.bound == Bound.HOST and r.from_mhz == r.to_mhz:  # one clock: nothing to say about lower ones
        return (f"host-bound {_span(r, k)}: the GPU waits for the host part of the time there; a larger batch_size, "
                "CUDA graphs or torch.compile would use the GPU better")
    if r.bound == Bound.HOST:
        return (f"host-bound {_span(r, k)}: the GPU idles part of the time and the time per image is shown flat (its "
                f"slowdown's 95 % upper bound within {margin_pct:g}%), so down to {k.show(r.to_mhz)} the "
                "energy saving is free; a larger batch_size, CUDA graphs or torch.compile would use the GPU better")
    if r.bound == Bound.GPU:
        return f"GPU-bound {_span(r, k)}: the GPU's work sets the pace (time per image grows as the clock falls, or the GPU is busy throughout)"
    if r.bound == Bound.UNRESOLVED:
        return (f"{_span(r, k)} the GPU idles part of the time, but whether the clock slows it is not resolved at this "
                f"precision: no slowdown is shown, and none beyond {margin_pct:g}% is ruled out; longer windows "
                "(protocol.min_window_s) would tell")
    return (f"{_span(r, k)} the time per image does not change with the clock and the GPU reports no utilisation: "
            "host-bound or memory-bound cannot be told apart")


def analyse(job: JobResults, bound_pct: float = 5.0, cv_limit: float = 0.05, lock_tolerance_mhz: int = 15) -> Analysis:
    order = job.plan or sorted({t.setting for t in job.trials}, key=lambda f: -(f or 0))
    p = job.manifest.request.protocol
    limit = p.target_ci_pct
    top = next((f for f in desc(order) if any(t.setting == f and t.ok and t.role is None for t in job.trials)), None)
    rows_in = gpunorm.normalised(job.trials, top)  # a split sweep's GPUs on the first one's scale
    rows = summarize(rows_in, order, limit, p.equivalence_margin_pct)
    a = Analysis(job, rows, rows[0].setting if rows else None, bound_pct, ranges=bottleneck(rows),
                 drift=worst_drift(rows_in), gpu_time=breakdown(job), margin_pct=p.equivalence_margin_pct)
    trials, ref = by_clock(rows_in), reference_trials(rows_in, order, limit)
    refs = gpunorm.references(rows_in, top, ref)
    gpus = job.manifest.gpus or []
    shard_of: dict[str, list[int]] = {}
    for part in job.manifest.shard_parts:
        for g in [part.gpu, *(part.gpus_used or [])]:
            if g is not None and part.shard not in shard_of.setdefault(g.uuid, []):
                shard_of[g.uuid].append(part.shard)
    a.gpu_offsets = gpunorm.offsets(job.trials, top, {g.uuid: g.index for g in gpus}, shard_of)
    a.remeasured = a.baseline is not None and bool(ref) and all(t.drift_check for t in ref)
    s = job.manifest.search
    for name in Objective:
        for bounded in (False, True):
            # an adaptive sweep's answer for its objective is the search's: the clock its fit rates best among
            # those not significantly worse than the best measured
            chosen = s.chosen_mhz if s is not None and s.objective == name and not bounded else None
            o = optima_mod.find(name, bounded, rows, trials, ref, bound_pct, chosen, refs)
            if o is not None:
                a.optima.append(o)
    a.flags = doubts.measurement(job, rows, cv_limit, lock_tolerance_mhz) + doubts.answer(a, limit, trials, ref)
    a.batch = knob(job, a.recommended)
    return a
