"""Two finished sweeps side by side (`sweepd compare A B`): two knobs (a clock sweep and a power sweep), two GPUs,
two models, or before and after a driver update.

For each objective, with and without the slowdown bound, each sweep's own optimum (:mod:`sweepd.report.optima`)
is set against the other's: the objective's ratio B/A with its 95 % CI (delta method, Welch) names a winner where
the CI excludes no difference, and says "tie" otherwise; a tie is called *equivalent* only where the CI lies within
± the request's equivalence margin (an equivalence test, not a failed one). J/image and s/image differences come
with their CIs too. Each interval is at 95 % on its own; the optima were picked as each sweep's minimum, so the
winner's margin is, if anything, flattered (both sides equally). Fields of the workload that differ are named before
anything is compared. The time-energy frontier of each (its Pareto-optimal settings) is drawn in the terminal
(:func:`ascii_plot`), as a PNG/SVG and in a page (:mod:`sweepd.report.plots`, :func:`page`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from html import escape

from sweepd.engine.summary import by_clock, per_trial
from sweepd.report.analysis import Analysis
from sweepd.stats import ratio_ci95
from sweepd.vocab import Objective

@dataclass
class Point:
    """One setting of one sweep on the frontier plot: its mean s/image and J/image with their 95 % half-widths."""
    setting: int | None
    label: str
    s_per_image: float
    s_ci95: float
    j_per_image: float
    j_ci95: float
    on_frontier: bool = False


@dataclass
class Side:
    job_id: str
    gpu: str
    simulated: bool
    knob: str
    status: str = "done"  # the sweep's state: a sweep not done compares only the settings it measured
    points: list[Point] = field(default_factory=list)


@dataclass
class ObjectiveResult:
    objective: str
    bounded: bool
    a_setting: str  # each sweep's optimum for this objective ("1005 MHz", "175 W")
    b_setting: str
    winner: str  # "A", "B" or "tie" (no difference shown at 95 %)
    equivalent: bool  # a tie shown to be one: the objective's CI within ± the equivalence margin
    objective_diff_pct: float  # B against A, in % of A (negative: B lower, better)
    objective_diff_ci95: list[float] | None
    energy_diff_pct: float  # J/image of B's optimum against A's, in %
    energy_diff_ci95: list[float] | None
    time_diff_pct: float
    time_diff_ci95: list[float] | None

    def line(self, margin_pct: float) -> str:
        name = Objective(self.objective).title + (" within the slowdown bound" if self.bounded else "")
        ci = _ci(self.objective_diff_ci95)
        if self.winner == "tie":
            verdict = (f"equivalent (within ±{margin_pct:g}%)" if self.equivalent else
                       "no difference shown, and none ruled out at this precision")
        else:
            verdict = f"{self.winner} wins"
        return (f"{name}: A at {self.a_setting}, B at {self.b_setting}: {verdict}; B {self.objective_diff_pct:+.1f}%"
                f"{ci} against A; J/image {self.energy_diff_pct:+.1f}%{_ci(self.energy_diff_ci95)}, s/image "
                f"{self.time_diff_pct:+.1f}%{_ci(self.time_diff_ci95)}")


@dataclass
class Comparison:
    a: Side
    b: Side
    differs: list[str]  # request fields (section.name) whose values differ between the two workloads
    objectives: list[ObjectiveResult]
    margin_pct: float

    def to_json(self) -> dict:
        return {"a": asdict(self.a), "b": asdict(self.b), "differs": self.differs,
                "objectives": [asdict(o) for o in self.objectives], "equivalence_margin_pct": self.margin_pct}

    def lines(self) -> list[str]:
        sim = " (SIMULATED)" if self.a.simulated or self.b.simulated else ""
        head = [f"A: job {self.a.job_id}, {self.a.knob} sweep on {self.a.gpu}; B: job {self.b.job_id}, {self.b.knob} "
                f"sweep on {self.b.gpu}{sim}"]
        for name, s in (("A", self.a), ("B", self.b)):
            if s.status != "done":
                head.append(f"{name} is {s.status}: only the {s.knob}s it measured are compared")
        if self.differs:
            head.append("the workloads differ in " + ", ".join(self.differs) + ": the figures below compare "
                        "different work")
        return head + [o.line(self.margin_pct) for o in self.objectives]


def _ci(ci: list[float] | None) -> str:
    return " (no CI)" if ci is None else f" (95% CI {ci[0]:+.1f} to {ci[1]:+.1f}%)"


def differing_fields(a: Analysis, b: Analysis) -> list[str]:
    """The [workload] fields whose values differ: what makes two sweeps measure different work (the GPU, the knob
    and the protocol are what a comparison may vary)."""
    wa, wb = a.job.manifest.request.workload, b.job.manifest.request.workload
    return [f"workload.{f}" for f in type(wa).model_fields if getattr(wa, f) != getattr(wb, f)]


def frontier(points: list[Point]) -> None:
    """Marks the Pareto-optimal points: none other is at once faster and lower in energy."""
    for p in points:
        p.on_frontier = not any(q is not p and q.s_per_image <= p.s_per_image and q.j_per_image <= p.j_per_image
                                and (q.s_per_image, q.j_per_image) != (p.s_per_image, p.j_per_image) for q in points)


def side(a: Analysis) -> Side:
    out = Side(a.job.job_id, a.job.gpu_name, a.job.simulated, a.knob.noun, str(a.job.manifest.status))
    for r in a.rows:
        out.points.append(Point(r.setting, a.knob.show(r.setting), r.s_per_image_mean,
                                r.s_per_image_mean * (r.s_ci95_pct or 0) / 100, r.j_per_image_mean,
                                r.j_per_image_mean * (r.ci95_pct or 0) / 100))
    frontier(out.points)
    return out


def _pct(ratio: tuple[float, float | None, float | None]) -> tuple[float, list[float] | None]:
    r, lo, hi = ratio
    return (r - 1) * 100, None if lo is None or hi is None else [(lo - 1) * 100, (hi - 1) * 100]


def compare(a: Analysis, b: Analysis) -> Comparison:
    margin = a.margin_pct
    ta, tb = by_clock(a.job.trials), by_clock(b.job.trials)
    results = []
    for metric in Objective:
        for bounded in (False, True):
            oa, ob = a.best(metric, bounded), b.best(metric, bounded)
            ra, rb = (ta.get(oa.freq_mhz, []) if oa else []), (tb.get(ob.freq_mhz, []) if ob else [])
            if not ra or not rb:
                continue
            d, ci = _pct(ratio_ci95([per_trial(metric, t) for t in rb], [per_trial(metric, t) for t in ra]))
            e, eci = _pct(ratio_ci95([float(t.j_per_image) for t in rb], [float(t.j_per_image) for t in ra]))
            s, sci = _pct(ratio_ci95([float(t.s_per_image) for t in rb], [float(t.s_per_image) for t in ra]))
            winner = "tie" if ci is None or ci[0] <= 0 <= ci[1] else ("B" if ci[1] < 0 else "A")
            results.append(ObjectiveResult(
                metric.value, bounded, a.knob.show(oa.freq_mhz), b.knob.show(ob.freq_mhz), winner,
                winner == "tie" and ci is not None and -margin < ci[0] and ci[1] < margin,
                round(d, 2), _round(ci), round(e, 2), _round(eci), round(s, 2), _round(sci)))
    return Comparison(side(a), side(b), differing_fields(a, b), results, margin)


def _round(ci: list[float] | None) -> list[float] | None:
    return None if ci is None else [round(x, 2) for x in ci]


def ascii_plot(c: Comparison, width: int = 64, height: int = 16) -> list[str]:
    """Both sweeps' settings on one s/image (x) vs J/image (y) grid: A's as 'a', B's as 'b', frontier points in
    capitals; each point's setting listed below, frontier first."""
    pts = [(p, "a") for p in c.a.points] + [(p, "b") for p in c.b.points]
    if not pts:
        return []
    xs, ys = [p.s_per_image for p, _ in pts], [p.j_per_image for p, _ in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    grid = [[" "] * width for _ in range(height)]
    for p, tag in pts:
        col = 0 if x1 == x0 else round((p.s_per_image - x0) / (x1 - x0) * (width - 1))
        row = 0 if y1 == y0 else round((y1 - p.j_per_image) / (y1 - y0) * (height - 1))
        mark = tag.upper() if p.on_frontier else tag
        grid[row][col] = "*" if grid[row][col] not in (" ", mark) else mark
    out = [f"J/image {y1:8.3g} |" + "".join(grid[0])]
    out += ["                 |" + "".join(r) for r in grid[1:-1]]
    out += [f"        {y0:8.3g} |" + "".join(grid[-1]), "                 +" + "-" * width,
            f"                  {x0:<.3g} s/image" + " " * max(1, width - 24) + f"{x1:.3g}",
            "A/B: on its sweep's time-energy frontier; a/b: not; *: both at one spot"]
    for name, s in (("A", c.a), ("B", c.b)):
        front = sorted((p for p in s.points if p.on_frontier), key=lambda p: p.s_per_image)
        out.append(f"{name} frontier: " + "; ".join(f"{p.label} {p.s_per_image:.3g} s, {p.j_per_image:.3g} J"
                                                     for p in front))
    return out


def page(c: Comparison, plot_svg: str | None) -> str:
    """A self-contained HTML page: the verdicts, the differing fields and the frontier plot."""
    sim = c.a.simulated or c.b.simulated
    rows = "".join(f"<li>{escape(line)}</li>" for line in c.lines())
    pts = "".join(f"<tr><td>{n}</td><td>{escape(p.label)}</td><td>{p.s_per_image:.4g} ± {p.s_ci95:.2g}</td>"
                  f"<td>{p.j_per_image:.4g} ± {p.j_ci95:.2g}</td><td>{'yes' if p.on_frontier else ''}</td></tr>"
                  for n, s in (("A", c.a), ("B", c.b)) for p in s.points)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>sweepd compare</title></head><body>"
            f"<h1>Compare: A {escape(c.a.job_id)} and B {escape(c.b.job_id)}</h1>"
            + ("<p><b>SIMULATED GPU</b>: figures from sweepd's simulated GPU, not from real hardware.</p>" if sim else "")
            + f"<ul>{rows}</ul>" + (plot_svg or "<p>(no plot)</p>")
            + "<table><tr><th>sweep</th><th>setting</th><th>s/image ± 95% CI</th><th>J/image ± 95% CI</th>"
              f"<th>frontier</th></tr>{pts}</table></body></html>")

