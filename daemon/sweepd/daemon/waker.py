"""Wake the daemon's loop from signal handlers and threads: the self-pipe trick.

A signal handler must not take locks (threading.Event.set does, and deadlocks if the signal
lands while the main thread holds that lock); writing one byte to a non-blocking pipe is safe.
"""

from __future__ import annotations

import os
import select


class Waker:
    def __init__(self) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self.pending = False

    def notify(self) -> None:
        try:
            os.write(self._w, b"x")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is pending anyway

    def wait(self, timeout: float) -> bool:
        """Sleep until notified or the timeout; True if notified (since the last wait)."""
        ready, _, _ = select.select([self._r], [], [], timeout)
        woke = bool(ready)
        while True:
            try:
                if not os.read(self._r, 4096):
                    break
            except BlockingIOError:
                break
        self.pending = woke
        return woke

    def close(self) -> None:
        os.close(self._r)
        os.close(self._w)
