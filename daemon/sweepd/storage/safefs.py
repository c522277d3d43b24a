"""Touching files inside a unit (a job folder) without ever following a link out of it.

Every path is walked one component at a time from an open directory (``openat`` with
``O_NOFOLLOW``), so a folder swapped for a symbolic link between plan and apply fails with
:class:`UnsafePath` instead of leading into another job's files. Names come from plans and
manifests, which are user-editable: each is checked to be relative, without ``.``/``..``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from sweepd.errors import StorageError

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)


class UnsafePath(StorageError):
    """A name that leaves its unit, or a link where a folder or file should be."""


@dataclass(frozen=True)
class Identity:
    """What a file is now: a changed file (rewritten, replaced, grown) has another identity."""
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> "Identity":
        return cls(st.st_ino, st.st_size, st.st_mtime_ns)


def check_name(rel: str, what: str = "name") -> list[str]:
    """The components of a relative name; refuses absolute names, '.', '..', empty parts and NUL."""
    if not isinstance(rel, str) or not rel or rel.startswith("/") or "\0" in rel:
        raise UnsafePath(f"{what} {rel!r}: not a relative path")
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"{what} {rel!r}: '.', '..' or an empty component")
    return parts


def check_unit_name(name: str) -> str:
    """A unit is one entry directly under its rule's base folder."""
    if len(check_name(name, "unit")) != 1:
        raise UnsafePath(f"unit {name!r}: not a single folder name")
    return name


class UnitDir:
    """An open unit folder: base/<unit>, opened without following links (the base is resolved first)."""

    def __init__(self, base: Path, unit: str):
        self.base = Path(os.path.realpath(base))
        self.name = check_unit_name(unit)
        self.path = self.base / unit
        self.fd = -1
        self._dirs: dict[tuple[str, ...], int] = {}  # folders inside it opened so far, kept open while it is
        bfd = os.open(self.base, _DIR)
        try:
            self.fd = os.open(unit, _DIR, dir_fd=bfd)
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(f"{self.path} is a link or not a folder: not touched") from None
            raise
        finally:
            os.close(bfd)

    def close(self) -> None:
        for fd in self._dirs.values():
            os.close(fd)
        self._dirs.clear()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "UnitDir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _named(self, rel: str) -> Iterator[None]:
        """An OSError from a call relative to a folder fd names only the last component ('037.png'): name the
        whole path instead, so every error line says which file of which job."""
        try:
            yield
        except OSError as e:
            e.filename = str(self.path / rel)
            raise

    # walking ---------------------------------------------------------------------------------
    KEEP_OPEN = 256  # folders kept open per unit (a sweep's job has one per clock); beyond, opened for each use

    def _parent(self, rel: str) -> tuple[int, str]:
        """An fd of rel's folder (the unit's to close) and rel's last name. A folder once opened stays open
        with the unit: archiving 2,876 files in 40 folders opened a folder 8,600 times (0.3 s of 4). A folder
        swapped for a link after it was opened is not followed either way: its fd is the folder it was."""
        parts = check_name(rel)
        folder = tuple(parts[:-1])
        if not folder:
            return self.fd, parts[-1]
        if (fd := self._dirs.get(folder)) is not None:
            return fd, parts[-1]
        k = len(folder)
        while k and folder[:k] not in self._dirs:
            k -= 1
        fd = self._dirs[folder[:k]] if k else self.fd
        try:
            for i in range(k, len(folder)):
                nfd = os.open(folder[i], _DIR, dir_fd=fd)
                self._keep(folder[:i + 1], nfd)
                fd = nfd
        except OSError as e:
            if e.errno in (errno.ELOOP, errno.ENOTDIR):
                raise UnsafePath(f"{self.path / rel}: a folder on the way is a link or not a folder") from None
            raise
        return fd, parts[-1]

    def _keep(self, folder: tuple[str, ...], fd: int) -> None:
        if len(self._dirs) >= self.KEEP_OPEN:  # the oldest closed first
            os.close(self._dirs.pop(next(iter(self._dirs))))
        self._dirs[folder] = fd

    def lstat(self, rel: str) -> os.stat_result:
        with self._named(rel):
            fd, name = self._parent(rel)
            return os.stat(name, dir_fd=fd, follow_symlinks=False)

    def open(self, rel: str):
        """A binary file object of a regular file (never through a link), and its identity."""
        with self._named(rel):
            return self._open(rel)

    def _open(self, rel: str):
        fd, name = self._parent(rel)
        try:
            ffd = os.open(name, _FILE, dir_fd=fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise UnsafePath(f"{self.path / rel} is a link: not touched") from None
            raise
        st = os.fstat(ffd)
        if not stat.S_ISREG(st.st_mode):
            os.close(ffd)
            raise UnsafePath(f"{self.path / rel} is not a regular file: not touched")
        os.set_blocking(ffd, True)
        return os.fdopen(ffd, "rb", buffering=0), st  # read in large pieces: no buffer of its own

    def unlink_if(self, rel: str, identity: Identity) -> bool:
        """Remove rel if it is still the very file that was archived; False if it is gone already.
        Raises UnsafePath if it changed (another file, other size or mtime) since."""
        with self._named(rel):
            return self._unlink_if(rel, identity)

    def _unlink_if(self, rel: str, identity: Identity) -> bool:
        fd, name = self._parent(rel)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode) or Identity.of(st) != identity:
            raise UnsafePath(f"{self.path / rel} changed since it was archived: not deleted")
        os.unlink(name, dir_fd=fd)
        return True

    def prune(self, rels: list[str]) -> None:
        """Remove the folders that removing `rels` left empty, deepest first, then the unit itself."""
        dirs = {tuple(check_name(r)[:-1]) for r in rels}
        for parts in sorted(dirs, key=len, reverse=True):
            for k in range(len(parts), 0, -1):
                try:
                    fd, name = self._parent("/".join(parts[:k]))
                except (UnsafePath, OSError):
                    break
                try:
                    os.rmdir(name, dir_fd=fd)
                except OSError:
                    break
                if (gone := self._dirs.pop(parts[:k], None)) is not None:
                    os.close(gone)
        try:
            bfd = os.open(self.base, _DIR)
        except OSError:
            return
        try:
            st = os.stat(self.name, dir_fd=bfd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                os.rmdir(self.name, dir_fd=bfd)
        except OSError:
            pass
        finally:
            os.close(bfd)
