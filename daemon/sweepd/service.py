"""`sweepd serve`, `sweepd worker` and `sweepd install-service`: the daemon side of the command line."""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path
from typing import Optional

import typer

from sweepd import paths, settings as settings_mod
from sweepd.cli import EXIT_INPUT, ImagesOpt, ResultsOpt, RootOpt, app, console, err, guarded


def layout_for(root: Optional[Path], images: Optional[Path], results: Optional[Path],
               s: settings_mod.Settings | None = None) -> paths.Layout:
    return paths.Layout.resolve(root or (s.root if s and s.root else None), images, results)


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
        try:
            return Daemon(s, layout_for(root, images_dir, results_dir, s), config, once).run()
        except AlreadyRunning as e:
            err.print(f"[bold red]error:[/] {e}", highlight=False)
            return EXIT_INPUT

    raise typer.Exit(guarded(go))


@app.command(hidden=True)
def worker(sweep_id: str, root: Optional[Path] = RootOpt, images_dir: Optional[Path] = ImagesOpt,
           results_dir: Optional[Path] = ResultsOpt) -> None:
    """Run one queued sweep (started by the daemon)."""
    from sweepd.daemon.worker import main

    raise typer.Exit(main(sweep_id, paths.Layout.resolve(root, images_dir, results_dir)))


@app.command("install-service")
def install_service(
    root: Optional[Path] = RootOpt,
    unit_dir: Path = typer.Option(Path.home() / ".config/systemd/user", help="where user units live"),
) -> None:
    """Write the systemd user unit for `sweepd serve` and print how to enable it."""
    text = resources.files("sweepd.systemd").joinpath("sweepd.service").read_text()
    exe = shutil.which("sweepd") or str(Path(sys.argv[0]).resolve())
    start = f"{exe} serve" + (f" --root {Path(root).expanduser().absolute()}" if root else "")
    text = text.replace("ExecStart=/usr/bin/env sweepd serve", f"ExecStart={start}")
    unit_dir.mkdir(parents=True, exist_ok=True)
    target = unit_dir / "sweepd.service"
    from sweepd import atomic

    atomic.write_text(target, text)
    console.print(f"wrote {target}\nnow run:\n  systemctl --user daemon-reload\n"
                  f"  systemctl --user enable --now sweepd\n  loginctl enable-linger $USER", highlight=False)
