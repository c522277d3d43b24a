"""One daemon per root: an flock on state/daemon.lock, which also records the daemon's pid.

The kernel drops the lock when the process dies, even by SIGKILL, so a stale file never blocks.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sweepd.errors import SweepdError


class AlreadyRunning(SweepdError):
    pass


class PidLock:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.fd: int | None = None

    def acquire(self) -> "PidLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(f"another sweepd serve (pid {read_pid(self.path) or '?'}) already runs on this "
                                 f"root ({self.path.parent.parent}); stop it first or use another --root") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.fsync(fd)
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_pid(path: Path) -> int | None:
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def daemon_pid(path: Path) -> int | None:
    """The pid of the daemon holding the lock, or None when no daemon runs."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_pid(path)
    finally:
        os.close(fd)
    return None
