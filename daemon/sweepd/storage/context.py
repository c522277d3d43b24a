"""What every storage command needs: the policy files in force, the protected jobs, a plan."""

from __future__ import annotations

import os
from pathlib import Path

from sweepd.paths import Layout
from sweepd.storage import policy as policy_mod
from sweepd.storage.index import PathIndex
from sweepd.storage.planner import Plan, Planner
from sweepd.storage.policy import Policy, Rule


def user_policy_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "sweepd" / "policies"


def policy_files(explicit: list[Path] | None = None) -> list[Path]:
    if explicit:
        return [Path(p) for p in explicit]
    return sorted(user_policy_dir().glob("*.toml"))


def rules_of(policies: list[tuple[Path, Policy]]) -> list[tuple[Rule, str]]:
    return [(rule, str(path)) for path, pol in policies for rule in pol.rules]


def protected_jobs(layout: Layout) -> set[str]:
    """Jobs that are queued or running in this root's queue: never touched."""
    db = layout.state / "queue.sqlite"
    if not db.exists():
        return set()
    from sweepd.queue import Queue

    q = Queue(db)
    try:
        return {r["job_id"] for r in q.list(("queued", "running"))}
    finally:
        q.close()


class IndexCache:
    """One PathIndex per (path, include, exclude), scanned on first use; the daemon keeps them current."""

    def __init__(self) -> None:
        self.indexes: dict[tuple, PathIndex] = {}

    def get(self, rule: Rule, root: Path) -> PathIndex:
        key = (str(root), tuple(rule.include), tuple(rule.exclude))
        if key not in self.indexes:
            self.indexes[key] = PathIndex(root, rule.include, rule.exclude).scan()
        return self.indexes[key]


def make_plan(layout: Layout, policies: list[tuple[Path, Policy]], cache: IndexCache | None = None,
              protected: set[str] | None = None, now: float | None = None) -> Plan:
    cache = cache or IndexCache()
    prot = protected_jobs(layout) if protected is None else protected
    return Planner(layout, prot, cache.get, now=now).plan(rules_of(policies))


def load_policies(explicit: list[Path] | None = None) -> list[tuple[Path, Policy]]:
    return policy_mod.load_all(policy_files(explicit))
