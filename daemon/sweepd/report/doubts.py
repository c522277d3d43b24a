"""The flags that say when not to trust a number, each a :class:`Flag` with its kind and clock, and the few lines
a person reads: one per kind, per-clock conditions grouped ("7 of 61 clocks missed the ±2 % target, widest
±4.1 % at 645 MHz"). ``report --json`` keeps every flag.

Statistical alarms are held to a false-alarm rate of at most 5 % per sweep on a GPU where their condition is
false (``bench/coverage.py`` measures it): "a lower clock ran faster" is one-sided at 5 % split over the clocks
compared (Bonferroni); a CV above the limit is flagged only when the chi-square lower bound of the CV, split the
same way, is above it; drift is judged in :mod:`sweepd.engine.summary`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sweepd.records.rows import SummaryRow, TrialRow, clock_label
from sweepd.stats import ALPHA, chi2_quantile, significantly_greater
from sweepd.vocab import PowerReading

POWER_CHECK = 0.05  # counter energy vs the 10 Hz power samples' energy in one window
MAX_LINES = 5


@dataclass
class Flag:
    kind: str  # lock_missed | target_missed | cv | trial_failed | images_differ | shards | unfinished | drift |
    #            one_trial | saving_unclear | lower_clock_faster | counter_vs_power | gpu_offset | feasibility
    freq_mhz: int | None  # the clock it is about (None: the sweep)
    text: str
    value: float | None = None  # the figure it is about, where one ranks flags of its kind (a CI half-width, %)


ONE_PER_CLOCK = ("lock_missed", "cv", "images_differ", "counter_vs_power", "trial_failed")  # grouped by clock
ONE_PER_ANSWER = ("saving_unclear", "one_trial", "feasibility")


def _clocks(flags: list[Flag]) -> str:
    fs = [clock_label(f.freq_mhz) for f in flags]
    return ", ".join(fs[:6]) + (f" and {len(fs) - 6} more" if len(fs) > 6 else "")


def lines(flags: list[Flag], clocks: int, noun: str = "clock") -> list[str]:
    """At most about five lines: one per kind, its flags grouped when there are several (``noun``: what the sweep's
    settings are, clocks or power limits)."""
    kinds: dict[str, list[Flag]] = {}
    for f in flags:
        kinds.setdefault(f.kind, []).append(f)
    out = []
    for kind, fl in kinds.items():
        if len(fl) == 1:
            out.append(fl[0].text)
        elif kind == "target_missed":
            widest = max(fl, key=lambda f: math.inf if f.value is None else f.value)
            out.append(f"{len(fl)} of {clocks} {noun}s missed the precision target; widest: {widest.text}: longer "
                       "windows (protocol.min_window_s) or more trials (protocol.max_trials) help")
        elif kind in ONE_PER_CLOCK:
            out.append(f"{len(fl)} {noun}s ({_clocks(fl)}): {fl[0].text}")
        else:
            out.append(fl[0].text + f" (and {len(fl) - 1} more{' like it' if kind in ONE_PER_ANSWER else ''})")
    if len(out) > MAX_LINES:
        out = out[:MAX_LINES - 1] + [f"and {len(out) - MAX_LINES + 1} more kinds of flag: `sweepd report JOB --json` "
                                     f"lists every flag with its {noun}"]
    return out


def measurement(job, rows: list[SummaryRow], cv_limit: float, tol: int) -> list[Flag]:
    """What the measurements themselves show: missed locks, precision, spread, failures, images, shards."""
    out: list[Flag] = []
    req = job.manifest.request
    k = req.knob
    controlled = req.gpu.clock_control.sets_clocks and req.frequencies.mode != "baseline"
    missed: dict[int, list[str]] = {}
    for t in job.trials:
        if not t.ok or not controlled or not t.observed_sm_clock_mhz or not t.freq_mhz:
            continue
        if abs(t.observed_sm_clock_mhz - t.freq_mhz) > tol:
            missed.setdefault(t.freq_mhz, []).append(
                f"trial {t.trial} ran at {t.observed_sm_clock_mhz} MHz"
                + (f" ({t.throttle_reasons})" if t.throttle_reasons else ""))
    for f, what in missed.items():
        out.append(Flag("lock_missed", f, f"{f} MHz: the observed clock missed the lock: " + "; ".join(what)))
    p = req.protocol
    looks = max(1, len(rows))
    for r in rows:
        if p.sequential and (r.ci95_pct is None or r.ci95_pct > p.target_ci_pct):
            ci = "no CI (one trial)" if r.ci95_pct is None else f"95 % CI of ±{r.ci95_pct:.2f}%"
            out.append(Flag("target_missed", r.setting, f"{k.show(r.setting)}: J/image has {ci} after {r.n} trials, wider "
                            f"than the target ±{p.target_ci_pct:g}% (protocol.max_trials = {p.max_trials})",
                            r.ci95_pct))
        if r.n > 1 and r.cv > cv_limit and _cv_lower(r.cv, r.n, looks) > cv_limit:
            out.append(Flag("cv", r.setting, f"{k.show(r.setting)}: J/image varies by CV {r.cv * 100:.1f}% over {r.n} "
                            f"trials, beyond {cv_limit * 100:.0f}% by more than chance explains"))
    for t in job.trials:
        if not t.ok and not (t.batch_trial and t.out_of_memory):  # a refused size: said with the sizes
            out.append(Flag("trial_failed", t.setting, f"{k.show(t.setting)} trial {t.trial} failed: "
                            f"{t.error} (not in the table)"))
    differ: dict[int | None, int] = {}
    for im in job.images:
        if im.differs:
            differ[im.setting] = differ.get(im.setting, 0) + 1
    for f, n in differ.items():
        out.append(Flag("images_differ", f, f"{k.show(f)}: {n} image(s) differ from the reference clock's "
                        "(PSNR < inf)"))
    m = job.manifest
    if m.merged_shards:
        counts = sorted({s.images_per_trial for s in m.shard_parts if s.images_per_trial})
        out.append(Flag("shards", None, f"measured in {m.merged_shards} shards (a SLURM job array) on "
                        f"{len(m.gpus or [])} GPU(s): savings are taken within each GPU, against its own "
                        "measurement of the reference clock; image PSNR is against each shard's own measurement of the reference clock"
                        + (f"; images per trial differ by shard: {counts}" if len(counts) > 1 else "")))
    if not m.done:
        out.append(Flag("unfinished", None, f"the sweep is {m.status}: the table covers the {k.noun}s measured so far"))
    return out


def _cv_lower(cv: float, n: int, looks: int) -> float:
    """The lower confidence bound of a CV from ``n`` trials (chi-square, one-sided at 5 % over ``looks`` clocks)."""
    df = n - 1
    return cv * math.sqrt(df / chi2_quantile(1 - ALPHA / looks, df))


def answer(a, limit: float, trials: dict[int | None, list[TrialRow]], ref: list[TrialRow]) -> list[Flag]:
    """Drift, savings inside the noise, bounded answers near the bound, lower clocks faster than the reference,
    counter vs power."""
    out: list[Flag] = []
    k, d = a.knob, a.drift
    if d is not None and d.exceeds(limit):
        out.append(Flag("drift", d.setting, f"{k.show(d.setting)} measured again ({d.n} trials) differs "
                        f"from its first measurement by {d.j_pct:+.1f}% J/image (±{d.j_ci95_pct:.1f}%) and "
                        f"{d.s_pct:+.1f}% s/image (±{d.s_ci95_pct:.1f}%), beyond the ±{limit:g}% target and its "
                        "noise: drift, or a cold first measurement; savings are against the re-measurement, and the "
                        "earliest clocks are doubtful"))
    for o in a.optima:
        s = o.shown
        if s.is_reference:
            continue
        if s.energy_saving_ci95 is None:
            out.append(Flag("one_trial", s.freq_mhz, f"{o.name(a.bound_pct)} at {k.show(s.freq_mhz)}: one "
                            "trial, no confidence interval; every clock with one trial counts as equivalent"))
        elif not o.bounded and not s.saving_certain:
            lo, hi = s.energy_saving_ci95
            out.append(Flag("saving_unclear", s.freq_mhz, f"{o.name(a.bound_pct)} at {k.show(s.freq_mhz)} "
                            f"saves {s.energy_saving_pct:.1f}% (95% CI {lo:.1f} to {hi:.1f}%): not distinguishable "
                            "from no saving"))
    s_ref = [float(t.s_per_image) for t in ref]
    lower = [r for r in a.rows[1:] if r.setting is not None and a.baseline is not None and r.setting < a.baseline
             and trials.get(r.setting)]
    alpha = 2 * ALPHA / max(1, len(lower))  # one-sided 5 % over the clocks compared
    faster = [r.label for r in lower
              if significantly_greater(s_ref, [float(t.s_per_image) for t in trials[r.setting]], alpha)]
    if faster:
        out.append(Flag("lower_clock_faster", None, f"{', '.join(faster)} {k.unit} ran significantly faster per image than "
                        f"the reference {k.show(a.baseline)}: a lower {k.noun} cannot be faster, so timing "
                        "noise, drift or a host-bound workload is larger than the clock's effect; the savings here "
                        "are doubtful"))
    for g in a.gpu_offsets[1:]:  # the first GPU is what the others are measured against
        if g.differs():
            out.append(Flag("gpu_offset", a.baseline, f"GPU {g.gpu} (shard {', '.join(map(str, g.shards))}) differs "
                            f"from GPU {a.gpu_offsets[0].gpu} at the reference {k.show(a.baseline)} by "
                            f"{g.energy_offset_pct:+.1f}% J/image ({_ci(g.energy_offset_ci95)}) and "
                            f"{g.time_offset_pct:+.1f}% s/image ({_ci(g.time_offset_ci95)}): GPUs of one model differ; "
                            "each clock's saving is taken on its own GPU"))
    off: dict[int | None, list[str]] = {}
    m = a.job.manifest
    averaged = any(g.power_reading == PowerReading.AVERAGE_1S for g in [m.gpu, *(m.gpus_used or [])] if g is not None)
    for t in [] if averaged else a.job.trials:  # 1 s averages lag a 2 s window: a difference says nothing
        if t.ok and t.energy_j and t.energy_j_power and abs(t.energy_j - t.energy_j_power) > _power_tolerance(t):
            off.setdefault(t.setting, []).append(f"trial {t.trial}: {t.energy_j:.0f} J vs {t.energy_j_power:.0f} J")
    for f, what in off.items():
        out.append(Flag("counter_vs_power", f, f"{k.show(f)}: the energy counter and the 10 Hz power "
                        f"samples differ by more than {POWER_CHECK:.0%} and than the samples' own spread explains "
                        f"({'; '.join(what)}): one of the two readings is off"))
    return out


def _ci(ci: list[float] | None) -> str:
    return "no CI" if ci is None else f"95% CI {ci[0]:+.1f} to {ci[1]:+.1f}%"


def _power_tolerance(t: TrialRow) -> float:
    """How far a window's counter energy may lie from its power samples' before one reading is called off: 5 %, or
    3 standard errors of the samples' mean where their spread is larger (a bursty load sampled at 10 Hz)."""
    return max(POWER_CHECK * t.energy_j_power, 3 * (t.energy_j_power_se or 0.0))

