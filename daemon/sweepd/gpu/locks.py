"""Clock locks that cannot outlive a sweep.

NVML clock locks persist after the process that set them exits. :class:`ClockGuard` writes a
record under ``state/gpu-locks/`` before the first lock and removes it only after a reset, resets
on normal exit, on error (``with``), and at interpreter exit; signals are turned into an orderly
exit by :mod:`sweepd.engine.stop`. If a process dies anyway (SIGKILL, OOM killer, power), the next
sweepd start finds its record and resets that GPU (:func:`repair_stale_locks`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Callable

from sweepd import atomic
from sweepd.procs import pid_alive
from sweepd.gpu.base import GpuDevice, GpuError

log = logging.getLogger(__name__)


class GpuBusyError(GpuError):
    """Another live sweepd process holds this GPU's clocks."""


def _record_path(records: Path, uuid: str) -> Path:
    return records / f"{uuid}.json"


def read_records(records: Path) -> list[dict]:
    out = []
    for path in sorted(Path(records).glob("*.json")):
        try:
            out.append(json.loads(path.read_text()) | {"_path": str(path)})
        except (OSError, ValueError):
            log.warning("ignoring unreadable lock record %s", path)
    return out


def repair_stale_locks(records: Path, opener: Callable[[dict], GpuDevice]) -> list[str]:
    """Reset every GPU whose lock record belongs to a dead process on this host. Returns what was done."""
    done = []
    host = socket.gethostname()
    for rec in read_records(records):
        if rec.get("host") != host or pid_alive(int(rec.get("pid", 0))):
            continue
        try:
            with opener(rec) as dev:
                dev.reset_clocks()
        except GpuError as e:
            done.append(f"could not reset clocks of {rec.get('uuid')} left locked by pid {rec.get('pid')}: {e}")
            continue
        Path(rec["_path"]).unlink(missing_ok=True)
        done.append(f"reset clocks of {rec.get('name') or rec.get('uuid')} left locked by dead pid {rec.get('pid')}")
    return done


class ClockGuard:
    """Locks clocks on one device and guarantees the reset."""

    def __init__(self, device: GpuDevice, records: Path):
        self.device = device
        self.records = Path(records)
        self.path = _record_path(self.records, device.uuid)
        self.locked: tuple[int, int | None] | None = None

    def __enter__(self) -> "ClockGuard":
        for rec in read_records(self.records):
            if rec.get("uuid") == self.device.uuid and rec.get("host") == socket.gethostname() \
                    and rec.get("pid") != os.getpid() and pid_alive(int(rec.get("pid", 0))):
                raise GpuBusyError(f"{self.device.name} ({self.device.uuid}) is being swept by pid {rec['pid']}")
        atexit.register(self.release)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        atexit.unregister(self.release)

    def lock(self, sm_mhz: int, memory_mhz: int | None) -> None:
        if self.locked is None:
            atomic.write_json(self.path, {"uuid": self.device.uuid, "index": self.device.index,
                                          "name": self.device.name, "backend": self.device.backend,
                                          "pid": os.getpid(), "host": socket.gethostname(),
                                          "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self.locked = (sm_mhz, memory_mhz)
        self.device.lock_clocks(sm_mhz, memory_mhz)

    def release(self) -> None:
        if self.locked is None:
            return
        self.device.reset_clocks()  # raises if the reset fails: then the record stays for repair
        self.locked = None
        self.path.unlink(missing_ok=True)
