"""The tar stream sweepd archives write: members hashed in one thread while the same bytes go to the writer in
another, across chunk boundaries and buffer reuse, read back by tarfile as written; the threads gone whatever
happens, and a failure in either raised to the archiving thread."""

import hashlib
import io
import os
import tarfile
import threading

import pytest

from sweepd.storage.tarstream import TarWriter

CHUNK = 1000  # small, so that a few KB cross many chunk boundaries and both buffers take turns


def archive_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("archive-")]


def member(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


@pytest.mark.parametrize("sizes", [[0, 1, 999, 1000, 1001], [2500, 10_000, 3], [CHUNK * 7 + 13] * 4])
def test_each_member_hash_is_its_bytes_and_tarfile_reads_the_stream_back(sizes):
    contents = {f"job_x/f{i}.png": os.urandom(n) for i, n in enumerate(sizes)}
    out = io.BytesIO()
    with TarWriter(out, CHUNK) as tar:
        hashes = {name: tar.add(member(name, len(data)), io.BytesIO(data)) for name, data in contents.items()}
        tar.close()
    assert {name: h.hexdigest() for name, h in hashes.items()} == {name: hashlib.sha256(data).hexdigest() for name, data in contents.items()}
    assert tar.written == len(out.getvalue()) and tar.written % tarfile.RECORDSIZE == 0
    out.seek(0)
    with tarfile.open(fileobj=out, mode="r|") as back:
        got = {info.name: back.extractfile(info).read() for info in back}
    assert got == contents
    assert not archive_threads()


class BrokenOut:
    def __init__(self, after: int):
        self.left = after

    def write(self, data) -> int:
        self.left -= len(data)
        if self.left < 0:
            raise OSError(28, "No space left on device")
        return len(data)


@pytest.mark.parametrize("case", ["source shrinks", "writer fails"])
def test_a_failure_mid_member_is_raised_and_leaves_no_thread_behind(case):
    data = os.urandom(CHUNK * 5)
    if case == "source shrinks":  # the header says 5 chunks; the file was truncated while it was read
        out, src = io.BytesIO(), io.BytesIO(data[:CHUNK * 3 + 7])
    else:
        out, src = BrokenOut(after=CHUNK * 2), io.BytesIO(data)
    with pytest.raises(OSError, match="shrank" if case == "source shrinks" else "No space"):
        with TarWriter(out, CHUNK) as tar:
            tar.add(member("job_x/a.png", len(data)), src)
            tar.close()  # a failure of the writing thread shows at the latest here
    assert not archive_threads()
