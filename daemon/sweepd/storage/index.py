"""What is on disk under a rule's path: one Unit per job folder (or loose entry), with its files.

Scans never follow symbolic links (a link is counted as skipped, never entered or deleted).
The daemon keeps an index current from watchdog events (:meth:`PathIndex.update`) and corrects
it with a periodic full scan.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

KEEP_FILE = ".keep"


@dataclass
class Unit:
    name: str  # the entry directly under the rule path: job_<ID>, or a loose file or folder
    path: str
    files: dict[str, tuple[int, float]] = field(default_factory=dict)  # relative path -> (bytes, mtime)
    keep_flag: bool = False
    links_skipped: int = 0
    _agg: tuple[int, float, float] | None = field(default=None, repr=False)  # bytes, newest, oldest
    _dirs: dict[str, list[str]] | None = field(default=None, repr=False)

    def touched(self) -> None:
        self._agg = self._dirs = None

    @property
    def dirs(self) -> dict[str, list[str]]:
        """Files grouped by their first folder (the clock folder, e.g. '1410MHz'; '' for files at the top)."""
        if self._dirs is None:
            out: dict[str, list[str]] = {}
            for rel in self.files:
                top, sep, _ = rel.partition("/")
                out.setdefault(top if sep else "", []).append(rel)
            self._dirs = out
        return self._dirs

    @property
    def agg(self) -> tuple[int, float, float]:
        if self._agg is None:
            sizes = [s for s, _ in self.files.values()]
            times = [m for _, m in self.files.values()]
            self._agg = (sum(sizes), max(times, default=0.0), min(times, default=0.0))
        return self._agg

    @property
    def job_id(self) -> str | None:
        return self.name[4:] if self.name.startswith("job_") else None

    @property
    def bytes(self) -> int:
        return self.agg[0]

    @property
    def nfiles(self) -> int:
        return len(self.files)

    @property
    def newest(self) -> float:
        return self.agg[1]

    @property
    def oldest(self) -> float:
        return self.agg[2]


class PathIndex:
    def __init__(self, path: Path, include: list[str] | None = None, exclude: list[str] | None = None):
        self.path = str(Path(path))
        self.include = include or ["*"]
        self.exclude = exclude or []
        self.units: dict[str, Unit] = {}
        # one compiled regex for all globs; the default include ("*", no exclude) needs none at all
        self._all = self.include == ["*"] and not self.exclude
        self._inc = re.compile("|".join(fnmatch.translate(g) for g in self.include))
        self._exc = re.compile("|".join(fnmatch.translate(g) for g in self.exclude)) if self.exclude else None

    def wanted(self, rel: str) -> bool:
        if rel.endswith(KEEP_FILE) and rel.rsplit("/", 1)[-1] == KEEP_FILE:
            return False
        if self._all:
            return True
        return bool(self._inc.match(rel)) and not (self._exc and self._exc.match(rel))

    # full scan -------------------------------------------------------------------------------
    def scan(self) -> "PathIndex":
        self.units = {}
        try:
            top = list(os.scandir(self.path))
        except FileNotFoundError:
            return self
        for entry in top:
            unit = Unit(entry.name, entry.path)
            if entry.is_symlink():
                unit.links_skipped += 1
                continue
            if entry.is_dir(follow_symlinks=False):
                unit.keep_flag = os.path.lexists(os.path.join(entry.path, KEEP_FILE))
                self._walk(unit, entry.path, entry.name)
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                if self.wanted(entry.name):
                    unit.files[""] = (st.st_size, st.st_mtime)
            self.units[entry.name] = unit
        return self

    def _walk(self, unit: Unit, top: str, top_rel: str) -> None:
        # scandir on a directory fd: each entry's lstat is an fstatat(dirfd, name), as in du, instead of a
        # full-path lstat that the kernel resolves from / again (about 20 % of a 200,000-file scan)
        stack = [(top, "")]
        files, wanted, every = unit.files, self.wanted, self._all
        dirs: dict[str, list[str]] = {}  # the grouping Unit.dirs would compute, built on the way
        S_ISREG, S_ISLNK = stat.S_ISREG, stat.S_ISLNK
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        while stack:
            d, rel = stack.pop()
            try:
                fd = os.open(d, flags)
            except (FileNotFoundError, NotADirectoryError, PermissionError, OSError):
                continue
            group = dirs.setdefault(rel.split("/", 1)[0] if rel else "", [])
            try:
                with os.scandir(fd) as it:
                    for e in it:
                        if e.is_dir(follow_symlinks=False):
                            stack.append((f"{d}/{e.name}", f"{rel}{e.name}/"))
                            continue
                        st = e.stat(follow_symlinks=False)
                        if S_ISREG(st.st_mode):
                            r = rel + e.name
                            if (every and e.name != KEEP_FILE) or wanted(f"{top_rel}/{r}"):
                                files[r] = (st.st_size, st.st_mtime)
                                group.append(r)
                        elif S_ISLNK(st.st_mode):
                            unit.links_skipped += 1
            finally:
                os.close(fd)
        if unit.files is files and top_rel == unit.name:
            unit._dirs = {k: v for k, v in dirs.items() if v}

    # incremental -----------------------------------------------------------------------------
    def update(self, abs_path: str) -> None:
        """Bring one path's entry up to date (from a watchdog event)."""
        rel = os.path.relpath(abs_path, self.path)
        if rel.startswith("..") or rel == ".":
            return
        top, _, inner = rel.partition("/")
        unit = self.units.get(top)
        if unit is None:
            unit = self.units[top] = Unit(top, os.path.join(self.path, top))
        unit.touched()
        if inner == KEEP_FILE:
            unit.keep_flag = os.path.lexists(abs_path)
            return
        try:
            st = os.lstat(abs_path)
        except FileNotFoundError:
            gone = [k for k in unit.files if k == inner or k.startswith(inner + "/")] if inner else list(unit.files)
            for k in gone:
                del unit.files[k]
            return
        if stat.S_ISREG(st.st_mode) and self.wanted(rel):
            unit.files[inner] = (st.st_size, st.st_mtime)
        elif stat.S_ISDIR(st.st_mode):  # a folder arrived (moved in, or a whole job folder): index its files
            found = Unit(top, abs_path)
            self._walk(found, abs_path, rel)
            unit.files.update({f"{inner}/{k}" if inner else k: v for k, v in found.files.items()})
            if not inner:
                unit.keep_flag = os.path.lexists(os.path.join(abs_path, KEEP_FILE))

    # totals ----------------------------------------------------------------------------------
    @property
    def bytes(self) -> int:
        return sum(u.bytes for u in self.units.values())

    @property
    def nfiles(self) -> int:
        return sum(u.nfiles for u in self.units.values())
