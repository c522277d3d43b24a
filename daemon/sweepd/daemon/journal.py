"""Daemon logging: `<N>` priority prefixes for journald when stderr goes to the journal, readable lines otherwise."""

from __future__ import annotations

import logging
import os
import sys

from sweepd import logsetup

PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def setup(level: str = "info") -> None:
    logsetup.escape_arguments()  # a file name cannot forge a journal line
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(JournalFormatter("%(message)s"))  # journald adds time and unit
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s sweepd: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("watchdog", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
