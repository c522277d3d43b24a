"""The spec every shard of a SLURM sweep runs (``results/slurm/<sweep>/request.json``): written by
the daemon at submission, read by ``sweepd worker --spec`` on the node."""

from __future__ import annotations

from sweepd.records.base import JsonRecord
from sweepd.request import SweepRequest


class ShardSpec(JsonRecord):
    sweep_id: str
    job_id: str | None = None  # None: SLURM's array job id names the results
    split: int = 1
    request: SweepRequest

    def to_json(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)
