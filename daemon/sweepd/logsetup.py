"""The terminal's log handler: one per process, installed by whichever entry point runs (a CLI command, a
worker), replaced rather than added to when a second one runs in the same process (tests call the CLI in
process), and writing to whatever ``sys.stderr`` is at the time of each record."""

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


def terminal(level: int, fmt: str, keep: Callable[[logging.LogRecord], bool] | None = None) -> None:
    """Log records of ``level`` and above to stderr in ``fmt``; ``keep`` filters which ones show."""
    root = logging.getLogger()
    for h in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(h)
    handler = _Stderr()
    handler.setFormatter(logging.Formatter(fmt))
    if keep is not None:
        handler.addFilter(keep)
    root.addHandler(handler)
    root.setLevel(level)
