"""Carry out a plan, action by action. With simulate=True nothing is touched: each action is only
reported, the way it would run. A failed action leaves its sources as they were and the next
action still runs. Every action goes to state/audit.jsonl."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from sweepd import audit
from sweepd.storage import archive
from sweepd.storage.planner import Action, Plan

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    done: list[Action] = field(default_factory=list)
    failed: list[tuple[Action, str]] = field(default_factory=list)


def _unit_dir(a: Action) -> Path:
    root = Path(os.path.realpath(a.root))
    unit = root / a.unit
    if unit.is_symlink() or not Path(os.path.realpath(unit)).is_relative_to(root) or unit.parent != root:
        raise archive.ArchiveError(f"{unit} is a link or leaves {root}: not touched")
    return unit


def _files(unit: Path, a: Action) -> list[str]:
    """The action's files, each checked to be a regular file inside the unit (never through a link)."""
    out = []
    for rel in a.files:
        p = unit / rel if rel else unit
        if p.is_symlink() or not os.path.realpath(p).startswith(os.path.realpath(unit)):
            raise archive.ArchiveError(f"{p} is a link or leaves {unit}: not touched")
        if p.is_file():
            out.append(rel)
    return out


def run_action(a: Action, state: Path, simulate: bool = False) -> None:
    unit = _unit_dir(a)
    if simulate:
        log.info("would %s %s/%s: %d files, %d bytes (%s)", a.kind, Path(a.root).name, a.unit, a.nfiles, a.bytes,
                 a.reason)
        return
    files = _files(unit, a)
    if not files:
        return
    if a.kind in ("archive", "archive_then_delete"):
        path = archive.archive(unit, files, Path(a.archive_dir), level=a.zstd_level, threads=a.zstd_threads,
                               meta={"rule": a.rule, "policy": a.source, "reason": a.reason, "job_id": a.job_id})
        manifest = path.with_name(path.name.removesuffix(archive.SUFFIX) + ".manifest.json")
        members = json.loads(manifest.read_text())["members"]
        removed = archive.delete_sources(unit, files, members) if a.kind == "archive_then_delete" else 0
        audit.record(state, f"storage_{a.kind}", rule=a.rule, unit=a.unit, job_id=a.job_id, archive=str(path),
                     files=len(files), bytes=a.bytes, removed=removed, reason=a.reason, policy=a.source)
    elif a.kind == "delete":
        for rel in files:
            (unit / rel).unlink()
        archive.prune_dirs(unit, files)
        audit.record(state, "storage_delete", rule=a.rule, unit=a.unit, job_id=a.job_id, files=len(files),
                     bytes=a.bytes, reason=a.reason, policy=a.source)


def apply(plan: Plan, state: Path, simulate: bool = False) -> Outcome:
    out = Outcome()
    for a in plan.actions:
        try:
            run_action(a, state, simulate)
            out.done.append(a)
        except (archive.ArchiveError, OSError) as e:
            log.error("%s of %s/%s failed: %s", a.kind, Path(a.root).name, a.unit, e)
            audit.record(state, "storage_failed", rule=a.rule, unit=a.unit, kind=a.kind, error=str(e))
            out.failed.append((a, str(e)))
    return out
