"""What every command module shares: the typer app, the consoles, the options, the exit codes and
`guarded`, which turns sweepd's errors into one line and an exit code (:mod:`sweepd.errors`)."""

from __future__ import annotations

import logging
import sys

import typer
from rich.markup import escape
from rich.console import Console

from sweepd.configfile import ConfigError
from sweepd.errors import EXIT_FAILED, EXIT_GPU, EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, SweepdError, os_line  # noqa: F401 (re-exported to the commands)

# Plain click help (rich_markup_mode=None): typer's rich help prints a "<bool>" placeholder after every flag.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False, rich_markup_mode=None,
                  help="DVFS energy sweeps of Stable Diffusion on NVIDIA GPUs (or a simulated one).")
# Piped or redirected output gets every value in full (rich would cut tables at 80 columns); a terminal
# keeps its own width.
_WIDE = 100_000
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else _WIDE)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else _WIDE)  # never wrapped: greppable

VerboseOpt = typer.Option(False, "-v", "--verbose", help="log debug detail, library messages included")
RootOpt = typer.Option(None, "--root", envvar="SWEEPD_ROOT", help="sweepd's root folder (default: XDG data dir)")
ImagesOpt = typer.Option(None, "--images-dir", envvar="SWEEPD_IMAGES_DIR", help="images/ elsewhere (e.g. scratch)")
ResultsOpt = typer.Option(None, "--results-dir", envvar="SWEEPD_RESULTS_DIR", help="results/ elsewhere")


def fail(message: str, code: int) -> int:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    return code


def setup_logging(verbose: bool) -> None:
    """The terminal gets sweepd's own messages; the libraries' chatter (and the per-clock progress lines,
    which the terminal shows its own way) goes to sweep.log only, or with -v to the terminal too."""
    from sweepd import logsetup

    logsetup.terminal(logging.DEBUG if verbose else logging.INFO, "sweepd: %(levelname)s: %(message)s",
                      None if verbose else (lambda r: r.name.startswith("sweepd") and not r.name.startswith(
                          "sweepd.progress") or r.levelno >= logging.ERROR))
    from sweepd import quiet

    quiet.libraries(verbose)


def guarded(fn) -> int:
    """Turn sweepd's expected errors (:class:`~sweepd.errors.SweepdError`, and the system saying no:
    ``OSError``) into one clear line and their exit code. Anything else is a bug: its traceback goes
    to stderr under one line saying so, and the exit code is EXIT_INTERNAL."""
    try:
        return fn()
    except ConfigError as e:
        for line in e.lines():
            err.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
        return e.exit_code
    except SweepdError as e:
        return fail(e.line(), e.exit_code)
    except OSError as e:  # the filesystem said no (full, read-only, permissions): one line, not a traceback
        return fail(os_line(e), EXIT_FAILED)
    except Exception as e:
        import traceback

        traceback.print_exc(file=sys.stderr)
        return fail(f"internal error (a bug in sweepd, please report it with the traceback above): "
                    f"{type(e).__name__}: {e}", EXIT_INTERNAL)


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
        for line in e.lines():
            err.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
        raise typer.Exit(EXIT_INPUT) from None
