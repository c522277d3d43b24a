"""Plots of a sweep, as PNG and SVG in its results folder. Only measured rows are drawn; a sweep
with nothing measured gets no plot. A simulated sweep says so in every title."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from sweepd import atomic  # noqa: E402
from sweepd.report.analysis import Analysis  # noqa: E402


def _title(a: Analysis, what: str) -> str:
    tag = " (SIMULATED GPU)" if a.job.simulated else ""
    return f"{what}: {a.job.gpu_name}{tag}\njob {a.job.job_id}"


def _save(fig, out: Path, stem: str) -> list[Path]:
    """Each format rendered in memory, then written atomically: a full disk leaves the old plot or none,
    never a 0-byte or truncated one."""
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    try:
        for p in paths:
            buf = io.BytesIO()
            fig.savefig(buf, format=p.suffix[1:], dpi=110, bbox_inches="tight")
            atomic.write_bytes(p, buf.getvalue())
    finally:
        plt.close(fig)
    return paths


def _clocks(a: Analysis) -> np.ndarray:
    return np.array([float(r.setting) if r.setting else np.nan for r in a.rows])


def _axis(a: Analysis) -> str:
    """The x axis: the knob the sweep turned."""
    return "core clock (MHz)" if a.knob.unit == "MHz" else "power limit (W)"


def _ci(mean: float, pct: float | None) -> float:
    """A 95 % half-width from a row's ci95 in % (0 where there is none: one trial)."""
    return mean * pct / 100 if pct is not None else 0.0


def energy_time(a: Analysis, out: Path) -> list[Path]:
    """Energy and time per image with 95 % confidence intervals as error bars; the minimum-EDP clock's
    equivalent set (every clock not significantly worse) as a shaded band."""
    f = _clocks(a)
    j = np.array([r.j_per_image_mean for r in a.rows])
    js = np.array([_ci(r.j_per_image_mean, r.ci95_pct) for r in a.rows])
    s = np.array([r.s_per_image_mean for r in a.rows])
    ss = np.array([_ci(r.s_per_image_mean, r.s_ci95_pct) for r in a.rows])
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True)
    edp = a.best("edp", False)
    eq = [float(x) for x in (edp.equivalent_mhz if edp else []) if x]
    if len(eq) > 1:
        for ax in (ax1, ax2):
            ax.axvspan(min(eq) - 7, max(eq) + 7, color="tab:purple", alpha=0.12, lw=0,
                       label="min EDP: equivalent within the noise" if ax is ax1 else None)
    ax1.errorbar(f, j, yerr=js, marker="o", ms=3, capsize=2, color="tab:red", label="mean ± 95% CI")
    ax1.set_ylabel("energy per image (J)")
    ax2.errorbar(f, s, yerr=ss, marker="o", ms=3, capsize=2, color="tab:blue")
    ax2.set_ylabel("time per image (s)")
    ax2.set_xlabel(_axis(a))
    base_s = a.rows[0].s_per_image_mean
    ax2.axhline(base_s * (1 + a.bound_pct / 100), ls="--", color="gray",
                label=f"slowdown bound +{a.bound_pct:g}% vs {a.knob.show(a.baseline)}")
    styles = {"energy": ("v", "tab:green"), "edp": ("*", "tab:purple"), "ed2p": ("D", "tab:orange")}
    for o in a.optima:
        if not o.freq or o.bounded:
            continue
        m, c = styles[o.metric]
        ax1.plot(float(o.freq), o.j_per_image, m, color=c, ms=11, label=f"min {o.metric.upper()}: {a.knob.show(o.freq)}")
    for o in a.optima:
        if o.freq and o.bounded and o.metric == "edp":
            ax2.plot(float(o.freq), o.s_per_image, "*", color="black", ms=11,
                     label=f"min EDP within bound: {a.knob.show(o.freq)}")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    ax1.set_title(_title(a, f"Energy and time per image vs {a.knob.noun}"), fontsize=10)
    return _save(fig, out, "energy_time")


def power(a: Analysis, out: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(7, 3.8))
    ax.plot(_clocks(a), [r.avg_power_w for r in a.rows], marker="o", ms=3)
    ax.set_xlabel(_axis(a))
    ax.set_ylabel("average power (W)")
    ax.set_title(_title(a, f"Average power vs {a.knob.noun}"), fontsize=10)
    return _save(fig, out, "power")


def energy_vs_time(a: Analysis, out: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    sc = ax.scatter([r.s_per_image_mean for r in a.rows], [r.j_per_image_mean for r in a.rows],
                    c=_clocks(a), cmap="viridis")
    fig.colorbar(sc, ax=ax, label=_axis(a))
    ax.set_xlabel("time per image (s)")
    ax.set_ylabel("energy per image (J)")
    ax.set_title(_title(a, "Energy vs time"), fontsize=10)
    return _save(fig, out, "energy_vs_time")


def contact_sheet(a: Analysis, out: Path, per_clock: int = 4) -> list[Path]:
    """The saved images by clock (first trial), one row per clock."""
    by_clock: dict[int | None, list[str]] = {}
    for im in a.job.images:
        if im.saved_path and Path(im.saved_path).exists():
            by_clock.setdefault(im.setting, []).append(im.saved_path)
    if not by_clock:
        return []
    clocks = [k for k in a.job.plan if k in by_clock] or list(by_clock)
    cols = min(per_clock, max(len(v) for v in by_clock.values()))
    fig, axes = plt.subplots(len(clocks), cols, figsize=(1.6 * cols + 1, 1.6 * len(clocks) + 0.6), squeeze=False)
    for i, c in enumerate(clocks):
        for k in range(cols):
            ax = axes[i][k]
            ax.axis("off")
            if k < len(by_clock[c]):
                with Image.open(by_clock[c][k]) as im:
                    ax.imshow(np.asarray(im.convert("RGB")))
            if k == 0:
                ax.set_title(a.knob.show(c), fontsize=8, loc="left")
    fig.suptitle(_title(a, f"Saved images by {a.knob.noun}"), fontsize=10)
    return _save(fig, out, "contact_sheet")


def all_plots(a: Analysis, out: Path) -> list[Path]:
    if not a.rows:
        return []
    return energy_time(a, out) + power(a, out) + energy_vs_time(a, out) + contact_sheet(a, out)


def compare(analyses: list[Analysis], out: Path) -> list[Path]:
    """Normalised curves of several sweeps on one plot: energy and time relative to each one's max clock."""
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(7.5, 6.5), sharex=True)
    for a in analyses:
        if not a.rows:
            continue
        f = _clocks(a)
        lab = f"{a.job.job_id}: {a.job.gpu_name}" + (" (sim)" if a.job.simulated else "")
        ax1.plot(f, [r.j_per_image_mean / a.rows[0].j_per_image_mean for r in a.rows], marker="o", ms=3,
                 label=lab)
        ax2.plot(f, [r.s_per_image_mean / a.rows[0].s_per_image_mean for r in a.rows], marker="o", ms=3,
                 label=lab)
    ax1.set_ylabel("energy / energy at max clock")
    ax2.set_ylabel("time / time at max clock")
    ax2.set_xlabel(_axis(analyses[0]))
    ax1.legend(fontsize=8)
    sim = any(a.job.simulated for a in analyses)
    ax1.set_title("Sweeps compared" + (" (includes SIMULATED GPUs)" if sim else ""), fontsize=10)
    return _save(fig, out, "compare")


def frontiers(c, out: Path) -> list[Path]:
    """Two sweeps' settings (a :class:`~sweepd.report.compare.Comparison`) on one s/image vs J/image plot, with
    95 % error bars, each point labelled with its setting and each sweep's time-energy frontier drawn through."""
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    for name, s, color in (("A", c.a, "tab:blue"), ("B", c.b, "tab:orange")):
        pts = s.points
        ax.errorbar([p.s_per_image for p in pts], [p.j_per_image for p in pts], xerr=[p.s_ci95 for p in pts],
                    yerr=[p.j_ci95 for p in pts], fmt="o", ms=4, capsize=2, color=color,
                    label=f"{name}: job {s.job_id}, {s.knob} sweep" + (" (SIMULATED)" if s.simulated else ""))
        front = sorted((p for p in pts if p.on_frontier), key=lambda p: p.s_per_image)
        ax.plot([p.s_per_image for p in front], [p.j_per_image for p in front], "-", color=color, alpha=0.6)
        for p in pts:
            ax.annotate(p.label, (p.s_per_image, p.j_per_image), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color=color)
    ax.set_xlabel("time per image (s)")
    ax.set_ylabel("energy per image (J)")
    ax.legend(fontsize=8)
    sim = c.a.simulated or c.b.simulated
    ax.set_title("Time-energy frontiers" + (" (SIMULATED GPU)" if sim else ""), fontsize=10)
    return _save(fig, out, "frontiers")
