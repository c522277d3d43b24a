"""Before a sweep: how many clocks, trials and images; how long; how many image bytes and files per
image mode; and whether they fit the free space and the storage policy caps.

On the simulated GPU the duration is simulated GPU time (the board's, not this CPU's: see
:mod:`sweepd.gpu.sim`). Time and image sizes come from earlier sweeps of the same model, steps and resolution on the same
GPU when there are any (per-clock times from their summary.csv, per-image sizes from their saved
PNGs, fixed costs from their wall time); otherwise from the simulated GPU model calibrated to real
Stable Diffusion runs (time) and from the resolution (bytes).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from sweepd import families
from sweepd.engine.search import COARSE, MAX_EVALUATIONS
from sweepd.freqplan import ClockPoint, plan_for, representative
from sweepd.gpu.base import GpuDevice
from sweepd.paths import Layout
from sweepd.report.data import JobResults, all_jobs
from sweepd.request import SweepRequest
from sweepd.vocab import ClockControl
from sweepd.engine.schedule import first_warmup_images

MODES = ("benchmark", "research", "archive")
EXPECTED_EVALUATIONS = 12  # an adaptive search's median on the simulated boards (BENCHMARKS.md)
BYTES_PER_PIXEL = {"tiny": 3.0, "model": 1.5}  # random-weight noise vs real pictures (360-500 KB at 512x512)
STARTUP_S = 15.0  # interpreter, torch import and model load, without history
STARTUP_PROCESS_S = 1.0  # interpreter start before sweep.json exists (measured runs start the clock later)


@dataclass
class ModeEstimate:
    mode: str
    images_saved: int
    bytes: int
    files: int
    fits: bool
    why: str = ""


@dataclass
class Estimate:
    gpu: str
    simulated: bool
    clocks: int
    trials: int
    images_per_trial: int
    images_generated: int
    duration_s: float
    time_source: str
    bytes_per_image: int
    bytes_source: str
    free_bytes: int
    caps: list[str] = field(default_factory=list)
    modes: list[ModeEstimate] = field(default_factory=list)
    request_mode: str = "research"
    adaptive_evaluations: list[int] | None = None  # an adaptive search's clocks: [fewest, expected, most]
    duration_range_s: list[float] | None = None  # [fewest, most] evaluations' duration

    def mode(self, name: str) -> ModeEstimate:
        return next(m for m in self.modes if m.mode == name)

    def to_json(self) -> dict:
        return asdict(self)


def _same_workload(job: JobResults, req: SweepRequest, gpu_name: str) -> bool:
    w, h, m = job.manifest.request.workload, req.workload, job.manifest
    return (job.gpu_name == gpu_name and w.model == h.model and w.steps == h.steps and w.width == h.width
            and w.height == h.height and w.batch_size == h.batch_size and w.scheduler == h.scheduler
            and m.request.knob == req.knob  # a power sweep's settings are watts, not clocks
            and m.done and m.ended_unix is not None
            and not m.merged_shards)  # shards ran side by side: their wall time is not one GPU's


def _slowdown(model, pt: ClockPoint, device: GpuDevice) -> float:
    """The modelled time at a setting against the highest clock's: a locked clock's, or where a power limit puts the
    clock (:mod:`sweepd.gpu.simcap`)."""
    if model is None:
        return 1.0
    if pt.power_limit_w is not None:
        from sweepd.gpu import simcap

        clocks = device.graphics_clocks(device.memory_clocks()[0])
        cap = simcap.mix(pt.power_limit_w, max(clocks), clocks, model.busy_power_w)
        return cap.slowdown(model.slowdown) if cap is not None else 1.0
    return model.slowdown(pt.freq_mhz) if pt.freq_mhz else 1.0


def _sim_model_for(gpu_name: str):
    from sweepd.gpu.simmodel import calibrate

    for key in ("H100", "A100", "V100"):
        if key in gpu_name:
            return key, calibrate(key)
    return None, None


def _interp(points: dict[int, float], f: int) -> float:
    xs = sorted(points)
    if f <= xs[0]:
        return points[xs[0]]
    if f >= xs[-1]:
        return points[xs[-1]]
    for a, b in zip(xs, xs[1:], strict=False):
        if a <= f <= b:
            return points[a] + (points[b] - points[a]) * (f - a) / (b - a)
    return points[xs[-1]]


def estimate(req: SweepRequest, layout: Layout, device: GpuDevice, policy_caps: list[tuple[str, int | None, int | None, int, int]]
             | None = None, from_history: bool = True) -> Estimate:
    """policy_caps: (rule name, max_bytes, max_files, bytes used now, files used now) of rules covering images/;
    ``from_history``: time an earlier sweep of the same workload took, where there is one (else the model's)."""
    plan: list[ClockPoint] = plan_for(req, device)
    p, w = req.protocol, req.workload
    b = max(w.batch_sizes)  # a batch-size list: the most images a window can hold, so caps are not underestimated
    history = [j for j in all_jobs(layout) if _same_workload(j, req, device.name)] if from_history else []
    keys = [pt.setting for pt in plan]
    if history:
        job = history[-1]
        from sweepd.engine.summary import summarize

        rows = summarize(job.trials, job.plan)
        s_by_f = {r.setting or 0: r.s_per_image_mean for r in rows}
        s_img = [_interp(s_by_f, f or 0) for f in keys]
        m = job.manifest
        windows = sum(t.time_s or 0.0 for t in job.trials if t.ok)
        started, ended = m.started_unix, m.ended_unix or m.started_unix
        loaded = m.model_loaded_unix or started
        hp = m.request.protocol
        hn = len(job.plan)
        waits = hn * (hp.settle_s + hp.cooldown_s * (hp.least - 1))
        warm = sum(s_by_f.values()) / max(len(s_by_f), 1) * hp.warmup * hn
        fixed = loaded - started + STARTUP_PROCESS_S  # interpreter + model load
        per_trial = max(0.0, (ended - loaded) - windows - waits - warm) / \
            max(len(job.trials), 1)  # writing rows, images and summaries
        n = p.images_per_trial or m.images_per_trial or 1
        if not p.images_per_trial and p.min_window_s != hp.min_window_s:
            n = max(b, math.ceil(p.min_window_s / s_img[0] / b) * b)
        time_source = f"measured: job {job.job_id} on {job.gpu_name}"
        if device.simulated:  # the simulated GPU's own clock: what the board would take, not this CPU
            fixed, per_trial = 0.0, 0.0
    else:
        from sweepd.gpu.simmodel import s_per_image

        name, model = _sim_model_for(device.name)
        s_max = s_per_image(name or "A100", w.model, w.steps, w.width, w.height)
        s_img = [s_max * _slowdown(model, pt, device) for pt in plan]
        n = p.images_per_trial or max(b, math.ceil(p.min_window_s / s_max / b) * b)
        fixed, per_trial = (0.0 if device.simulated else STARTUP_S), 0.0
        time_source = f"modelled: no earlier sweep of this workload on {device.name}"
    window = [n * s if p.images_per_trial else max(p.min_window_s, n * s) for s in s_img]
    warm0 = first_warmup_images(p.warmup, b)  # the first clock warms up until timings settle
    trials = p.most  # sequential sampling may take up to max_trials: the estimate (and a SLURM time limit) allow for it
    per_clock = [p.settle_s + p.warmup * s + trials * (t + per_trial) + p.cooldown_s * (trials - 1)
                 for s, t in zip(s_img, window, strict=True)]
    clocks, evaluations, duration_range = len(plan), None, None
    if req.frequencies.mode == "adaptive":  # the search measures a few of the candidates (bench/adaptive.py)
        evaluations = [min(len(plan), x) for x in (COARSE, EXPECTED_EVALUATIONS, MAX_EVALUATIONS)]
        clocks = evaluations[1]
        mean = sum(per_clock) / len(per_clock)
        per_clock = [mean] * clocks
    checks = p.drift_checks(clocks) if req.frequencies.mode != "baseline" else 0
    base = fixed + warm0 * s_img[0] + checks * (p.settle_s + p.warmup * s_img[0]
                                                + p.least * (window[0] + per_trial + p.cooldown_s))
    sizes = len(w.variants) if w.batch_search else 0  # each size and compile setting at the highest clock first
    phase = sizes * (trials * (window[0] + per_trial) + p.warmup * s_img[0]) + (p.settle_s if sizes else 0.0)
    base += phase
    if req.gpu.clock_control is ClockControl.SLURM:  # each clock and re-measurement is a step that loads the model
        base += fixed * (clocks + checks - 1)
    duration = base + sum(per_clock)
    if evaluations:
        duration_range = [base + per_clock[0] * evaluations[0], base + per_clock[0] * evaluations[2]]
    again = checks * p.least * n  # images of the baseline's re-measurements
    phase_images = sizes * trials * n  # the batch sizes' windows (timing work: never saved)
    size, size_source = _bytes_per_image(history, req)
    free = _free(layout.images)
    out = Estimate(device.name, device.simulated, clocks, trials, n, clocks * trials * n + again + phase_images,
                   duration,
                   time_source, size, size_source, free, request_mode=req.images.mode,
                   adaptive_evaluations=evaluations, duration_range_s=duration_range)
    saved = {"benchmark": 0, "research": n * min(clocks, len(representative(len(plan)))),
             "archive": n * clocks * trials + again}
    for mode in MODES:
        nbytes, files = saved[mode] * size, saved[mode]
        why = []
        if nbytes > free:
            why.append(f"needs {nbytes} bytes, {free} free on {layout.images}")
        for rule, max_b, max_f, used_b, used_f in policy_caps or []:
            if max_b is not None and used_b + nbytes > max_b:
                why.append(f"policy rule {rule}: {used_b} + {nbytes} bytes > max_bytes {max_b}")
            if max_f is not None and used_f + files > max_f:
                why.append(f"policy rule {rule}: {used_f} + {files} files > max_files {max_f}")
        out.modes.append(ModeEstimate(mode, saved[mode], nbytes, files, not why, "; ".join(why)))
        for c in why:
            if c not in out.caps:
                out.caps.append(c)
    return out


def _bytes_per_image(history: list[JobResults], req: SweepRequest) -> tuple[int, str]:
    sizes = []
    for job in reversed(history):
        for im in job.images:
            if im.saved_path:
                try:
                    sizes.append(os.path.getsize(im.saved_path))
                except OSError:
                    continue
        if sizes:
            return int(sum(sizes) / len(sizes)), f"measured: {len(sizes)} PNGs of job {job.job_id}"
    w = req.workload
    built_in = w.model in families.TINY
    bpp = BYTES_PER_PIXEL["tiny" if built_in else "model"]
    why = "the tiny model's random-weight noise compresses poorly" if built_in else "real pictures"
    width, height = families.render_size(w.model, w.width, w.height)  # what a tiny family renders on the CPU
    cap = families.TINY_RENDER_PX
    return int(width * height * bpp), f"from the resolution: {bpp:g} bytes per pixel, {why}" + \
        (f", at most {cap} x {cap} as it renders them" if (width, height) != (w.width, w.height) else "")


def _free(path: Path) -> int:
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    return st.f_bavail * st.f_frsize
