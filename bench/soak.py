"""The daemon over hours, as its users leave it running: does it lose anything, and does its memory stay flat?

A real `sweepd serve` (one simulated GPU) on a fresh root, with a storage policy that bites (images/ capped at
2 MiB and aged out after 150 s, archive-then-delete, every 30 s and on every cap crossing). For ``--minutes``:

- a producer drops one small sweep request (tiny model, 2 clocks, research images) every ``--every`` seconds,
  renamed into spool/incoming/ as a writer should, and times its intake (rename to queue row);
- a writer adds a 100 KB image every 0.6 s in other job folders and deletes some of its own, as a busy user does;
- a watcher notes the sha256 of every image file the first time it sees one (sweeps write them whole: temp and
  rename), and a sampler reads the daemon's RSS, open fds and threads every 5 s.

Then it waits for the queue to drain, stops the daemon (SIGTERM), and accounts for everything: every request
dropped is done, failed or missing; every image seen (and every one the writer kept) is in place with its sha256,
or comes back out of sweepd's archives with it.

    python bench/soak.py --minutes 120 --json soak.json        # BENCHMARKS.md's run
    python bench/soak.py --minutes 3 --json soak.json          # the check's short one
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REQUEST = """[workload]
model = "tiny"
steps = 2
width = 32
height = 32
seed = {seed}
[gpu]
backend = "sim"
sim_model = "A100"
[frequencies]
mode = "custom"
list = [1410, 945]
[protocol]
trials = 2
min_window_s = 0.3
settle_s = 0
[images]
mode = "research"
"""

POLICY = """[[rules]]
name = "soak"
paths = ["images"]
max_bytes = "2MiB"
max_age = "150s"
action = "archive_then_delete"
schedule = { every = "30s" }
"""


def sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Soak:
    def __init__(self, work: Path, minutes: float, every_s: float):
        self.work, self.minutes, self.every_s = work, minutes, every_s
        self.root = work / "root"
        self.images = self.root / "images"
        self.stop = threading.Event()
        self.dropped: list[str] = []
        self.intake_ms: list[float] = []
        self.seen: dict[str, str] = {}  # image path relative to images/ -> sha256 at first sight
        self.kept: dict[str, str] = {}  # the writer's files it did not delete itself
        self.samples: dict[str, list[list[float]]] = {"rss_mb": [], "fds": [], "threads": []}
        self.errors: list[str] = []
        self.died: list[str] = []  # the soak's own threads (writer, watcher, sampler) that ended with an error
        self.worker_peak_mb: dict[str, float] = {}  # worker pid -> its peak RSS

    # the daemon ------------------------------------------------------------------------------
    def start(self) -> None:
        config_home = self.work / "xdg-config"
        (config_home / "sweepd" / "policies").mkdir(parents=True)
        (config_home / "sweepd" / "policies" / "soak.toml").write_text(POLICY)
        cfg = self.work / "settings.toml"
        cfg.write_text("gpus = [0]\nreconcile_interval_s = 2.0\n")
        env = os.environ | {"XDG_CONFIG_HOME": str(config_home), "SWEEPD_CPU_THREADS": "1"}
        env.pop("NOTIFY_SOCKET", None)
        self.log = open(self.work / "daemon.log", "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "sweepd", "serve", "--root", str(self.root),
                                      "--config", str(cfg)], stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 120
        while not (self.root / "state" / "daemon.json").exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the daemon did not start: {(self.work / 'daemon.log').read_text()[-2000:]}")
            time.sleep(0.1)
        self.t0 = time.monotonic()

    def queue_rows(self) -> dict[str, str]:
        """source file name -> state, read as `sweepd list` would (read-only)."""
        db = sqlite3.connect(f"file:{self.root / 'state' / 'queue.sqlite'}?mode=ro", uri=True, timeout=10)
        try:
            return {s: st for s, st in db.execute("SELECT source, state FROM sweeps").fetchall()}
        finally:
            db.close()

    # the threads -----------------------------------------------------------------------------
    def produce(self) -> None:
        staging = self.work / "staging"
        staging.mkdir()
        k, end = 0, self.t0 + self.minutes * 60
        while not self.stop.is_set() and time.monotonic() < end:
            name = f"soak-{k:05d}.toml"
            (staging / name).write_text(REQUEST.format(seed=k))
            t = time.perf_counter()
            os.replace(staging / name, self.root / "spool" / "incoming" / name)
            self.dropped.append(name)
            while name not in self.queue_rows() and time.perf_counter() - t < 60:
                time.sleep(0.002)
            self.intake_ms.append((time.perf_counter() - t) * 1000)
            k += 1
            self.stop.wait(max(0.0, self.t0 + k * self.every_s - time.monotonic()))

    def write(self) -> None:
        n = 0
        while not self.stop.is_set():
            d = self.images / f"job_churn{n // 50}"
            d.mkdir(parents=True, exist_ok=True)
            path = d / f"c{n:06d}.png"
            data = os.urandom(100_000)
            tmp = d / f".c{n:06d}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, path)
            self.kept[str(path.relative_to(self.images))] = hashlib.sha256(data).hexdigest()
            if n % 5 == 4:  # the writer deletes some of its own, as a user cleaning up does
                old = d / f"c{n - 2:06d}.png"
                rel = str(old.relative_to(self.images))
                if rel in self.kept:
                    try:
                        old.unlink()
                        del self.kept[rel]
                    except FileNotFoundError:  # sweepd archived it already: it stays accounted for
                        pass
            n += 1
            self.stop.wait(0.6)

    def watch(self) -> None:
        """Every image the sweeps write, with its sha256, as soon as it is seen. os.walk, not rglob: a job folder
        that sweepd archives away between its listing and its reading is passed over (rglob raised there and ended
        this thread 12 minutes into a soak)."""
        while not self.stop.is_set():
            for folder, _, names in os.walk(self.images):
                for name in names:
                    if not name.endswith(".png"):
                        continue
                    p = Path(folder) / name
                    rel = str(p.relative_to(self.images))
                    if rel not in self.seen and not rel.startswith("job_churn"):
                        h = sha256(p)
                        if h is not None:
                            self.seen[rel] = h
            self.stop.wait(0.5)

    def sample(self) -> None:
        """The daemon every 5 s; its workers every second (a small sweep's worker lives a few seconds)."""
        pid, k = self.proc.pid, 0
        while not self.stop.is_set():
            if k % 5 == 0:
                self.sample_daemon(pid)
            self.sample_workers(pid)
            k += 1
            self.stop.wait(1.0)

    def sample_daemon(self, pid: int) -> None:
        t = round(time.monotonic() - self.t0, 1)
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            self.samples["rss_mb"].append([t, int(fields["VmRSS"].split()[0]) / 1024])
            self.samples["threads"].append([t, int(fields["Threads"])])
            self.samples["fds"].append([t, len(os.listdir(f"/proc/{pid}/fd"))])
        except (OSError, KeyError, ValueError) as e:
            self.errors.append(f"sampling: {e}")

    def sample_workers(self, pid: int) -> None:
        """Each sweep worker's peak RSS (VmHWM), read while it runs: the daemon's children."""
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return
        for kid in kids:
            try:
                status = Path(f"/proc/{kid}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if "VmHWM" in fields:
                mb = int(fields["VmHWM"].split()[0]) / 1024
                self.worker_peak_mb[kid] = max(mb, self.worker_peak_mb.get(kid, 0.0))

    # the end ---------------------------------------------------------------------------------
    def drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            rows = self.queue_rows()
            if all(rows.get(n) in ("done", "failed", "cancelled") for n in self.dropped):
                return
            time.sleep(1.0)

    def verify_images(self) -> dict:
        """Every image seen or kept: in place with its sha256, or restored from an archive with it."""
        from sweepd.storage.manifest import manifests
        from sweepd.storage.restore import restore

        wanted = self.seen | self.kept
        restored = self.work / "restored"
        archive_dir = self.root / "archive"
        for m in manifests(archive_dir) if archive_dir.exists() else []:
            restore(archive_dir / m.archive, restored / m.archive, unit=m.unit)
        out = {"total": len(wanted), "verified": 0, "in_place": 0, "from_archives": 0}
        bad = []
        for rel, h in wanted.items():
            if sha256(self.images / rel) == h:
                out["in_place"] += 1
            elif any(sha256(d / rel) == h for d in restored.glob("*")) if restored.exists() else False:
                out["from_archives"] += 1
            else:
                bad.append(rel)
                continue
            out["verified"] += 1
        out["unverified"] = bad[:20]
        return out

    def _guarded(self, fn):
        """A helper thread that dies fails the soak (its accounting would be short), saying why."""
        def run():
            try:
                fn()
            except BaseException as e:
                self.died.append(f"{fn.__name__}: {type(e).__name__}: {e}")
                raise
        return run

    def run(self, drain_s: float) -> dict:
        self.start()
        threads = [threading.Thread(target=self._guarded(f), daemon=True) for f in (self.write, self.watch, self.sample)]
        for t in threads:
            t.start()
        self.produce()
        self.drain(drain_s)
        self.stop.set()
        for t in threads:
            t.join(10)
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(300)
        self.log.close()
        rows = self.queue_rows()
        requests = {"dropped": len(self.dropped),
                    "done": sum(rows.get(n) == "done" for n in self.dropped),
                    "failed": sum(rows.get(n) in ("failed", "cancelled") for n in self.dropped),
                    "missing": sum(rows.get(n) is None for n in self.dropped),
                    "unfinished": sum(rows.get(n) in ("queued", "running", "interrupted") for n in self.dropped)}
        lat = sorted(self.intake_ms) or [0.0]
        archives = len(list((self.root / "archive").glob("*.tar.zst"))) if (self.root / "archive").exists() else 0
        rss = self.samples["rss_mb"]
        late = [(t, mb) for t, mb in rss if t >= 600] if rss and rss[-1][0] >= 1200 else rss[len(rss) // 3:]
        return {"minutes": self.minutes, "date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(),
                "requests": requests, "images": self.verify_images(), "archives": archives,
                "intake_ms": {"p50": round(statistics.median(lat), 2), "p95": round(lat[int(0.95 * (len(lat) - 1))], 2),
                              "max": round(lat[-1], 2)},
                "rss_mb": rss, "fds": self.samples["fds"], "threads": self.samples["threads"],
                "rss_slope_mb_per_h": round(_slope(late) * 3600, 2) if len(late) >= 3 else None,
                "after_10_min": {k: _span([v for t, v in self.samples[k] if t >= 600]) for k in ("rss_mb", "fds", "threads")},
                "worker_peak_rss_mb": _span(list(self.worker_peak_mb.values())),
                "daemon_exit": rc, "errors": self.errors[:20], "helpers_died": self.died}


def _span(values: list[float]) -> dict | None:
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "n": len(values)} \
        if values else None


def _slope(points: list[list[float]]) -> float:
    """Least-squares slope of (t, y)."""
    ts, ys = [p[0] for p in points], [p[1] for p in points]
    mt, my = statistics.fmean(ts), statistics.fmean(ys)
    den = sum((t - mt) ** 2 for t in ts)
    return sum((t - mt) * (y - my) for t, y in zip(ts, ys)) / den if den else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=25.0)
    ap.add_argument("--every", type=float, default=20.0, help="seconds between two requests")
    ap.add_argument("--drain-s", type=float, default=600.0, help="how long to wait for the queue to empty")
    ap.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    work = a.workdir or Path(tempfile.mkdtemp(prefix="sweepd-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        res = Soak(work, a.minutes, a.every).run(a.drain_s)
    finally:
        if a.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    r, im = res["requests"], res["images"]
    print(f"requests: {r['done']}/{r['dropped']} done, {r['failed']} failed, {r['missing']} missing; images: "
          f"{im['verified']}/{im['total']} verified ({im['from_archives']} from {res['archives']} archives); intake "
          f"p50 {res['intake_ms']['p50']} ms; RSS {res['rss_mb'][0][1]:.1f} -> {res['rss_mb'][-1][1]:.1f} MB "
          f"(slope {res['rss_slope_mb_per_h']} MB/h); workers' peak RSS {res['worker_peak_rss_mb']}; daemon exit "
          f"{res['daemon_exit']}" + (f"; the soak's own threads died: {res['helpers_died']}" if res["helpers_died"] else ""))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    ok = r["done"] == r["dropped"] and im["verified"] == im["total"] and res["daemon_exit"] == 0 and not res["helpers_died"]
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
