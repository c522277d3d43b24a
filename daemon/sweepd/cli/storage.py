"""`sweepd policy ...`, `sweepd storage ...` and `sweepd archive ...`: the storage manager's commands."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sweepd.cli.common import layout_of, EXIT_FAILED, EXIT_INPUT, RootOpt, app, console, err, guarded
from sweepd.ops import storage as ops
from sweepd.storage import manifest as manifest_mod
from sweepd.storage.planner import Plan
from sweepd.storage.units import human

policy_app = typer.Typer(help="Check retention policy files.", no_args_is_help=True, rich_markup_mode=None)
storage_app = typer.Typer(help="Plan, apply and report retention policies.", no_args_is_help=True, rich_markup_mode=None)
archive_app = typer.Typer(help="List and restore archived images.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(policy_app, name="policy")
app.add_typer(storage_app, name="storage")
app.add_typer(archive_app, name="archive")

PolicyOpt = typer.Option(None, "--policy", help="policy file (repeatable; default: ~/.config/sweepd/policies/*.toml)")


def _print_plan(plan: Plan) -> None:
    if not plan.actions:
        console.print("nothing to do: every rule holds", highlight=False)
    t = Table(title="storage plan", title_justify="left")
    for col in ("action", "unit", "files", "bytes", "rule", "why"):
        t.add_column(col)
    for a in plan.actions:
        t.add_row(a.kind, f"{Path(a.root).name}/{a.unit}" + ("" if a.whole else " (part)"), str(a.nfiles),
                  human(a.bytes), a.rule, a.reason)
    if plan.actions:
        console.print(t)
        console.print(f"frees {human(plan.bytes)}", highlight=False)
    for n in plan.notes:
        console.print(f"note: {n}", highlight=False)


@policy_app.command("check")
def policy_check(files: list[Path], root: Optional[Path] = RootOpt) -> None:
    """Validate policy files: every problem with its file, field path and value."""
    from sweepd.ops.storage import check_policy_file

    layout = layout_of(root)
    bad = 0
    for f in files:
        c = check_policy_file(layout, f)
        bad += not c.ok
        for line in c.problems:
            err.print(line, highlight=False)
        if c.ok:
            console.print(f"{f}: ok ({c.rules} rule{'s' if c.rules != 1 else ''})", highlight=False)
    raise typer.Exit(EXIT_INPUT if bad else 0)


@storage_app.command("plan")
def storage_plan(policy: Optional[list[Path]] = PolicyOpt, root: Optional[Path] = RootOpt,
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Every action the policies would take now, with the rule and the reason. Touches nothing."""
    layout = layout_of(root)

    def go() -> int:
        plan = ops.plan(layout, policy)
        if as_json:
            print(json.dumps({"actions": [a.to_json() for a in plan.actions], "notes": plan.notes}, indent=1))
        else:
            _print_plan(plan)
        return 0

    raise typer.Exit(guarded(go))


@storage_app.command("apply")
def storage_apply(policy: Optional[list[Path]] = PolicyOpt, root: Optional[Path] = RootOpt,
                  plan_file: Optional[Path] = typer.Option(None, "--plan", help="apply this saved plan (storage plan --json), "
                                                           "narrowed to what the current policy would do"),
                  dry_run: bool = typer.Option(False, "--dry-run", help="show what would run, touch nothing")) -> None:
    """Carry out the plan (archive, verify, then delete), holding the root's storage lock."""
    layout = layout_of(root)

    def go() -> int:
        done = ops.apply_policies(layout, policy, plan_file, dry_run, _say)
        _print_plan(done.plan)
        out = done.outcome
        verb = "would run" if dry_run else "done"
        console.print(f"{verb}: {len(out.done)} action(s)" + (f"; failed: {len(out.failed)}" if out.failed else ""),
                      highlight=False)
        for a, e in out.failed:
            err.print(f"failed: {a.kind} {a.unit}: {e}", highlight=False, markup=False)
        for a, e in out.skipped:
            console.print(f"note: {e}", highlight=False, markup=False)
        return EXIT_FAILED if out.failed else 0

    raise typer.Exit(guarded(go))


def _say(line: str) -> None:
    err.print(line, highlight=False)


@storage_app.command("report")
def storage_report(policy: Optional[list[Path]] = PolicyOpt, root: Optional[Path] = RootOpt,
                   as_json: bool = typer.Option(False, "--json")) -> None:
    """Bytes, files, oldest file and archived share per rule path and per job, against the caps."""
    layout = layout_of(root)

    def go() -> int:
        from sweepd.storage.usage import usage

        rows = usage(layout, ops.policies(layout, policy))
        if as_json:
            print(json.dumps([r.to_json() for r in rows], indent=1))
            return 0
        for r in rows:
            cap = f" / max {human(r.max_bytes)}" if r.max_bytes else ""
            capf = f" / max {r.max_files}" if r.max_files else ""
            oldest = time.strftime("%Y-%m-%d", time.localtime(r.oldest)) if r.oldest else "-"
            console.print(f"rule {r.rule}: {r.path}: {human(r.bytes)}{cap}, {r.files} files{capf}, "
                          f"oldest {oldest}, archived {r.archived_share * 100:.0f} %", highlight=False)
            t = Table(show_header=True)
            for col in ("job", "bytes", "files", "archived", "oldest file"):
                t.add_column(col)
            for j in sorted(r.jobs, key=lambda j: j.oldest or 0.0):
                t.add_row(j.unit + (" (.keep)" if j.protected else ""), human(j.bytes), str(j.files),
                          human(j.archived_bytes),
                          time.strftime("%Y-%m-%d %H:%M", time.localtime(j.oldest)) if j.files and j.oldest else "-")
            console.print(t)
        return 0

    raise typer.Exit(guarded(go))


@storage_app.command("clean")
def storage_clean(
    root: Optional[Path] = RootOpt,
    job_id: Optional[str] = typer.Option(None, "--job-id", help="only this job"),
    older_than: Optional[float] = typer.Option(None, "--older-than", metavar="DAYS"),
    size_limit: Optional[str] = typer.Option(None, "--size-limit", metavar="10G"),
    keep_samples: Optional[int] = typer.Option(None, "--keep-samples", metavar="N", help="keep N images per clock"),
    archive: bool = typer.Option(False, "--archive", help="archive before deleting"),
    dry_run: bool = typer.Option(False, "--dry-run"),
) -> None:
    """The old cleanup script's flags, as an ad-hoc policy: only what the limits select is removed."""
    layout = layout_of(root)

    def go() -> int:
        pol = ops.clean_policy(layout, job_id, older_than, size_limit, keep_samples, archive)
        done = ops.clean(layout, pol, dry_run, _say)
        _print_plan(done.plan)
        out = done.outcome
        console.print(f"{'would run' if dry_run else 'done'}: {len(out.done)} action(s)"
                      + (f"; failed: {len(out.failed)}" if out.failed else ""), highlight=False)
        return EXIT_FAILED if out.failed else 0

    raise typer.Exit(guarded(go))


@storage_app.command("watch")
def storage_watch(policy: Optional[list[Path]] = PolicyOpt, root: Optional[Path] = RootOpt) -> None:
    """Enforce the policies on their schedules and on cap crossings until stopped (what `serve` does too)."""
    import signal
    import threading

    from sweepd.daemon import journal
    from sweepd.procs import steady_malloc
    from sweepd.storage.enforce import StorageManager

    steady_malloc()  # runs for weeks, as the daemon does
    journal.setup("info")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    from sweepd import settings as settings_mod

    mgr = StorageManager(layout_of(root), policy, max_wait_s=settings_mod.load().enforce_max_wait_s)
    mgr.start()
    try:
        while not stop.wait(1):
            pass
    finally:
        mgr.stop()


def _archive_dir(root: Optional[Path], archive_dir: Optional[Path]) -> Path:
    return archive_dir or layout_of(root).root / "archive"


@archive_app.command("list")
def archive_list(root: Optional[Path] = RootOpt, archive_dir: Optional[Path] = typer.Option(None, "--archive-dir"),
                 as_json: bool = typer.Option(False, "--json")) -> None:
    """Archives with their job, member count, size and creation time."""
    ms = manifest_mod.manifests(_archive_dir(root, archive_dir))
    if as_json:
        print(json.dumps([m.model_dump() | {"manifest": m.manifest} for m in ms], indent=1))
        return
    t = Table(title=f"archives in {_archive_dir(root, archive_dir)}", title_justify="left")
    for col in ("archive", "job", "files", "images bytes", "archive bytes", "created", "rule"):
        t.add_column(col)
    for m in ms:
        t.add_row(m.archive, m.unit, str(len(m.members)), human(m.member_bytes), human(m.bytes), m.created,
                  str(m.rule or ""))
    console.print(t)


@archive_app.command("restore")
def archive_restore(job: str = typer.Argument(..., help="the unit: job_<ID>, the job id, or another archived folder"),
                    root: Optional[Path] = RootOpt, to: Optional[Path] = typer.Option(None, "--to"),
                    archive_dir: Optional[Path] = typer.Option(None, "--archive-dir"),
                    force: bool = typer.Option(False, "--force", help="overwrite files that differ")) -> None:
    """Give a job's archived images back, byte for byte (to where they were, or --to DIR)."""
    layout = layout_of(root)

    def go() -> int:
        r = ops.restore_job(layout, job, _archive_dir(root, archive_dir), to, force, _say)
        console.print(f"restored {r.files} file(s) of {r.unit} from {r.archives} archive(s)", highlight=False)
        if to is None:
            console.print(f"to keep it from being archived again: touch {layout.images / r.unit / '.keep'}",
                          highlight=False)
        return 0

    raise typer.Exit(guarded(go))
