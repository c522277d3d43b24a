"""report.html: one self-contained file (plots embedded, no network) with the optima (95 % CIs and
equivalent sets), what sets the pace, the baseline's drift, the flags, the table and the plots. Every text from the request is escaped."""

from __future__ import annotations

import base64
import time
from html import escape
from pathlib import Path

from sweepd import atomic
from sweepd.records.rows import clock_label
from sweepd.report import words
from sweepd.report.analysis import Analysis
from sweepd.vocab import Knob

CSS = """body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;font-size:0.9em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f0f0f0}.sim{background:#fff3cd;border:1px solid #e0c060;padding:0.6em;font-weight:bold}
.flag{color:#a04000}img{max-width:100%}"""


def _img(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{escape(path.stem)}" src="data:image/png;base64,{data}">'


def _clock(r) -> str:
    """Where a power limit put the SM clock: its mean and spread over the trials' samples."""
    if r.sm_clock_mean_mhz is None:
        return "-"
    return f"{r.sm_clock_mean_mhz:.0f} ± {r.sm_clock_std_mhz or 0:.0f}"


def _pct(x: float) -> str:
    return f"{x + 0.0:+.1f}%"


def _range(ci: list[float] | None, sign: int) -> str:
    """A CI given as [low, high] of a saving (sign -1: shown as a change) or of a change (sign 1)."""
    if ci is None:
        return " <small>(no CI)</small>"
    lo, hi = sorted(sign * x for x in ci)
    return f" <small>({lo + 0.0:+.1f} to {hi + 0.0:+.1f}%)</small>"


def render(a: Analysis, plots: list[Path]) -> str:
    j = a.job
    w = j.manifest.request.workload
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>sweepd report: job {escape(j.job_id)}</title>"
             f"<style>{CSS}</style></head><body>",
             f"<h1>Sweep report: job {escape(j.job_id)}</h1>"]
    if j.simulated:
        parts.append("<p class='sim'>SIMULATED GPU: these figures come from sweepd's simulated "
                     f"{escape(j.gpu_name)}, not from real hardware.</p>")
    parts.append(f"<p>{escape(w.model)}, {w.width}x{w.height}, {w.steps} steps, prompt "
                 f"<q>{escape(str(w.prompt))}</q>; GPU {escape(j.gpu_name)} ({escape(j.manifest.backend or '')}); "
                 f"status {escape(j.manifest.status)}; sweep {escape(j.manifest.sweep_id)}</p>")
    again = " and, since it drifted, measured again at the end: savings are against that" if a.remeasured else ""
    k, u = a.knob, a.knob.unit
    parts.append(f"<h2>Optimal {k.noun}</h2><p>Baseline: {escape(k.show(a.baseline))} (the highest {k.noun} "
                 f"measured{again}). Slowdown bound: +{a.bound_pct:g}% time. Ranges are 95% confidence intervals, "
                 "simultaneous over the optimum's equivalent set (the optimum was picked from it); the equivalent "
                 "clocks are those no other clock beats significantly (multiple comparisons with the best, 95% "
                 "overall), and for a bound, those not significantly slower than it allows.</p>"
                 f"<table class='optima'><tr><th>criterion</th><th>{k.noun} {u}</th><th>energy vs baseline</th>"
                 f"<th>time vs baseline</th><th>equivalent within the noise ({u})</th></tr>")
    for o in a.optima:
        eq = ", ".join(clock_label(f) for f in o.equivalent_mhz)
        s = o.shown
        clock = (f"stay at {clock_label(o.freq_mhz)} (the reference; best other: {clock_label(s.freq_mhz)})"
                 if o.is_reference else clock_label(o.freq_mhz))
        maybe = (f"; within the bound or not cannot be told at {', '.join(clock_label(f) for f in o.uncertain_mhz)}"
                 if o.uncertain_mhz else "")
        parts.append(f"<tr><td style='text-align:left'>{escape(o.name(a.bound_pct))}</td>"
                     f"<td>{escape(clock)}</td>"
                     f"<td>{_pct(-s.energy_saving_pct)}{_range(s.energy_saving_ci95, -1)}</td>"
                     f"<td>{_pct(s.time_change_pct)}{_range(s.time_change_ci95, 1)}</td>"
                     f"<td style='text-align:left'>{escape(eq + maybe)}</td></tr>")
    parts.append("</table>")
    parts.append("<h2>What sets the pace</h2><ul class='bottleneck'>"
                 + "".join(f"<li>{escape(t)}</li>" for t in a.bottleneck_sentences) + "</ul>")
    use = (words.search_line(a) + ([a.batch.line(a.job.simulated)] if a.batch else []) + words.leaderboard_lines(a)
           + words.fleet_line(a)
           + words.use_lines(a)
           + ([a.gpu_time.line()] if a.gpu_time else []))
    parts.append("<h2>How it was found, how to use it</h2><ul class='use'>"
                 + "".join(f"<li>{escape(t)}</li>" for t in use) + "</ul>")
    if a.drift is not None:
        d = a.drift
        parts.append(f"<p class='drift'>Baseline measured again ({d.n} trials): J/image {_pct(d.j_pct)} "
                     f"(±{d.j_ci95_pct:.1f}%), s/image {_pct(d.s_pct)} (±{d.s_ci95_pct:.1f}%) since its first "
                     "measurement.</p>")
    parts.append("<h2>Flags</h2>" + ("<ul>" + "".join(f"<li class='flag'>{escape(f)}</li>" for f in a.flag_lines) + "</ul>"
                                     if a.flags else "<p>none</p>"))
    clk = "<th>SM clock MHz (spread)</th>" if k is not Knob.CLOCK else ""
    parts.append(f"<h2>Per {k.noun}</h2><table class='clocks'><tr><th>{k.noun} {u}</th>{clk}<th>n</th><th>s/image</th>"
                 "<th>J/image</th><th>95% CI</th><th>GPU util</th><th>bound</th><th>W</th><th>EDP</th><th>ED2P</th>"
                 "<th>energy vs max</th><th>time vs max</th></tr>")
    for r in a.rows:
        util = "-" if r.gpu_util_pct is None else f"{r.gpu_util_pct:.0f}%"
        ci = "-" if r.ci95_pct is None else f"±{r.ci95_pct:.1f}%"
        seen = "" if k is Knob.CLOCK else f"<td>{_clock(r)}</td>"
        parts.append(f"<tr><td>{escape(r.label)}</td>{seen}<td>{r.n}</td>"
                     f"<td>{r.s_per_image_mean:.4f} ± {r.s_per_image_std:.4f}</td>"
                     f"<td>{r.j_per_image_mean:.2f} ± {r.j_per_image_std:.2f}</td><td>{ci}</td><td>{util}</td>"
                     f"<td>{escape(r.bound or '-')}</td><td>{r.avg_power_w:.0f}</td><td>{r.edp:.4g}</td>"
                     f"<td>{r.ed2p:.4g}</td><td>{_pct(-r.energy_saving_pct_vs_max)}</td>"
                     f"<td>{_pct(r.time_change_pct_vs_max)}</td></tr>")
    parts.append("</table><h2>Plots</h2>")
    for p in plots:
        if p.suffix == ".png":
            parts.append(f"<figure>{_img(p)}</figure>")
    parts.append(f"<p><small>written by sweepd on {time.strftime('%Y-%m-%d %H:%M')}</small></p></body></html>")
    return "\n".join(parts)


def write(a: Analysis, plots: list[Path]) -> Path:
    path = a.job.dir / "report.html"
    atomic.write_text(path, render(a, plots))
    return path
