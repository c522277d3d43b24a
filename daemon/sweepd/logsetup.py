"""The terminal's log handler: one per process, installed by whichever entry point runs (a CLI command, a
worker), replaced rather than added to when a second one runs in the same process (tests call the CLI in
process), and writing to whatever ``sys.stderr`` is at the time of each record.

Every entry point also escapes what a log line is given to show (:func:`escape_arguments`): a file name holding a
newline or an escape sequence (a request dropped as ``"x\nsweepd: ERROR: forged.toml"``) is shown as
``'x\\nsweepd...'`` on one line, never as a second, forged line."""

from __future__ import annotations

import logging
import sys
from typing import Callable


class _Stderr(logging.StreamHandler):
    """A StreamHandler on the current ``sys.stderr``, not the one there was when it was made."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)} | {0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"}


def escaped(text: str) -> str:
    """``text`` with its control characters (newline, carriage return, escape, ...) written out."""
    return text.translate(_CONTROL)


def escape_arguments() -> None:
    """From now on, string arguments of every log record of this process are escaped (:func:`escaped`): names
    and values reach a log only as arguments, so none can start a line of its own. Messages themselves and
    exceptions (a ConfigError's problems, one per line) are left as they are."""
    base = logging.getLogRecordFactory()
    if getattr(base, "sweepd_escapes", False):
        return

    def factory(*args, **kwargs) -> logging.LogRecord:
        record = base(*args, **kwargs)
        if isinstance(record.args, tuple):
            record.args = tuple(escaped(a) if isinstance(a, str) else a for a in record.args)
        return record

    factory.sweepd_escapes = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def terminal(level: int, fmt: str, keep: Callable[[logging.LogRecord], bool] | None = None) -> None:
    """Log records of ``level`` and above to stderr in ``fmt``; ``keep`` filters which ones show."""
    escape_arguments()
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(h)
    handler = _Stderr()
    handler.setFormatter(logging.Formatter(fmt))
    if keep is not None:
        handler.addFilter(keep)
    root.addHandler(handler)
    root.setLevel(level)
