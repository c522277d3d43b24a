"""One lock per sweepd root for everything that archives or deletes: `state/storage.lock`.

The daemon's enforcement and every hand-run `sweepd storage apply/clean` take it around plan
and apply alike, so two runs never work on the same files at once, and a plan is always made
from the tree that the apply then sees. It is an flock(2): the kernel drops it when its holder
dies (kill -9 included), so a crash never leaves a stale lock. The holder's pid is written
into the file for the "waiting for" message only.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from typing import Callable

from sweepd.errors import StorageError


class StorageBusy(StorageError):
    """Another process held the storage lock for longer than this one would wait."""


class StorageLock:
    def __init__(self, state: Path):
        self.path = Path(state) / "storage.lock"
        self.fd = -1

    def holder(self) -> str:
        try:
            pid = self.path.read_text().strip()
        except OSError:
            return "another process"
        return f"pid {pid}" if pid.isdigit() else "another process"

    def acquire(self, timeout_s: float = 600.0, waiting: Callable[[str], None] | None = None,
                poll_s: float = 0.1) -> "StorageLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + timeout_s
        told = False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    who = self.holder()
                    os.close(self.fd)
                    self.fd = -1
                    raise StorageBusy(f"{self.path} is held by {who} (an archive or delete is running on this "
                                      f"root); gave up after {timeout_s:.0f} s") from None
                if waiting is not None and not told:
                    waiting(f"waiting for {self.path}, held by {self.holder()}")
                    told = True
                time.sleep(poll_s)
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1

    def __enter__(self) -> "StorageLock":
        return self if self.fd >= 0 else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
