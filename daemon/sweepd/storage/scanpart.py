"""A share of a full scan walked by a helper process: how many helpers, who walks what, and the pipe between them.

A scan is Python's listdir + lstat loop on one core: on this project's 2-core machine the bare loop is 1.3x
`du -s`'s time before any bookkeeping (BENCHMARKS.md), and threads make it slower (each lstat hands the GIL over).
So over PARALLEL_UNITS job folders, where cores are free, helpers (``python -m sweepd.storage.index``) walk part
of the folders with the same code while the scanning process walks the rest; each helper reads its folder names on
stdin and answers on stdout (marshal). A helper starts a Python first (about 0.15 s here), so the scanning process
keeps the larger share. The same split pays off most where each lstat waits on a server (NFS, Lustre).
"""

from __future__ import annotations

import logging
import marshal
import os
import subprocess
import sys
import threading

from sweepd.storage.unit import Unit

log = logging.getLogger(__name__)

PARALLEL_UNITS = 64  # job folders from which a scan shares its work (fewer: a helper's start costs more than it saves)
MAX_HELPERS = 3


def helpers_for(units: int) -> int:
    """How many helper processes a scan of `units` job folders starts: none under PARALLEL_UNITS, else one per
    free core (up to MAX_HELPERS, and one per PARALLEL_UNITS folders)."""
    if units < PARALLEL_UNITS or not sys.executable:
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(MAX_HELPERS, cores - 1, units // PARALLEL_UNITS))


def deal(names: list[str], helpers: int) -> list[list[str]]:
    """The names dealt in turn, three to the scanning process (the first share) for every two to each helper."""
    seats = [0, 0, 0] + [h for h in range(1, helpers + 1) for _ in range(2)]
    shares: list[list[str]] = [[] for _ in range(helpers + 1)]
    for i, name in enumerate(names):
        shares[seats[i % len(seats)]].append(name)
    return shares


class Part:
    """One helper process (``python -m <module>``) walking `names` with the index built from `args`."""

    def __init__(self, module: str, args: tuple, names: list[str]):
        self.names = names
        self._proc = subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE)
        self._err = b""
        # fed from a thread (a long list of names would fill the pipe before the helper's Python has started),
        # which then drains stderr while stdout is read here
        self._feeder = threading.Thread(target=self._feed, args=(marshal.dumps((args, names)),), name="scan-feed",
                                        daemon=True)
        self._feeder.start()

    def _feed(self, payload: bytes) -> None:
        try:
            self._proc.stdin.write(payload)
            self._proc.stdin.close()
        except OSError:  # the helper is gone: result() says so
            pass
        try:
            self._err = self._proc.stderr.read()
        except (OSError, ValueError):  # closed by close() after a kill
            pass

    def result(self) -> dict[str, Unit]:
        """The units the helper walked, by name; none (and a log line) if it failed, answered something that is not
        units, or was left out: the scanning process walks whatever is missing."""
        try:
            data = self._proc.stdout.read()
            code = self._proc.wait()
            self._feeder.join()
            if code == 0:
                got = marshal.loads(data)
                try:
                    return {t[0]: Unit.from_wire(t) for t in got}
                except (TypeError, ValueError, IndexError):  # well-formed marshal, but not units
                    why = "answered with something else"
            else:
                last = self._err.decode(errors="replace").strip().splitlines()[-1:]
                why = f"exit {code}" + (f": {last[0]}" if last else "")
        except (OSError, ValueError, EOFError, TypeError) as e:
            why = str(e)
        log.warning("scan helper for %d folders failed (%s): they are walked by the scanning process", len(self.names),
                    why)
        return {}

    def close(self) -> None:
        """The helper gone (killed if still running) and its pipes closed."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._feeder.join()  # the killed helper's pipes are at their end
        for f in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            f.close()


def request() -> tuple[tuple, list[str]]:
    """In the helper: the index's arguments and the folder names, from stdin."""
    return marshal.loads(sys.stdin.buffer.read())


def reply(units: list[tuple]) -> None:
    """In the helper: what it found, to stdout."""
    sys.stdout.buffer.write(marshal.dumps(units))
    sys.stdout.buffer.flush()
