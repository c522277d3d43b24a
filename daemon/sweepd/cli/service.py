"""`sweepd serve`, `sweepd worker` and `sweepd install-service`: the daemon side of the command line."""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from sweepd import paths, settings as settings_mod
from sweepd.cli.common import layout_of, EXIT_INPUT, ImagesOpt, ResultsOpt, RootOpt, app, console, err, fail, guarded


@app.command()
def serve(
    root: Optional[Path] = RootOpt, images_dir: Optional[Path] = ImagesOpt, results_dir: Optional[Path] = ResultsOpt,
    config: Optional[Path] = typer.Option(None, "--config", help="settings file (wins over all others)"),
    once: bool = typer.Option(False, "--once", help="take in the spool, run what is queued, exit"),
) -> None:
    """Run the daemon: watch spool/incoming/, queue requests, run sweeps (systemd Type=notify)."""
    from sweepd.daemon import journal
    from sweepd.daemon.pidlock import AlreadyRunning
    from sweepd.daemon.serve import Daemon

    def go() -> int:
        s = settings_mod.load(config)
        journal.setup(s.log_level)
        layout = settings_mod.layout(root, images_dir, results_dir, s)
        for folder in (layout.state, layout.spool):  # one clear line on an unwritable root
            paths.ensure_writable(folder)
        try:
            return Daemon(s, layout, config, once).run()
        except AlreadyRunning as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False)
            return EXIT_INPUT

    raise typer.Exit(guarded(go))


@app.command(hidden=True)
def worker(sweep_id: Optional[str] = typer.Argument(None), root: Optional[Path] = RootOpt,
           images_dir: Optional[Path] = ImagesOpt, results_dir: Optional[Path] = ResultsOpt,
           spec: Optional[Path] = typer.Option(None, "--spec", help="SLURM: the request file the daemon wrote"),
           shard: int = typer.Option(0, "--shard", help="SLURM: which shard of a split sweep"),
           job_id: Optional[str] = typer.Option(None, "--job-id", help="SLURM: resume this job's shard")) -> None:
    """Run one queued sweep (started by the daemon), or with --spec one shard of a SLURM sweep."""
    layout = layout_of(root, images_dir, results_dir)
    if spec is not None:
        from sweepd.slurm.node import main as node_main

        raise typer.Exit(node_main(spec, shard, layout, job_id))
    if not sweep_id:
        raise typer.Exit(fail("give a sweep id (or --spec FILE under SLURM)", EXIT_INPUT))
    from sweepd.daemon.worker import main

    raise typer.Exit(main(sweep_id, layout))


@app.command()
def merge(job: str = typer.Argument(..., help="the job id of a split sweep (its SLURM job id)"),
          root: Optional[Path] = RootOpt, images_dir: Optional[Path] = ImagesOpt,
          results_dir: Optional[Path] = ResultsOpt) -> None:
    """Merge a split sweep's shards (results/job_<ID>/shards/*) into one result and report.

    The daemon runs this when every shard is done; run it by hand to merge again."""
    from sweepd.slurm.merge import merge_and_report

    def go() -> int:
        top = merge_and_report(layout_of(root, images_dir, results_dir), paths.job_of(job) or job)
        console.print(f"merged into {top}", highlight=False)
        return 0

    raise typer.Exit(guarded(go))


@app.command("install-service")
def install_service(
    root: Optional[Path] = RootOpt, images_dir: Optional[Path] = ImagesOpt, results_dir: Optional[Path] = ResultsOpt,
    config: Optional[Path] = typer.Option(None, "--config", help="settings file the service reads (wins over all others)"),
    unit_dir: Path = typer.Option(Path.home() / ".config/systemd/user", help="where user units live"),
) -> None:
    """Write the systemd user unit for `sweepd serve` and print how to enable it."""
    import shlex

    text = resources.files("sweepd.systemd").joinpath("sweepd.service").read_text()
    # the console script on PATH; else this very interpreter (`python -m sweepd` has no script of its own)
    exe = shutil.which("sweepd") or f"{sys.executable} -m sweepd"
    args = [(flag, value) for flag, value in (("--root", root), ("--images-dir", images_dir),
                                              ("--results-dir", results_dir), ("--config", config)) if value]
    start = f"{exe} serve" + "".join(f" {flag} {shlex.quote(str(Path(v).expanduser().absolute()))}"
                                     for flag, v in args)
    text = text.replace("ExecStart=/usr/bin/env sweepd serve", f"ExecStart={start}")
    unit_dir.mkdir(parents=True, exist_ok=True)
    target = unit_dir / "sweepd.service"
    from sweepd import atomic

    atomic.write_text(target, text)
    console.print(f"wrote {target}\nnow run:\n  systemctl --user daemon-reload\n"
                  f"  systemctl --user enable --now sweepd\n  loginctl enable-linger $USER", highlight=False)
