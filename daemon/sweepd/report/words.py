"""The answer in words, for the terminal (`sweepd run`, `sweepd demo`, `sweepd report`): each optimum with
its confidence intervals and its equivalent set, then what sets the pace over which clocks."""

from __future__ import annotations

from sweepd.records.rows import clock_label
from sweepd.report.analysis import Analysis
from sweepd.report.optima import Optimum


def _ci(ci: list[float] | None) -> str:
    return " (no CI)" if ci is None else f" (95% CI {ci[0]:+.1f} to {ci[1]:+.1f}%)"


def optimum_line(o: Optimum, a: Analysis) -> str:
    eq = [clock_label(f) for f in o.equivalent_mhz if f != o.freq_mhz]
    return (f"{o.name(a.bound_pct)}: {clock_label(o.freq_mhz)} MHz, energy {-o.energy_saving_pct:+.1f}%"
            f"{_ci(None if o.energy_saving_ci95 is None else [-o.energy_saving_ci95[1], -o.energy_saving_ci95[0]])}, "
            f"time {o.time_change_pct:+.1f}%{_ci(o.time_change_ci95)} vs {a.reference}; "
            + (f"equivalent within the noise: {', '.join(eq)} MHz" if eq else "no other clock equivalent")
            + (" (simulated)" if a.job.simulated else ""))


def search_line(a: Analysis) -> list[str]:
    s = a.job.manifest.search
    if s is None:
        return []
    return [f"adaptive search ({s.objective}): measured {len(s.evaluated_mhz)} of {s.supported_count} clocks "
            f"({s.fraction * 100:.0f}%): {', '.join(map(str, s.evaluated_mhz))} MHz; "
            + (f"stopped because {s.stopped_because}" if s.stopped_because else "not finished")] + s.notes


def use_lines(a: Analysis) -> list[str]:
    """How to run at the answer with other tools: SLURM's own option and nvidia-smi."""
    o = a.recommended
    if o is None or o.freq_mhz is None:
        return []
    f = o.freq_mhz
    return [f"to run at {f} MHz: sweepd clock set {a.job.job_id} | sbatch --gpu-freq={f} ... | "
            f"nvidia-smi -lgc {f},{f} (reset: nvidia-smi -rgc)"]


def answer_lines(a: Analysis) -> list[str]:
    time = [a.gpu_time.line() + (" (simulated)" if a.job.simulated else "")] if a.gpu_time else []
    batch = [a.batch.line(a.job.simulated)] if a.batch else []
    return ([optimum_line(o, a) for o in a.optima] + search_line(a) + batch + a.bottleneck_sentences + time
            + use_lines(a))
