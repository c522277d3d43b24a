"""Steps 2 and 4 of archiving, on the disk's side: the archive file written by a thread of its own as zstd's output
comes, and written back to disk as it grows.

In a profile of archiving 2 GB of PNGs the archiving thread spent 1.4 s writing the compressed stream into the page
cache, one after the other with compressing it; here zstd hands each piece of output over (a bounded queue: at most
DEPTH pieces of up to 1 MiB wait) and goes on compressing while the writer thread puts it in the file. Every SYNC_EVERY
bytes a third thread runs fdatasync, so that the closing fsync has little left to do. `landed` is called after each
write is in the file: the read-back (:mod:`.readback`) follows the file with it.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from typing import BinaryIO


class Durable:
    SYNC_EVERY = 64 << 20
    DEPTH = 8

    def __init__(self, raw: BinaryIO, landed: Callable[[], None] = lambda: None):
        self.raw, self.landed = raw, landed
        self.error: BaseException | None = None  # the first the writer or the writeback met
        self._queue: queue.Queue = queue.Queue(self.DEPTH)
        self._nudge, self._closing = threading.Event(), False
        self._writer = threading.Thread(target=self._write_all, name="archive-write", daemon=True)
        self._syncer = threading.Thread(target=self._write_back, name="archive-writeback", daemon=True)
        self._writer.start()
        self._syncer.start()

    # zstd's side ----------------------------------------------------------------------------------
    def write(self, data) -> int:
        """Queued for the writer thread (zstd's output is a new bytes object each time); an error the writer met
        is raised here, at the next piece."""
        if self.error is not None:
            raise self.error
        self._queue.put(data)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: :meth:`drain` is where every write has landed."""

    def drain(self) -> None:
        """Every piece given so far in the file; the first error met raised."""
        if self._writer.is_alive():
            self._queue.put(None)
            self._writer.join()
        if self.error is not None:
            raise self.error

    def abandon(self) -> None:
        """The archive failed: both threads stopped, whatever they met."""
        try:
            self.drain()
        except BaseException:
            pass
        finally:
            self._stop_writeback()

    def finish(self) -> None:
        """Everything in the file and fsynced; the first error met raised."""
        try:
            self.drain()
        finally:
            self._stop_writeback()
        os.fsync(self.raw.fileno())
        if self.error is not None:
            raise self.error

    # the threads ----------------------------------------------------------------------------------
    def _write_all(self) -> None:
        pending = 0
        while (data := self._queue.get()) is not None:
            if self.error is None:  # after a failure the rest is taken off the queue and dropped
                try:
                    self.raw.write(data)
                    self.raw.flush()  # in the file, where the read-back can see it
                    pending += len(data)
                    if pending >= self.SYNC_EVERY:
                        pending = 0
                        self._nudge.set()
                except BaseException as e:  # raised in the archiving thread
                    self.error = e
            self.landed()

    def _write_back(self) -> None:
        while True:
            self._nudge.wait()
            self._nudge.clear()
            if self._closing:
                return
            try:
                os.fdatasync(self.raw.fileno())
            except OSError as e:
                self.error = self.error or e

    def _stop_writeback(self) -> None:
        self._closing = True
        self._nudge.set()
        self._syncer.join()
