"""One error model: every error sweepd expects is a :class:`SweepdError` with its exit code.

The CLI, the daemon's worker and a SLURM node's worker catch ``SweepdError`` (and ``OSError``:
the operating system saying no, e.g. a full disk) and print one line. Anything else is a bug in
sweepd: it is logged with its traceback and ends with :data:`EXIT_INTERNAL`.

Bad input derives from ``ValueError`` too, so pydantic validators can raise it and report it as a
field error.
"""

from __future__ import annotations

EXIT_DONE = 0
EXIT_FAILED = 1  # the sweep (or the command) failed; the reason is in the message
EXIT_INPUT = 2  # bad input: request, settings, policy, clock, job id, path
EXIT_GPU = 3  # the GPU or its driver said no
EXIT_INTERRUPTED = 4  # stopped (signal, cancel) before the end; resumable
EXIT_INTERNAL = 70  # a bug in sweepd (EX_SOFTWARE): the traceback is in the log
MAX_LINE = 1000  # characters of one error line: a 10,000-clock list is named by its start, not in a megabyte


def os_line(e: OSError) -> str:
    """The system's no in one line: its reason and the file it names ("No space left on device: /r/x.csv")."""
    return f"{e.strerror or e}" + (f": {e.filename}" if e.filename else "")


def capped(text: str, limit: int = MAX_LINE) -> str:
    """One error line at most ``limit`` characters long, saying how much was left out."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


class SweepdError(Exception):
    """An error sweepd expects and explains in one line."""
    exit_code = EXIT_FAILED
    prefix = ""  # put before the message on the terminal, e.g. "GPU: "

    def line(self) -> str:
        return capped(f"{self.prefix}{self}")


class InputError(SweepdError, ValueError):
    """The user's input is wrong: a request, settings or policy file, a flag, a job id."""
    exit_code = EXIT_INPUT


class CompileFailed(SweepdError):
    """torch.compile could not compile the model's denoiser (no compiler, an unsupported operation): the knob's
    setting is refused with this error, the sweep goes on without it."""


class GpuError(SweepdError):
    exit_code = EXIT_GPU
    prefix = "GPU: "


class SlurmError(SweepdError):
    prefix = "SLURM: "


class QueueError(SweepdError):
    """The queue cannot be used (e.g. written by a newer sweepd)."""


class QueueFault(QueueError):
    """SQLite could not do what was asked of the queue now: another process holds its lock past the wait
    (``busy``), or state/ is full, read-only, unreadable or the file damaged. The queue is as it was before the
    call; what the call was to do is done again later (the daemon reports the fault and goes on)."""

    def __init__(self, message: str, busy: bool = False):
        super().__init__(message)
        self.busy = busy


class StorageError(SweepdError):
    """The storage manager cannot carry out an action (lock busy, archive unreadable, ...)."""


class RecordError(SweepdError):
    """A file sweepd wrote (sweep.json, status.json, a CSV, a spec) cannot be read as its record."""
