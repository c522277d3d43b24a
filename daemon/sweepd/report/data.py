"""A finished (or running) job's results, read from results/job_<ID>/."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sweepd import atomic, paths
from sweepd.paths import Layout


class JobNotFound(ValueError):
    pass


@dataclass
class JobResults:
    dir: Path
    manifest: dict
    trials: list[dict]
    images: list[dict]

    @property
    def job_id(self) -> str:
        return self.manifest["job_id"]

    @property
    def simulated(self) -> bool:
        return bool(self.manifest.get("simulated"))

    @property
    def gpu_name(self) -> str:
        return self.manifest.get("gpu", {}).get("name", "?")

    @property
    def plan_keys(self) -> list[str]:
        return ["" if f is None else str(f) for f in self.manifest.get("plan_mhz", [])]

    @property
    def label(self) -> str:
        w = self.manifest["request"]["workload"]
        return f"job {self.job_id}: {w['model']}, {w['width']}x{w['height']}, {w['steps']} steps, {self.gpu_name}"


def load(path: Path) -> JobResults:
    manifest = json.loads((path / "sweep.json").read_text())
    return JobResults(path, manifest, atomic.read_csv(path / "trials.csv"), atomic.read_csv(path / "images.csv"))


def find(layout: Layout, key: str) -> JobResults:
    """A job by its folder name (job_1234), its job id (1234) or its sweep id."""
    short = key if len(key) <= 80 else key[:77] + "..."
    try:
        paths.check_job_id(key.removeprefix("job_"))
    except ValueError:
        raise JobNotFound(f"no sweep {short!r}: not a job id (1-64 letters, digits, '.', '_' or '-')") from None
    for candidate in (layout.results / key, layout.results / f"job_{key}"):
        if (candidate / "sweep.json").exists() and candidate.parent == layout.results:
            return load(candidate)
    for manifest in sorted(layout.results.glob("job_*/sweep.json")):
        try:
            if json.loads(manifest.read_text()).get("sweep_id") == key:
                return load(manifest.parent)
        except (OSError, ValueError):
            continue
    raise JobNotFound(f"no sweep {short!r} under {layout.results} (give job_<ID>, the job id or the sweep id)")


def all_jobs(layout: Layout) -> list[JobResults]:
    out = []
    for manifest in sorted(layout.results.glob("job_*/sweep.json")):
        try:
            out.append(load(manifest.parent))
        except (OSError, ValueError, KeyError):
            continue
    return out
