"""Process facts shared by the lock record, the daemon and its recovery."""

from __future__ import annotations

import os


def pid_alive(pid: int | None) -> bool:
    """True if a process with this pid exists (even one we may not signal)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
