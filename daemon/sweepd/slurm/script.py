"""A sweep's SLURM job script and request file, under results/slurm/<sweep id>/ (shared with the nodes).

The script is rendered from a template (etc/slurm-job.sh, or the settings' [slurm] template) with
values sweepd controls: validated #SBATCH options and quoted paths. Nothing from the request's text
reaches the script: the worker on the node reads the request (prompts included) from request.json.
"""

from __future__ import annotations

import math
import os
import re
import shlex
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sweepd.errors import InputError
from sweepd.records.shardspec import ShardSpec
from sweepd import atomic
from sweepd.paths import Layout
from sweepd.request import SweepRequest
from sweepd.settings import SlurmSettings

PLACEHOLDERS = ("sbatch", "python", "spec", "node_root", "images", "results")


class TemplateError(InputError):
    pass


def submission_dir(layout: Layout, sweep_id: str) -> Path:
    return layout.results / "slurm" / sweep_id


def template_text(s: SlurmSettings) -> str:
    if s.template:
        try:
            text = Path(s.template).read_text()
        except OSError as e:
            raise TemplateError(f"slurm.template: {s.template!r}: cannot read it: {e.strerror}") from None
        where = f"slurm.template: {s.template!r}"
    else:
        text = resources.files("sweepd.etc").joinpath("slurm-job.sh").read_text()
        where = "etc/slurm-job.sh"
    unknown = sorted(set(re.findall(r"\{\{(\w+)\}\}", text)) - set(PLACEHOLDERS))
    if unknown:
        raise TemplateError(f"{where}: unknown placeholder(s) {unknown}; known: {list(PLACEHOLDERS)}")
    if "{{spec}}" not in text:
        raise TemplateError(f"{where}: the template must run the worker with {{{{spec}}}}")
    return text


def shard_seconds(duration_s: float, split: int) -> float:
    """One shard's share of a sweep's estimated duration: each shard starts up and loads the model."""
    from sweepd.report.estimate import STARTUP_S

    return STARTUP_S + max(0.0, duration_s - STARTUP_S) / split


def time_limit_minutes(req: SweepRequest, s: SlurmSettings, estimate_s: float | None, at_least: int = 0) -> int:
    """The request's limit, else the estimate for one shard times (1 + margin) plus the extra minutes,
    at least time_min_minutes and ``at_least`` (and at most time_max_minutes when set)."""
    if req.slurm.time_limit_minutes:
        return req.slurm.time_limit_minutes
    minutes = max(s.time_min_minutes, at_least)
    if estimate_s is not None:
        minutes = max(minutes, math.ceil(estimate_s * (1 + s.time_margin) / 60) + s.time_extra_minutes)
    return min(minutes, s.time_max_minutes) if s.time_max_minutes else minutes


@dataclass
class JobScript:
    sweep_id: str
    req: SweepRequest
    settings: SlurmSettings
    layout: Layout

    @property
    def dir(self) -> Path:
        return submission_dir(self.layout, self.sweep_id)

    @property
    def spec(self) -> Path:
        return self.dir / "request.json"

    def sbatch_options(self, array: str, minutes: int) -> list[str]:
        r, s = self.req.slurm, self.settings
        opts = [f"--job-name=sweepd-{self.sweep_id}", f"--array={array}", f"--time={minutes}",
                f"--gres={s.gres}"]
        if r.partition or s.partition:
            opts.append(f"--partition={r.partition or s.partition}")
        if r.account or s.account:
            opts.append(f"--account={r.account or s.account}")
        return opts + list(s.sbatch) + list(r.sbatch)

    def write_spec(self, job_id: str | None) -> Path:
        """request.json: what every shard runs. job_id None: SLURM's array job id names the results."""
        ShardSpec(sweep_id=self.sweep_id, job_id=job_id, split=self.req.split, request=self.req).write(self.spec)
        return self.spec

    def render(self, array: str, minutes: int) -> str:
        s = self.settings
        node_root = s.node_state_dir or f"/tmp/sweepd-node-{os.getuid()}"
        values = {
            "sbatch": "\n".join(f"#SBATCH {o}" for o in self.sbatch_options(array, minutes)),
            "python": shlex.quote(s.python or sys.executable), "spec": shlex.quote(str(self.spec)),
            "node_root": shlex.quote(node_root), "images": shlex.quote(str(self.layout.images)),
            "results": shlex.quote(str(self.layout.results)),
        }
        text = template_text(s)
        return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)

    def write(self, attempt: int, array: str, minutes: int) -> Path:
        path = self.dir / f"submit-{attempt}.sh"
        atomic.write_text(path, self.render(array, minutes))
        path.chmod(0o755)
        return path

    def log_pattern(self) -> str:
        return str(self.dir / "shard-%a.job-%A_%a.log")
