"""Client commands that act on one sweep: submit, cancel, logs (status and list are in
:mod:`sweepd.cli.listing`). They work through the root's files and queue database (no network
port), the same whether the daemon runs or not, on the one catalogue of :mod:`sweepd.catalogue`."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from sweepd import paths
from sweepd.cli.common import EXIT_INPUT, RootOpt, app, console, err, fail, guarded, layout_of
from sweepd.catalogue import open_queue_readonly
from sweepd.cli.listing import no_daemon_hint, writable_queue
from sweepd.queue import FINAL, QueueError
from sweepd.errors import QueueFault
from sweepd.records.manifest import SweepManifest
from sweepd.vocab import ListedState, Origin


@app.command()
def submit(request_file: Path, root: Optional[Path] = RootOpt,
           force: bool = typer.Option(False, "--force", help="submit even if the images would not fit")) -> None:
    """Validate a request, then drop it into the spool atomically; prints the sweep id."""
    from sweepd import configfile
    from sweepd.request import SweepRequest
    from sweepd.spool import new_sweep_id

    def go() -> int:
        req = configfile.load(SweepRequest, request_file)
        from sweepd import settings as settings_mod
        from sweepd.ops.admission import Admission, admit

        layout = layout_of(root)
        admit(req, str(request_file), Admission.of(settings_mod.load()), layout)  # what the daemon would refuse
        if not force:
            from sweepd.fit import check

            check(req, layout)
        incoming = layout.incoming
        paths.ensure_writable(incoming)
        incoming.mkdir(parents=True, exist_ok=True)
        sweep_id = new_sweep_id()
        final = incoming / f"{sweep_id}{request_file.suffix.lower()}"
        tmp = incoming / f".{final.name}.tmp"  # ignored by the daemon until renamed
        tmp.write_bytes(request_file.read_bytes())
        os.replace(tmp, final)
        console.print(sweep_id, highlight=False)
        from sweepd.daemon.pidlock import daemon_pid

        if not daemon_pid(layout.daemon_lock):
            err.print(f"warning: {no_daemon_hint(layout)}", highlight=False)
        return 0

    raise typer.Exit(guarded(go))


@app.command()
def cancel(sweep: str, root: Optional[Path] = RootOpt) -> None:
    """Cancel a sweep: a queued one at once, a running one after its current trial (clocks are reset).
    A SLURM sweep's jobs get scancel at once (SIGTERM, then SIGKILL after SLURM's KillWait)."""
    def go() -> int:
        layout = layout_of(root)
        reader = open_queue_readonly(layout)
        known = reader is not None and reader.get(sweep) is not None
        if reader is not None:
            reader.close()
        if not known:
            return _cancel_other(layout, sweep)
        q = writable_queue(layout)
        try:
            outcome = q.request_cancel(sweep)
        except QueueFault:
            raise  # the queue failed now (held, full, damaged): its own line and exit code
        except QueueError as e:  # no such sweep, or one that already ended
            return fail(str(e), EXIT_INPUT)
        row, note = q.get(sweep), " (stops after the current trial)" if outcome == "cancelling" else ""
        if outcome == "cancelling" and row.executor == "slurm":
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


def _cancel_other(layout: paths.Layout, key: str) -> int:
    from sweepd import catalogue

    e = catalogue.find(layout, key)
    if e is None:
        return fail(f"no sweep {key!r} under {layout.root} (queue, spool/incoming/ or results/)", EXIT_INPUT)
    if e.origin == Origin.FOREGROUND:
        if e.state != "running":
            return fail(f"sweep {key} (run in the foreground) is already {e.state}", EXIT_INPUT)
        return fail(f"sweep {key} runs in the foreground (sweepd run): stop it with Ctrl-C where it runs; "
                    "it stops after its current trial and resets the clocks", EXIT_INPUT)
    # waiting in spool/incoming/: moved aside (never deleted), so no daemon takes it in later
    from sweepd.ops.admission import set_aside

    src = Path(e.path)
    paths.ensure_writable(layout.rejected)
    layout.rejected.mkdir(parents=True, exist_ok=True)
    target = set_aside(src, layout.rejected, f"sweepd: {src.name} was cancelled by user before any daemon took it in\n")
    console.print(f"{key}: cancelled (it was waiting in spool/incoming/; the request is kept as {target})",
                  highlight=False)
    return 0


@app.command()
def logs(sweep: str, root: Optional[Path] = RootOpt,
         follow: bool = typer.Option(False, "--follow", "-f", help="keep printing until the sweep ends")) -> None:
    """A sweep's log: results/job_<ID>/sweep.log, or for a SLURM sweep each of its jobs' logs in
    results/slurm/<sweep id>/ (one per shard and attempt) and the merge's."""
    layout = layout_of(root)
    q = open_queue_readonly(layout)
    row = q.get(sweep) if q is not None else None
    if row is None:
        raise typer.Exit(_logs_other(layout, sweep, follow))
    pos: dict[Path, int] = {}

    def files() -> list[Path]:
        if row.executor != "slurm":
            return [layout.job_results(row.job_id) / "sweep.log"]
        from sweepd.slurm.script import submission_dir

        d = submission_dir(layout, row.id)
        return sorted(d.glob("shard-*.log"), key=lambda p: (p.stat().st_mtime, p.name)) + [d / "merge.log"]

    while True:
        for path in files():
            if not path.exists():
                continue
            with open(path, "rb") as fh:
                fh.seek(pos.get(path, 0))
                chunk = fh.read()
            if chunk and row.executor == "slurm":
                sys.stdout.write(f"==> {path.name} <==\n")
            pos[path] = pos.get(path, 0) + len(chunk)
            sys.stdout.write(chunk.decode(errors="replace"))
            sys.stdout.flush()
        if not follow or q.get(sweep).state in FINAL + ("interrupted",):
            break
        time.sleep(0.5)


def _logs_other(layout: paths.Layout, key: str, follow: bool) -> int:
    from sweepd import catalogue

    e = catalogue.find(layout, key)
    if e is None:
        return fail(f"no sweep {key!r} under {layout.root} (queue, spool/incoming/ or results/)", EXIT_INPUT)
    if e.origin == Origin.SPOOL:
        return fail(f"sweep {key} is waiting in spool/incoming/: no log until a daemon runs it. "
                    f"{no_daemon_hint(layout)}", EXIT_INPUT)
    log = layout.job_results(e.job_id) / "sweep.log"
    pos = 0
    while True:
        try:
            with open(log, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
        except FileNotFoundError:
            return fail(f"sweep {key} ran in the foreground and wrote no log at {log}", EXIT_INPUT)
        pos += len(chunk)
        sys.stdout.write(chunk.decode(errors="replace"))
        sys.stdout.flush()
        again = catalogue.foreground_entry(SweepManifest.path_in(log.parent))  # this job's own file, not the catalogue
        if not follow or again is None or again.state != ListedState.RUNNING:
            return 0
        time.sleep(0.5)
