"""Give archived files back, byte for byte, without trusting the archive or its manifest.

Two passes over the archive: the first reads every member's header and content hash and checks
them all (a regular file or folder, a relative name without '..', inside the unit, no link on the
way, no differing file in place unless forced) before the second writes the first byte. Members
are streamed in 1 MiB chunks into a temporary file beside the target, hashed on the way, and
renamed into place only when the hash matches the first pass: memory stays flat whatever the
member's size, and nothing half-written is ever left under a real name.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import zstandard

from sweepd.storage.archive import CHUNK, ArchiveError, hash_stream, sha256_file
from sweepd.storage.safefs import UnsafePath, check_name

FUTURE_SLACK_S = 86400.0  # a member dated up to a day ahead (clocks differ between machines) is restored


@dataclass
class _Planned:
    name: str
    target: Path
    size: int
    sha256: str
    mtime: float
    mode: int
    skip: bool  # already in place, identical


def _members(archive_path: Path):
    """(TarInfo, file object or None) for each member, streamed."""
    with open(archive_path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as zr:
        with tarfile.open(fileobj=zr, mode="r|", bufsize=CHUNK) as tar:
            for info in tar:
                yield info, (tar.extractfile(info) if info.isfile() else None)


def _inside(base: Path, target: Path, name: str) -> None:
    """target (under base) must not pass through a link: its existing folders resolve inside base."""
    real_base = Path(os.path.realpath(base))
    p = target.parent
    while not p.exists() and p != base:
        p = p.parent
    if not Path(os.path.realpath(p)).is_relative_to(real_base):
        raise ArchiveError(f"refusing member {name!r}: it would land outside {base} (through a link)")
    if target.is_symlink():
        raise ArchiveError(f"refusing member {name!r}: {target} is a link")


def check(archive_path: Path, to: Path, unit: str | None = None, force: bool = False) -> list[_Planned]:
    """Pass 1: every member checked, nothing written. Raises ArchiveError naming the first bad member."""
    out = []
    try:
        for info, fh in _members(archive_path):
            name = info.name
            try:
                parts = check_name(name, "member")
            except UnsafePath:
                kind = "absolute" if name.startswith("/") else "climbing out of the target"
                raise ArchiveError(f"refusing member {name!r}: {kind}") from None
            if info.issym() or info.islnk():
                link = Path(info.linkname)
                dest = link if link.is_absolute() else Path(os.path.normpath(to / Path(name).parent / link))
                raise ArchiveError(f"refusing link member {name!r} -> {info.linkname!r}"
                                   + ("" if dest.is_relative_to(to) else " (leaves the target)"))
            if unit is not None and parts[0] != unit:
                raise ArchiveError(f"refusing member {name!r}: not inside {unit}/, the unit this archive is of")
            target = to.joinpath(*parts)
            _inside(to, target, name)
            if info.isdir():
                continue
            if not info.isfile():
                raise ArchiveError(f"refusing member {name!r}: not a regular file")
            if not 0 <= info.mtime <= time.time() + FUTURE_SLACK_S:  # what os.utime and every reader can take
                raise ArchiveError(f"refusing member {name!r}: modification time {info.mtime!r} is not a date "
                                   "sweepd could have archived")
            sha = hash_stream(fh)
            skip = False
            if target.exists():
                if not target.is_file():
                    raise ArchiveError(f"{target} exists and is not a file")
                skip = sha256_file(target) == sha
                if not skip and not force:
                    raise ArchiveError(f"{target} exists with other content; use --force to overwrite")
            out.append(_Planned(name, target, info.size, sha, info.mtime, info.mode & 0o777, skip))
    except (zstandard.ZstdError, tarfile.TarError, EOFError) as e:
        raise ArchiveError(f"{archive_path.name} cannot be read: {e}") from None
    return out


def restore(archive_path: Path, to: Path, *, unit: str | None = None, force: bool = False) -> list[Path]:
    """Extract every member under `to` (checked first, then streamed); returns the files written."""
    to = Path(to)
    to.mkdir(parents=True, exist_ok=True)
    plan = {p.name: p for p in check(archive_path, to, unit, force)}
    written = []
    for info, fh in _members(archive_path):
        p = plan.get(info.name)
        if p is None or p.skip:
            continue
        p.target.parent.mkdir(parents=True, exist_ok=True)
        _inside(to, p.target, p.name)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.target.name}.", suffix=".restore", dir=p.target.parent)
        try:
            h = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if h.hexdigest() != p.sha256:
                raise ArchiveError(f"{archive_path.name}: member {p.name!r} changed between reads: not restored")
            os.chmod(tmp, p.mode or 0o644)
            os.utime(tmp, (p.mtime, p.mtime))
            os.replace(tmp, p.target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(p.target)
    return written
