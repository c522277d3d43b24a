"""Starting a file's way to disk early, without waiting for it: what the archive's writer does as the file grows, so
that the fsync that makes it durable has little left to do.

Linux's ``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)`` hands the file's dirty pages to the disk and returns: no
wait for them and no flush of the device's cache (fsync does both, once, at the end). fdatasync every 64 MiB, which
it replaces, flushed the device's cache each time: archiving 2 GB of PNGs took 10 % longer (BENCHMARKS.md, seventh
session). Python has no binding for the call, so it is reached through libc; where it is missing (not Linux, or a
filesystem that refuses it) each call is an fdatasync, as before. Durability never rests on this: only the fsync does.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

SYNC_FILE_RANGE_WRITE = 2  # linux/fs.h


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SFR = _sync_file_range()
# errors that say "this call cannot be used here", not "the disk failed": the file falls back to fdatasync
_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP}


class Writeback:
    """:meth:`start` begins writing one file's dirty pages to disk; an OSError is a failure of the disk (EIO, ENOSPC)
    and is raised."""

    def __init__(self, fd: int):
        self.fd = fd
        self.via = "sync_file_range" if _SFR is not None else "fdatasync"

    def start(self) -> None:
        if self.via == "sync_file_range":
            assert _SFR is not None
            if _SFR(self.fd, 0, 0, SYNC_FILE_RANGE_WRITE) == 0:
                return
            err = ctypes.get_errno()
            if err not in _UNSUPPORTED:
                raise OSError(err, f"sync_file_range: {os.strerror(err)}")
            self.via = "fdatasync"
        os.fdatasync(self.fd)
