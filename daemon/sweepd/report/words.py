"""The answer in words, for the terminal (`sweepd run`, `sweepd demo`, `sweepd report`): each optimum with
its confidence intervals and its equivalent set, then what sets the pace over which clocks."""

from __future__ import annotations

from sweepd.records.rows import clock_label
from sweepd.report.analysis import Analysis
from sweepd.report.optima import Optimum
from sweepd.vocab import Knob


def _ci(ci: list[float] | None) -> str:
    return " (no CI)" if ci is None else f" (95% CI {ci[0]:+.1f} to {ci[1]:+.1f}%)"


def _figures(o: Optimum, a: Analysis) -> str:
    return (f"energy {-o.energy_saving_pct:+.1f}%"
            f"{_ci(None if o.energy_saving_ci95 is None else [-o.energy_saving_ci95[1], -o.energy_saving_ci95[0]])}, "
            f"time {o.time_change_pct:+.1f}%{_ci(o.time_change_ci95)} vs {a.reference}")


def optimum_line(o: Optimum, a: Analysis) -> str:
    k, what = a.knob, a.knob.noun
    eq = [clock_label(f) for f in o.equivalent_mhz if f != o.freq_mhz]
    sim = " (simulated)" if a.job.simulated else ""
    same = f"equivalent within the noise: {', '.join(eq)} {k.unit}" if eq else f"no other {what} equivalent"
    others = ", ".join(clock_label(f) for f in o.uncertain_mhz if f != o.freq_mhz)
    if o.freq_mhz in o.uncertain_mhz:
        maybe = f"; feasibility uncertain: its time change's 95% CI reaches past +{a.bound_pct:g}%" + \
            (f"; so do {others} {k.unit}" if others else "")
    else:
        maybe = f"; of the equivalent {what}s, {others} {k.unit} may or may not be within the bound" if others else ""
    if o.is_reference:
        nb = o.next_best
        other = (f"; the best other, {k.show(nb.freq_mhz)}: {_figures(nb, a)}" if nb is not None else "")
        return (f"{o.name(a.bound_pct)}: stay at {k.show(o.freq_mhz)}, the reference: no {what} measured "
                f"better{other}; {same}{maybe}{sim}")
    better = "" if o.saving_certain else " (not significantly better than the reference)"
    return f"{o.name(a.bound_pct)}: {k.show(o.freq_mhz)}{better}, {_figures(o, a)}; {same}{maybe}{sim}"


def search_line(a: Analysis) -> list[str]:
    s = a.job.manifest.search
    if s is None:
        return []
    return [f"adaptive search ({s.objective}): measured {len(s.evaluated_mhz)} of {s.supported_count} clocks "
            f"({s.fraction * 100:.0f}%): {', '.join(map(str, s.evaluated_mhz))} MHz; "
            + (f"stopped because {s.stopped_because}" if s.stopped_because else "not finished")] + s.notes


def fleet_line(a: Analysis) -> list[str]:
    """A split sweep's GPUs: how each differs from the first at the reference clock, and what that means for the
    answer."""
    if len(a.gpu_offsets) < 2:
        return []
    parts = [f"GPU {g.gpu}: energy {g.energy_offset_pct:+.1f}%{_ci(g.energy_offset_ci95)}, time "
             f"{g.time_offset_pct:+.1f}%{_ci(g.time_offset_ci95)}" for g in a.gpu_offsets[1:]]
    differ = [str(g.gpu) for g in a.gpu_offsets[1:] if g.differs()]
    o, k = a.recommended, a.knob
    answer = f"the answer ({k.show(o.freq_mhz)})" if o is not None else "the answer"
    verdict = (f"GPU {', '.join(differ)} differ{'s' if len(differ) == 1 else ''} beyond the noise, " if differ
               else "no GPU differs beyond the noise; ")
    return [f"on these {len(a.gpu_offsets)} GPUs, against GPU {a.gpu_offsets[0].gpu} at {k.show(a.baseline)}: "
            + "; ".join(parts) + f". {verdict.capitalize()}every saving is taken within its own GPU, so {answer} holds "
            "on each as far as their curves differ by these offsets; each GPU measured other clocks, so a difference "
            "in the curve's shape cannot show here (measure the answer's clock on each GPU to check)"]


def use_lines(a: Analysis) -> list[str]:
    """How to run at the answer with other tools: SLURM's own option and nvidia-smi."""
    o = a.recommended
    if o is None or o.freq_mhz is None:
        return []
    f = o.freq_mhz
    if a.knob is Knob.POWER_LIMIT:
        return [f"to run under a {f} W cap: sweepd clock set {a.job.job_id} | nvidia-smi -pl {f} (reset: sweepd clock "
                "reset, or nvidia-smi -pl with the default `sweepd gpus` shows)"]
    return [f"to run at {f} MHz: sweepd clock set {a.job.job_id} | sbatch --gpu-freq={f} ... | "
            f"nvidia-smi -lgc {f},{f} (reset: nvidia-smi -rgc)"]


def leaderboard_lines(a: Analysis) -> list[str]:
    from sweepd.report.leaderboard import line

    text = line(a)
    return [text] if text else []


def answer_lines(a: Analysis) -> list[str]:
    time = [a.gpu_time.line() + (" (simulated)" if a.job.simulated else "")] if a.gpu_time else []
    batch = [a.batch.line(a.job.simulated)] if a.batch else []
    return ([optimum_line(o, a) for o in a.optima] + search_line(a) + batch + leaderboard_lines(a) + fleet_line(a)
            + a.bottleneck_sentences + time + use_lines(a))
