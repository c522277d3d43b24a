"""Seeing the sweeps: `sweepd status` and `sweepd list`, and the helpers every client command shares
to find and show them. Both only read (a read-only root works) and see one catalogue
(:mod:`sweepd.catalogue`): the queue, requests still waiting in spool/incoming/, foreground jobs."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from sweepd import paths
from sweepd.cli.common import EXIT_INPUT, RootOpt, app, console, fail, guarded, layout_of
from sweepd.catalogue import Entry, open_queue_readonly
from sweepd.errors import QueueFault
from sweepd.queue import Queue
from sweepd.records.status import DaemonState
from sweepd.vocab import ListedState, Origin, SweepState


def writable_queue(layout: paths.Layout) -> Queue:
    """The queue for writing (cancel): an unwritable root is one clear line, not a traceback."""
    try:
        return Queue(layout.queue_db)
    except (OSError, QueueFault) as e:
        if isinstance(e, QueueFault) and e.busy:
            raise  # another process holds the queue: said as such, try again
        raise paths.RootNotWritable(f"{layout.state}: {getattr(e, 'strerror', None) or e}: the queue cannot be "
                                    "written there; choose a writable root with --root or SWEEPD_ROOT") from None


SILENT_S = 60.0  # a daemon touches state/daemon.json every step (at most ~15 s apart); this long without: not serving


def _silent_for(layout: paths.Layout) -> float | None:
    """How long a live daemon has not touched daemon.json, when that is over SILENT_S (SIGSTOP, a hang); else None."""
    try:
        age = time.time() - layout.daemon_state.stat().st_mtime
    except OSError:
        return None  # not written yet (starting), or not readable: nothing to say
    return age if age > SILENT_S else None


def no_daemon_hint(layout: paths.Layout) -> str:
    return (f"no daemon is running on {layout.root}: the request waits in spool/incoming/ until one takes it in; "
            "start one with `sweepd serve` (or `sweepd serve --once` to run the queue and exit)")


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _shards_line(e: Entry) -> str:
    """One line for a SLURM sweep: its job and each shard's state."""
    row = e.row
    if not row.slurm_job_id:
        if row.state == SweepState.QUEUED:
            return "to be submitted to SLURM" + (f" ({row.error})" if row.error else "")
        return row.error or ""
    parts = []
    for sh in e.shards:
        p = sh.progress
        what = p.progress_line() if p and p.clocks else (sh.row.slurm_state or sh.row.state)
        parts.append(f"{sh.row.slurm_id} {sh.row.state}" + (f" ({what})" if what and what != sh.row.state else ""))
    return f"SLURM {row.slurm_job_id}: " + "; ".join(parts)


@app.command()
def status(sweep: Optional[str] = typer.Argument(None, help="sweep id or job id"), root: Optional[Path] = RootOpt,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """The daemon's state, or one sweep's."""
    from sweepd.daemon.pidlock import daemon_pid

    layout = layout_of(root)

    def go() -> int:
        from sweepd import catalogue

        q = open_queue_readonly(layout)
        if sweep:
            row = q.get(sweep) if q is not None else None
            if row is None:
                return _status_other(layout, sweep, as_json)
            e = catalogue.with_progress(layout, catalogue.queue_entry(row), q)
            if as_json:
                print(json.dumps(e.to_json(layout), indent=2))
                return 0
            fields = {"id": row.id, "job_id": row.job_id, "state": row.state, "executor": row.executor,
                      "priority": row.priority}
            fields |= {"slurm_job_id": row.slurm_job_id} if row.slurm else {
                "worker": row.worker, "pid": row.pid, "resumes": row.resumes}
            fields |= {"exit_status": row.exit_status, "error": row.error, "source": row.source,
                       "results_dir": layout.job_results(row.job_id)}
            for k, v in fields.items():
                console.print(f"{k:>12}: {v if v is not None else ''}", highlight=False)
            for k, ts in (("submitted_at", row.submitted_at), ("started_at", row.started_at), ("ended_at", row.ended_at)):
                console.print(f"{k:>12}: {_when(ts)}", highlight=False)
            if e.progress:
                console.print(f"{'progress':>12}: {e.progress.progress_line()}", highlight=False)
            for sh in e.shards:
                tries = [h.slurm_id + (f" {h.slurm_state}" if h.ended else "") for h in sh.row.history]
                what = sh.progress.progress_line() if sh.progress else (sh.row.slurm_state or "")
                console.print(f"{'shard ' + str(sh.row.shard):>12}: {sh.row.state}, SLURM {sh.row.slurm_id} {what}"
                              + (f"; attempts: {', '.join(tries)}" if len(tries) > 1 else "")
                              + (f"; {sh.row.error}" if sh.row.error and sh.row.state != "done" else ""),
                              highlight=False)
            _print_doubts(layout, row.job_id, row.state)
            return 0
        pid = daemon_pid(layout.daemon_lock)
        daemon = (DaemonState.read_or_none(layout.daemon_state) if pid else None) or DaemonState()
        counts = q.counts() if q is not None else {}
        rows = q.list() if q is not None else []
        others = catalogue.waiting_requests(layout, {r.id for r in rows}) + catalogue.foreground_jobs(
            layout, {r.job_id for r in rows})
        for e in others:
            counts[e.state] = counts.get(e.state, 0) + 1
        silent = _silent_for(layout) if pid else None
        out = {"daemon_pid": pid, "daemon_responding": pid is not None and silent is None,
               "daemon_status": daemon.status, "settings_error": daemon.settings_error,
               "policy_error": daemon.policy_error, "fault": daemon.fault, "counts": counts, "root": str(layout.root)}
        if q is not None:
            q.close()
        if as_json:
            print(json.dumps(out, indent=2))
            return 0
        state = "not running" if not pid else f"running, pid {pid}" if silent is None else \
            f"pid {pid}, NOT RESPONDING for {silent:.0f} s (stopped or hung: its status below is that old)"
        console.print(f"daemon: {state} (root {layout.root})", highlight=False)
        if daemon.status:
            console.print(f"status: {daemon.status}", highlight=False)
        for what, error in (("settings", daemon.settings_error), ("policy", daemon.policy_error)):
            if error:
                console.print(f"[red]{what} error (the last valid {what} stays in force):[/] {escape(str(error))}", highlight=False)
        if daemon.fault:
            console.print(f"[red]fault (the daemon goes on and tries again; requests wait in spool/incoming/):[/] "
                          f"{daemon.fault}", highlight=False)
        console.print("sweeps: " + (", ".join(f"{n} {s}" for s, n in counts.items() if n) or "none"), highlight=False)
        if counts.get(ListedState.WAITING) and not pid:
            console.print(f"note: {no_daemon_hint(layout)}", highlight=False)
        return 0

    raise typer.Exit(guarded(go))


def _status_other(layout: paths.Layout, key: str, as_json: bool) -> int:
    """status of a sweep the queue does not hold: waiting in the spool, or run in the foreground."""
    from sweepd import catalogue

    e = catalogue.find(layout, key)
    if e is None:
        return fail(f"no sweep {key!r} under {layout.root} (queue, spool/incoming/ or results/)", EXIT_INPUT)
    if as_json:
        print(json.dumps(e.to_json(layout), indent=2))
        return 0
    fields = {"id": e.id, "job_id": e.job_id, "state": e.state, "origin": e.origin, "error": e.error,
              "results_dir": layout.job_results(e.job_id) if e.job_id else "",
              "spool_path": e.path if e.origin == Origin.SPOOL else ""}
    for k, v in fields.items():
        if v:
            console.print(f"{k:>12}: {v}", highlight=False)
    console.print(f"{'submitted_at' if e.origin == Origin.SPOOL else 'started_at':>12}: {_when(e.submitted_at)}",
                  highlight=False)
    if e.origin == Origin.SPOOL:
        console.print(f"note: {no_daemon_hint(layout)}", highlight=False)
    else:
        _print_doubts(layout, e.job_id, e.state)
    return 0


def _print_doubts(layout: paths.Layout, job_id: str, state: str) -> None:
    """What the report knows is doubtful about a finished sweep's answer, said here too."""
    if state not in ("done", "failed", "cancelled", "interrupted"):
        return
    from sweepd.report.flags import doubts

    for line in doubts(layout.job_results(job_id)):
        console.print(f"[yellow]flag:[/] {escape(line)}", highlight=False)


@app.command("list")
def list_(root: Optional[Path] = RootOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every sweep of the root, oldest first: queued or run by the daemon, waiting in spool/incoming/,
    or run in the foreground (`sweepd run`)."""
    from sweepd import catalogue

    layout = layout_of(root)

    def go() -> int:
        q = open_queue_readonly(layout)
        try:
            rows = [catalogue.with_progress(layout, e, q) if q is not None else e for e in catalogue.entries(layout, q)]
        finally:
            if q is not None:
                q.close()
        if as_json:
            print(json.dumps([e.to_json(layout) for e in rows], indent=2))
            return 0
        t = Table(title=f"sweeps in {layout.root}", title_justify="left")
        for col in ("sweep", "job", "state", "by", "prio", "submitted", "progress / error"):
            t.add_column(col)
        for e in rows:
            if e.executor == "slurm" and e.state in (ListedState.QUEUED, ListedState.RUNNING):
                what = _shards_line(e)
            elif e.state == ListedState.WAITING:
                what = "in spool/incoming/: no daemon has taken it in"
            else:
                what = e.progress.progress_line() if e.state == ListedState.RUNNING and e.progress else (e.error or "")
            by = ("daemon" if e.executor == "local" else "slurm") if e.origin == Origin.QUEUE else e.origin
            t.add_row(e.id, e.job_id, e.state, by, str(e.priority), _when(e.submitted_at), what)
        console.print(t)
        return 0

    raise typer.Exit(guarded(go))
