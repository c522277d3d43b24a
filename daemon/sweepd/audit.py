"""state/audit.jsonl: one JSON line per thing sweepd did to a user's files or sweeps."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)
_last_failure: list[str] = []  # the last error writing the audit log, said once until it changes


def record(state_dir: Path, event: str, **fields: object) -> None:
    """Append one event. The audit log is a record of what was done, never a reason not to do it: a state/ that
    is full or read-only loses the line (said in the journal, once per kind of failure), and the work goes on."""
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": event, **fields}, default=str)
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / "audit.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError as e:
        why = f"{e.strerror or e}: {e.filename or state_dir / 'audit.jsonl'}"
        if _last_failure != [why]:
            _last_failure[:] = [why]
            log.error("audit log not written (%s); lines are lost until it can be: %s", why, line)
        return
    _last_failure.clear()
