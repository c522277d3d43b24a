"""``state/gpu-locks/<uuid>.json``: a sweep holds this GPU's clocks locked (:mod:`sweepd.gpu.locks`).

Written before the first lock and removed after the reset; one left behind by a dead process is
how the next sweepd start knows to reset that GPU."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from sweepd.records.base import JsonRecord


class ClockLockRecord(JsonRecord):
    uuid: str
    index: int | None = None
    name: str | None = None
    backend: str | None = None
    pid: int = 0
    host: str = ""
    since: str = ""
    path: Path | None = Field(None, exclude=True)  # where it was read from

    @staticmethod
    def path_for(records: Path, uuid: str) -> Path:
        return Path(records) / f"{uuid}.json"
