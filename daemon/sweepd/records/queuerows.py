"""The queue's rows (``state/queue.sqlite``, :mod:`sweepd.queue`): one sweep, one SLURM shard."""

from __future__ import annotations

import json
import time
import sqlite3

from pydantic import ConfigDict, Field, field_validator

from sweepd.errors import InputError
from sweepd.records.base import Record
from sweepd.request import SweepRequest
from sweepd.vocab import RunState, ShardState, SweepState


class _Row(Record):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def of(cls, row: sqlite3.Row):
        return cls.model_validate({k: row[k] for k in row.keys()})


class SweepRow(_Row):
    seq: int
    id: str
    job_id: str
    state: SweepState
    priority: int = 0
    gpu_index: int | None = None
    request_json: str = Field(alias="request")  # the request as submitted (JSON text)
    source: str | None = None
    spool_path: str | None = None
    submitted_at: float
    started_at: float | None = None
    ended_at: float | None = None
    worker: str | None = None
    pid: int | None = None
    exit_status: int | None = None
    error: str | None = None
    resumes: int = 0
    cancel_requested: bool = False
    executor: str = "local"  # schema 1 (0.1.0) had no SLURM: every sweep was local
    slurm_job_id: str | None = None

    @property
    def request(self) -> SweepRequest:
        """The request, pinned to the GPU the daemon first ran it on (a resumed sweep stays there).
        Raises InputError when it no longer validates (e.g. queued by another sweepd version)."""
        try:
            data = json.loads(self.request_json)
            if self.gpu_index is not None and isinstance(data.get("gpu"), dict) and not data["gpu"].get("uuid"):
                data["gpu"]["index"] = self.gpu_index
            return SweepRequest.model_validate(data)
        except ValueError as e:  # pydantic's ValidationError is one
            raise InputError(f"sweep {self.id}: its queued request does not validate: "
                             f"{str(e).splitlines()[0]}") from None

    @property
    def slurm(self) -> bool:
        return self.executor == "slurm"

    def to_json(self) -> dict:
        """Every column but the request (``sweepd status --json``, ``list --json``)."""
        return self.model_dump(mode="json", exclude={"request_json"})


class AttemptEnd(Record):
    """How a shard's SLURM job ended, as the executor saw it: SLURM's state and the worker's own."""
    model_config = ConfigDict(frozen=True)
    slurm_state: str
    worker_state: RunState | None = None


class ShardAttempt(Record):
    """One submission of a shard to SLURM."""
    model_config = ConfigDict(extra="allow")
    slurm_id: str
    submitted: float | None = None
    minutes: int | None = None
    ended: float | None = None
    slurm_state: str | None = None
    worker_state: RunState | None = None

    def closed(self, end: AttemptEnd) -> "ShardAttempt":
        """This attempt, ended now as ``end`` says."""
        return self.model_copy(update={"ended": time.time(), "slurm_state": end.slurm_state,
                                       "worker_state": end.worker_state})


class ShardRow(_Row):
    sweep_id: str
    shard: int
    slurm_id: str | None = None
    state: ShardState
    slurm_state: str | None = None
    attempts: int = 1
    error: str | None = None
    history: list[ShardAttempt] = []
    updated_at: float | None = None

    @field_validator("history", mode="before")
    @classmethod
    def _history_json(cls, v: object) -> object:
        return json.loads(v) if isinstance(v, str) else v

    def to_json(self) -> dict:
        return self.model_dump(mode="json")
