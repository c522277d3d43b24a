"""Enforcing policies while sweepd runs: on each rule's schedule, and as soon as a cap is crossed.

- APScheduler 3.x runs each rule on its schedule (misfire_grace_time large, coalesce, one
  instance at a time; a missed run is logged), plus a reconcile scan that corrects the index.
- On local filesystems a watchdog observer keeps the in-memory usage index current and, when a
  cap is crossed, triggers an enforcement: events coalesce (DEBOUNCE_S after the last), but the run comes at most
  ``max_wait_s`` after the event that crossed the cap, however many follow (:mod:`sweepd.storage.debounce`). On NFS, Lustre, GPFS or CIFS
  (/proc/self/mountinfo) nothing watches: scheduled scans only.
- Policy files are watched too: a change of their content (an edit in place, or a new file renamed
  over the old) applies within seconds; reading them changes nothing. One that does not validate
  is reported (daemon.json, `sweepd status`) and the last valid policy stays in force. A rule whose
  schedule is unchanged keeps its timer across reloads.
- Every enforcement holds the root's storage lock (:mod:`sweepd.storage.lock`) from plan to
  apply, as hand-run `sweepd storage apply` does; the path index is only touched under its own
  lock, and no callback exception ever ends a watching thread.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

from sweepd import fstype
from sweepd.configfile import ConfigError
from sweepd.paths import Layout
from sweepd.storage.debounce import Debouncer
from sweepd.storage.context import IndexCache, load_checked, policy_files, rules_of, storage_lock, user_policy_dir
from sweepd.storage.lock import StorageBusy
from sweepd.storage.planner import Planner, PolicyError, scopes
from sweepd.storage.units import human

log = logging.getLogger("sweepd.storage")

DEBOUNCE_S = 2.0
MAX_WAIT_S = 5.0  # the default of settings.enforce_max_wait_s
RECONCILE_S = 600.0
LOCK_WAIT_S = 60.0  # a hand-run apply holding the lock longer: this run is skipped, the next one comes
POLICY_EVENTS = {"created", "modified", "moved", "deleted", "closed"}  # not "opened" / "closed_no_write": reads


def policy_digest(files: list[Path]) -> str:
    """What the policy files say: their names and bytes (a read, a touch or a rewrite with the same text is no change)."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f).encode() + b"\0")
        try:
            h.update(f.read_bytes())
        except OSError as e:
            h.update(f"unreadable: {e}".encode())
        h.update(b"\0")
    return h.hexdigest()


class StorageManager:
    def __init__(self, layout: Layout, explicit: list[Path] | None = None, max_wait_s: float = MAX_WAIT_S,
                 debouncer: Debouncer | None = None):
        from apscheduler.schedulers.background import BackgroundScheduler

        self.layout, self.explicit = layout, explicit
        self.policies: list = []
        self.error: str | None = None
        self.cache = IndexCache()
        self.lock = threading.Lock()  # one enforcement at a time in this process
        self.index_lock = threading.RLock()  # the path indexes: watchdog thread, timers and enforcement
        self.digest: str | None = None
        self._specs: dict[str, str] = {}  # scheduler job id -> its trigger, to keep unchanged timers
        self.scheduler = BackgroundScheduler(job_defaults={"misfire_grace_time": 3600, "coalesce": True,
                                                           "max_instances": 1})
        self.policy_observers: list = []
        self.path_observers: list = []
        self.debouncer = debouncer or Debouncer(DEBOUNCE_S, max_wait_s)
        self.last_run: dict[str, float] = {}

    # policies --------------------------------------------------------------------------------
    def load(self) -> bool:
        """(Re)load the policy files if what they say changed; on any problem keep the policies in force
        and report it."""
        files = policy_files(self.explicit)
        digest = policy_digest(files)
        if digest == self.digest:
            return True
        self.digest = digest
        try:
            pols = load_checked(self.layout, files)
        except (ConfigError, PolicyError) as e:
            self.error = str(e)
            log.error("policy not changed: the new files do not validate:\n%s", e)
            return False
        except Exception as e:  # a bug or an unreadable folder: reported, never the daemon's end
            self.error = f"policy not changed: {type(e).__name__}: {e}"
            log.exception("policy not changed")
            return False
        self.error = None
        self.policies = pols
        with self.index_lock:
            self.cache = IndexCache()
        log.info("storage policies in force: %s", ", ".join(str(p) for p, _ in pols) or "none")
        if self.scheduler.running:
            self._schedule()
            try:
                self._watch_paths()
            except Exception as e:
                self.error = f"storage: cannot watch: {type(e).__name__}: {e}"
                log.exception("storage: watching the rule paths failed; scheduled runs go on")
        return True

    def _schedule(self) -> None:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        wanted = {}
        for rule, _ in rules_of(self.policies):
            spec = f"cron {rule.schedule.cron}" if rule.schedule.cron else f"every {rule.schedule.every!r}"
            wanted[f"rule:{rule.name}"] = (rule, spec)
        for job in self.scheduler.get_jobs():
            if job.id.startswith("rule:") and (job.id not in wanted or self._specs.get(job.id) != wanted[job.id][1]):
                job.remove()
                self._specs.pop(job.id, None)
        for job_id, (rule, spec) in wanted.items():
            if self._specs.get(job_id) == spec and self.scheduler.get_job(job_id):
                continue  # unchanged: its timer runs on
            try:
                trig = CronTrigger.from_crontab(rule.schedule.cron) if rule.schedule.cron else \
                    IntervalTrigger(seconds=rule.schedule.every)
                self.scheduler.add_job(self.enforce, trig, args=[[rule.name], "schedule"], id=job_id,
                                       name=f"rule {rule.name}", replace_existing=True)
            except (ValueError, OverflowError, TypeError) as e:
                self.error = f"rule {rule.name!r}: schedule: {spec}: {e}"
                log.error("storage: %s: this rule is not scheduled", self.error)
                continue
            self._specs[job_id] = spec
        if not self.scheduler.get_job("reconcile"):
            self.scheduler.add_job(self.reconcile, IntervalTrigger(seconds=RECONCILE_S), id="reconcile",
                                   replace_existing=True)

    # running ---------------------------------------------------------------------------------
    def start(self) -> None:
        from apscheduler.events import EVENT_JOB_MISSED

        self.load()
        self.scheduler.add_listener(lambda ev: log.warning("storage job %s missed its run at %s", ev.job_id,
                                                           ev.scheduled_run_time), EVENT_JOB_MISSED)
        self.scheduler.start()
        self._schedule()
        for step in (self._watch_policies, self._watch_paths):
            try:
                step()
            except Exception as e:  # a folder that cannot be watched: reported, schedules still run
                self.error = f"storage: cannot watch: {type(e).__name__}: {e}"
                log.exception("storage: %s failed; scheduled runs go on", step.__name__)

    def stop(self) -> None:
        self.debouncer.cancel_all()
        for o in self.policy_observers + self.path_observers:
            o.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def enforce(self, names: list[str] | None = None, why: str = "") -> None:
        try:
            self._enforce(names, why)
        except Exception:  # a bug: logged with its traceback, and the next run still comes
            log.exception("storage (%s): enforcement failed", why)

    def _enforce(self, names: list[str] | None, why: str) -> None:
        with self.lock:
            rules = [(r, s) for r, s in rules_of(self.policies) if names is None or r.name in names]
            if not rules:
                return
            from sweepd.storage.apply import apply
            from sweepd.storage.context import protected_jobs
            from sweepd.storage.protection import ProtectionUnknown

            try:
                held = storage_lock(self.layout, LOCK_WAIT_S)
            except StorageBusy as e:
                log.warning("storage (%s): skipped: %s", why, e)
                return
            with held:
                with self.index_lock:
                    if why == "schedule":  # plan from the tree as it is now (a hand run may have changed it)
                        for idx in self.cache.indexes.values():
                            idx.scan()
                    try:
                        plan = Planner(self.layout, protected_jobs(self.layout), self.cache.get).plan(rules)
                    except ProtectionUnknown as e:
                        log.error("storage (%s): %s", why, e)
                        return
                for note in plan.notes:
                    log.info("storage: %s", note)
                if plan.actions:
                    log.info("storage (%s): %d action(s), freeing %s", why, len(plan.actions), human(plan.bytes))
                    out = apply(plan, self.layout)
                    with self.index_lock:
                        for a in out.done + [a for a, _ in out.failed]:
                            for idx in self.cache.indexes.values():
                                if idx.path == a.root:
                                    idx.update(str(Path(a.root) / a.unit))
            for r, _ in rules:
                self.last_run[r.name] = time.time()

    def reconcile(self) -> None:
        with self.index_lock:
            for idx in self.cache.indexes.values():
                idx.scan()

    def usage(self) -> int:
        with self.index_lock:
            return sum(idx.bytes for idx in self.cache.indexes.values())

    # watching --------------------------------------------------------------------------------
    def _observer(self, path: Path, handler, into: list) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        class H(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                try:
                    handler(event)
                except Exception:  # never let one event end the watching thread
                    log.exception("storage: handling %s of %s failed", event.event_type, event.src_path)

        path.mkdir(parents=True, exist_ok=True)
        o = Observer()
        o.schedule(H(), str(path), recursive=True)
        o.start()
        into.append(o)

    def _watch_policies(self) -> None:
        target = Path(self.explicit[0]).parent if self.explicit else user_policy_dir()
        if fstype.is_network_fs(target):
            return
        def changed(ev) -> None:
            names = (str(ev.src_path), str(getattr(ev, "dest_path", "") or ""))
            if ev.event_type in POLICY_EVENTS and any(n.endswith(".toml") for n in names):
                self.debouncer.call("policy", self.load)

        self._observer(target, changed, self.policy_observers)

    def _watch_paths(self) -> None:
        for o in self.path_observers:
            o.stop()
        self.path_observers.clear()
        watched = set()
        for rule, _ in rules_of(self.policies):
            if not (rule.max_bytes or rule.max_files or rule.min_free):
                continue
            for scope in scopes(self.layout, rule):
                key = (str(scope.base), scope.within)
                if key in watched:
                    continue
                watched.add(key)
                if fstype.is_network_fs(scope.base):
                    log.info("storage: %s is on %s: scheduled scans only", scope.base, fstype.fs_type(scope.base))
                    continue
                with self.index_lock:
                    self.cache.get(rule, scope)
                self._observer(scope.base, lambda ev, r=rule, sc=scope: self._on_change(ev, r, sc),
                               self.path_observers)

    def _on_change(self, event, rule, scope) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        with self.index_lock:
            idx = self.cache.get(rule, scope)
            for p in (event.src_path, getattr(event, "dest_path", "")):
                if p:
                    idx.update(str(p))
            over = (rule.max_bytes and idx.bytes > rule.max_bytes) or (rule.max_files and idx.nfiles > rule.max_files)
        if over:
            self.debouncer.call(f"cap:{rule.name}", self.enforce, [rule.name], "cap crossed")
