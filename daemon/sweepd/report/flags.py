"""The report's doubts about a job, for the commands that are not the report (`run`, `demo`,
`status`): whatever `sweepd report` would flag, they say too."""

from __future__ import annotations

from pathlib import Path

from sweepd.errors import SweepdError


def doubts(results_dir: Path) -> list[str]:
    """The report's flags for a job's results folder (none when there is nothing to read yet)."""
    from sweepd.report.analysis import analyse
    from sweepd.report.data import load

    if not (Path(results_dir) / "sweep.json").exists():
        return []
    try:
        return analyse(load(Path(results_dir))).flags
    except (OSError, SweepdError):
        return []
