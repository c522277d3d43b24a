"""A sweep measured in SLURM job steps (``[gpu] clock_control = "slurm"``): what the driver hands each step
(``state/slurm-steps/<ID>/step.json``) and what a step hands back (``next.json``: the clock the sweep needs next, or
none when it is done). Written by :mod:`sweepd.slurm.steps` and the step's runner; nothing else reads them."""

from __future__ import annotations

from pathlib import Path

from sweepd.paths import Layout
from sweepd.records.base import JsonRecord
from sweepd.request import SweepRequest


class StepSpec(JsonRecord):
    """One `srun --gpu-freq` step: measure at ``freq_mhz`` what the sweep needs there, then hand back."""
    job_id: str
    step: int  # 1, 2, ... within this driver's run
    freq_mhz: int
    memory_mhz: int | None = None
    continues: bool = False  # the driver's second step or later: not a resumed sweep (no drift check for that)
    driver_pid: int | None = None  # `sweepd run` driving the steps: sweep.json names it between steps (protection)
    probe: bool = False  # the driver's first step: only whether SLURM set the clock (no model, nothing measured)
    sweep_id: str | None = None  # the daemon's sweep (a SLURM shard); None: a new one, or the job's own
    shard: int | None = None  # a shard of a split sweep (the daemon's SLURM executor): k of ``shards``
    shards: int | None = None
    root: str
    images: str
    results: str
    request: SweepRequest

    @staticmethod
    def path_in(steps: Path) -> Path:
        """``steps``: :meth:`sweepd.paths.Layout.job_steps`."""
        return Path(steps) / "step.json"

    def to_json(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)

    @property
    def layout(self) -> Layout:
        """The root, images and results folders of the sweep the step belongs to (its driver's)."""
        return Layout(Path(self.root), Path(self.images), Path(self.results))

    @property
    def split(self) -> tuple[int, int] | None:
        return (self.shard, self.shards) if self.shard is not None and self.shards else None


class StepHandoff(JsonRecord):
    """What the sweep needs after a step: the next clock (the step ended there, at the clock's first lock), or
    ``next_mhz`` None when the sweep has nothing left to measure."""
    step: int
    next_mhz: int | None = None
    next_memory_mhz: int | None = None

    @staticmethod
    def path_in(steps: Path) -> Path:
        return Path(steps) / "next.json"
