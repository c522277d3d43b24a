"""`sweepd serve`: watch the spool, keep the queue, run sweeps in worker processes, talk to systemd.

The main loop wakes on a spool event (inotify through watchdog, where the filesystem supports it),
a child exiting (SIGCHLD), a signal, or every reconcile interval, and then: takes in the spool,
reaps finished workers, passes on cancellations, starts queued sweeps on free GPUs, and reports
its status. Signal handlers only set flags; all work happens in the loop.

No fault of the queue or state/ ends the loop: a part that meets one (the queue locked past its wait, state/
full or read-only, results/ unwritable) stops there, the fault goes into the status line, `sweepd status` and
the journal, the parts that need the queue rest for FAULT_RETRY_S, and the loop goes on serving signals and
systemd's watchdog; when they next run through, the fault is reported healed. Nothing is lost meanwhile: a
request waits in incoming/, a finished worker's end waits to be recorded.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

from sweepd import fstype, paths, settings as settings_mod
from sweepd.configfile import ConfigError
from sweepd.errors import InputError, SweepdError, os_line
from sweepd.daemon import journal
from sweepd.daemon.pidlock import PidLock
from sweepd.daemon.sdnotify import Notifier
from sweepd.daemon.slurmloop import SlurmLoop
from sweepd.daemon.waker import Waker
from sweepd.engine.status import read_status
from sweepd.daemon.pool import WorkerPool, resume_or_fail
from sweepd.engine.runner import repair_locks
from sweepd.paths import Layout
from sweepd.procs import steady_malloc, pid_alive
from sweepd.queue import Queue
from sweepd.records.status import DaemonState
from sweepd.settings import Settings
from sweepd.ops.admission import Admission
from sweepd.spool import Spool
from sweepd.storage.units import human
from sweepd.vocab import SweepState

log = logging.getLogger("sweepd")

FAULT_RETRY_S = 5.0  # after a fault, the queue's parts of the loop rest this long


class Daemon:
    def __init__(self, settings: Settings, layout: Layout, config: Path | None = None, once: bool = False):
        self.settings, self.layout, self.config, self.once = settings, layout, config, once
        self.waker = Waker()
        self.stopping = False
        self.reload_requested = False
        self.settings_error: str | None = None
        self.notifier = Notifier()
        self.observer = None
        self._last_scan = 0.0
        self._last_line: tuple = ()
        self.faults: dict[str, str] = {}  # what the daemon cannot do now, by where it failed, until it heals
        self._retry_at = 0.0

    # setup -----------------------------------------------------------------------------------
    def start(self) -> None:
        steady_malloc()  # before any thread starts: RSS that stays flat over weeks
        self.check_state_disk()
        self.lock = PidLock(self.layout.daemon_lock).acquire()
        self.queue = Queue(self.layout.queue_db)
        self.pool = WorkerPool(self.layout, self.queue, self.settings)
        self.slurm = SlurmLoop(self.layout, self.settings)
        self.spool = Spool(self.layout, self.queue, self.settings.max_request_bytes, Admission.of(self.settings),
                           self.settings.spool_settle_s)
        self.spool.ensure()
        self.recover()
        if self.spool.reconcile_accepted():
            log.warning("queued accepted requests that had no queue entry (crash during intake)")
        self.slurm.start()
        self.watch()
        from sweepd.storage.enforce import StorageManager

        self.storage = StorageManager(self.layout, max_wait_s=self.settings.enforce_max_wait_s)
        self.storage.start()
        for sig, handler in ((signal.SIGTERM, self._on_stop), (signal.SIGINT, self._on_stop),
                             (signal.SIGHUP, self._on_hup), (signal.SIGCHLD, self._on_child)):
            signal.signal(sig, handler)

    def check_state_disk(self) -> None:
        """The queue is SQLite: its locking is unsafe on NFS/Lustre, so state/ must be on a local disk."""
        paths.private_dir(self.layout.state)  # the queue, locks and audit: the owner's alone, whatever the umask
        kind = fstype.fs_type(self.layout.state)
        if kind in fstype.NETWORK_FS:
            raise ConfigError("settings", [f"root: {str(self.layout.root)!r}: state/ is on {kind}, where SQLite's "
                                           "locking is unsafe: put the root on a local disk and images/ and "
                                           "results/ on the shared filesystem (--images-dir, --results-dir)"])

    def recover(self) -> None:
        """After a crash: local sweeps left `running` are interrupted; stale clock locks are reset; resume.
        SLURM sweeps went on without the daemon: the executor picks them up where SLURM says they are."""
        for row in self.queue.list(("running",)):
            if row.executor != "local":
                continue
            pid = row.pid
            deadline = time.monotonic() + self.settings.stop_timeout_s
            while pid_alive(pid) and time.monotonic() < deadline:  # told to stop when the old daemon died
                time.sleep(0.2)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
            self.queue.finish(row.id, "interrupted", None, "the daemon stopped while this sweep ran")
            log.warning("sweep %s was running when the daemon stopped: interrupted", row.id)
        repair_locks(self.layout)
        for row in self.queue.list(("interrupted",)):
            if row.executor == "local":
                resume_or_fail(self.queue, self.settings, row.id)

    def watch(self) -> None:
        incoming = self.spool.incoming
        kind = fstype.fs_type(incoming)
        if kind in fstype.NETWORK_FS:
            log.info("spool on %s: no inotify there; listing it every %.1f s", kind, self.settings.reconcile_interval_s)
            return
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        waker, spool, incoming_dir = self.waker, self.spool, str(incoming)

        class Hint(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                try:
                    # complete: renamed into incoming/, or closed after writing (IN_CLOSE_WRITE)
                    done = event.dest_path if event.event_type == "moved" else \
                        event.src_path if event.event_type == "closed" else ""
                    if done and os.path.dirname(done) == incoming_dir:
                        spool.hint_complete(os.path.basename(done))
                    elif event.event_type == "created" and os.path.dirname(event.src_path) == incoming_dir:
                        spool.hint_created(os.path.basename(event.src_path))  # renamed in from outside, or new
                finally:
                    waker.notify()

        # Watch all of spool/, not just incoming/: the daemon's own moves to accepted/ and rejected/ then
        # pair up at once. An unpaired MOVED_FROM would sit 0.5 s in watchdog's move-grouping queue and
        # hold up every event behind it (p50 intake latency 480 ms instead of a few ms).
        self.observer = Observer()
        self.observer.schedule(Hint(), str(incoming.parent), recursive=True)
        self.observer.start()

    # signals ---------------------------------------------------------------------------------
    def _on_stop(self, signum, frame) -> None:
        self.stopping = True
        self.waker.notify()

    def _on_hup(self, signum, frame) -> None:
        self.reload_requested = True
        self.waker.notify()

    def _on_child(self, signum, frame) -> None:
        self.waker.notify()

    # the loop --------------------------------------------------------------------------------
    def run(self) -> int:
        self.start()
        self.report()  # daemon.json exists once READY=1 is sent: `sweepd status` right after start has a file to read
        self.notifier.ready()
        log.info("sweepd serve: watching %s (pid %d, %d GPU worker(s))", self.spool.incoming, os.getpid(),
                 len(self.pool.slots))
        try:
            while not self.stopping:
                self.step()
                if self.once and self.pool.idle() and not self.slurm.busy() and not self.spool.waiting and \
                        (not self.pool.slots or not self.local_queued()):
                    break
                self.waker.wait(self.tick())
        finally:
            self.shutdown()
        return 0

    def local_queued(self) -> bool:
        try:
            return any(r.executor == "local" for r in self.queue.list((SweepState.QUEUED,)))
        except SweepdError:
            return True  # cannot tell now: not done

    def tick(self) -> float:
        tick = min(self.settings.reconcile_interval_s, 1.0 if self.pool.running else 5.0)
        if self.notifier.watchdog_interval_s:
            tick = min(tick, self.notifier.watchdog_interval_s)
        if self.spool.waiting:  # a file still being written: look again once it may have settled
            tick = min(tick, self.settings.spool_settle_s / 2)
        return tick

    def step(self) -> None:
        if self.reload_requested:
            self.reload()
        if time.monotonic() >= self._retry_at:
            parts = [("intake", self.intake), ("recording finished sweeps", self.pool.reap),
                     ("cancelling", self.pool.handle_cancels)]
            if not self.stopping:
                parts.append(("starting sweeps", self.pool.start_ready))
            if all(self.part(name, fn) for name, fn in parts):  # stops at the first fault
                self.healed("loop")
        if not self.stopping:
            self.slurm.kick()  # the SLURM thread does the rest: its calls never hold up this loop
        self.report()

    def intake(self) -> None:
        now = time.monotonic()
        if self.waker.pending or self.spool.waiting or now - self._last_scan >= self.settings.reconcile_interval_s \
                or self._last_scan == 0:
            self._last_scan = now
            try:
                self.spool.scan()
            except (SweepdError, OSError):
                raise
            except Exception:  # a bug outside any one file (each file's own are handled in scan): logged, go on
                log.exception("spool intake failed; trying again at the next scan")

    def part(self, name: str, fn) -> bool:
        """Run one part of the loop; a fault of the queue or the filesystem is reported, not raised."""
        try:
            fn()
            return True
        except (SweepdError, OSError) as e:
            self.faulted("loop", f"{name}: {e.line() if isinstance(e, SweepdError) else os_line(e)}")
            return False

    @property
    def fault(self) -> str | None:
        return "; ".join(self.faults.values()) or None

    def faulted(self, where: str, what: str) -> None:
        """``where`` (the loop's queue parts, the status file) cannot do its work now: said once, retried later."""
        if where == "loop":
            self._retry_at = time.monotonic() + FAULT_RETRY_S
        if self.faults.get(where) != what:
            log.error("%s; the daemon goes on and tries again", what)
            self.faults[where] = what

    def healed(self, where: str) -> None:
        if (what := self.faults.pop(where, None)) is None:
            return
        log.warning("healed: %s", what)
        if where == "loop" and self.spool.orphaned:  # a request left in accepted/ without a row meanwhile
            self.part("queueing accepted requests", self.spool.reconcile_accepted)

    def reload(self) -> None:
        self.reload_requested = False
        self.notifier.reloading()
        try:
            new = settings_mod.load(self.config)
            admission = Admission.of(new)
        except InputError as e:  # a ConfigError, or a spool_group this machine does not have
            self.settings_error = str(e)
            log.error("reload: settings not changed, the new ones do not validate:\n%s", e)
        else:
            self.settings_error = None
            self.settings = self.pool.settings = self.slurm.settings = new
            self.spool.configure(new.max_request_bytes, admission, new.spool_settle_s)
            self.part("the spool's folders", self.spool.ensure)  # a new spool_group's modes
            journal.setup(new.log_level)
            log.info("reloaded settings")
        self.storage.load()  # the last valid policy stays in force if the files do not validate
        self.notifier.ready()

    def report(self) -> None:
        parts = []
        for slot, r in self.pool.running.items():
            st = read_status(self.layout, r.job_id)
            where = f" {st.where}" if st and st.clocks else " starting"
            last = f" {st.last_j_per_image:.1f} J/img" if st and st.last_j_per_image else ""
            parts.append(f"{slot}: job {r.job_id}{where}{last}")
        parts += self.slurm.snapshot.lines
        line = "; ".join(parts or ["idle"])
        if "loop" not in self.faults:
            try:
                line += f"; {self.queue.counts()[SweepState.QUEUED]} queued"
            except SweepdError as e:
                self.faulted("loop", f"reading the queue: {e.line()}")
        if self.fault is not None:
            line += f"; FAULT: {self.fault}"
        if self.storage.policies:
            line += f"; images {human(self.storage.usage())}"
        if self.settings_error:
            line += "; SETTINGS ERROR (old settings in force)"
        if self.storage.error:
            line += "; POLICY ERROR (old policy in force)"
        if (line, self.settings_error, self.storage.error) == self._last_line:
            try:  # the heartbeat `sweepd status` reads: a stopped or hung daemon's file ages
                os.utime(self.layout.daemon_state)
            except OSError:
                pass
        else:
            try:
                DaemonState(pid=os.getpid(), status=line, settings_error=self.settings_error, fault=self.fault,
                            policy_error=self.storage.error, updated=time.time()).write(self.layout.daemon_state)
                self._last_line = (line, self.settings_error, self.storage.error)
                self.healed("status file")
            except OSError as e:  # state/ full or read-only: systemd and the journal still hear it
                self.faulted("status file", f"writing {self.layout.daemon_state}: {e.strerror or e}")
        self.notifier.status(line)
        self.notifier.watchdog()

    def shutdown(self) -> None:
        self.notifier.stopping()
        log.info("stopping: running sweeps stop after their current trial")
        if self.observer is not None:
            self.observer.stop()
            self.observer.join(timeout=5)
        self.pool.stop_all(self.settings.stop_timeout_s)
        self.slurm.stop()  # SLURM jobs go on; the next daemon follows them
        self.storage.stop()
        self.queue.close()
        self.lock.release()
        log.info("stopped")
