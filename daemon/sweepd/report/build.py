"""Analyse a job and write its plots and report.html into its results folder."""

from __future__ import annotations

from pathlib import Path

from sweepd.report import html, plots
from sweepd.report.analysis import Analysis, analyse
from sweepd.report.data import JobResults, load


def build(job: JobResults | Path, bound_pct: float = 5.0, cv_limit: float = 0.05) -> tuple[Analysis, list[Path], Path]:
    job = load(job) if isinstance(job, Path) else job
    a = analyse(job, bound_pct, cv_limit)
    files = plots.all_plots(a, job.dir)
    return a, files, html.write(a, files)
