"""The spool: users drop request files into spool/incoming/, sweepd takes each exactly once.

Writers create a file under a name sweepd ignores (starting with '.', or ending in .tmp or .part)
and rename it into place when complete (Maildir style), so sweepd never reads half a file.
A valid request is moved to spool/accepted/<sweep-id>.<ext> and queued; an invalid one is moved to
spool/rejected/<name> with <name>.error.txt beside it listing every problem. Nothing is dropped.

A file written in place instead is taken only once it is complete: inotify saw it closed after
writing, or its size, mtime and inode stayed the same for `spool_settle_s`. An empty file is
rejected. No single file can stop the intake: size, nesting depth and YAML aliases are limited
before parsing (:mod:`sweepd.configfile`), names too long or not UTF-8 are rejected under a safe
name, and any other exception while taking one file in rejects that file with its reason (and is
logged with its traceback, as the bug it is) while the loop goes on.

Intake and the queue: a file is renamed into accepted/ just before its queue row is written; when the queue
cannot take the row (locked past its wait, state/ full or read-only: QueueFault) the file is renamed back into
incoming/, where `sweepd list` shows it waiting, and the fault goes up to the daemon, which reports it and takes the
file in once the queue heals. A crash between the rename and the insert leaves an accepted file without a row:
the next start queues it (:meth:`Spool.reconcile_accepted`), or records it as done or failed where results/ says
the sweep already ended (a lost queue is rebuilt without running anything twice).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sweepd import atomic, audit, configfile, paths
from sweepd.logsetup import escaped
from sweepd.configfile import MAX_PROBLEMS, ConfigError
from sweepd.freqplan import ClockPlanError
from sweepd.ops.admission import Admission, admit, executor_problems, set_aside
from sweepd.paths import Layout
from sweepd.errors import QueueFault, capped
from sweepd.queue import DuplicateJob, Queue
from sweepd.records.manifest import SweepManifest
from sweepd.request import SweepRequest
from sweepd.vocab import RunState, SweepState

log = logging.getLogger(__name__)

SWEEP_ID_RE = re.compile(r"[0-9a-f]{12}\Z")
IGNORED_SUFFIXES = (".tmp", ".part")
MAX_NAME_BYTES = 200  # rejected/<name>.error.txt must still fit in 255 bytes


def ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES) or name.endswith(".error.txt")


def shown(name: str) -> str:
    """A file name as text on one line: bytes that are not UTF-8 and control characters shown as \\xNN."""
    return escaped(name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace"))


def name_problem(name: str) -> str | None:
    raw = name.encode("utf-8", "surrogateescape")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "(file name): not UTF-8: rename it"
    if len(raw) > MAX_NAME_BYTES:
        return f"(file name): {len(raw)} bytes long; the limit is {MAX_NAME_BYTES}"
    return None


def open_for_writing(path: Path) -> bool:
    """Does some process hold this file open for writing (a writer that paused)? A read lease is granted
    only when none does (fcntl F_SETLEASE). Where leases are not to be had (another owner, NFS), False:
    the settle interval alone decides."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as e:
        return e.errno in (errno.EAGAIN, errno.EBUSY)
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


def new_sweep_id() -> str:
    return secrets.token_hex(6)


@dataclass
class IntakeOutcome:
    """What became of one file in incoming/."""
    name: str
    accepted: bool
    sweep_id: str | None = None
    problems: list[str] | None = None


class Spool:
    def __init__(self, layout: Layout, queue: Queue, max_bytes: int = 1 << 20,
                 admission: Admission = Admission(), settle_s: float = 1.0, clock=time.monotonic):
        self.incoming, self.accepted, self.rejected = layout.incoming, layout.accepted, layout.rejected
        self.layout = layout
        self.state, self.queue = layout.state, queue
        self.clock = clock
        self.configure(max_bytes, admission, settle_s)
        self._seen: dict[str, tuple[tuple[int, int, int], float]] = {}  # name -> (inode, size, mtime_ns), since
        self._complete: set[str] = set()  # names inotify saw closed after writing, or renamed in
        self._created: set[str] = set()  # names inotify saw appear (renamed in from outside the spool, or created)
        self._hints = threading.Lock()
        self._stuck: set[tuple[str, int, int]] = set()  # files that could be neither taken nor rejected
        self.orphaned = False  # a file may sit in accepted/ without a queue row (see take)

    def configure(self, max_bytes: int, admission: Admission, settle_s: float) -> None:
        """What the daemon's settings say of intake (at start, and again at each reload)."""
        self.max_bytes, self.admission, self.settle_s = max_bytes, admission, settle_s

    # completeness ----------------------------------------------------------------------------
    def hint_complete(self, name: str) -> None:
        """From the watcher thread: `name` was renamed into incoming/ or closed after writing."""
        if not ignored(name):
            with self._hints:
                self._complete.add(name)

    def hint_created(self, name: str) -> None:
        """From the watcher thread: `name` appeared in incoming/. A file renamed in from outside the spool shows
        only this (watchdog pairs no move with it); it is complete when no process holds it open for writing,
        which only this user's own files can be asked (a read lease): anyone else's wait for closed or settled."""
        if not ignored(name):
            with self._hints:
                self._created.add(name)

    @property
    def waiting(self) -> bool:
        """Files seen but not yet settled: the caller should scan again within settle_s."""
        return bool(self._seen)

    def _ready(self, path: Path, st: os.stat_result) -> bool:
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._hints:
            complete = path.name in self._complete or (path.name in self._created and st.st_uid == os.geteuid())
            self._complete.discard(path.name)
            self._created.discard(path.name)
        now = self.clock()
        seen = self._seen.get(path.name)
        if (complete or (seen is not None and seen[0] == key and now - seen[1] >= self.settle_s)) \
                and not open_for_writing(path):
            self._seen.pop(path.name, None)
            return True
        if seen is None or seen[0] != key or complete:
            self._seen[path.name] = (key, now)
        return False

    def ensure(self) -> None:
        """The spool's folders: the owner's alone, whatever the umask; with a spool_group, its members may pass
        through spool/ and drop files into incoming/ (setgid: a dropped file is the group's)."""
        gid = self.admission.group_gid
        if gid is None:
            for d in (self.incoming.parent, self.incoming):
                paths.private_dir(d)
        else:
            paths.shared_dir(self.incoming.parent, gid, 0o710)
            paths.shared_dir(self.incoming, gid, 0o2770)
        for d in (self.accepted, self.rejected):
            paths.private_dir(d)

    def candidates(self) -> list[Path]:
        try:
            entries = sorted(os.scandir(self.incoming), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        return [Path(e.path) for e in entries if not ignored(e.name)]

    def scan(self) -> list[IntakeOutcome]:
        """Take in every complete file; files still being written wait for a later scan."""
        cands = self.candidates()
        names = {p.name for p in cands}
        for gone in set(self._seen) - names:
            del self._seen[gone]
        with self._hints:
            self._complete &= names
            self._created &= names
        out = []
        for p in cands:
            try:
                st = p.lstat()
            except FileNotFoundError:
                continue
            if (p.name, st.st_ino, st.st_mtime_ns) in self._stuck:
                continue
            if stat.S_ISREG(st.st_mode) and not self._ready(p, st):
                continue
            out.append(self.take_safely(p, st))
        return out

    def take_safely(self, path: Path, st: os.stat_result) -> IntakeOutcome:
        """take(), and whatever goes wrong with this one file, reject it with the reason and go on. A queue that
        cannot take a row now (QueueFault) is not the file's fault: it is raised, and the file waits in incoming/."""
        try:
            return self.take(path)
        except QueueFault:
            raise
        except Exception as e:  # a bug, or the filesystem failing under us: this file only
            if not os.path.lexists(path):  # taken away under us (by its writer, or a second daemon): nothing to do
                return IntakeOutcome(shown(path.name), False, problems=["vanished while it was read"])
            log.exception("taking in %s failed", shown(path.name))
            try:
                return self._reject(path, [f"(file): sweepd could not take it in: {type(e).__name__}: {e}"])
            except Exception:
                log.exception("cannot move %s to rejected/ either: it stays in incoming/ and is skipped until "
                              "it changes", shown(path.name))
                self._stuck.add((path.name, st.st_ino, st.st_mtime_ns))
                return IntakeOutcome(shown(path.name), False, problems=["could not be taken in or rejected"])

    # one file --------------------------------------------------------------------------------
    def take(self, path: Path) -> IntakeOutcome:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return IntakeOutcome(shown(path.name), False, problems=["vanished before it was read"])
        if (problem := name_problem(path.name)) is not None:
            return self._reject(path, [problem])
        if not stat.S_ISREG(st.st_mode):
            return self._reject(path, ["(file): not a regular file (a directory, link or device); "
                                       "drop request files only"])
        if (problem := self.admission.owner_problem(st.st_uid, st.st_gid)) is not None:
            return self._reject(path, [problem])
        if st.st_size > self.max_bytes:
            return self._reject(path, [f"(file): {st.st_size} bytes is over the limit of {self.max_bytes}"])
        try:
            data = configfile.read_data(path)
            if data == {}:
                raise ConfigError(path.name, ["(file): no settings in it (an empty request would run a default "
                                              "full sweep): write the request, then rename it into incoming/"])
            req = configfile.validate(SweepRequest, data, path.name)
            executor = admit(req, path.name, self.admission, self.layout)
        except ConfigError as e:
            return self._reject(path, e.problems)
        except ClockPlanError as e:
            return self._reject(path, [str(e)])
        sweep_id = path.stem if SWEEP_ID_RE.match(path.stem) and not self.queue.get(path.stem) else new_sweep_id()
        job_id = self.job_id_for(req, executor, sweep_id)
        if self.queue.get(job_id):
            return self._reject(path, [f"job_id: {job_id!r}: already used by sweep {self.queue.get(job_id).id}"])
        target = self.accepted / f"{sweep_id}{path.suffix.lower()}"
        os.replace(path, target)
        atomic.fsync_dir(self.accepted)
        try:
            return self._enqueue(target, req, sweep_id, job_id, path.name)
        except QueueFault:  # no row: the file goes back where its writer left it, and is taken in once the queue heals
            try:
                os.replace(target, path)
            except OSError as e:
                self.orphaned = True  # in accepted/ without a row: reconcile_accepted queues it once the queue heals
                log.error("%s stays in accepted/ without a queue row until the queue heals: %s", shown(path.name), e)
            raise

    @staticmethod
    def job_id_for(req: SweepRequest, executor: str, sweep_id: str) -> str:
        """The request's job id; else a local one, or for SLURM a placeholder until sbatch gives the
        array's job id (the results go to job_<SLURM_JOB_ID>/)."""
        if req.job_id:
            return req.job_id
        return f"slurm-pending-{sweep_id}" if executor == "slurm" else paths.new_local_job_id()

    def _enqueue(self, target: Path, req: SweepRequest, sweep_id: str, job_id: str, source: str) -> IntakeOutcome:
        executor = self.admission.executor_of(req)
        try:
            self.queue.add(sweep_id, job_id, req.with_job_id(job_id if executor == "local" else req.job_id),
                           priority=req.priority, gpu_index=req.gpu.index if executor == "local" else None,
                           source=source, spool_path=str(target), executor=executor)
        except DuplicateJob as e:
            return self._reject(target, [f"job_id: {job_id!r}: {e}"], name=source)
        audit.record(self.state, "accepted", sweep_id=sweep_id, job_id=job_id, source=source)
        log.info("accepted %s as sweep %s (job %s)", source, sweep_id, job_id)
        return IntakeOutcome(source, True, sweep_id=sweep_id)

    def _reject(self, path: Path, problems: list[str], name: str | None = None) -> IntakeOutcome:
        name = name or path.name
        problems = [capped(p) for p in problems[:MAX_PROBLEMS]] + \
            ([f"... and {len(problems) - MAX_PROBLEMS} more problems"] if len(problems) > MAX_PROBLEMS else [])
        text_name = shown(name)
        if name_problem(name) is not None:  # keep what it was in the error file; store it under a name that works
            suffix = Path(text_name).suffix if len(Path(text_name).suffix) <= 8 else ""
            name = f"rejected-{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:12]}{suffix}"
        text = f"sweepd rejected {text_name}:\n" + "".join(f"  {p}\n" for p in problems)
        target = set_aside(path, self.rejected, text, name)
        audit.record(self.state, "rejected", source=text_name, moved_to=str(target), problems=problems)
        log.warning("rejected %s: %s", text_name, "; ".join(problems))
        return IntakeOutcome(text_name, False, problems=problems)

    # after a crash ---------------------------------------------------------------------------
    def reconcile_accepted(self) -> int:
        """Queue accepted files that have no queue row (a crash between the rename and the insert, or a queue that
        was lost). A sweep results/ knows (its sweep.json names this sweep id) keeps its job: done or failed there,
        its row is restored as such and nothing runs again; started and not ended, it is queued to resume.
        Returns how many files got a row."""
        n, known = 0, None
        for path in sorted(self.accepted.iterdir()) if self.accepted.exists() else []:
            if not SWEEP_ID_RE.match(path.stem) or self.queue.get(path.stem):
                continue
            try:
                req = configfile.load(SweepRequest, path)
            except ConfigError as e:
                self._reject(path, e.problems)
                continue
            except Exception as e:  # a bug: this file is rejected, the others still go on
                log.exception("re-reading accepted %s failed", path.name)
                self._reject(path, [f"(file): sweepd could not read it back: {type(e).__name__}: {e}"])
                continue
            executor = self.admission.executor_of(req)
            problems = executor_problems(req, executor, self.admission.gpu_indices)
            if problems:
                self._reject(path, problems)
                continue
            known = self._results_by_sweep() if known is None else known
            manifest = known.get(path.stem)
            if manifest is None:
                self._enqueue(path, req, path.stem, self.job_id_for(req, executor, path.stem), path.name)
            else:
                self._restore(path, req, manifest, executor)
            n += 1
        self.orphaned = False
        return n

    def _results_by_sweep(self) -> dict[str, SweepManifest]:
        """Each sweep results/ holds, by sweep id: its job's sweep.json, else a shard's."""
        out: dict[str, SweepManifest] = {}
        for pattern in ("job_*/shards/*/sweep.json", "job_*/sweep.json"):  # the job's own wins over a shard's
            for f in sorted(self.layout.results.glob(pattern)):
                m = SweepManifest.read_or_none(f)
                if m is not None:
                    out[m.sweep_id] = m
        return out

    def _restore(self, path: Path, req: SweepRequest, m: SweepManifest, executor: str) -> None:
        """A row for a sweep that ran before its row was lost: its own job id, and its end where it ended."""
        if not self._enqueue(path, req, m.sweep_id, m.job_id, path.name).accepted:
            return
        if m.done:
            state, error = SweepState.DONE, None
        elif m.status == RunState.FAILED:
            state, error = SweepState.FAILED, m.error
        elif executor == "local" and m.shard is None:
            log.warning("sweep %s (job %s) had no queue row: queued again, it resumes from results/", m.sweep_id,
                        m.job_id)
            return
        else:  # a split sweep's shards ran on SLURM: which of them still run is not known without the queue
            state, error = SweepState.INTERRUPTED, ("its queue row was lost while it ran on SLURM; its shards' results "
                                                    f"are in {self.layout.job_results(m.job_id)}: submit it again")
        note = "row restored from results/ after the queue was lost"
        self.queue.finish(m.sweep_id, state, None, f"{error}; {note}" if error else note)
        log.warning("sweep %s (job %s) had no queue row: restored from results/ as %s", m.sweep_id, m.job_id, state)
