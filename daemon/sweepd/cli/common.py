"""What every command module shares: the typer app, the consoles, the options, the exit codes and
`guarded`, which turns sweepd's expected errors into one line and an exit code."""

from __future__ import annotations

import logging
import sys

import typer
from rich.console import Console

from sweepd.configfile import ConfigError
from sweepd.engine.store import JobConflict
from sweepd.freqplan import ClockPlanError
from sweepd.gpu.base import GpuError, GpuPermissionError
from sweepd.queue import QueueError
from sweepd.slurm.commands import SlurmError

# Plain click help (rich_markup_mode=None): typer's rich help prints a "<bool>" placeholder after every flag.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False, rich_markup_mode=None,
                  help="DVFS energy sweeps of Stable Diffusion on NVIDIA GPUs (or a simulated one).")
# Piped or redirected output gets every value in full (rich would cut tables at 80 columns); a terminal
# keeps its own width.
_WIDE = 100_000
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else _WIDE)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else _WIDE)  # never wrapped: greppable

EXIT_FAILED, EXIT_INPUT, EXIT_GPU, EXIT_INTERRUPTED = 1, 2, 3, 4

VerboseOpt = typer.Option(False, "-v", "--verbose", help="log debug detail, library messages included")
RootOpt = typer.Option(None, "--root", envvar="SWEEPD_ROOT", help="sweepd's root folder (default: XDG data dir)")
ImagesOpt = typer.Option(None, "--images-dir", envvar="SWEEPD_IMAGES_DIR", help="images/ elsewhere (e.g. scratch)")
ResultsOpt = typer.Option(None, "--results-dir", envvar="SWEEPD_RESULTS_DIR", help="results/ elsewhere")


def fail(message: str, code: int) -> int:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return code


def setup_logging(verbose: bool) -> None:
    """The terminal gets sweepd's own messages; the libraries' chatter (and the per-clock progress lines,
    which the terminal shows its own way) goes to sweep.log only, or with -v to the terminal too."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="sweepd: %(levelname)s: %(message)s")
    if not verbose:
        for h in logging.getLogger().handlers:
            h.addFilter(lambda r: r.name.startswith("sweepd") and not r.name.startswith("sweepd.progress")
                        or r.levelno >= logging.ERROR)
    from sweepd import quiet

    quiet.libraries(verbose)


def guarded(fn) -> int:
    """Turn sweepd's expected errors into one clear line and an exit code, never a traceback."""
    try:
        return fn()
    except ConfigError as e:
        for p in e.problems:
            err.print(f"[bold red]error:[/] {e.source}: {p}", highlight=False)
        return EXIT_INPUT
    except (ClockPlanError, JobConflict, ValueError) as e:  # PolicyError is a ValueError
        return fail(str(e), EXIT_INPUT)
    except GpuPermissionError as e:
        return fail(str(e), EXIT_GPU)
    except GpuError as e:
        return fail(f"GPU: {e}", EXIT_GPU)
    except SlurmError as e:
        return fail(f"SLURM: {e}", 1)
    except QueueError as e:  # e.g. a queue written by a newer sweepd
        return fail(str(e), EXIT_FAILED)
    except OSError as e:  # the filesystem said no (full, read-only, permissions): one line, not a traceback
        where = f": {e.filename}" if e.filename else ""
        return fail(f"{e.strerror or e}{where}", EXIT_FAILED)


def _version(value: bool) -> None:
    if value:
        from sweepd import __version__

        print(f"sweepd {__version__}")
        raise typer.Exit(0)


@app.callback()
def _top(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="print the version and exit")) -> None:
    """DVFS energy sweeps of Stable Diffusion on NVIDIA GPUs (or a simulated one)."""






def layout_of(root=None, images=None, results=None):
    """The layout for a command (flags, SWEEPD_*, settings, defaults); invalid settings are one line each."""
    from sweepd import settings

    try:
        return settings.layout(root, images, results)
    except ConfigError as e:
        for p in e.problems:
            err.print(f"[bold red]error:[/] {e.source}: {p}", highlight=False)
        raise typer.Exit(EXIT_INPUT) from None
