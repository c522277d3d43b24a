"""A finished (or running) job's results, read from results/job_<ID>/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sweepd import paths
from sweepd.errors import InputError, RecordError
from sweepd.paths import Layout
from sweepd.records.manifest import SweepManifest
from sweepd.records.rows import ImageRow, TrialRow


class JobNotFound(InputError):
    pass


@dataclass
class JobResults:
    dir: Path
    manifest: SweepManifest
    trials: list[TrialRow]
    images: list[ImageRow]

    @property
    def job_id(self) -> str:
        return self.manifest.job_id

    @property
    def simulated(self) -> bool:
        return self.manifest.simulated

    @property
    def gpu_name(self) -> str:
        return self.manifest.gpu_name

    @property
    def plan(self) -> list[int | None]:
        return list(self.manifest.plan_mhz)

    @property
    def label(self) -> str:
        w = self.manifest.request.workload
        return f"job {self.job_id}: {w.model}, {w.width}x{w.height}, {w.steps} steps, {self.gpu_name}"


def load(path: Path) -> JobResults:
    """Raises RecordError naming the file that cannot be read."""
    manifest = SweepManifest.read(SweepManifest.path_in(path))
    return JobResults(path, manifest, TrialRow.read_all(path / "trials.csv"), ImageRow.read_all(path / "images.csv"))


def find(layout: Layout, key: str) -> JobResults:
    """A job by its folder name (job_1234), its job id (1234) or its sweep id."""
    short = key if len(key) <= 80 else key[:77] + "..."
    try:
        paths.check_job_id(paths.job_of(key) or key)
    except InputError:
        raise JobNotFound(f"no sweep {short!r}: not a job id (1-64 letters, digits, '.', '_' or '-')") from None
    for candidate in (layout.results / key, layout.results / f"job_{key}"):
        if SweepManifest.path_in(candidate).exists() and candidate.parent == layout.results:
            return load(candidate)
    for path in sorted(layout.results.glob("job_*/sweep.json")):
        m = SweepManifest.read_or_none(path)
        if m is not None and m.sweep_id == key:
            return load(path.parent)
    raise JobNotFound(f"no sweep {short!r} under {layout.results} (give job_<ID>, the job id or the sweep id)")


def all_jobs(layout: Layout) -> list[JobResults]:
    out = []
    for path in sorted(layout.results.glob("job_*/sweep.json")):
        try:
            out.append(load(path.parent))
        except (OSError, RecordError):
            continue
    return out
