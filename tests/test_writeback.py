"""The archive file's early writeback (storage/writeback.py) and how the writer (storage/durable.py) uses it: the
real sync_file_range here, fdatasync where it cannot be used, and a failure of the disk reaching the archive."""

from __future__ import annotations

import ctypes
import errno
import os
import sys
import threading
import time

import pytest

from sweepd.storage import durable, writeback
from sweepd.storage.writeback import Writeback


def fdatasyncs(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(writeback.os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])
    return calls


def failing_call(err: int, calls: list | None = None):
    """A stand-in for libc's sync_file_range that fails with errno `err` (as ctypes reports it)."""
    def call(fd, offset, nbytes, flags):
        if calls is not None:
            calls.append((fd, offset, nbytes, flags))
        ctypes.set_errno(err)
        return -1
    return call


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_linux_starts_the_writeback_without_an_fdatasync(tmp_path, monkeypatch):
    calls = fdatasyncs(monkeypatch)
    with open(tmp_path / "a", "wb") as fh:
        fh.write(os.urandom(1 << 20))
        fh.flush()
        wb = Writeback(fh.fileno())
        assert wb.via == "sync_file_range"
        wb.start()
        wb.start()
    assert calls == [] and wb.via == "sync_file_range"


@pytest.mark.parametrize("err", [errno.ENOSYS, errno.EINVAL, errno.ESPIPE, errno.EOPNOTSUPP])
def test_a_file_that_refuses_the_call_is_synced_with_fdatasync_from_then_on(tmp_path, monkeypatch, err):
    tried: list = []
    monkeypatch.setattr(writeback, "_SFR", failing_call(err, tried))
    calls = fdatasyncs(monkeypatch)
    with open(tmp_path / "a", "wb") as fh:
        fh.write(b"x" * 4096)
        fh.flush()
        wb = Writeback(fh.fileno())
        wb.start()
        wb.start()
        assert len(tried) == 1 and tried[0] == (fh.fileno(), 0, 0, writeback.SYNC_FILE_RANGE_WRITE)
        assert calls == [fh.fileno(), fh.fileno()] and wb.via == "fdatasync"


def test_without_the_call_it_is_fdatasync(tmp_path, monkeypatch):
    monkeypatch.setattr(writeback, "_SFR", None)
    calls = fdatasyncs(monkeypatch)
    with open(tmp_path / "a", "wb") as fh:
        wb = Writeback(fh.fileno())
        wb.start()
        assert wb.via == "fdatasync" and calls == [fh.fileno()]


def test_a_disk_error_is_raised_not_hidden_by_the_fallback(tmp_path, monkeypatch):
    monkeypatch.setattr(writeback, "_SFR", failing_call(errno.EIO))
    calls = fdatasyncs(monkeypatch)
    with open(tmp_path / "a", "wb") as fh:
        with pytest.raises(OSError) as e:
            Writeback(fh.fileno()).start()
    assert e.value.errno == errno.EIO and calls == []


def _write(d: durable.Durable, pieces: int, size: int) -> None:
    for _ in range(pieces):
        d.write(b"z" * size)


def test_the_writer_starts_the_writeback_every_sync_every_bytes(tmp_path, monkeypatch):
    started = threading.Semaphore(0)
    real_start = Writeback.start
    monkeypatch.setattr(Writeback, "start", lambda self: (real_start(self), started.release())[0])
    monkeypatch.setattr(durable.Durable, "SYNC_EVERY", 64 << 10)
    with open(tmp_path / "a", "xb") as raw:
        d = durable.Durable(raw)
        _write(d, 3, 64 << 10)
        d.drain()
        assert started.acquire(timeout=60)  # nudges that come together may be folded into one start
        d.finish()
    assert (tmp_path / "a").stat().st_size == 3 * (64 << 10)
    assert not any(t.name.startswith("archive-") for t in threading.enumerate())


def test_a_writeback_failure_fails_the_archive_file(tmp_path, monkeypatch):
    monkeypatch.setattr(writeback, "_SFR", failing_call(errno.EIO))
    monkeypatch.setattr(durable.Durable, "SYNC_EVERY", 4096)
    monkeypatch.setattr(durable.Durable, "BATCH", 4096)  # each piece written at once
    with open(tmp_path / "a", "xb") as raw:
        d = durable.Durable(raw)
        _write(d, 4, 4096)
        deadline = time.monotonic() + 60
        while d.sync_error is None and time.monotonic() < deadline:  # the writeback thread meets it in its time
            time.sleep(0.01)
        with pytest.raises(OSError) as e:
            d.drain()
        with pytest.raises(OSError):
            d.finish()
    assert e.value.errno == errno.EIO
    assert not any(t.name.startswith("archive-") for t in threading.enumerate())


@pytest.mark.parametrize("take", [1000, 4096 * 3 + 1, None])
def test_batches_land_whole_however_short_the_writes(tmp_path, monkeypatch, take):
    """zstd's pieces go to the file in batches, one writev each; a write that takes part of a batch (a signal, a
    full pipe of a network filesystem) is continued where it stopped."""
    real = os.writev
    monkeypatch.setattr(durable.os, "writev", lambda fd, bufs: real(fd, [b"".join(bytes(b) for b in bufs)[:take]])
                        if take else real(fd, bufs))
    monkeypatch.setattr(durable.Durable, "BATCH", 10_000)
    pieces = [os.urandom(n) for n in (4096, 1, 5000, 4096, 0, 7000, 3)]
    landed = []
    with open(tmp_path / "a", "xb", buffering=0) as raw:
        d = durable.Durable(raw, landed=lambda: landed.append(os.fstat(raw.fileno()).st_size))
        for p in pieces:
            assert d.write(p) == len(p)
        d.finish()
    assert (tmp_path / "a").read_bytes() == b"".join(pieces)
    assert landed == [13193, 20196]  # two batches: the first over 10,000 bytes, the rest at the end


def test_a_write_that_takes_nothing_fails_the_archive_file(tmp_path, monkeypatch):
    monkeypatch.setattr(durable.os, "writev", lambda fd, bufs: 0)
    with open(tmp_path / "a", "xb", buffering=0) as raw:
        d = durable.Durable(raw)
        d.write(b"x" * 100)
        with pytest.raises(OSError, match="took none of 100 bytes"):
            d.finish()
    assert not any(t.name.startswith("archive-") for t in threading.enumerate())
