"""Carry out a plan, action by action. With simulate=True nothing is touched: each action is only
reported, the way it would run. A failed action leaves its sources as they were and the next
action still runs. Every action goes to state/audit.jsonl.

The caller holds the root's storage lock (:func:`sweepd.storage.context.storage_lock`) from the
plan to the end of the apply. Each action acts only on a unit directly under images/ (or
results/), walking every path without following links (:mod:`sweepd.storage.safefs`).
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from sweepd.errors import StorageError
from sweepd import audit
from sweepd.paths import Layout
from sweepd.records.archive import ArchiveReason
from sweepd.storage import archive
from sweepd.storage.index import KEEP_FILE
from sweepd.storage.planner import Action, Plan, why_protected
from sweepd.storage.safefs import UnitDir, UnsafePath
from sweepd.storage.protection import is_active

log = logging.getLogger(__name__)


@dataclass
class ApplyOutcome:
    """What a plan's actions came to: done, failed (with why), skipped (protected since the plan was made)."""
    done: list[Action] = field(default_factory=list)
    failed: list[tuple[Action, str]] = field(default_factory=list)
    skipped: list[tuple[Action, str]] = field(default_factory=list)  # protected since the plan was made


def bases(layout: Layout) -> set[Path]:
    """The folders whose entries policies may act on."""
    return {Path(os.path.realpath(layout.images)), Path(os.path.realpath(layout.results))}


def _present(a: Action) -> list[str]:
    """The action's files that are still regular files in the unit; a link anywhere fails the action."""
    out = []
    with UnitDir(Path(a.root), a.unit) as unit:
        for rel in a.files:
            try:
                st = unit.lstat(rel)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePath(f"{unit.path / rel} is a link: not touched")
            if stat.S_ISREG(st.st_mode):
                out.append(rel)
    return out


def protected_now(a: Action, layout: Layout) -> str | None:
    """Protection checked again right before acting (a .keep, a queued sweep or a foreground run may have come
    since planning): the queue and the job's sweep.json are read as they are now, SLURM was asked when the plan
    was made."""
    active = {a.job_id} if a.job_id is not None and is_active(layout, a.job_id) else set()
    return why_protected(os.path.lexists(Path(a.root) / a.unit / KEEP_FILE), a.job_id, active)


class Protected(StorageError):
    pass


def run_action(a: Action, layout: Layout, simulate: bool = False) -> None:
    if Path(a.root) not in bases(layout):
        raise UnsafePath(f"{a.root} is not this root's images/ or results/: not touched")
    if (why := protected_now(a, layout)) is not None:
        raise Protected(f"{a.unit} {why} now: skipped")
    if simulate:
        log.info("would %s %s/%s: %d files, %d bytes (%s)", a.kind, Path(a.root).name, a.unit, a.nfiles, a.bytes,
                 a.reason)
        return
    try:
        files = _present(a)
    except FileNotFoundError:
        return  # the whole unit is gone already
    if not files:
        return
    base, state = Path(a.root), layout.state
    if a.kind in ("archive", "archive_then_delete"):
        done = archive.archive(base, a.unit, files, Path(a.archive_dir), level=a.zstd_level, threads=a.zstd_threads,
                               why=ArchiveReason(rule=a.rule, policy=a.source, reason=a.reason, job_id=a.job_id))
        removed = archive.delete_sources(base, a.unit, files, done) if a.kind == "archive_then_delete" else 0
        audit.record(state, f"storage_{a.kind}", rule=a.rule, unit=a.unit, job_id=a.job_id, archive=str(done.path),
                     files=len(files), bytes=a.bytes, removed=removed, reason=a.reason, policy=a.source)
    elif a.kind == "delete":
        removed = archive.delete_files(base, a.unit, files)
        audit.record(state, "storage_delete", rule=a.rule, unit=a.unit, job_id=a.job_id, files=len(files),
                     bytes=a.bytes, removed=removed, reason=a.reason, policy=a.source)


def apply(plan: Plan, layout: Layout, simulate: bool = False) -> ApplyOutcome:
    out = ApplyOutcome()
    for a in plan.actions:
        try:
            run_action(a, layout, simulate)
            out.done.append(a)
        except Protected as e:
            log.info("%s", e)
            out.skipped.append((a, str(e)))
        except (archive.ArchiveError, UnsafePath, OSError) as e:
            log.error("%s of %s/%s failed: %s", a.kind, Path(a.root).name, a.unit, e)
            audit.record(layout.state, "storage_failed", rule=a.rule, unit=a.unit, kind=a.kind, error=str(e))
            out.failed.append((a, str(e)))
    return out
