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
from sweepd.configfile import ConfigError
from sweepd.queue import FINAL, Queue, QueueError


def _layout(root: Optional[Path]) -> paths.Layout:
    return paths.Layout.resolve(root)


def _queue(layout: paths.Layout) -> Queue:
    return Queue(layout.state / "queue.sqlite")


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _row_dict(layout: paths.Layout, row, q: Queue) -> dict:
    from sweepd.daemon.worker import read_status, read_status_file
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
def submit(request_file: Path, root: Optional[Path] = RootOpt,
           force: bool = typer.Option(False, "--force", help="submit even if the images would not fit")) -> None:
    """Validate a request, then drop it into the spool atomically; prints the sweep id."""
    from sweepd import configfile
    from sweepd.request import SweepRequest
    from sweepd.spool import check_clocks, new_sweep_id

    def go() -> int:
        req = configfile.load(SweepRequest, request_file)
        from sweepd import settings as settings_mod
        from sweepd.spool import executor_problems

        s = settings_mod.load()
        executor = req.executor or s.executor
        problems = executor_problems(req, executor, tuple(s.gpus) or None)  # what the daemon would reject
        if problems:
            raise ConfigError(str(request_file), problems)
        if executor == "local" or req.gpu.backend == "sim":
            check_clocks(req)  # a SLURM sweep's real GPU is on a node: its clocks are checked there
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
    q = _queue(layout)
    rows = [_row_dict(layout, r, q) for r in q.list()]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    t = Table(title=f"sweeps in {layout.root}", title_justify="left")
    for col in ("sweep", "job", "state", "prio", "submitted", "progress / error"):
        t.add_column(col)
    for r in rows:
        if r["executor"] == "slurm" and r["state"] in ("queued", "running"):
            what = _shards_line(r)
        else:
            what = _progress(r["progress"]) if r["state"] == "running" else (r["error"] or "")
        t.add_row(r["id"], r["job_id"], r["state"], str(r["priority"]), _when(r["submitted_at"]), what)
    console.print(t)


@app.command()
def cancel(sweep: str, root: Optional[Path] = RootOpt) -> None:
    """Cancel a sweep: a queued one at once, a running one after its current trial (clocks are reset).
    A SLURM sweep's jobs get scancel at once (SIGTERM, then SIGKILL after SLURM's KillWait)."""
    def go() -> int:
        q = _queue(_layout(root))
        try:
            outcome = q.request_cancel(sweep)
        except QueueError as e:
            return fail(str(e), EXIT_INPUT)
        row, note = q.get(sweep), " (stops after the current trial)" if outcome == "cancelling" else ""
        if outcome == "cancelling" and row["executor"] == "slurm":
            from sweepd.slurm.commands import SlurmError
            from sweepd.slurm.executor import cancel_shards

            try:
                ids = cancel_shards(q, row)  # the daemon does it too, should this fail or no daemon run
                note = f" (scancel {' '.join(ids)}; each stops after its current trial)" if ids else \
                    " (the daemon cancels it once SLURM has taken it)"
            except SlurmError as e:
                note = f" (scancel failed: {e}; the daemon tries again)"
        console.print(f"{sweep}: {outcome}{note}", highlight=False)
        return 0

    raise typer.Exit(guarded(go))


@app.command()
def logs(sweep: str, root: Optional[Path] = RootOpt,
         follow: bool = typer.Option(False, "--follow", "-f", help="keep printing until the sweep ends")) -> None:
    """A sweep's log: results/job_<ID>/sweep.log, or for a SLURM sweep each of its jobs' logs in
    results/slurm/<sweep id>/ (one per shard and attempt) and the merge's."""
    layout = _layout(root)
    q = _queue(layout)
    row = q.get(sweep)
    if row is None:
        raise typer.Exit(fail(f"no sweep {sweep!r}", EXIT_INPUT))
    pos: dict[Path, int] = {}

    def files() -> list[Path]:
        if row["executor"] != "slurm":
            return [layout.job_results(row["job_id"]) / "sweep.log"]
        from sweepd.slurm.script import submission_dir

        d = submission_dir(layout, row["id"])
        return sorted(d.glob("shard-*.log"), key=lambda p: (p.stat().st_mtime, p.name)) + [d / "merge.log"]

    while True:
        for path in files():
            if not path.exists():
                continue
            with open(path, "rb") as fh:
                fh.seek(pos.get(path, 0))
                chunk = fh.read()
            if chunk and row["executor"] == "slurm":
                sys.stdout.write(f"==> {path.name} <==\n")
            pos[path] = pos.get(path, 0) + len(chunk)
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        if not follow or q.get(sweep)["state"] in FINAL + ("interrupted",):
            break
        time.sleep(0.5)
