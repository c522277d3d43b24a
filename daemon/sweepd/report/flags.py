"""The report's answer and doubts about a job, for the commands that are not the report (`run`, `demo`,
`status`): whatever `sweepd report` would say or flag, they say too."""

from __future__ import annotations

from pathlib import Path

from sweepd.errors import SweepdError
from sweepd.records.manifest import SweepManifest


def verdict(results_dir: Path) -> tuple[list[str], list[str]]:
    """The report's answer (optima, bottleneck) and its flags, grouped as a person reads them, for a job's results
    folder."""
    from sweepd.report.analysis import analyse
    from sweepd.report.data import load
    from sweepd.report.words import answer_lines

    if not SweepManifest.path_in(results_dir).exists():
        return [], []
    try:
        a = analyse(load(Path(results_dir)))
    except (OSError, SweepdError):
        return [], []
    return answer_lines(a), a.flag_lines


def doubts(results_dir: Path) -> list[str]:
    """The report's flags for a job's results folder (none when there is nothing to read yet)."""
    from sweepd.report.analysis import analyse
    from sweepd.report.data import load

    if not SweepManifest.path_in(results_dir).exists():
        return []
    try:
        return analyse(load(Path(results_dir))).flag_lines
    except (OSError, SweepdError):
        return []
