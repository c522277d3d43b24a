"""A tar stream written straight into a file object (zstd's writer), each member's data hashed on the way.

tarfile's stream mode copies every block through a buffer of its own (``buf += data; buf = buf[n:]``): a quarter
of archiving's time in a profile of 500 MB of PNGs. Here the headers are tarfile's own (``TarInfo.tobuf``, PAX, as
``TarFile.addfile`` writes them), and the data goes from the source to the writer through a ring of reused buffers.

Three threads share the work, each on the same bytes: this one reads the sources and makes the headers, one hashes
(sha256) and one hands the stream to the writer (zstd, with the workers the rule gives it). sha256 and zstd both let
go of the GIL, so on two cores they run side by side rather than one after the other; a buffer is read into again
only when both are done with it. A member's digest is read after :meth:`TarWriter.close`. The stream is read back by
tarfile like any other (restore, and the checks of an archive found from an earlier run).
"""

from __future__ import annotations

import hashlib
import tarfile
from typing import BinaryIO

from sweepd.storage.inorder import InOrder

BLOCK, RECORD = tarfile.BLOCKSIZE, tarfile.RECORDSIZE


class TarWriter:
    """Use it in ``with``: its threads are stopped on the way out, whatever happened."""

    RING = 8  # buffers: while one is read into, the others wait for (or are in) the hashing and writing threads

    def __init__(self, out: BinaryIO, chunk: int):
        self.written = 0  # bytes of tar stream given to `out`
        self._write = out.write
        self._views = [memoryview(bytearray(chunk)) for _ in range(self.RING)]
        self._busy = [(0, 0)] * self.RING  # per buffer: the tickets of its last hash and its last write
        self._next = 0
        self._hasher, self._writer = InOrder("archive-hash"), InOrder("archive-compress")

    def __enter__(self) -> "TarWriter":
        return self

    def __exit__(self, *exc) -> None:
        self._hasher.stop()
        self._writer.stop()

    def _put(self, data) -> int:
        self.written += len(data)
        return self._writer.give(self._write, data)

    def add(self, info: tarfile.TarInfo, fh: BinaryIO) -> "hashlib._Hash":
        """info's header, then exactly info.size bytes of fh, padded to a block. Returns the sha256 of those bytes,
        to be read after :meth:`close`. A file that ends sooner (it shrank while read) is an OSError, as tarfile
        has it; so is a failure of the writer, at the latest a few buffers later."""
        if self._writer.failure is not None:
            raise self._writer.failure
        self._put(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        h, left = hashlib.sha256(), info.size
        while left:
            k = self._next
            self._next = (k + 1) % self.RING
            hashed, written = self._busy[k]
            self._hasher.wait(hashed)  # both threads done with this buffer before it is read into again
            self._writer.wait(written)
            view = self._views[k]
            n = fh.readinto(view[:min(left, len(view))])
            if not n:
                raise OSError(f"unexpected end of data: {info.name} shrank while it was archived")
            self._busy[k] = (self._hasher.give(h.update, view[:n]), self._put(view[:n]))
            left -= n
        if pad := -info.size % BLOCK:
            self._put(bytes(pad))
        return h

    def close(self) -> None:
        """The end-of-archive blocks and the stream padded to a whole record (as tarfile closes one), all of it
        given to the writer and every member hashed; a failure of either raised."""
        self._put(bytes(2 * BLOCK))
        if pad := -self.written % RECORD:
            self._put(bytes(pad))
        self._hasher.wait()
        self._writer.wait()
