"""Storage manager figures, each side by side with the standard tool in one run.

(a) scan + plan over 200,000 files in 400 job folders vs `du -s` of the same tree (warm cache,
    median of 5), and a re-plan with nothing changed over the daemon's in-memory index (median of 20).
(b) archiving ~2 GB of real sweep-like PNGs (512x512, ~450 KB each), read-back verification
    included, vs `tar -I 'zstd -T0' -cf` and `tar czf` of the same files (warm cache, one run each).

    python bench/storage.py [--skip-archive] [--workdir /tmp/sweepd-bench] [--jobs 400 --per-job 500 --archive-mb 2000]

(The test suite runs it at a smoke size, tests/test_bench_smoke.py, so that an API change cannot break it unseen.)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
from PIL import Image

from sweepd.paths import Layout
from sweepd.storage import archive
from sweepd.storage.context import IndexCache
from sweepd.storage.planner import Planner
from sweepd.storage.policy import Policy
from sweepd.storage.safefs import UnitDir


def make_tree(images: Path, jobs: int = 400, per_job: int = 500) -> None:
    if (images / f"job_{jobs - 1:04d}").exists():
        return
    clocks = [1410 - 15 * k for k in range(10)]
    for j in range(jobs):
        for c in clocks:
            d = images / f"job_{j:04d}" / f"{c}MHz"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_job // len(clocks)):
                fd = os.open(d / f"{c}MHz_t1_i{i:03d}_s{42 + i}.png", os.O_WRONLY | os.O_CREAT, 0o644)
                os.write(fd, b"x" * 100)
                os.close(fd)


def timed(fn, n: int) -> float:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def bench_scan(work: Path, jobs: int = 400, per_job: int = 500) -> dict:
    layout = Layout.resolve(work / "root")
    make_tree(layout.images, jobs, per_job)
    rules = [(r, "bench") for r in Policy.model_validate({"rules": [{"name": "cap", "max_bytes": "10MiB",
                                                                     "per_job": {"keep": "representative"}}]}).rules]
    du = lambda: subprocess.run(["du", "-s", str(layout.images)], check=True, capture_output=True)  # noqa: E731
    du()

    def scan_plan():
        cache = IndexCache()
        return Planner(layout, set(), cache.get).plan(rules), cache

    scan_plan()
    t_du, t_ours = timed(du, 7), timed(scan_plan, 7)
    plan, cache = scan_plan()
    t_replan = timed(lambda: Planner(layout, set(), cache.get).plan(rules), 20)
    holds = [(r, "bench") for r in Policy.model_validate({"rules": [{"name": "cap", "max_bytes": "1TiB",
                                                                     "max_age": "365d"}]}).rules]
    t_idle = timed(lambda: Planner(layout, set(), cache.get).plan(holds), 20)
    files = sum(i.nfiles for i in cache.indexes.values())
    return {"files": files, "jobs": jobs, "du_s": t_du, "scan_plan_s": t_ours, "ratio": t_ours / t_du,
            "replan_ms": t_replan * 1000, "actions": len(plan.actions), "replan_nothing_to_do_ms": t_idle * 1000}


def make_pngs(src: Path, target_bytes: int) -> list[Path]:
    src.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    uniques = []
    for k in range(100):
        p = src / f"u{k:03d}.png"
        if not p.exists():
            y, x = np.mgrid[0:512, 0:512]
            base = np.stack([(x + k) % 256, (y * 2 + k) % 256, (x + y) % 256], -1).astype(np.int16)
            img = np.clip(base + rng.normal(0, 24, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(p)
        uniques.append(p)
    size = uniques[0].stat().st_size
    job = src.parent / "images" / "job_bench"
    clocks = [1410 - 15 * k for k in range(40)]
    files, total, n = [], 0, 0
    while total < target_bytes:
        c = clocks[n % len(clocks)]
        d = job / f"{c}MHz"
        d.mkdir(parents=True, exist_ok=True)
        f = d / f"{c}MHz_t{n // len(clocks) + 1}_i000_s{n}.png"
        if not f.exists():
            shutil.copyfile(uniques[n % len(uniques)], f)  # identical copies are >= 100 files apart
        files.append(f)
        total += size
        n += 1
    return files


def bench_archive(work: Path, target_bytes: int = 2 * 10**9) -> dict:
    files = make_pngs(work / "png-src", target_bytes)
    job = files[0].parent.parent
    rel = sorted(str(f.relative_to(job)) for f in files)
    total = sum(f.stat().st_size for f in files)
    out = work / "archives"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    def warm():  # every run starts with the sources in the page cache
        subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)

    warm()
    t0 = time.perf_counter()
    with UnitDir(job.parent, job.name) as unit:
        members = archive.write_archive(unit, rel, out / "phase.partial", 3, -1).members
    t_write = time.perf_counter() - t0
    archive.verify(out / "phase.partial", members)
    t_verify = time.perf_counter() - t0 - t_write
    (out / "phase.partial").unlink()
    warm()
    t0 = time.perf_counter()
    archive.archive(job.parent, job.name, rel, out / "sweepd", level=3, threads=-1)
    t_ours = time.perf_counter() - t0
    ours_size = next((out / "sweepd").glob("*.tar.zst")).stat().st_size
    warm()
    t0 = time.perf_counter()
    subprocess.run(["tar", "-I", "zstd -T0", "-cf", str(out / "t.tar.zst"), "-C", str(job.parent), job.name], check=True)
    t_zstd = time.perf_counter() - t0
    warm()
    t0 = time.perf_counter()
    subprocess.run(["tar", "czf", str(out / "t.tar.gz"), "-C", str(job.parent), job.name], check=True)
    t_gz = time.perf_counter() - t0
    zstd_size, gz_size = (out / "t.tar.zst").stat().st_size, (out / "t.tar.gz").stat().st_size
    shutil.rmtree(out)  # 6 GB of archives would push the next run's sources out of the page cache
    mb = total / 1e6
    return {"files": len(files), "bytes": total, "sweepd_s": t_ours, "tar_zstd_s": t_zstd, "tar_gz_s": t_gz,
            "phase_write_s": t_write, "phase_verify_s": t_verify, "write_only_vs_tar_zstd": t_zstd / t_write,
            "sweepd_mb_s": mb / t_ours, "tar_zstd_mb_s": mb / t_zstd, "tar_gz_mb_s": mb / t_gz,
            "vs_tar_zstd": t_zstd / t_ours, "vs_tar_gz": t_gz / t_ours,
            "sweepd_ratio": ours_size / total, "tar_zstd_ratio": zstd_size / total, "tar_gz_ratio": gz_size / total}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/sweepd-bench"))
    ap.add_argument("--skip-archive", action="store_true")
    ap.add_argument("--jobs", type=int, default=400, help="job folders in the scanned tree")
    ap.add_argument("--per-job", type=int, default=500, help="files in each")
    ap.add_argument("--archive-mb", type=int, default=2000, help="PNGs to archive, in MB")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    a.workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(a.workdir / "archives", ignore_errors=True)
    res = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    s = res["scan"] = bench_scan(a.workdir, a.jobs, a.per_job)
    print(f"scan+plan {s['files']} files in {s['jobs']} jobs: {s['scan_plan_s']:.3f} s vs du -s {s['du_s']:.3f} s "
          f"= {s['ratio']:.2f}x; re-plan with nothing changed {s['replan_ms']:.1f} ms ({s['actions']} actions "
          f"pending), {s['replan_nothing_to_do_ms']:.1f} ms when the policy holds")
    if not a.skip_archive:
        r = res["archive"] = bench_archive(a.workdir, a.archive_mb * 10**6)
        print(f"archive {r['bytes'] / 1e9:.2f} GB in {r['files']} PNGs: sweepd {r['sweepd_mb_s']:.0f} MB/s "
              f"(verified), tar+zstd -T0 {r['tar_zstd_mb_s']:.0f} MB/s, tar czf {r['tar_gz_mb_s']:.0f} MB/s; "
              f"sweepd = {r['vs_tar_zstd']:.2f}x tar+zstd's throughput, {r['vs_tar_gz']:.1f}x faster than tar czf; "
              f"phases: write+hash+fsync {r['phase_write_s']:.1f} s ({r['write_only_vs_tar_zstd']:.2f}x tar+zstd), "
              f"read-back verify {r['phase_verify_s']:.1f} s")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
