"""Process facts shared by the lock record, the daemon and its recovery."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


M_ARENA_MAX = -8  # glibc's mallopt parameter
LONG_RUNNING_ARENAS = 2


def limit_malloc_arenas(n: int = LONG_RUNNING_ARENAS) -> bool:
    """For a process that runs for weeks: at most `n` glibc malloc arenas, where glibc would allow 8 per core.

    Each storage run starts zstd's compression threads and the scheduler's and the debouncer's threads; glibc
    gives threads arenas of their own, and what an arena once held it keeps: the daemon's RSS grew in steps with
    the archives it wrote (62 to 89 MB in 25 minutes of the soak, issue #30), though no Python object was left
    behind. With 2 arenas it stays flat (bench/soak.py; BENCHMARKS.md). The same as MALLOC_ARENA_MAX=2 in the
    environment, which the systemd unit cannot rely on for a `sweepd serve` started by hand. False where the C
    library is not glibc (nothing changed there)."""
    import ctypes
    import ctypes.util

    try:
        name = ctypes.util.find_library("c")
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(M_ARENA_MAX, n))
    except (OSError, AttributeError, TypeError):
        return False


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

