"""Step 4 of archiving: the archive read back through zstd while it is being written.

A thread of its own follows the `.partial` file as the writer (:mod:`.durable`) puts zstd's output in it (a read that
reaches the end waits until the next write has landed) and decompresses everything, counting the tar stream's
bytes; zstd checks the frame's content checksum (XXH64 of every byte the compressor was given) at its end. So when
the writer is done, a clean read of exactly the bytes written means the file holds exactly that tar stream, whose
members' sha256 were taken from the very bytes that went into it. Read after the write or alongside it, it is the
same read from the same file; alongside, it costs no wall time on a machine with a core to spare (archiving 500 MB:
0.16 s of 1.2).
"""

from __future__ import annotations

import threading
from pathlib import Path

import zstandard

from sweepd.errors import StorageError


class ReadBackError(StorageError):
    pass


class ReadBack:
    """Call :meth:`landed` after each write to the file has landed; :meth:`finish` when the last has."""

    RING = 2  # input buffers, reused in turn

    def __init__(self, path: Path, chunk: int):
        self.path, self.chunk = path, chunk
        self._ring = [memoryview(bytearray(chunk)) for _ in range(self.RING)]
        self._turn = 0
        self.grew, self.done = threading.Event(), threading.Event()
        self.read_bytes = 0
        self.failure: BaseException | None = None
        self._in = open(path, "rb", buffering=0)
        self._thread = threading.Thread(target=self._run, name="archive-read-back", daemon=True)
        self._thread.start()

    # the writer's side ----------------------------------------------------------------------------
    def landed(self) -> None:
        self.grew.set()

    def finish(self, stream_bytes: int) -> None:
        """The writer is done (every write landed): wait for the reader; ReadBackError unless it read back
        exactly `stream_bytes` of tar through an intact frame."""
        self._stop()
        if isinstance(self.failure, (zstandard.ZstdError, OSError, EOFError)):
            raise ReadBackError(f"{self.path.name} cannot be read back: {self.failure}")
        if self.failure is not None:  # a bug: shown as one
            raise self.failure
        if self.read_bytes != stream_bytes:
            raise ReadBackError(f"{self.path.name} reads back as {self.read_bytes} bytes of tar, not the "
                                f"{stream_bytes} written")

    def abandon(self) -> None:
        """The write failed: stop the reader, whatever it found."""
        self._stop()

    def _stop(self) -> None:
        self.done.set()
        self.grew.set()
        self._thread.join()
        self._in.close()

    # the reader's side ----------------------------------------------------------------------------
    def read(self, n: int = -1) -> memoryview:
        """What zstd's reader calls: the next bytes of the file, waiting for the writer at its end. They are read
        into buffers taken in turn (no new object of `chunk` bytes each time: the daemon's allocator maps every
        large one on its own): zstd asks for more input only once it has used all it was given, and a buffer is
        read into again a whole read later. Were that ever not so, the frame's checksum would fail the archive."""
        n = self.chunk if n is None or n < 0 else min(n, self.chunk)
        self._turn = (self._turn + 1) % self.RING
        buf = self._ring[self._turn][:n]
        while True:
            finished = self.done.is_set()  # before the read: everything written by then is in the file
            got = self._in.readinto(buf)
            if got or finished:
                return buf[:got]
            self.grew.wait(0.1)
            self.grew.clear()

    def _run(self) -> None:
        try:
            buf = bytearray(self.chunk)  # one buffer for the whole read-back
            with zstandard.ZstdDecompressor().stream_reader(self, closefd=False, read_size=self.chunk) as zr:
                while n := zr.readinto(buf):
                    self.read_bytes += n
        except BaseException as e:  # handed to the writer's thread in finish()
            self.failure = e
