"""A thread of its own running calls in the order they were given: the archive's hashing, its hand-over to zstd and
its file writes each run in one (:mod:`.tarstream`, :mod:`.durable`)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any


class InOrder:
    """A thread running the calls given to it one after the other, in the order given. After a failure the rest
    are dropped, and the failure is raised in the giving thread at its next :meth:`wait`."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._cv = threading.Condition()
        self.given = 0  # calls given so far: a call's number is its ticket
        self._done = 0
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def give(self, fn: Callable[[Any], Any], arg: Any) -> int:
        self.given += 1
        self._jobs.put((fn, arg))
        return self.given

    def wait(self, ticket: int | None = None) -> None:
        """Until the call with this ticket (every call given, by default) has run; a failure raised here."""
        ticket = self.given if ticket is None else ticket
        with self._cv:
            while self._done < ticket:
                self._cv.wait()
        if self.failure is not None:
            raise self.failure

    def stop(self) -> None:
        """The calls given run (or dropped after a failure) and the thread gone; nothing raised."""
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                if self.failure is None:
                    job[0](job[1])
            except BaseException as e:  # raised in the giving thread
                self.failure = e
            finally:
                with self._cv:
                    self._done += 1
                    self._cv.notify_all()
