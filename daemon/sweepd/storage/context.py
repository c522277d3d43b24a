"""What every storage command needs: the policy files in force, the protected jobs, a plan."""

from __future__ import annotations

import os
from pathlib import Path

from sweepd.errors import StorageError
from sweepd import paths
from sweepd.paths import Layout, job_of
from sweepd.storage import policy as policy_mod
from sweepd.storage.index import KEEP_FILE, PathIndex
from sweepd.storage.lock import StorageLock
from sweepd.storage.planner import Plan, Planner, Scope, why_protected
from sweepd.storage.policy import Policy, Rule


def user_policy_dir() -> Path:
    return paths.config_dir() / "policies"


def policy_files(explicit: list[Path] | None = None) -> list[Path]:
    if explicit:
        return [Path(p) for p in explicit]
    return sorted(user_policy_dir().glob("*.toml"))


def rules_of(policies: list[tuple[Path, Policy]]) -> list[tuple[Rule, str]]:
    return [(rule, str(path)) for path, pol in policies for rule in pol.rules]


class ProtectionUnknown(StorageError):
    """SLURM is here but did not say which jobs are pending or running: nothing may be deleted."""


def protected_jobs(layout: Layout) -> set[str]:
    """Jobs never touched: queued or running in this root's queue (a SLURM sweep is `running` from its
    submission until its merge), and every pending or running SLURM job of this user, whoever
    submitted it (a `sweepd run` inside one's own sbatch script writes to job_<SLURM_JOB_ID>)."""
    out: set[str] = set()
    db = layout.queue_db
    if db.exists():
        from sweepd.queue import Queue

        q = Queue(db)
        try:
            out = {r.job_id for r in q.list(("queued", "running"))}
        finally:
            q.close()
    return out | slurm_active_jobs()


def slurm_active_jobs() -> set[str]:
    """Ids of this user's pending and running SLURM jobs: 123, and for array tasks 123_4 and 123."""
    from sweepd.slurm import commands

    if not commands.available():
        return set()
    try:
        jobs = commands.squeue()
    except commands.SlurmError as e:
        raise ProtectionUnknown(f"cannot tell which SLURM jobs are pending or running ({e}): "
                                "nothing is deleted until squeue answers") from None
    out = set()
    for j in jobs.values():
        if j.active:
            out.add(j.job_id)
            out.add(j.job_id.split("_")[0])
    return out


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


def protection_now(layout: Layout, root: str, units: set[str], protected: set[str]) -> dict[str, str]:
    """Why each of these units is protected now (for checking a saved plan); unprotected ones are absent."""
    whys = {u: why_protected(os.path.lexists(Path(root) / u / KEEP_FILE), job_of(u),
                             protected) for u in units}
    return {u: why for u, why in whys.items() if why is not None}


def make_plan(layout: Layout, policies: list[tuple[Path, Policy]], cache: IndexCache | None = None,
              protected: set[str] | None = None, now: float | None = None) -> Plan:
    cache = cache or IndexCache()
    prot = protected_jobs(layout) if protected is None else protected
    return Planner(layout, prot, cache.get, now=now).plan(rules_of(policies))


def load_policies(explicit: list[Path] | None = None) -> list[tuple[Path, Policy]]:
    return policy_mod.load_all(policy_files(explicit))
