"""Client commands: submit, status, list, cancel, logs. They work through the root's files and
queue database (no network port), so they work the same whether the daemon runs or not."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sweepd import paths
from sweepd.cli import EXIT_INPUT, RootOpt, app, console, fail, guarded
from sweepd.queue import FINAL, Queue, QueueError


def _layout(root: Optional[Path]) -> paths.Layout:
    return paths.Layout.resolve(root)


def _queue(layout: paths.Layout) -> Queue:
    return Queue(layout.state / "queue.sqlite")


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _row_dict(layout: paths.Layout, row) -> dict:
    from sweepd.daemon.worker import read_status

    out = {k: row[k] for k in row.keys() if k not in ("request",)}
    out["progress"] = read_status(layout, row["job_id"]) if row["state"] in ("running",) else {}
    out["results_dir"] = str(layout.job_results(row["job_id"]))
    return out


def _progress(p: dict) -> str:
    if not p.get("clocks"):
        return p.get("state", "")
    last = f", {p['last_j_per_image']:.1f} J/img" if p.get("last_j_per_image") else ""
    return f"clock {p['clock']}/{p['clocks']} {p.get('freq')}, trial {p['trials_done']}/{p['trials_per_clock']}{last}"


@app.command()
def submit(request_file: Path, root: Optional[Path] = RootOpt,
           force: bool = typer.Option(False, "--force", help="submit even if the images would not fit")) -> None:
    """Validate a request, then drop it into the spool atomically; prints the sweep id."""
    from sweepd import configfile
    from sweepd.request import SweepRequest
    from sweepd.spool import check_clocks, new_sweep_id

    def go() -> int:
        req = configfile.load(SweepRequest, request_file)
        check_clocks(req)
        layout = _layout(root)
        if not force:
            from sweepd.report.fit import check

            check(req, layout)
        incoming = layout.root / "spool" / "incoming"
        incoming.mkdir(parents=True, exist_ok=True)
        sweep_id = new_sweep_id()
        final = incoming / f"{sweep_id}{request_file.suffix.lower()}"
        tmp = incoming / f".{final.name}.tmp"  # ignored by the daemon until renamed
        tmp.write_bytes(request_file.read_bytes())
        os.replace(tmp, final)
        console.print(sweep_id, highlight=False)
        return 0

    raise typer.Exit(guarded(go))


@app.command()
def status(sweep: Optional[str] = typer.Argument(None, help="sweep id or job id"), root: Optional[Path] = RootOpt,
           as_json: bool = typer.Option(False, "--json")) -> None:
    """The daemon's state, or one sweep's."""
    from sweepd.daemon.pidlock import daemon_pid

    layout = _layout(root)

    def go() -> int:
        q = _queue(layout)
        if sweep:
            row = q.get(sweep)
            if row is None:
                return fail(f"no sweep {sweep!r} in {layout.state / 'queue.sqlite'}", EXIT_INPUT)
            d = _row_dict(layout, row)
            if as_json:
                print(json.dumps(d, indent=2))
            else:
                for k in ("id", "job_id", "state", "priority", "worker", "pid", "resumes", "exit_status", "error",
                          "source", "results_dir"):
                    console.print(f"{k:>12}: {d[k] if d[k] is not None else ''}", highlight=False)
                for k in ("submitted_at", "started_at", "ended_at"):
                    console.print(f"{k:>12}: {_when(d[k])}", highlight=False)
                if d["progress"]:
                    console.print(f"{'progress':>12}: {_progress(d['progress'])}", highlight=False)
            return 0
        pid = daemon_pid(layout.state / "daemon.lock")
        try:
            daemon = json.loads((layout.state / "daemon.json").read_text()) if pid else {}
        except (OSError, ValueError):
            daemon = {}
        out = {"daemon_pid": pid, "daemon_status": daemon.get("status"), "settings_error": daemon.get("settings_error"),
               "policy_error": daemon.get("policy_error"), "counts": q.counts(), "root": str(layout.root)}
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
        console.print("sweeps: " + ", ".join(f"{n} {s}" for s, n in out["counts"].items() if n) or "sweeps: none",
                      highlight=False)
        return 0

    raise typer.Exit(guarded(go))


@app.command("list")
def list_(root: Optional[Path] = RootOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """Every sweep in the queue, oldest first."""
    layout = _layout(root)
    rows = [_row_dict(layout, r) for r in _queue(layout).list()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    t = Table(title=f"sweeps in {layout.root}", title_justify="left")
    for col in ("sweep", "job", "state", "prio", "submitted", "progress / error"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["id"], r["job_id"], r["state"], str(r["priority"]), _when(r["submitted_at"]),
                  _progress(r["progress"]) if r["state"] == "running" else (r["error"] or ""))
    console.print(t)


@app.command()
def cancel(sweep: str, root: Optional[Path] = RootOpt) -> None:
    """Cancel a sweep: a queued one at once, a running one after its current trial (clocks are reset)."""
    def go() -> int:
        try:
            outcome = _queue(_layout(root)).request_cancel(sweep)
        except QueueError as e:
            return fail(str(e), EXIT_INPUT)
        console.print(f"{sweep}: {outcome}" + (" (stops after the current trial)" if outcome == "cancelling" else ""),
                      highlight=False)
        return 0

    raise typer.Exit(guarded(go))


@app.command()
def logs(sweep: str, root: Optional[Path] = RootOpt,
         follow: bool = typer.Option(False, "--follow", "-f", help="keep printing until the sweep ends")) -> None:
    """A sweep's log (results/job_<ID>/sweep.log)."""
    layout = _layout(root)
    q = _queue(layout)
    row = q.get(sweep)
    if row is None:
        raise typer.Exit(fail(f"no sweep {sweep!r}", EXIT_INPUT))
    path = layout.job_results(row["job_id"]) / "sweep.log"
    pos = 0
    while True:
        if path.exists():
            with open(path, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
                pos += len(chunk)
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        if not follow or q.get(sweep)["state"] in FINAL + ("interrupted",):
            break
        time.sleep(0.5)
