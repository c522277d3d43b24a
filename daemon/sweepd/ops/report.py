"""`sweepd report`'s use case: each job's analysis, its plots and report.html, and several jobs compared. Reading
only (``--json``, ``--csv``) imports nothing heavy; building writes into each job's results folder, and a
read-only one still gets its analysis."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sweepd.paths import Layout
from sweepd.report.analysis import Analysis
from sweepd.report.compare import Comparison


@dataclass(frozen=True)
class Built:
    analysis: Analysis
    page: Path | None  # report.html; None where it could not be written
    note: str | None = None  # why not


def analyse_jobs(layout: Layout, jobs: list[str], bound_pct: float, cv_pct: float) -> list[Analysis]:
    """Each job (job_<ID>, a job id or a sweep id) found under this root and analysed."""
    from sweepd.report.analysis import analyse
    from sweepd.report.data import find

    return [analyse(find(layout, j), bound_pct, cv_pct / 100) for j in jobs]


def build_reports(analyses: list[Analysis], bound_pct: float, cv_pct: float) -> list[Built]:
    from sweepd.report.build import build

    out = []
    for a in analyses:
        try:
            built, _plots, page = build(a.job, bound_pct, cv_pct / 100)
            out.append(Built(built, page))
        except OSError as e:  # a read-only results folder: the analysis still stands
            out.append(Built(a, None, f"plots and report.html not written ({e.strerror or e}: {e.filename or ''})"))
    return out


def compare(layout: Layout, analyses: list[Analysis]) -> Path:
    """The jobs' curves on one plot, in results/compare_<job>_<job>...; raises OSError where it cannot write."""
    from sweepd.report import plots

    out = layout.results / ("compare_" + "_".join(a.job.job_id for a in analyses))[:200]
    out.mkdir(parents=True, exist_ok=True)
    return plots.compare(analyses, out)[0]


@dataclass(frozen=True)
class Compared:
    comparison: "Comparison"
    folder: Path | None  # results/compare_<A>_vs_<B>/ with frontiers.png/.svg and report.html; None: not written
    note: str | None = None  # why not


def compare_two(layout: Layout, a: str, b: str, bound_pct: float, write: bool = True) -> Compared:
    """`sweepd compare A B`: the two sweeps' optima set against each other, and (``write``) the frontier plot and a
    page in results/compare_<A>_vs_<B>/ (a folder that cannot be written is said, not fatal)."""
    from sweepd.report.compare import compare

    one, two = analyse_jobs(layout, [a, b], bound_pct, 5.0)
    c = compare(one, two)
    if not write:
        return Compared(c, None)
    from sweepd import atomic
    from sweepd.report import plots
    from sweepd.report.compare import page

    out = layout.results / f"compare_{one.job.job_id}_vs_{two.job.job_id}"[:200]
    try:
        out.mkdir(parents=True, exist_ok=True)
        files = plots.frontiers(c, out)
        svg = files[1].read_text()
        atomic.write_text(out / "report.html", page(c, svg[svg.find("<svg"):]))
    except OSError as e:
        return Compared(c, None, f"plot and page not written ({e.strerror or e}: {e.filename or ''})")
    return Compared(c, out)
