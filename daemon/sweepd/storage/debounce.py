"""Coalescing a stream of triggers into runs, with a bounded wait.

A burst of calls for one key runs its function once, ``quiet_s`` after the last call, but never later than
``max_wait_s`` after the first call of the burst: a steady stream of events (a sweep saving an image every half
second) cannot postpone a crossed cap's enforcement for as long as it goes on. The clock and the timer are
parameters, so tests drive both."""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Protocol

log = logging.getLogger("sweepd.storage")


class Timer(Protocol):
    def start(self) -> None: ...
    def cancel(self) -> None: ...


def _thread_timer(delay_s: float, fn: Callable[[], None]) -> Timer:
    t = threading.Timer(delay_s, fn)
    t.daemon = True
    return t


class Debouncer:
    def __init__(self, quiet_s: float, max_wait_s: float, clock: Callable[[], float] = time.monotonic,
                 timer: Callable[[float, Callable[[], None]], Timer] = _thread_timer):
        self.quiet_s, self.max_wait_s = quiet_s, max(quiet_s, max_wait_s)
        self.clock, self.timer = clock, timer
        self._lock = threading.Lock()
        self._timers: dict[str, Timer] = {}
        self._first: dict[str, float] = {}  # key -> when the burst's first call came

    def call(self, key: str, fn: Callable[..., None], *args: object) -> None:
        """Run ``fn(*args)`` once this key's burst of calls is over, or ``max_wait_s`` after it began."""
        with self._lock:
            now = self.clock()
            first = self._first.setdefault(key, now)
            delay = max(0.0, min(now + self.quiet_s, first + self.max_wait_s) - now)
            old = self._timers.pop(key, None)
            if old is not None:
                old.cancel()
            t = self._timers[key] = self.timer(delay, lambda: self._run(key, t, fn, args))
            t.start()

    def _run(self, key: str, timer: Timer, fn: Callable[..., None], args: tuple) -> None:
        with self._lock:
            if self._timers.get(key) is not timer:  # replaced after it fired: the newer one runs instead
                return
            del self._timers[key]
            self._first.pop(key, None)  # calls from now on start a new burst
        try:
            fn(*args)
        except Exception:  # a bug: logged, and the daemon goes on with what is in force
            log.exception("storage: %s failed", key)

    def cancel_all(self) -> None:
        with self._lock:
            for t in self._timers.values():
                t.cancel()
            self._timers.clear()
            self._first.clear()
