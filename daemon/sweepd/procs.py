"""Process facts shared by the lock record, the daemon and its recovery."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt parameters
LONG_RUNNING_ARENAS = 2
LONG_RUNNING_MMAP_BYTES = 256 << 10


def steady_malloc() -> bool:
    """For a process that runs for weeks (`serve`, `storage watch`): glibc's allocator told to give memory back.

    The daemon's RSS grew in steps with the archives it wrote (62 to 89 MB in 25 minutes of the soak, issue #30)
    though no Python object was left behind (tracemalloc: 4.8 MB throughout). Two habits of glibc's: each thread
    (zstd's workers, the scheduler's, the debouncer's timers, an archive's read-back) may get an arena of its own,
    and an arena keeps its high-water mark; and each freed large block raises the size under which blocks come
    from an arena instead of their own mapping, so the 1 MiB buffers of archiving came to live in arenas too.
    Here: at most 2 arenas, and blocks of 256 KiB and more always mapped on their own, returned when freed. The
    storage manager alone, with the soak's policy and writer, 6 minutes: 80 MB and rising as glibc has it, 56 with
    2 arenas, 44 with both. False where the C library is not glibc (nothing changed there)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        return bool(libc.mallopt(M_ARENA_MAX, LONG_RUNNING_ARENAS)) and \
            bool(libc.mallopt(M_MMAP_THRESHOLD, LONG_RUNNING_MMAP_BYTES))
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

