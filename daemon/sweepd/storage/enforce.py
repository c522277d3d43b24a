"""Enforcing policies while sweepd runs: on each rule's schedule, and as soon as a cap is crossed.

- APScheduler 3.x runs each rule on its schedule (misfire_grace_time large, coalesce, one
  instance at a time; a missed run is logged), plus a reconcile scan that corrects the index.
- On local filesystems a watchdog observer keeps the in-memory usage index current and, when a
  cap is crossed, triggers an enforcement (debounced). On NFS, Lustre, GPFS or CIFS
  (/proc/self/mountinfo) nothing watches: scheduled scans only.
- Policy files are watched too: an edit applies within seconds; one that does not validate is
  reported and the last valid policy stays in force.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from sweepd import fstype
from sweepd.configfile import ConfigError
from sweepd.paths import Layout
from sweepd.storage.apply import apply
from sweepd.storage.context import IndexCache, load_policies, policy_files, rules_of, user_policy_dir
from sweepd.storage.planner import Planner, PolicyError, resolve_root
from sweepd.storage.units import human

log = logging.getLogger("sweepd.storage")

DEBOUNCE_S = 2.0
RECONCILE_S = 600.0


class StorageManager:
    def __init__(self, layout: Layout, explicit: list[Path] | None = None):
        from apscheduler.schedulers.background import BackgroundScheduler

        self.layout, self.explicit = layout, explicit
        self.policies: list = []
        self.error: str | None = None
        self.cache = IndexCache()
        self.lock = threading.Lock()
        self.scheduler = BackgroundScheduler(job_defaults={"misfire_grace_time": 3600, "coalesce": True,
                                                           "max_instances": 1})
        self.policy_observers: list = []
        self.path_observers: list = []
        self._timers: dict[str, threading.Timer] = {}
        self.last_run: dict[str, float] = {}

    # policies --------------------------------------------------------------------------------
    def load(self) -> bool:
        """(Re)load the policy files; on any problem keep the policies in force and report it."""
        try:
            pols = load_policies(policy_files(self.explicit))
            for rule, _ in rules_of(pols):
                for raw in rule.paths:
                    resolve_root(self.layout, rule, raw)
        except (ConfigError, PolicyError) as e:
            self.error = str(e)
            log.error("policy not changed: the new files do not validate:\n%s", e)
            return False
        self.error = None
        self.policies = pols
        self.cache = IndexCache()
        log.info("storage policies in force: %s", ", ".join(str(p) for p, _ in pols) or "none")
        if self.scheduler.running:
            self._schedule()
            self._watch_paths()
        return True

    def _schedule(self) -> None:
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        for job in self.scheduler.get_jobs():
            job.remove()
        for rule, _ in rules_of(self.policies):
            trig = CronTrigger.from_crontab(rule.schedule.cron) if rule.schedule.cron else \
                IntervalTrigger(seconds=rule.schedule.every)
            self.scheduler.add_job(self.enforce, trig, args=[[rule.name], "schedule"], id=f"rule:{rule.name}",
                                   name=f"rule {rule.name}", replace_existing=True)
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
        self._watch_policies()
        self._watch_paths()

    def stop(self) -> None:
        for t in self._timers.values():
            t.cancel()
        for o in self.policy_observers + self.path_observers:
            o.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)

    def enforce(self, names: list[str] | None = None, why: str = "") -> None:
        with self.lock:
            rules = [(r, s) for r, s in rules_of(self.policies) if names is None or r.name in names]
            if not rules:
                return
            from sweepd.storage.context import ProtectionUnknown, protected_jobs

            try:
                protected = protected_jobs(self.layout)
            except ProtectionUnknown as e:
                log.error("storage (%s): %s", why, e)
                return
            plan = Planner(self.layout, protected, self.cache.get).plan(rules)
            for note in plan.notes:
                log.info("storage: %s", note)
            if plan.actions:
                log.info("storage (%s): %d action(s), freeing %s", why, len(plan.actions), human(plan.bytes))
                out = apply(plan, self.layout.state)
                for a in out.done + [a for a, _ in out.failed]:
                    for idx in self.cache.indexes.values():
                        if idx.path == a.root:
                            idx.update(str(Path(a.root) / a.unit))
            for r, _ in rules:
                self.last_run[r.name] = time.time()

    def reconcile(self) -> None:
        with self.lock:
            for idx in self.cache.indexes.values():
                idx.scan()

    def usage(self) -> int:
        return sum(idx.bytes for idx in self.cache.indexes.values())

    # watching --------------------------------------------------------------------------------
    def _debounce(self, key: str, fn, *args) -> None:
        old = self._timers.get(key)
        if old:
            old.cancel()
        t = self._timers[key] = threading.Timer(DEBOUNCE_S, fn, args)
        t.daemon = True
        t.start()

    def _observer(self, path: Path, handler, into: list) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        class H(FileSystemEventHandler):
            def on_any_event(self, event) -> None:
                handler(event)

        path.mkdir(parents=True, exist_ok=True)
        o = Observer()
        o.schedule(H(), str(path), recursive=True)
        o.start()
        into.append(o)

    def _watch_policies(self) -> None:
        target = Path(self.explicit[0]).parent if self.explicit else user_policy_dir()
        if fstype.is_network_fs(target):
            return
        self._observer(target, lambda ev: str(ev.src_path).endswith(".toml") and self._debounce("policy", self.load),
                       self.policy_observers)

    def _watch_paths(self) -> None:
        for o in self.path_observers:
            o.stop()
        self.path_observers.clear()
        watched = set()
        for rule, _ in rules_of(self.policies):
            if not (rule.max_bytes or rule.max_files or rule.min_free):
                continue
            for raw in rule.paths:
                root = resolve_root(self.layout, rule, raw)
                if str(root) in watched:
                    continue
                watched.add(str(root))
                if fstype.is_network_fs(root):
                    log.info("storage: %s is on %s: scheduled scans only", root, fstype.fs_type(root))
                    continue
                self.cache.get(rule, root)
                self._observer(root, lambda ev, r=rule, rt=root: self._on_change(ev, r, rt), self.path_observers)

    def _on_change(self, event, rule, root: Path) -> None:
        idx = self.cache.get(rule, root)
        for p in (event.src_path, getattr(event, "dest_path", "")):
            if p:
                idx.update(str(p))
        if (rule.max_bytes and idx.bytes > rule.max_bytes) or (rule.max_files and idx.nfiles > rule.max_files):
            self._debounce(f"cap:{rule.name}", self.enforce, [rule.name], "cap crossed")
