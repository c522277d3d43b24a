"""Seeing the sweeps: `sweepd status` and `sweepd list`, and the helpers every client command shares
to find and show them. Both only read (a read-only root works) and see one catalogue
(:mod:`sweepd.catalogue`): the queue, requests still waiting in spool/incoming/, foreground jobs."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sweepd import paths
from sweepd.cli.common import EXIT_INPUT, RootOpt, app, console, fail, guarded, layout_of
from sweepd.queue import Queue


def client_layout(root: Optional[Path]) -> paths.Layout:
    return layout_of(root)


def writable_queue(layout: paths.Layout) -> Queue:
    """The queue for writing (cancel): an unwritable root is one clear line, not a traceback."""
    import sqlite3

    try:
        return Queue(layout.state / "queue.sqlite")
    except (OSError, sqlite3.Error) as e:
        raise paths.RootNotWritable(f"{layout.state}: {getattr(e, 'strerror', None) or e}: the queue cannot be "
                                    "written there; choose a writable root with --root or SWEEPD_ROOT") from None


def read_queue(layout: paths.Layout) -> Queue | None:
    from sweepd.catalogue import open_queue_readonly

    return open_queue_readonly(layout)


def _entry_dict(layout: paths.Layout, e) -> dict:
    """A spool or foreground entry in the shape of a queue row's dict."""
    return {"id": e.id, "job_id": e.job_id, "state": e.state, "origin": e.origin, "executor": "local",
            "priority": 0, "submitted_at": e.submitted_at, "error": e.error, "progress": {},
            "results_dir": str(layout.job_results(e.job_id)) if e.job_id else "",
            "spool_path": e.path if e.origin == "spool" else ""}


def no_daemon_hint(layout: paths.Layout) -> str:
    return (f"no daemon is running on {layout.root}: the request waits in spool/incoming/ until one takes it in; "
            "start one with `sweepd serve` (or `sweepd serve --once` to run the queue and exit)")


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _row_dict(layout: paths.Layout, row, q: Queue) -> dict:
    from sweepd.engine.status import read_status, read_status_file
    from sweepd.engine.store import shard_dir

    out = {k: row[k] for k in row.keys() if k not in ("request",)}
    running = row["state"] == "running"
    out["progress"] = read_status(layout, row["job_id"]) if running and row["executor"] == "local" else {}
    out["results_dir"] = str(layout.job_results(row["job_id"]))
    if row["executor"] == "slurm":
        out["shards"] = [{k: sh[k] for k in sh.keys() if k != "history"} | {
            "history": json.loads(sh["history"]),
            "progress": read_status_file(shard_dir(layout, row["job_id"], sh["shard"]) / "status.json")
            if sh["state"] == "running" else {}} for sh in q.shards(row["id"])]
    return out


def _progress(p: dict) -> str:
    if not p.get("clocks"):
        return p.get("state", "")
    last = f", {p['last_j_per_image']:.1f} J/img" if p.get("last_j_per_image") else ""
    return f"clock {p['clock']}/{p['clocks']} {p.get('freq')}, trial {p['trials_done']}/{p['trials_per_clock']}{last}"


def _shards_line(d: dict) -> str:
    """One line for a SLURM sweep: its job and each shard's state."""
    if not d.get("slurm_job_id"):
        if d["state"] == "queued":
            return "to be submitted to SLURM" + (f" ({d['error']})" if d["error"] else "")
        return d["error"] or ""
    parts = []
    for sh in d.get("shards", []):
        what = _progress(sh["progress"]) if sh["progress"].get("clocks") else (sh["slurm_state"] or sh["state"])
        parts.append(f"{sh['slurm_id']} {sh['state']}" + (f" ({what})" if what and what != sh["state"] else ""))
    return f"SLURM {d['slurm_job_id']}: " + "; ".join(parts)


@app.command()
def status(sweep: Optional[str] = typer.Argument(None, help="sweep id or job id"), root: Optional[Path] = RootOpt,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """The daemon's state, or one sweep's."""
    from sweepd.daemon.pidlock import daemon_pid

    layout = client_layout(root)

    def go() -> int:
        from sweepd import catalogue

        q = read_queue(layout)
        if sweep:
            row = q.get(sweep) if q is not None else None
            if row is None:
                return _status_other(layout, sweep, as_json)
            d = _row_dict(layout, row, q)
            if as_json:
                print(json.dumps(d, indent=2))
                return 0
            keys = ("id", "job_id", "state", "executor", "priority") + (
                ("slurm_job_id",) if d["executor"] == "slurm" else ("worker", "pid", "resumes")) + (
                "exit_status", "error", "source", "results_dir")
            for k in keys:
                console.print(f"{k:>12}: {d[k] if d[k] is not None else ''}", highlight=False)
            for k in ("submitted_at", "started_at", "ended_at"):
                console.print(f"{k:>12}: {_when(d[k])}", highlight=False)
            if d["progress"]:
                console.print(f"{'progress':>12}: {_progress(d['progress'])}", highlight=False)
            for sh in d.get("shards", []):
                tries = [h["slurm_id"] + (f" {h.get('slurm_state')}" if h.get("ended") else "") for h in sh["history"]]
                what = _progress(sh["progress"]) if sh["progress"] else (sh["slurm_state"] or "")
                console.print(f"{'shard ' + str(sh['shard']):>12}: {sh['state']}, SLURM {sh['slurm_id']} {what}"
                              + (f"; attempts: {', '.join(tries)}" if len(tries) > 1 else "")
                              + (f"; {sh['error']}" if sh["error"] and sh["state"] != "done" else ""), highlight=False)
            _print_doubts(layout, d["job_id"], d["state"])
            return 0
        pid = daemon_pid(layout.state / "daemon.lock")
        try:
            daemon = json.loads((layout.state / "daemon.json").read_text()) if pid else {}
        except (OSError, ValueError):
            daemon = {}
        counts = q.counts() if q is not None else {}
        others = catalogue.waiting_requests(layout) + catalogue.foreground_jobs(
            layout, {r["job_id"] for r in q.list()} if q is not None else set())
        for e in others:
            counts[e.state] = counts.get(e.state, 0) + 1
        out = {"daemon_pid": pid, "daemon_status": daemon.get("status"), "settings_error": daemon.get("settings_error"),
               "policy_error": daemon.get("policy_error"), "counts": counts, "root": str(layout.root)}
        if q is not None:
            q.close()
        if as_json:
            print(json.dumps(out, indent=2))
            return 0
        console.print(f"daemon: {'running, pid ' + str(pid) if pid else 'not running'} (root {layout.root})",
                      highlight=False)
        if out["daemon_status"]:
            console.print(f"status: {out['daemon_status']}", highlight=False)
        for what in ("settings", "policy"):
            if out[f"{what}_error"]:
                console.print(f"[red]{what} error (the last valid {what} stays in force):[/] {out[f'{what}_error']}",
                              highlight=False)
        console.print("sweeps: " + (", ".join(f"{n} {s}" for s, n in out["counts"].items() if n) or "none"),
                      highlight=False)
        if counts.get("waiting") and not pid:
            console.print(f"note: {no_daemon_hint(layout)}", highlight=False)
        return 0

    raise typer.Exit(guarded(go))


def _status_other(layout: paths.Layout, key: str, as_json: bool) -> int:
    """status of a sweep the queue does not hold: waiting in the spool, or run in the foreground."""
    from sweepd import catalogue

    e = catalogue.find(layout, key)
    if e is None:
        return fail(f"no sweep {key!r} under {layout.root} (queue, spool/incoming/ or results/)", EXIT_INPUT)
    d = _entry_dict(layout, e)
    if as_json:
        print(json.dumps(d, indent=2))
        return 0
    for k in ("id", "job_id", "state", "origin", "error", "results_dir", "spool_path"):
        if d[k]:
            console.print(f"{k:>12}: {d[k]}", highlight=False)
    console.print(f"{'submitted_at' if e.origin == 'spool' else 'started_at':>12}: {_when(d['submitted_at'])}",
                  highlight=False)
    if e.origin == "spool":
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
        console.print(f"[yellow]flag:[/] {line}", highlight=False)


@app.command("list")
def list_(root: Optional[Path] = RootOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every sweep of the root, oldest first: queued or run by the daemon, waiting in spool/incoming/,
    or run in the foreground (`sweepd run`)."""
    from sweepd import catalogue

    layout = client_layout(root)

    def go() -> int:
        q = read_queue(layout)
        rows = []
        try:
            for e in catalogue.entries(layout):
                if e.origin == "queue" and q is not None:
                    rows.append(_row_dict(layout, e.row, q) | {"origin": "queue"})
                else:
                    rows.append(_entry_dict(layout, e))
        finally:
            if q is not None:
                q.close()
        if as_json:
            print(json.dumps(rows, indent=2))
            return 0
        t = Table(title=f"sweeps in {layout.root}", title_justify="left")
        for col in ("sweep", "job", "state", "by", "prio", "submitted", "progress / error"):
            t.add_column(col)
        for r in rows:
            if r["executor"] == "slurm" and r["state"] in ("queued", "running"):
                what = _shards_line(r)
            elif r["state"] == "waiting":
                what = "in spool/incoming/: no daemon has taken it in"
            else:
                what = _progress(r["progress"]) if r["state"] == "running" and r["progress"] else (r["error"] or "")
            by = {"queue": "daemon" if r["executor"] == "local" else "slurm"}.get(r["origin"], r["origin"])
            t.add_row(r["id"], r["job_id"], r["state"], by, str(r["priority"]), _when(r["submitted_at"]), what)
        console.print(t)
        return 0

    raise typer.Exit(guarded(go))
