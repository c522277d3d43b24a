"""Archive-then-delete as a transaction, and restore.

1. check the archive filesystem has room;  2. stream the files as tar into zstd (checksummed
frames, threads) to <name>.tar.zst.partial;  3. fsync;  4. verify by reading it back: member
names, sizes and sha256 equal the sources';  5. rename to <name>.tar.zst, fsync the directory;
6. write <name>.manifest.json;  7. only then delete the sources. A crash at any step leaves the
sources intact; the next run removes a stale .partial, or re-verifies a finished archive and
goes on to the deletion. The archive name is derived from its member list, so the same action
finds its own earlier work.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import zstandard

from sweepd import atomic

SUFFIX = ".tar.zst"
CHUNK = 1 << 20  # tarfile's stream mode defaults to 10 KiB records: 1 MiB makes archiving ~2x faster


class ArchiveError(Exception):
    pass


def crash_point(step: str) -> None:
    """Fault injection for the crash tests: SWEEPD_CRASH_AT=<step> ends the process there, like kill -9."""
    if os.environ.get("SWEEPD_CRASH_AT") == step:
        os._exit(137)


@dataclass
class Member:
    name: str
    size: int
    sha256: str


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _Hashing:
    """A file object that hashes what tarfile reads from it."""

    def __init__(self, fh):
        self.fh, self.h = fh, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.h.update(data)
        return data


def archive_name(unit_dir: Path, files: list[str]) -> str:
    """Named after what goes in (names, sizes, mtimes): a rerun of the same action finds its own archive."""
    h = hashlib.sha256()
    for rel in files:
        st = os.lstat(unit_dir / rel)
        h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return f"{unit_dir.name}-{h.hexdigest()[:10]}"


def _room(archive_dir: Path, need: int) -> None:
    st = os.statvfs(archive_dir)
    free = st.f_bavail * st.f_frsize
    if free < need:
        raise ArchiveError(f"archive filesystem {archive_dir} has {free} bytes free; this archive needs about {need}: "
                           "sources left untouched")


def write_archive(unit_dir: Path, files: list[str], target: Path, level: int, threads: int) -> list[Member]:
    """Steps 2-3: tar + zstd into target (a .partial), fsynced. Returns the members as read from the sources."""
    members = []
    cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=threads)
    with open(target, "wb") as raw:
        with cctx.stream_writer(raw, closefd=False) as zw:
            with tarfile.open(fileobj=zw, mode="w|", format=tarfile.PAX_FORMAT, bufsize=CHUNK) as tar:
                tar.copybufsize = CHUNK
                for rel in files:
                    src = unit_dir / rel if rel else unit_dir
                    st = os.lstat(src)
                    info = tarfile.TarInfo(f"{unit_dir.name}/{rel}" if rel else unit_dir.name)
                    info.size, info.mtime, info.mode = st.st_size, st.st_mtime, st.st_mode & 0o7777
                    with open(src, "rb") as fh:
                        hashing = _Hashing(fh)
                        tar.addfile(info, hashing)
                    members.append(Member(info.name, st.st_size, hashing.h.hexdigest()))
                    crash_point("mid_write")
        raw.flush()
        os.fsync(raw.fileno())
    return members


def read_members(path: Path) -> list[Member]:
    """Read an archive back: every member's name, size and sha256 (frame checksums are checked too)."""
    out = []
    with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as zr:
        with tarfile.open(fileobj=zr, mode="r|", bufsize=CHUNK) as tar:
            for info in tar:
                h = hashlib.sha256()
                if info.isfile():
                    fh = tar.extractfile(info)
                    while chunk := fh.read(CHUNK):
                        h.update(chunk)
                out.append(Member(info.name, info.size if info.isfile() else -1, h.hexdigest()))
    return out


def verify(path: Path, expected: list[Member]) -> None:
    try:
        got = read_members(path)
    except (zstandard.ZstdError, tarfile.TarError, OSError, EOFError) as e:
        raise ArchiveError(f"{path.name} cannot be read back: {e}") from None
    if [(m.name, m.size, m.sha256) for m in got] != [(m.name, m.size, m.sha256) for m in expected]:
        raise ArchiveError(f"{path.name} does not match its sources when read back")


def _expected_from_sources(unit_dir: Path, files: list[str]) -> list[Member]:
    return [Member(f"{unit_dir.name}/{rel}" if rel else unit_dir.name, (unit_dir / rel).stat().st_size,
                   sha256_file(unit_dir / rel)) for rel in files]


def covering(archive_dir: Path, unit_dir: Path, files: list[str]) -> Path | None:
    """An existing archive holding every one of these files as they are now (a run killed while deleting)."""
    for m in manifests(archive_dir, unit_dir.name):
        if m.get("unit") != unit_dir.name or m.get("source_dir") != str(unit_dir.parent):
            continue
        have = {x["name"]: x for x in m["members"]}
        want = [(f"{unit_dir.name}/{rel}", unit_dir / rel) for rel in files]
        if all(n in have and have[n]["size"] == p.stat().st_size for n, p in want) and \
                all(have[n]["sha256"] == sha256_file(p) for n, p in want):
            path = archive_dir / m["archive"]
            verify(path, [Member(**x) for x in m["members"]])
            return path
    return None


def archive(unit_dir: Path, files: list[str], archive_dir: Path, *, level: int = 3, threads: int = -1,
            meta: dict | None = None) -> Path:
    """Steps 1-6. Returns the archive's path; the sources are untouched. Safe to call again after a crash."""
    archive_dir.mkdir(parents=True, exist_ok=True)
    if (done := covering(archive_dir, unit_dir, files)) is not None:
        return done
    name = archive_name(unit_dir, files)
    final, partial = archive_dir / f"{name}{SUFFIX}", archive_dir / f"{name}{SUFFIX}.partial"
    manifest = archive_dir / f"{name}.manifest.json"
    if final.exists():
        # an earlier run got past the rename: check it against the sources before trusting it
        expected = _expected_from_sources(unit_dir, files)
        verify(final, expected)
    else:
        partial.unlink(missing_ok=True)  # a crash mid-write: start over
        need = sum((unit_dir / f).stat().st_size for f in files) + (1 << 20)
        _room(archive_dir, need)
        try:
            expected = write_archive(unit_dir, files, partial, level, threads)
            crash_point("after_write")
            verify(partial, expected)
            crash_point("after_verify")
        except OSError as e:
            partial.unlink(missing_ok=True)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ArchiveError(f"archive filesystem {archive_dir} is full ({e.strerror}): sources left untouched") \
                    from None
            raise
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, final)
        atomic.fsync_dir(archive_dir)
        crash_point("after_rename")
    if not manifest.exists():
        atomic.write_json(manifest, {"archive": final.name, "unit": unit_dir.name, "source_dir": str(unit_dir.parent),
                                     "members": [m.__dict__ for m in expected], "bytes": final.stat().st_size,
                                     "zstd_level": level, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                     **(meta or {})})
        crash_point("after_manifest")
    return final


def delete_sources(unit_dir: Path, files: list[str], members: list[dict]) -> int:
    """Step 7: remove the archived files (each must still match its archived size), then empty folders."""
    sizes = {m["name"]: m["size"] for m in members}
    removed = 0
    for rel in files:
        src = unit_dir / rel
        name = f"{unit_dir.name}/{rel}"
        try:
            st = os.lstat(src)
        except FileNotFoundError:
            continue
        if st.st_size != sizes.get(name):
            raise ArchiveError(f"{src} changed since it was archived: not deleted")
        src.unlink()
        removed += 1
        crash_point("mid_delete")
    prune_dirs(unit_dir, files)
    return removed


def prune_dirs(unit_dir: Path, files: list[str]) -> None:
    """Remove the folders that deleting `files` left empty, up to and including the unit itself."""
    for d in sorted({(unit_dir / f).parent for f in files}, key=lambda p: len(p.parts), reverse=True):
        while d != unit_dir.parent and d.is_relative_to(unit_dir):
            try:
                d.rmdir()
            except OSError:
                break
            d = d.parent


# listing and restoring -------------------------------------------------------------------------
def manifests(archive_dir: Path, unit: str | None = None) -> list[dict]:
    """The manifests in an archive folder; only one unit's (archives are named <unit>-<hash>) when given."""
    out = []
    for p in sorted(Path(archive_dir).glob(f"{unit}-*.manifest.json" if unit else "*.manifest.json")):
        try:
            out.append(json.loads(p.read_text()) | {"manifest": str(p)})
        except (OSError, ValueError):
            continue
    return out


def _safe_target(base: Path, name: str) -> Path:
    if name.startswith("/") or ".." in Path(name).parts or not name:
        raise ArchiveError(f"refusing member {name!r}: absolute or climbing out of the target")
    target = (base / name).resolve()
    if not target.is_relative_to(base.resolve()):
        raise ArchiveError(f"refusing member {name!r}: it would land outside {base}")
    return target


def restore(archive_path: Path, to: Path, *, force: bool = False) -> list[Path]:
    """Extract every member under `to`, byte for byte; refuses absolute names, '..' and links."""
    written = []
    to.mkdir(parents=True, exist_ok=True)
    with open(archive_path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as zr:
        with tarfile.open(fileobj=zr, mode="r|", bufsize=CHUNK) as tar:
            for info in tar:
                target = _safe_target(to, info.name)
                if info.issym() or info.islnk():
                    link = Path(info.linkname)
                    dest = (target.parent / link).resolve() if not link.is_absolute() else link
                    raise ArchiveError(f"refusing link member {info.name!r} -> {info.linkname!r}"
                                       + ("" if dest.is_relative_to(to.resolve()) else " (leaves the target)"))
                if info.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not info.isfile():
                    raise ArchiveError(f"refusing member {info.name!r}: not a regular file")
                data = tar.extractfile(info).read()
                if target.exists() and not force:
                    if target.read_bytes() == data:
                        continue
                    raise ArchiveError(f"{target} exists with other content; use --force to overwrite")
                atomic.write_bytes(target, data)
                os.utime(target, (info.mtime, info.mtime))
                written.append(target)
    return written
