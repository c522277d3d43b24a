"""Process facts shared by the lock record, the daemon and its recovery."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def pid_alive(pid: int | None) -> bool:
    """True if a process with this pid exists (even one we may not signal)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class PidFile:
    """An exclusive ``flock`` on a file that names its holder's pid: the kernel drops it when the process ends,
    however it ends (SIGKILL too), so a stale file never blocks. The daemon's one-per-root lock and a sweep's
    one-per-GPU claim are both one."""

    def __init__(self, path: Path, mode: int = 0o644):
        self.path, self.mode = Path(path), mode
        self.fd: int | None = None

    def try_acquire(self) -> tuple[bool, int | None]:
        """(True, None) when this process now holds it; (False, the holder's pid or None) when another does."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, self.mode)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            return False, int(holder) if holder.isdigit() else None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return True, None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # the flock goes with it
            self.fd = None

