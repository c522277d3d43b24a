"""One job folder's files as an index holds them (:class:`Unit`), and what building an index needs around them."""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass, field

from sweepd.paths import job_of

KEEP_FILE = ".keep"


@contextlib.contextmanager
def gc_paused():
    """No cyclic garbage collection while a scan builds its index (6 % of a 200,000-file scan went to collections
    walking what it had built so far); whatever it was, as it was afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class Unit:
    name: str  # the entry directly under the rule path: job_<ID>, or a loose file or folder
    path: str
    files: dict[str, tuple[int, float]] = field(default_factory=dict)  # relative path -> (bytes, mtime)
    keep_flag: bool = False
    links_skipped: int = 0
    _agg: tuple[int, float, float] | None = field(default=None, repr=False)  # bytes, newest, oldest
    _dirs: dict[str, list[str]] | None = field(default=None, repr=False)
    _memo: dict = field(default_factory=dict, repr=False)  # what planners derived from the files, until they change

    def touched(self) -> None:
        self._agg = self._dirs = None
        self._memo.clear()

    def memo(self, key, make):
        """`make()`, computed once while the files stay as they are (a re-plan over an unchanged index)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

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
            if self.files:
                sizes, times = zip(*self.files.values())
                self._agg = (sum(sizes), max(times), min(times))
            else:
                self._agg = (0, 0.0, 0.0)
        return self._agg

    @property
    def job_id(self) -> str | None:
        return job_of(self.name)

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

    def wire(self) -> tuple:
        """As a helper process sends it back (:mod:`.scanpart`): plain values marshal can carry."""
        return self.name, self.path, self.keep_flag, self.links_skipped, self.files, self._dirs

    @classmethod
    def from_wire(cls, t: tuple) -> "Unit":
        name, path, keep_flag, links_skipped, files, dirs = t
        unit = cls(name, path, files, keep_flag, links_skipped)
        unit._dirs = dirs
        return unit
