"""``state/gpu-locks/<uuid>.json``: a sweep holds this GPU's clocks locked, or its power capped (:mod:`sweepd.gpu.locks`).
Written before the first lock and removed after the reset; one left behind by a dead process is
how the next sweepd start knows to reset that GPU.

``state/production-locks/<uuid>.json``: ``sweepd clock set`` locked this GPU at a chosen clock for
production; a sweep on that GPU restores it when it ends instead of resetting to the default."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from sweepd.records.base import JsonRecord
from sweepd.vocab import ClockControl


class ClockLockRecord(JsonRecord):
    uuid: str
    control: ClockControl = ClockControl.LOCK  # what the sweep set: locked clocks, application clocks, or via zeusd
    zeusd_socket: str | None = None  # control = zeusd: the socket it was set through (to reset after a crash)
    power_limit_w: int | None = None  # a power cap the sweep set (back to the default at repair, like the clocks)
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


class ProductionLock(JsonRecord):
    uuid: str
    index: int | None = None
    name: str | None = None
    backend: str | None = None
    sim_model: str | None = None
    freq_mhz: int | None = None  # the locked core clock (None: the clock is the driver's)
    mem_mhz: int | None = None
    source: str = ""  # the job whose answer it is, or "manual"
    power_limit_w: int | None = None  # a production power cap (None: the board's default limit)
    since: str = ""
    path: Path | None = Field(None, exclude=True)

    @property
    def what(self) -> str:
        """What is set, in words: "1005 MHz", "a 175 W cap", or both."""
        parts = ([f"{self.freq_mhz} MHz"] if self.freq_mhz is not None else []) + \
            ([f"a {self.power_limit_w} W cap"] if self.power_limit_w is not None else [])
        return " and ".join(parts) or "nothing"

    @staticmethod
    def path_for(records: Path, uuid: str) -> Path:
        return Path(records) / f"{uuid}.json"

    @classmethod
    def all_in(cls, records: Path) -> list["ProductionLock"]:
        """Every readable record (an unreadable one is skipped: it locks nothing)."""
        out = []
        for path in sorted(Path(records).glob("*.json")):
            rec = cls.read_or_none(path)
            if rec is not None:
                rec.path = path
                out.append(rec)
        return out
