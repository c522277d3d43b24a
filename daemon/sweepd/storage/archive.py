"""Archive-then-delete as a transaction.

1. check the archive filesystem has room;  2. stream the files as tar into zstd (checksummed
frames, threads) to a `.partial` whose name is unique to this process, written back to disk as it
grows;  3. verify by reading it back whole as it is written (:mod:`.readback`): zstd's frame
checksum covers every byte of the tar stream, whose member names, sizes and sha256 were taken from
the sources as they went in (an archive left by an earlier run is read back member by member);
4. fsync;  5. rename to <name>.tar.zst, fsync the directory;  6. write <name>.manifest.json;
7. only then delete, and only the files that the archive on disk, as read back, holds with the
content they had when they were archived (same inode, size and mtime now as when they were hashed).

A crash at any step leaves the sources intact; the next run removes partials whose process is
gone, or re-verifies a finished archive and goes on to the deletion. The archive name is derived
from its member list, so the same action finds its own earlier work. The callers hold the root's
storage lock (:mod:`sweepd.storage.lock`) around all of this.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import zstandard

from sweepd.errors import StorageError
from sweepd import atomic
from sweepd.procs import LONG_RUNNING_MMAP_BYTES, pid_alive
from sweepd.storage import manifest as mf
from sweepd.records.archive import SUFFIX, ArchiveManifest, ArchiveReason, Member
from sweepd.storage.safefs import Identity, UnitDir, UnsafePath
from sweepd.storage.durable import Durable
from sweepd.storage.readback import ReadBack, ReadBackError
from sweepd.storage.tarstream import TarWriter

# What moves at once. Buffers made once per archive and reused (the tar stream's, the read-back's): 1 MiB (tarfile's
# stream mode defaults to 10 KiB records; 1 MiB made archiving ~2x faster). What is made anew each time (zstd's output
# pieces, a hashing buffer per file): under the size from which the daemon's allocator maps every block on its own
# (procs.steady_malloc): 1 MiB pieces cost the daemon 900,000 page faults and 1.3 s more for 2 GB of PNGs
# (BENCHMARKS.md, seventh session); the file is written in batches of them (durable.Durable.BATCH).
CHUNK = 1 << 20
PIECE = LONG_RUNNING_MMAP_BYTES // 2  # 128 KiB


class ArchiveError(StorageError):
    pass


def crash_point(step: str) -> None:
    """Fault injection for the crash tests: SWEEPD_CRASH_AT=<step> ends the process there, like kill -9."""
    if os.environ.get("SWEEPD_CRASH_AT") == step:
        os._exit(137)


@dataclass
class Archived:
    """A verified archive: its path, its members as read back from disk, and for each source file
    the identity it had when its content was hashed (deletion requires it unchanged)."""
    path: Path
    members: list[Member]
    sources: dict[str, tuple[Identity, str]] = field(default_factory=dict)  # rel -> (identity, sha256)


def hash_stream(fh) -> str:
    h, buf = hashlib.sha256(), memoryview(bytearray(PIECE))  # one per file hashed: from the arena, not mapped
    while n := fh.readinto(buf):
        h.update(buf[:n])
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hash_stream(fh)


def archive_name(unit: UnitDir, files: list[str]) -> str:
    """Named after what goes in (names, sizes, mtimes): a rerun of the same action finds its own archive."""
    h = hashlib.sha256()
    for rel in files:
        st = unit.lstat(rel)
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"{unit.name}-{h.hexdigest()[:10]}"


def _room(archive_dir: Path, need: int) -> None:
    st = os.statvfs(archive_dir)
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise ArchiveError(f"archive filesystem {archive_dir} has {free} bytes free; this archive needs about {need}: "
                           "sources left untouched")


def write_archive(unit: UnitDir, files: list[str], target: Path, level: int, threads: int) -> Archived:
    """Steps 2-4: tar + zstd into target (a .partial), read back as it is written (:mod:`.readback`), fsynced;
    members and identities as read from the sources. ArchiveError if the file does not read back whole."""
    out = Archived(target, [])
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=threads)
    with open(target, "xb", buffering=0) as raw:  # written by Durable with writev
        back = ReadBack(target, CHUNK)
        disk = Durable(raw, landed=back.landed)
        try:
            hashed = []
            with cctx.stream_writer(disk, closefd=False, write_size=PIECE) as zw, TarWriter(zw, CHUNK) as tar:
                for rel in files:
                    fh, st = unit.open(rel)
                    with fh:
                        info = tarfile.TarInfo(f"{unit.name}/{rel}")
                        info.size, info.mtime, info.mode = st.st_size, st.st_mtime, st.st_mode & 0o7777
                        hashed.append((rel, info.name, st, tar.add(info, fh)))
                    crash_point("mid_write")
                tar.close()  # every member hashed
            disk.drain()  # every byte zstd gave is in the file
            for rel, name, st, h in hashed:
                sha = h.hexdigest()
                out.members.append(Member(name=name, size=st.st_size, sha256=sha))
                out.sources[rel] = (Identity.of(st), sha)
        except BaseException:
            disk.abandon()
            back.abandon()
            raise
        try:
            back.finish(tar.written)
        except ReadBackError as e:
            disk.abandon()
            raise ArchiveError(str(e)) from None
        disk.finish()  # fsync: what was read back is on disk
    return out


def read_members(path: Path) -> list[Member]:
    """Read an archive back: every member's name, size and sha256 (frame checksums are checked too)."""
    out = []
    with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as zr:
        with tarfile.open(fileobj=zr, mode="r|", bufsize=CHUNK) as tar:
            for info in tar:
                sha = hash_stream(tar.extractfile(info)) if info.isfile() else hashlib.sha256().hexdigest()
                out.append(Member(name=info.name, size=info.size if info.isfile() else -1, sha256=sha))
    return out


def verify(path: Path, expected: list[Member]) -> list[Member]:
    """The archive's members as read back from disk; ArchiveError unless they are exactly `expected`."""
    try:
        got = read_members(path)
    except (zstandard.ZstdError, tarfile.TarError, OSError, EOFError) as e:
        raise ArchiveError(f"{path.name} cannot be read back: {e}") from None
    if got != list(expected):
        raise ArchiveError(f"{path.name} does not match its sources when read back")
    return got


def _from_sources(unit: UnitDir, files: list[str]) -> Archived:
    out = Archived(Path(), [])
    for rel in files:
        fh, st = unit.open(rel)
        with fh:
            sha = hash_stream(fh)
        out.members.append(Member(name=f"{unit.name}/{rel}", size=st.st_size, sha256=sha))
        out.sources[rel] = (Identity.of(st), sha)
    return out


def covering(archive_dir: Path, unit: UnitDir, files: list[str]) -> Archived | None:
    """An existing archive holding every one of these files as they are now (a run killed while deleting)."""
    now: Archived | None = None
    for m in mf.manifests(archive_dir, unit.name):
        if Path(m.source_dir) != unit.base:
            continue
        have = {x.name: x for x in m.members}
        want = [f"{unit.name}/{rel}" for rel in files]
        if not all(n in have and have[n].size == unit.lstat(rel).st_size for n, rel in zip(want, files)):
            continue
        now = now or _from_sources(unit, files)
        if all(have[x.name].sha256 == x.sha256 for x in now.members):
            path = archive_dir / m.archive
            members = verify(path, m.members)
            return Archived(path, members, now.sources)
    return None


def _clear_partials(archive_dir: Path, name: str) -> None:
    """Partials of this archive left by processes that are gone (a crash mid-write)."""
    for p in archive_dir.glob(f"{mf.glob_escape(name)}{SUFFIX}*.partial"):
        tag = p.name.removeprefix(f"{name}{SUFFIX}").removesuffix(".partial").lstrip(".")
        pid = tag.split("-", 1)[0]
        if not pid.isdigit() or not pid_alive(int(pid)):
            p.unlink(missing_ok=True)


def archive(base: Path, unit_name: str, files: list[str], archive_dir: Path, *, level: int = 3, threads: int = -1,
            why: ArchiveReason | None = None) -> Archived:
    """Steps 1-6 for files of base/unit_name. The sources are untouched. Safe to call again after a crash."""
    archive_dir.mkdir(parents=True, exist_ok=True)
    with UnitDir(base, unit_name) as unit:
        if (done := covering(archive_dir, unit, files)) is not None:
            return done
        name = archive_name(unit, files)
        final = archive_dir / f"{name}{SUFFIX}"
        partial = archive_dir / f"{name}{SUFFIX}.{os.getpid()}-{secrets.token_hex(4)}.partial"
        _clear_partials(archive_dir, name)
        if final.exists():
            # an earlier run got past the rename: check it against the sources before trusting it
            result = _from_sources(unit, files)
            result.members = verify(final, result.members)
            result.path = final
        else:
            need = sum(unit.lstat(f).st_size for f in files) + (1 << 20)
            _room(archive_dir, need)
            try:
                result = write_archive(unit, files, partial, level, threads)  # read back, too
                crash_point("after_write")
                crash_point("after_verify")
            except OSError as e:
                partial.unlink(missing_ok=True)
                if e.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise ArchiveError(f"archive filesystem {archive_dir} is full ({e.strerror}): sources left "
                                       "untouched") from None
                raise
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            os.replace(partial, final)
            atomic.fsync_dir(archive_dir)
            result.path = final
            crash_point("after_rename")
        manifest = mf.manifest_path(final)
        if not manifest.exists():
            mf.write(manifest, ArchiveManifest(
                archive=final.name, unit=unit.name, source_dir=str(unit.base), members=result.members,
                bytes=final.stat().st_size, zstd_level=level, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **(why or ArchiveReason()).model_dump()))
            crash_point("after_manifest")
        return result


def delete_sources(base: Path, unit_name: str, files: list[str], archived: Archived) -> int:
    """Step 7: remove each file that the archive, read back, holds with the content the file still has."""
    on_disk = {m.name: m for m in archived.members}
    removed = 0
    with UnitDir(base, unit_name) as unit:
        for rel in files:
            member = on_disk.get(f"{unit.name}/{rel}")
            source = archived.sources.get(rel)
            if member is None or source is None or member.sha256 != source[1] or member.size != source[0].size:
                raise ArchiveError(f"{unit.path / rel} is not in {archived.path.name} as read back: not deleted")
            try:
                removed += unit.unlink_if(rel, source[0])
            except UnsafePath as e:
                raise ArchiveError(str(e)) from None
            crash_point("mid_delete")
        unit.prune(files)
    return removed


def delete_files(base: Path, unit_name: str, files: list[str]) -> int:
    """action = "delete": remove the files as they are now (no archive), never through a link."""
    removed = 0
    with UnitDir(base, unit_name) as unit:
        for rel in files:
            try:
                st = unit.lstat(rel)
            except FileNotFoundError:
                continue
            removed += unit.unlink_if(rel, Identity.of(st))
        unit.prune(files)
    return removed
