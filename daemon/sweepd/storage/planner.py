"""Plan, then apply: what each rule would do, and why, before anything is touched.

A rule path names images/ (or results/ with allow_results), or a folder inside it; either way the
units acted on are whole job folders directly under that base, so protection and restore always
work per job. Rules run in file order; each sees the effect of the actions planned before it. Within a rule:
per-job trims first, then age, then the path's caps (max_bytes, max_files, min_free), evicting
whole jobs oldest first. A job's age is that of its newest file (when the sweep last wrote), and a
trim does not change it. Protected jobs (queued or running in the queue,
or holding a `.keep` file) are never touched. Metrics under results/ are outside every rule
unless a rule sets allow_results = true.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from pathlib import Path
from collections.abc import Container
from typing import Callable

from pydantic import BaseModel, ConfigDict

from sweepd.errors import InputError
from sweepd.freqplan import representative
from sweepd.paths import Layout
from sweepd.storage.index import PathIndex, Unit, gc_paused
from sweepd.storage.policy import Rule
from sweepd.storage.units import human

_CLOCK_DIR = re.compile(r"^(\d+)MHz$")
_TRIAL = re.compile(r"_t(\d+)_")


def why_protected(keep_flag: bool, job_id: str | None, active: Container[str]) -> str | None:
    """The one rule for what is never touched: a job folder holding a `.keep`, or a job that is queued or
    running (`active`: :mod:`sweepd.storage.protection`). None: not protected."""
    if keep_flag:
        return "holds a .keep file"
    if job_id is not None and job_id in active:
        return "is queued or running (sweepd queue, a foreground sweepd run, or SLURM)"
    return None


class PolicyError(InputError):
    """A rule that sweepd refuses to apply (unsafe root, and the like)."""


class Action(BaseModel):
    """One step of a plan; also what `storage plan --json` writes and `storage apply --plan` reads back."""
    model_config = ConfigDict(extra="forbid")
    rule: str
    kind: str  # archive_then_delete | archive | delete
    root: str  # the base folder the unit lives in: images/ (or results/ with allow_results)
    unit: str  # a whole job folder (or another folder) directly under root
    job_id: str | None
    files: list[str]  # exactly the files this action touches, relative to the unit
    whole: bool
    bytes: int
    nfiles: int
    reason: str
    archive_dir: str = ""
    zstd_level: int = 3
    zstd_threads: int = -1
    source: str = ""  # the policy file

    def to_json(self) -> dict:
        return self.model_dump()


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(a.bytes for a in self.actions if a.kind != "archive")


@dataclass(frozen=True)
class Scope:
    """Where a rule path points: the base folder whose entries are the units (images/, or results/
    with allow_results), and the part of it the rule narrows to ('' for all; 'job_7' or
    'job_7/1410MHz' for one job or a folder of one). Units are whole jobs whatever level a rule names."""
    base: Path
    within: str = ""

    @property
    def path(self) -> Path:
        return self.base / self.within if self.within else self.base


def _overlaps(p: Path, other: Path) -> bool:
    return p == other or other.is_relative_to(p) or p.is_relative_to(other)


def scopes(layout: Layout, rule: Rule) -> list[Scope]:
    """Every path of a rule, made absolute and checked (:func:`resolve_root`): the one check of rule paths that
    loading, planning, watching, usage and the fit check all go through."""
    return [resolve_root(layout, rule, raw) for raw in rule.paths]


def resolve_root(layout: Layout, rule: Rule, raw: str) -> Scope:
    """A rule path, made absolute and checked: it must lie under images/ (or results/ with allow_results),
    be a folder where it exists, and never touch /, $HOME itself, the archive, state/ or spool/."""
    p = Path(raw).expanduser()
    p = Path(os.path.realpath(p if p.is_absolute() else layout.root / p))
    archive = Path(os.path.realpath(archive_dir(layout, rule)))
    home = Path(os.path.realpath(Path.home()))
    bad = {Path("/"): "the filesystem root", home: "your home directory itself"}
    if p in bad:
        raise PolicyError(f"rule {rule.name!r}: paths: {raw!r}: refusing to manage {bad[p]}")
    for name, other in (("the archive directory", archive), ("sweepd's state/", layout.state),
                        ("sweepd's spool/", layout.spool)):
        other = Path(os.path.realpath(other))
        if _overlaps(p, other):
            raise PolicyError(f"rule {rule.name!r}: paths: {raw!r}: overlaps {name} ({other})")
    images, results = (Path(os.path.realpath(x)) for x in (layout.images, layout.results))
    for name, other in (("spool/", layout.spool), ("state/", layout.state), ("images/", images),
                        ("results/", results)):
        if _overlaps(archive, Path(os.path.realpath(other))):
            raise PolicyError(f"rule {rule.name!r}: archive_dir: {rule.archive_dir!r}: overlaps {name} ({other}): "
                              "archives go to a folder of their own")
    if p.is_relative_to(images):
        base = images
    elif _overlaps(p, results) and not rule.allow_results:
        raise PolicyError(f"rule {rule.name!r}: paths: {raw!r}: overlaps results/ ({results}), where metrics live; "
                          "set allow_results = true to manage it")
    elif p.is_relative_to(results):
        base = results
    else:
        raise PolicyError(f"rule {rule.name!r}: paths: {raw!r}: {p} is not under images/ ({images}): rules manage "
                          "image folders (and results/ with allow_results = true), nothing else")
    if os.path.lexists(p) and not p.is_dir():
        raise PolicyError(f"rule {rule.name!r}: paths: {raw!r}: {p} is not a folder")
    return Scope(base, "" if p == base else str(p.relative_to(base)))


def archive_dir(layout: Layout, rule: Rule) -> Path:
    p = Path(rule.archive_dir).expanduser()
    return p if p.is_absolute() else layout.root / p


def kept_dirs(keep: str, dirs: list[str]) -> set[str]:
    """For keep = representative: the clock folders kept (max, min, every 10th); other folders are kept too."""
    clocks = sorted((int(m.group(1)) for d in dirs if (m := _CLOCK_DIR.match(d))), reverse=True)
    chosen = {clocks[i] for i in representative(len(clocks))}
    return {d for d in dirs if not (m := _CLOCK_DIR.match(d)) or int(m.group(1)) in chosen}


def kept_by(keep: str | int, files: list[str]) -> set[str]:
    """The files a per-job trim keeps: representative clocks, first trials, the first N per clock, or nothing."""
    if isinstance(keep, int):
        per_dir: dict[str, list[str]] = {}
        for f in sorted(files):
            per_dir.setdefault(f.rsplit("/", 1)[0] if "/" in f else "", []).append(f)
        return {f for fs in per_dir.values() for f in fs[:keep]}
    if keep == "none":
        return set()
    if keep == "first_trial":
        return {f for f in files if not (m := _TRIAL.search(f.rsplit("/", 1)[-1])) or m.group(1) == "1"}
    dirs = kept_dirs(keep, list({f.split("/", 1)[0] if "/" in f else "" for f in files}))
    return {f for f in files if (f.split("/", 1)[0] if "/" in f else "") in dirs}


def _representative_trim(unit: Unit) -> tuple[list[str], int]:
    """keep = representative over a whole unit, folder by folder: the files trimmed (sorted) and their bytes."""
    dirs, sizes = unit.dirs, unit.files
    kept_d = kept_dirs("representative", list(dirs))
    trim = list(chain.from_iterable(fs for d, fs in dirs.items() if d not in kept_d))
    trim.sort()
    return trim, sum(map(itemgetter(0), map(sizes.__getitem__, trim)))


FUTURE_SLACK_S = 3600.0  # a file dated up to an hour ahead (clocks differ between machines) counts as written now


class Planner:
    def __init__(self, layout: Layout, protected: Container[str], index_for: Callable[[Rule, Scope], PathIndex],
                 free_bytes: Callable[[Path], tuple[int, int]] | None = None, now: float | None = None):
        self.layout, self.protected, self.index_for = layout, protected, index_for
        self.free_bytes = free_bytes or _statvfs
        self.now = time.time() if now is None else now
        self.gone: dict[tuple[str, str], set[str]] = {}  # (root, unit) -> files planned away
        self.gone_size: dict[tuple[str, str], tuple[int, int]] = {}  # (root, unit) -> (bytes, files) planned away
        self.freed_on: dict[int, int] = {}  # st_dev -> bytes planned to be freed there
        self.future_dated: dict[str, int] = {}  # unit -> files dated after now, left out of its age
        self._archive_dirs: dict[str, str] = {}  # rule name -> its archive folder
        self._devs: dict[Path, int] = {}  # root -> st_dev

    def remaining(self, root: str, unit: Unit) -> dict[str, tuple[int, float]]:
        gone = self.gone.get((root, unit.name))
        if not gone:
            return unit.files
        return {k: v for k, v in unit.files.items() if k not in gone}

    def usage(self, root: str, unit: Unit) -> tuple[int, int, float]:
        """(bytes, files, age) of what is left of a unit. A job's age is its newest file's, trimmed or not."""
        gb, gf = self.gone_size.get((root, unit.name), (0, 0))
        return unit.bytes - gb, unit.nfiles - gf, self.last_written(unit)

    def last_written(self, unit: Unit) -> float:
        """When a job last wrote: its newest file's mtime, leaving out files dated after now (a clock ahead, or a
        date set by hand: one such file would keep the whole job young for ever). A job with nothing but such files
        is taken as written now."""
        horizon = self.now + FUTURE_SLACK_S
        if unit.newest <= horizon:
            return unit.newest
        past = [m for _, m in unit.files.values() if m <= horizon]
        self.future_dated[unit.name] = unit.nfiles - len(past)
        return max(past, default=self.now)

    def plan(self, rules: list[tuple[Rule, str]]) -> Plan:
        with gc_paused():  # what it builds holds no cycles; the index it reads is large
            return self._plan(rules)

    def _plan(self, rules: list[tuple[Rule, str]]) -> Plan:
        out = Plan()
        for rule, source in rules:
            for scope in scopes(self.layout, rule):
                self._rule(rule, source, scope.base, self.index_for(rule, scope), out)
        for name, n in sorted(self.future_dated.items()):
            out.notes.append(f"{name}: {n} file(s) dated after now; its age is taken from its other files")
        return out

    def _protected(self, unit: Unit) -> str | None:
        return why_protected(unit.keep_flag, unit.job_id, self.protected)

    def _act(self, out: Plan, rule: Rule, source: str, root: Path, unit: Unit, files, reason: str,
             whole: bool, nbytes: int | None = None, presorted: bool = False) -> None:
        """Plan one action on `files` (names, or a name -> (bytes, mtime) mapping) of a unit."""
        if nbytes is None:
            sizes = unit.files
            nbytes = sum(sizes[k][0] for k in files)
        # built here from the index, not read from outside: no validation to pay for 400 files x 400 actions
        out.actions.append(Action.model_construct(
            rule=rule.name, kind=rule.action, root=str(root), unit=unit.name, job_id=unit.job_id,
            files=list(files) if presorted else sorted(files), whole=whole, bytes=nbytes, nfiles=len(files),
            reason=reason, archive_dir=self._archive_dir(rule), zstd_level=rule.zstd_level,
            zstd_threads=rule.zstd_threads, source=source))
        if rule.spec.deletes:
            key = (str(root), unit.name)
            self.gone.setdefault(key, set()).update(files)
            gb, gf = self.gone_size.get(key, (0, 0))
            self.gone_size[key] = (gb + nbytes, gf + len(files))
            dev = self._dev(root)
            self.freed_on[dev] = self.freed_on.get(dev, 0) + nbytes

    def _archive_dir(self, rule: Rule) -> str:
        if rule.name not in self._archive_dirs:
            self._archive_dirs[rule.name] = str(archive_dir(self.layout, rule))
        return self._archive_dirs[rule.name]

    def _dev(self, root: Path) -> int:
        if root not in self._devs:
            self._devs[root] = _dev(root)
        return self._devs[root]

    def _rule(self, rule: Rule, source: str, root: Path, idx: PathIndex, out: Plan) -> None:
        units = []
        r = str(root)
        for unit in idx.units.values():
            why = self._protected(unit)
            if why and self.usage(r, unit)[1]:
                out.notes.append(f"rule {rule.name}: {unit.name} {why}: not touched")
            elif self.usage(r, unit)[1]:
                units.append(unit)
        if rule.per_job:
            pj = rule.per_job
            for unit in units:
                size, nfiles, _ = self.usage(r, unit)
                over = [f"{human(size)} > max_bytes {human(pj.max_bytes)}" if pj.max_bytes and size > pj.max_bytes else "",
                        f"{nfiles} files > max_files {pj.max_files}" if pj.max_files and nfiles > pj.max_files else ""]
                over = [o for o in over if o]
                if (pj.max_bytes or pj.max_files) and not over:
                    continue
                keep = pj.keep if pj.keep is not None else pj.keep_samples
                files = self.remaining(r, unit)
                if keep is None:
                    self._act(out, rule, source, root, unit, files, f"job over its per-job cap ({'; '.join(over)})",
                              whole=True)
                    continue
                nbytes = None
                if keep == "representative" and files is unit.files:  # folder by folder, once per index state
                    trim, nbytes = unit.memo(("trim", keep), lambda: _representative_trim(unit))
                else:
                    kept = kept_by(keep, list(files))
                    trim = sorted(k for k in files if k not in kept)
                if trim:
                    why = f"per-job keep = {keep}" + (f" ({'; '.join(over)})" if over else "")
                    self._act(out, rule, source, root, unit, trim, why, whole=len(trim) == len(files), nbytes=nbytes,
                              presorted=True)
        if rule.max_age:
            limit = self.now - rule.max_age
            for unit in units:
                _, nfiles, newest = self.usage(r, unit)
                if nfiles and newest < limit:
                    files = self.remaining(r, unit)
                    days = (self.now - newest) / 86400
                    self._act(out, rule, source, root, unit, files,
                              f"newest file is {days:.1f} days old > max_age {rule.max_age / 86400:g} days", whole=True)
        self._caps(rule, source, root, idx, units, out)

    def _caps(self, rule: Rule, source: str, root: Path, idx: PathIndex, units: list[Unit], out: Plan) -> None:
        if not (rule.max_bytes or rule.max_files or rule.min_free):
            return
        if not rule.spec.deletes:
            out.notes.append(f"rule {rule.name}: action = \"{rule.action}\" frees nothing: its caps are not enforced")
            return
        r = str(root)
        usage = {u.name: self.usage(r, u) for u in idx.units.values()}
        total_b = sum(b for b, _, _ in usage.values())
        total_f = sum(f for _, f, _ in usage.values())
        free, size = self.free_bytes(root)
        free += self.freed_on.get(self._dev(root), 0)
        need_free = (rule.min_free * size if rule.min_free and rule.min_free < 1 else rule.min_free) or 0

        def over() -> list[str]:
            out_ = []
            if rule.max_bytes and total_b > rule.max_bytes:
                out_.append(f"{human(total_b)} > max_bytes {human(rule.max_bytes)}")
            if rule.max_files and total_f > rule.max_files:
                out_.append(f"{total_f} files > max_files {rule.max_files}")
            if need_free and free < need_free:
                out_.append(f"free {human(free)} < min_free {human(need_free)}")
            return out_

        for unit in sorted(units, key=lambda u: (usage[u.name][2], u.name)):
            why = over()
            if not why:
                return
            nbytes, nfiles, _ = usage[unit.name]
            if not nfiles:
                continue
            self._act(out, rule, source, root, unit, self.remaining(r, unit),
                      f"{Path(idx.path, idx.within).name}/ over its cap ({'; '.join(why)}); oldest job first", whole=True, nbytes=nbytes)
            total_b -= nbytes
            total_f -= nfiles
            free += nbytes
        if over():
            out.notes.append(f"rule {rule.name}: still over after every unprotected job: {'; '.join(over())}")


def _dev(path: Path) -> int:
    try:
        return os.stat(path).st_dev
    except OSError:
        return -1


def _statvfs(path: Path) -> tuple[int, int]:
    try:
        st = os.statvfs(path)
    except OSError:
        return (0, 0)
    return st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
