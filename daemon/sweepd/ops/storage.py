"""The storage manager's use cases for the command line: check policy files, plan, apply (a saved plan narrowed to
what the policy would do now), clean with the old script's flags, restore an archived job. Each holds the root's
storage lock where it touches files; the daemon enforces the same policies through the same planner and
:func:`sweepd.storage.apply.apply` (:mod:`sweepd.storage.enforce`)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from sweepd import configfile, paths
from sweepd.configfile import ConfigError
from sweepd.errors import InputError
from sweepd.paths import Layout
from sweepd.storage import manifest as manifest_mod
from sweepd.storage.apply import ApplyOutcome, apply, bases
from sweepd.storage.archive import ArchiveError
from sweepd.storage.context import (load_checked, make_plan, policy_files, protected_jobs, protection_now,
                                    storage_lock, user_policy_dir)
from sweepd.storage.planner import Plan, PolicyError
from sweepd.storage.policy import Policy

Say = Callable[[str], None]  # where a line for the user goes (waiting for the lock, a warning)


@dataclass(frozen=True)
class PolicyFileCheck:
    path: Path
    rules: int = 0
    problems: list[str] = field(default_factory=list)  # each with its file, field path and value

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class Applied:
    plan: Plan
    outcome: ApplyOutcome


@dataclass(frozen=True)
class Restored:
    unit: str
    files: int
    archives: int


def policies(layout: Layout, explicit: list[Path] | None) -> list[tuple[Path, Policy]]:
    """The policy files given, or the user's; every rule path checked against this root."""
    files = policy_files(explicit)
    if not files:
        raise InputError(f"no policy: give --policy FILE or put policy files in {user_policy_dir()} "
                         "(examples ship in the project's policies/ folder)")
    return load_checked(layout, files)


def check_policy_file(layout: Layout, path: Path) -> PolicyFileCheck:
    try:
        (_, pol), = load_checked(layout, [path])
    except ConfigError as e:
        return PolicyFileCheck(path, problems=[f"{e.source}: {p}" for p in e.problems])
    except PolicyError as e:
        return PolicyFileCheck(path, problems=[f"{path}: {e}"])
    return PolicyFileCheck(path, len(pol.rules))


def plan(layout: Layout, explicit: list[Path] | None) -> Plan:
    return make_plan(layout, policies(layout, explicit))


def apply_policies(layout: Layout, explicit: list[Path] | None, plan_file: Path | None, dry_run: bool,
                   say: Say) -> Applied:
    """Carry out the plan (archive, verify, then delete) under the root's storage lock. A saved plan is narrowed to
    what the current policy would do, less what became protected since it was made."""
    from sweepd.storage import saved

    with storage_lock(layout, waiting=say):
        pols = policies(layout, explicit)
        prot = protected_jobs(layout)
        p = make_plan(layout, pols, protected=prot)
        if plan_file:
            wanted = saved.load(plan_file)
            now: dict[str, str] = {}
            for a in wanted.actions:
                now.update(protection_now(layout, a.root, {a.unit}, prot))
            p = saved.reconcile(wanted, p, now, str(plan_file))
        return Applied(p, apply(p, layout, simulate=dry_run))


def clean_policy(layout: Layout, job_id: str | None, older_than_days: float | None, size_limit: str | None,
                 keep_samples: int | None, archive: bool) -> Policy:
    """The old cleanup script's flags as a one-rule policy over images/: only what the limits select is removed."""
    if older_than_days is None and size_limit is None and keep_samples is None:
        raise InputError("nothing to do: give --older-than, --size-limit or --keep-samples")
    rule: dict[str, object] = {"name": "clean", "paths": [str(layout.images)],
                               "action": "archive_then_delete" if archive else "delete", "confirm_delete": not archive}
    if job_id:
        rule["include"] = [f"job_{paths.check_job_id(job_id)}/*"]
    if older_than_days is not None:
        rule["max_age"] = f"{older_than_days}d"
    if size_limit is not None:
        rule["max_bytes"] = size_limit.upper().rstrip("B") + ("iB" if size_limit[-1:].isalpha() else "")
    if keep_samples is not None:
        rule["per_job"] = {"keep_samples": keep_samples}
    return configfile.validate(Policy, {"rules": [rule]}, "command line")


def clean(layout: Layout, policy: Policy, dry_run: bool, say: Say) -> Applied:
    with storage_lock(layout, waiting=say):
        p = make_plan(layout, [(Path("command line"), policy)])
        return Applied(p, apply(p, layout, simulate=dry_run))


def restore_job(layout: Layout, job: str, archive_dir: Path, to: Path | None, force: bool, say: Say) -> Restored:
    """A job's archived files back, byte for byte (to where they came from, or ``to``), checked against each
    archive's manifest; never while an archive or delete runs on this root."""
    unit, ms = job, []
    for name in (job, f"job_{job}"):
        if "/" not in name and name not in (".", ".."):
            ms = manifest_mod.manifests(archive_dir, name)
            if ms:
                unit = name
                break
    if not ms:
        raise InputError(f"no archive of {job if job.startswith('job_') else 'job_' + job} in {archive_dir}")
    n = 0
    with storage_lock(layout, waiting=say):
        for m in ms:
            n += _restore_one(layout, archive_dir, m, unit, to, force, say)
    return Restored(unit, n, len(ms))


def restore_target(layout: Layout, m: manifest_mod.ArchiveManifest, say: Say) -> Path:
    """Where a unit goes back to: the folder it came from when that is this root's images/ or results/;
    a manifest naming any other folder is not followed (images/ instead, with a warning)."""
    src = Path(os.path.realpath(m.source_dir))
    if src in bases(layout):
        return src
    say(f"warning: {m.manifest}: source_dir {m.source_dir!r} is not this root's images/ or results/: "
        f"restoring into {layout.images} instead")
    return layout.images


def _restore_one(layout: Layout, adir: Path, m: manifest_mod.ArchiveManifest, unit: str, to: Path | None,
                 force: bool, say: Say) -> int:
    from sweepd.storage.archive import sha256_file
    from sweepd.storage.restore import restore

    target = to or restore_target(layout, m, say)
    written = restore(adir / m.archive, target, unit=unit, force=force)
    for x in m.members:  # the manifest agrees with what came out of the archive
        if x.name.startswith(f"{unit}/") and ".." not in x.name.split("/") and \
                sha256_file(target / x.name) != x.sha256:
            raise ArchiveError(f"{target / x.name}: sha256 differs from the archive's manifest")
    return len(written)
