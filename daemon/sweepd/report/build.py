"""Analyse a job and write its plots and report.html into its results folder."""

from __future__ import annotations

from pathlib import Path

from sweepd.errors import SweepdError
from sweepd.report import html, plots
from sweepd.report.analysis import Analysis, analyse
from sweepd.report.data import JobResults, load


def build(job: JobResults | Path, bound_pct: float = 5.0, cv_limit: float = 0.05) -> tuple[Analysis, list[Path], Path]:
    job = load(job) if isinstance(job, Path) else job
    a = analyse(job, bound_pct, cv_limit)
    files = plots.all_plots(a, job.dir)
    return a, files, html.write(a, files)


def write_report(results_dir: Path, job_id: str) -> None:
    """report.html and the plots, at a sweep's end, whenever something was measured; never fails the sweep
    (the engine returns its outcome; its caller, `run` or the daemon's worker, writes the report)."""
    import logging

    if not (Path(results_dir) / "trials.csv").exists():
        return
    try:
        build(Path(results_dir))
    except (SweepdError, OSError) as e:  # an unreadable file or a full disk leaves the sweep as it ended; a bug is raised
        logging.getLogger(__name__).warning("could not write the report for job %s: %s: %s", job_id,
                                            type(e).__name__, e)
