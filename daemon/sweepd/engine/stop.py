"""Turn SIGTERM/SIGINT into an orderly stop.

The first signal asks the sweep to stop after the current trial (clocks are reset, the sweep is
marked ``interrupted`` and can be resumed); a second one stops at once, still through the
``finally`` blocks that reset the clocks.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import threading

log = logging.getLogger(__name__)


class StopRequested(Exception):
    """Raised between trials once a stop was asked for."""


class StopFlag:
    def __init__(self) -> None:
        self._requested = False  # a plain flag: signal handlers must not take locks (Event.set does)
        self.reason = ""
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self._requested

    def request(self, reason: str) -> None:
        self.reason = self.reason or reason
        self._requested = True

    def check(self) -> None:
        if self.requested:
            raise StopRequested(self.reason)

    def _handle(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            log.warning("%s again: stopping now", name)
            raise KeyboardInterrupt(name)
        log.warning("%s: stopping after the current trial (again to stop now)", name)
        self.request(name)

    def install(self) -> "StopFlag":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()


_EARLY: StopFlag | None = None
PR_SET_PDEATHSIG = 1
PARENT_ENV = "SWEEPD_DAEMON_PID"


def install_early() -> StopFlag:
    """First thing in a worker process: SIGTERM/SIGINT already mean "stop after the current trial",
    and the daemon's death (even SIGKILL) sends this process SIGTERM (PR_SET_PDEATHSIG), set here in
    the child itself rather than in a preexec_fn of the threaded daemon."""
    global _EARLY
    _EARLY = StopFlag().install()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    parent = os.environ.get(PARENT_ENV, "")
    if parent.isdigit() and os.getppid() != int(parent):  # the daemon died before the line above
        _EARLY.request("the daemon that started this worker is gone")
    return _EARLY


def early() -> StopFlag | None:
    """The flag install_early() set up in this process, if any: a stop asked for during start-up is kept."""
    return _EARLY
