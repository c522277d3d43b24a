"""What is on disk under a rule's path: one Unit per folder directly under the base (a job folder), with its files.

A rule that names a folder inside a job (`within`) still gets whole-job units, holding only the
files under that folder. Loose files directly under the base belong to no job and are left alone.
Scans never follow symbolic links (a link is counted as skipped, never entered or deleted), and
a file or folder vanishing mid-scan is simply not counted.
The daemon keeps an index current from watchdog events (:meth:`PathIndex.update`) and corrects
it with a periodic full scan.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from pathlib import Path

from sweepd.storage import scanpart
from sweepd.storage.unit import KEEP_FILE, Unit, gc_paused

__all__ = ["KEEP_FILE", "PathIndex", "Unit", "gc_paused"]


class PathIndex:
    def __init__(self, path: Path, include: list[str] | None = None, exclude: list[str] | None = None,
                 within: str = ""):
        self.path = str(Path(path))
        self.within = within.strip("/")
        self._top, _, inner = self.within.partition("/")
        self._inner = inner + "/" if inner else ""
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

    def _narrow(self, unit: Unit) -> Unit:
        """Only the files under `within` (when the rule names a folder inside a job)."""
        if self._inner:
            unit.files = {k: v for k, v in unit.files.items() if k.startswith(self._inner)}
            unit.touched()
        return unit

    def _concerns(self, rel: str) -> bool:
        if not self.within:
            return True
        return rel == self.within or rel.startswith(self.within + "/") or self.within.startswith(rel + "/")

    # full scan -------------------------------------------------------------------------------
    def scan(self, helpers: int | None = None) -> "PathIndex":
        """Every job folder walked again. Over :data:`scanpart.PARALLEL_UNITS` of them, where cores are free,
        helper processes walk part of them (`helpers`, by default :func:`scanpart.helpers_for`)."""
        with gc_paused():  # 200,000 (bytes, mtime) tuples, none in a cycle: no collection needs to walk them
            return self._scan(helpers)

    def _scan(self, helpers: int | None) -> "PathIndex":
        self.units = {}
        try:
            top = [e for e in os.scandir(self.path) if not self._top or e.name == self._top]
        except (FileNotFoundError, NotADirectoryError):
            return self
        names = []
        for entry in top:
            try:
                if entry.is_symlink() or not entry.is_dir(follow_symlinks=False):
                    continue  # a link, or a loose file: no job's
            except OSError:
                continue
            names.append(entry.name)
        helpers = scanpart.helpers_for(len(names)) if helpers is None else helpers
        found = self._shared(names, helpers) if helpers else {name: self.unit(name) for name in names}
        self.units = {name: found[name] for name in names}
        return self

    def unit(self, name: str) -> Unit:
        """The job folder `name` directly under the path, walked (what a helper process does for its share)."""
        path = os.path.join(self.path, name)
        unit = Unit(name, path)
        unit.keep_flag = os.path.lexists(os.path.join(path, KEEP_FILE))
        self._walk(unit, path, name)
        return self._narrow(unit)

    def _shared(self, names: list[str], helpers: int) -> dict[str, Unit]:
        """The folders dealt out: helper processes walk theirs while this one walks its own; a helper that fails
        (or answers for other folders) has its folders walked here after all."""
        mine, *theirs = scanpart.deal(names, helpers)
        parts = [scanpart.Part(__name__, (self.path, self.include, self.exclude, self.within), share)
                 for share in theirs]
        try:
            found = {name: self.unit(name) for name in mine}
            for part in parts:
                got = part.result()
                for name in part.names:
                    found[name] = got[name] if name in got else self.unit(name)
        finally:
            for part in parts:
                part.close()
        return found

    def _walk(self, unit: Unit, top: str, top_rel: str) -> None:
        # names listed from a directory fd and each lstat'ed as fstatat(dirfd, name), as du does, instead of a
        # full-path lstat that the kernel resolves from / again (about 20 % of a 200,000-file scan); plain names
        # rather than DirEntry objects, and the file type from st_mode's bits inline (another 15 %)
        stack = [(top, "")]
        files, wanted, every = unit.files, self.wanted, self._all
        dirs: dict[str, list[str]] = {}  # the grouping Unit.dirs would compute, built on the way
        lstat, listdir, osopen, osclose = os.lstat, os.listdir, os.open, os.close
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
        IFMT, IFREG, IFDIR, IFLNK = stat.S_IFMT(0o177777), stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK
        while stack:
            d, rel = stack.pop()
            try:
                fd = osopen(d, flags)
            except OSError:  # vanished, a link, or unreadable
                continue
            key = rel.split("/", 1)[0] if rel else ""
            group = dirs.get(key)
            if group is None:
                group = dirs[key] = []
            try:
                try:
                    names = listdir(fd)
                except OSError:
                    continue
                for name in names:
                    try:
                        st = lstat(name, dir_fd=fd)
                    except OSError:  # vanished (or unreadable) between listing and stat
                        continue
                    kind = st.st_mode & IFMT
                    if kind == IFREG:
                        r = rel + name
                        if (every and name != KEEP_FILE) or wanted(f"{top_rel}/{r}"):
                            files[r] = (st.st_size, st.st_mtime)
                            group.append(r)
                    elif kind == IFDIR:
                        stack.append((f"{d}/{name}", f"{rel}{name}/"))
                    elif kind == IFLNK:
                        unit.links_skipped += 1
            finally:
                osclose(fd)
        if unit.files is files and top_rel == unit.name:
            unit._dirs = {k: v for k, v in dirs.items() if v}

    # incremental -----------------------------------------------------------------------------
    def update(self, abs_path: str) -> None:
        """Bring one path's entry up to date (from a watchdog event)."""
        rel = os.path.relpath(abs_path, self.path)
        if rel.startswith("..") or rel == "." or not self._concerns(rel):
            return
        top, _, inner = rel.partition("/")
        if not inner and not os.path.isdir(abs_path) and top not in self.units:
            return  # a loose file directly under the base: no job's
        unit = self.units.get(top)
        if unit is None:
            unit = self.units[top] = Unit(top, os.path.join(self.path, top))
        unit.touched()
        if inner == KEEP_FILE:
            unit.keep_flag = os.path.lexists(abs_path)
            return
        try:
            st = os.lstat(abs_path)
        except (FileNotFoundError, NotADirectoryError):
            gone = [k for k in unit.files if k == inner or k.startswith(inner + "/")] if inner else list(unit.files)
            for k in gone:
                del unit.files[k]
            if not inner:
                del self.units[top]
            return
        if stat.S_ISREG(st.st_mode) and inner and self.wanted(rel):
            unit.files[inner] = (st.st_size, st.st_mtime)
        elif stat.S_ISDIR(st.st_mode):  # a folder arrived (moved in, or a whole job folder): index its files
            found = Unit(top, abs_path)
            self._walk(found, abs_path, rel)
            unit.files.update({f"{inner}/{k}" if inner else k: v for k, v in found.files.items()})
            if not inner:
                unit.keep_flag = os.path.lexists(os.path.join(abs_path, KEEP_FILE))
        self._narrow(unit)

    # totals ----------------------------------------------------------------------------------
    @property
    def bytes(self) -> int:
        return sum(u.bytes for u in self.units.values())

    @property
    def nfiles(self) -> int:
        return sum(u.nfiles for u in self.units.values())


def _helper() -> None:
    """``python -m sweepd.storage.index``: a helper's share of a full scan (:mod:`.scanpart`)."""
    args, names = scanpart.request()
    idx = PathIndex(*args)
    with gc_paused():
        scanpart.reply([idx.unit(name).wire() for name in names])


if __name__ == "__main__":
    _helper()
