"""What `sweepd storage report` shows: bytes, files, oldest file and archived share per rule path
and per job, against the rule's caps. Only reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from sweepd.paths import Layout
from sweepd.storage import manifest as manifest_mod
from sweepd.storage.context import IndexCache
from sweepd.storage.planner import scopes
from sweepd.storage.policy import Policy


@dataclass
class JobUsage:
    unit: str
    bytes: int
    files: int
    archived_bytes: int
    oldest: float | None
    protected: bool  # a .keep file


@dataclass
class RuleUsage:
    rule: str
    path: str
    bytes: int
    files: int
    oldest: float | None
    archived_share: float  # of the bytes archived or on disk, the archived part
    max_bytes: int | None
    max_files: int | None
    jobs: list[JobUsage] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def usage(layout: Layout, policies: list[tuple[Path, Policy]]) -> list[RuleUsage]:
    cache, out = IndexCache(), []
    for _, pol in policies:
        for rule in pol.rules:
            adir = Path(rule.archive_dir) if Path(rule.archive_dir).is_absolute() else layout.root / rule.archive_dir
            archived: dict[str, int] = {}
            for m in manifest_mod.manifests(adir):
                archived[m.unit] = archived.get(m.unit, 0) + m.member_bytes
            for scope in scopes(layout, rule):
                idx = cache.get(rule, scope)
                jobs = [JobUsage(u.name, u.bytes, u.nfiles, archived.get(u.name, 0), u.oldest, u.keep_flag)
                        for u in idx.units.values()]
                arch = sum(archived.values())
                out.append(RuleUsage(rule.name, str(scope.path), idx.bytes, idx.nfiles,
                                     min((j.oldest for j in jobs if j.files and j.oldest is not None), default=None),
                                     arch / (arch + idx.bytes) if arch + idx.bytes else 0.0,
                                     rule.max_bytes, rule.max_files, jobs))
    return out
