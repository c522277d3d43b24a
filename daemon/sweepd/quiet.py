"""Library chatter (transformers, diffusers, matplotlib, Python warnings) belongs in the log, not on
the user's terminal: warnings become log records ("py.warnings"), which the terminal's handler
drops unless -v and a job's sweep.log keeps. The libraries' own handlers are switched to
propagation where they are imported (:mod:`sweepd.workload.pipeline`)."""

from __future__ import annotations

import logging
import os


def libraries(verbose: bool) -> None:
    logging.captureWarnings(True)
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    if not verbose:
        logging.getLogger("matplotlib").setLevel(logging.ERROR)  # "building the font cache" and the like
