"""One daemon per root: an flock on state/daemon.lock, which also records the daemon's pid.

The kernel drops the lock when the process dies, even by SIGKILL, so a stale file never blocks.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from sweepd.errors import SweepdError
from sweepd.procs import PidFile


class AlreadyRunning(SweepdError):
    pass


class PidLock(PidFile):
    def acquire(self) -> "PidLock":
        held, holder = self.try_acquire()
        if not held:
            raise AlreadyRunning(f"another sweepd serve (pid {holder or '?'}) already runs on this "
                                 f"root ({self.path.parent.parent}); stop it first or use another --root")
        return self


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
