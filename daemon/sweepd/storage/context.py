"""What every storage command needs: the policy files in force, the protected jobs, a plan."""

from __future__ import annotations

import os
from collections.abc import Container
from pathlib import Path

from sweepd import paths
from sweepd.paths import Layout, job_of
from sweepd.storage import policy as policy_mod
from sweepd.storage.index import KEEP_FILE, PathIndex
from sweepd.storage.lock import StorageLock
from sweepd.storage.planner import Plan, Planner, Scope, scopes, why_protected
from sweepd.storage.policy import Policy, Rule
from sweepd.storage.protection import ActiveJobs, active_jobs


def user_policy_dir() -> Path:
    return paths.config_dir() / "policies"


def policy_files(explicit: list[Path] | None = None) -> list[Path]:
    if explicit:
        return [Path(p) for p in explicit]
    return sorted(user_policy_dir().glob("*.toml"))


def rules_of(policies: list[tuple[Path, Policy]]) -> list[tuple[Rule, str]]:
    return [(rule, str(path)) for path, pol in policies for rule in pol.rules]


def protected_jobs(layout: Layout) -> ActiveJobs:
    """The jobs no policy may touch now (:mod:`sweepd.storage.protection`: queue, foreground runs, SLURM)."""
    return active_jobs(layout)


class IndexCache:
    """One PathIndex per (path, include, exclude), scanned on first use; the daemon keeps them current."""

    def __init__(self) -> None:
        self.indexes: dict[tuple, PathIndex] = {}

    def get(self, rule: Rule, scope: Scope) -> PathIndex:
        key = (str(scope.base), scope.within, tuple(rule.include), tuple(rule.exclude))
        if key not in self.indexes:
            self.indexes[key] = PathIndex(scope.base, rule.include, rule.exclude, scope.within).scan()
        return self.indexes[key]


def storage_lock(layout: Layout, timeout_s: float = 600.0, waiting=None) -> StorageLock:
    """The root's storage lock, held (see :mod:`sweepd.storage.lock`); release it, or use it in `with`."""
    return StorageLock(layout.state).acquire(timeout_s, waiting)


def protection_now(layout: Layout, root: str, units: set[str], protected: Container[str]) -> dict[str, str]:
    """Why each of these units is protected now (for checking a saved plan); unprotected ones are absent."""
    whys = {u: why_protected(os.path.lexists(Path(root) / u / KEEP_FILE), job_of(u),
                             protected) for u in units}
    return {u: why for u, why in whys.items() if why is not None}


def make_plan(layout: Layout, policies: list[tuple[Path, Policy]], cache: IndexCache | None = None,
              protected: Container[str] | None = None, now: float | None = None) -> Plan:
    cache = cache or IndexCache()
    prot = protected_jobs(layout) if protected is None else protected
    return Planner(layout, prot, cache.get, now=now).plan(rules_of(policies))


def load_policies(explicit: list[Path] | None = None) -> list[tuple[Path, Policy]]:
    return policy_mod.load_all(policy_files(explicit))


def load_checked(layout: Layout, files: list[Path]) -> list[tuple[Path, Policy]]:
    """Policy files loaded and every rule path checked against this root: what `policy check`, every storage
    command and the daemon's (re)load accept. Raises ConfigError or PolicyError with the file and value."""
    pols = policy_mod.load_all(files)
    for _, pol in pols:
        for rule in pol.rules:
            scopes(layout, rule)
    return pols
