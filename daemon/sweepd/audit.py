"""state/audit.jsonl: one JSON line per thing sweepd did to a user's files or sweeps."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def record(state_dir: Path, event: str, **fields: object) -> None:
    state_dir.mkdir(parents=True, exist_ok=True)
    line = json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "event": event, **fields}, default=str)
    fd = os.open(state_dir / "audit.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
