"""Storage manager figures, each side by side with the standard tool in one run.

(a) scan + plan over 200,000 files in 400 job folders vs `du -s` of the same tree (warm cache, taking turns,
    median of --runs each): as sweepd runs it (helper processes walking part of the folders where cores are free,
    storage/scanpart.py) and in one process alone; and a re-plan with nothing changed over the daemon's in-memory
    index (median of 20).
(b) archiving ~2 GB of real sweep-like PNGs (512x512, ~450 KB each), read-back verification and fsync
    included, vs `tar --sort=name -I 'zstd -T0' -cf` of the same files (the same byte stream: sweepd archives
    in name order; tar's directory order compresses this synthetic set differently, so it is shown too) and vs the
    same tar with its archive fsynced (the durability sweepd's archive has before any source is deleted), the four
    alternating, median of --runs each, and `tar czf` once. Each run starts with the sources in the page cache and
    no other run's writes pending (sync). This process's allocator is set as the daemon's (procs.steady_malloc).

    python bench/storage.py [--skip-archive] [--runs 5] [--workdir /tmp/sweepd-bench] [--jobs 400 --per-job 500 --archive-mb 2000]

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
from sweepd.procs import steady_malloc
from sweepd.storage import archive, scanpart
from sweepd.storage.context import IndexCache
from sweepd.storage.planner import Planner
from sweepd.storage.policy import Policy


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


def alternating(fns: dict, n: int, before=lambda: None) -> dict[str, list[float]]:
    """Each of `fns` run n times, taking turns (so that a slow spell of the machine falls on all of them)."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(n):
        for k, fn in fns.items():
            before()
            t0 = time.perf_counter()
            fn()
            out[k].append(time.perf_counter() - t0)
    return out


def bench_scan(work: Path, jobs: int = 400, per_job: int = 500, runs: int = 5) -> dict:
    layout = Layout.resolve(work / "root")
    make_tree(layout.images, jobs, per_job)
    rules = [(r, "bench") for r in Policy.model_validate({"rules": [{"name": "cap", "max_bytes": "10MiB",
                                                                     "per_job": {"keep": "representative"}}]}).rules]
    du = lambda: subprocess.run(["du", "-s", str(layout.images)], check=True, capture_output=True)  # noqa: E731
    du()

    def scan_plan():
        cache = IndexCache()
        return Planner(layout, set(), cache.get).plan(rules), cache

    def one_process():
        most, scanpart.MAX_HELPERS = scanpart.MAX_HELPERS, 0
        try:
            scan_plan()
        finally:
            scanpart.MAX_HELPERS = most

    scan_plan()
    times = alternating({"du": du, "sweepd": scan_plan, "one_process": one_process}, runs)
    t_du, t_ours = statistics.median(times["du"]), statistics.median(times["sweepd"])
    t_alone = statistics.median(times["one_process"])
    plan, cache = scan_plan()
    t_replan = timed(lambda: Planner(layout, set(), cache.get).plan(rules), 20)
    holds = [(r, "bench") for r in Policy.model_validate({"rules": [{"name": "cap", "max_bytes": "1TiB",
                                                                     "max_age": "365d"}]}).rules]
    t_idle = timed(lambda: Planner(layout, set(), cache.get).plan(holds), 20)
    files = sum(i.nfiles for i in cache.indexes.values())
    return {"files": files, "jobs": jobs, "runs": runs, "du_s": t_du, "scan_plan_s": t_ours, "ratio": t_ours / t_du,
            "helpers": scanpart.helpers_for(jobs), "one_process_s": t_alone, "one_process_ratio": t_alone / t_du,
            "du_runs_s": times["du"], "scan_plan_runs_s": times["sweepd"], "one_process_runs_s": times["one_process"],
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


def bench_archive(work: Path, target_bytes: int = 2 * 10**9, runs: int = 5) -> dict:
    files = make_pngs(work / "png-src", target_bytes)
    job = files[0].parent.parent
    rel = sorted(str(f.relative_to(job)) for f in files)
    total = sum(f.stat().st_size for f in files)
    out = work / "archives"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    sizes: dict[str, int] = {}

    def clean():  # the last run's output gone, the sources in the page cache, nothing left to write back
        shutil.rmtree(out)
        out.mkdir()
        subprocess.run(["cat", *map(str, files)], stdout=subprocess.DEVNULL, check=True)
        os.sync()

    def ours():
        archive.archive(job.parent, job.name, rel, out / "sweepd", level=3, threads=-1)
        sizes["sweepd"] = next((out / "sweepd").glob("*.tar.zst")).stat().st_size

    def tar(*flags: str, name: str, compress: str = "zstd -T0", fsync: bool = False):
        def run():
            subprocess.run(["tar", *flags, "-I", compress, "-cf", str(out / name), "-C", str(job.parent), job.name],
                           check=True)
            if fsync:
                fd = os.open(out / name, os.O_RDONLY)
                os.fsync(fd)
                os.close(fd)
            sizes[name] = (out / name).stat().st_size
        return run

    times = alternating({"sweepd": ours, "tar_zstd": tar("--sort=name", name="sorted.tar.zst"),
                         "tar_zstd_dir_order": tar(name="t.tar.zst"),
                         "tar_zstd_fsync": tar("--sort=name", name="synced.tar.zst", fsync=True)}, runs, before=clean)
    gz = alternating({"tar_gz": tar(name="t.tar.gz", compress="gzip")}, 1, before=clean)["tar_gz"][0]
    shutil.rmtree(out)  # 6 GB of archives would push the next run's sources out of the page cache
    med = {k: statistics.median(v) for k, v in times.items()}
    mb = total / 1e6
    return {"files": len(files), "bytes": total, "runs": runs, "runs_s": times,
            "sweepd_s": med["sweepd"], "tar_zstd_s": med["tar_zstd"], "tar_zstd_dir_order_s": med["tar_zstd_dir_order"],
            "tar_zstd_fsync_s": med["tar_zstd_fsync"], "vs_tar_zstd_fsync": med["tar_zstd_fsync"] / med["sweepd"],
            "tar_gz_s": gz, "sweepd_mb_s": mb / med["sweepd"], "tar_zstd_mb_s": mb / med["tar_zstd"],
            "tar_gz_mb_s": mb / gz, "vs_tar_zstd": med["tar_zstd"] / med["sweepd"],
            "vs_tar_zstd_dir_order": med["tar_zstd_dir_order"] / med["sweepd"], "vs_tar_gz": gz / med["sweepd"],
            "sweepd_ratio": sizes["sweepd"] / total, "tar_zstd_ratio": sizes["sorted.tar.zst"] / total,
            "tar_zstd_dir_order_ratio": sizes["t.tar.zst"] / total, "tar_gz_ratio": sizes["t.tar.gz"] / total}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/sweepd-bench"))
    ap.add_argument("--skip-archive", action="store_true")
    ap.add_argument("--jobs", type=int, default=400, help="job folders in the scanned tree")
    ap.add_argument("--per-job", type=int, default=500, help="files in each")
    ap.add_argument("--archive-mb", type=int, default=2000, help="PNGs to archive, in MB")
    ap.add_argument("--runs", type=int, default=5, help="runs of each, side by side: the figures are medians")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    steady_malloc()  # the allocator the daemon archives with (without it, 1 MiB pieces looked 25 % faster than they were)
    a.workdir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(a.workdir / "archives", ignore_errors=True)
    res = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count()}
    s = res["scan"] = bench_scan(a.workdir, a.jobs, a.per_job, a.runs)
    print(f"scan+plan {s['files']} files in {s['jobs']} jobs (median of {s['runs']}): {s['scan_plan_s']:.3f} s vs du -s {s['du_s']:.3f} s "
          f"= {s['ratio']:.2f}x with {s['helpers']} helper process(es) ({s['one_process_s']:.3f} s = "
          f"{s['one_process_ratio']:.2f}x in one process); re-plan with nothing changed {s['replan_ms']:.1f} ms ({s['actions']} actions "
          f"pending), {s['replan_nothing_to_do_ms']:.1f} ms when the policy holds")
    if not a.skip_archive:
        r = res["archive"] = bench_archive(a.workdir, a.archive_mb * 10**6, a.runs)
        print(f"archive {r['bytes'] / 1e9:.2f} GB in {r['files']} PNGs (median of {r['runs']}): sweepd "
              f"{r['sweepd_mb_s']:.0f} MB/s (read back, fsynced), tar --sort=name + zstd -T0 {r['tar_zstd_mb_s']:.0f} "
              f"MB/s, tar czf {r['tar_gz_mb_s']:.0f} MB/s; sweepd = {r['vs_tar_zstd']:.2f}x tar+zstd's throughput "
              f"({r['vs_tar_zstd_dir_order']:.2f}x tar+zstd in directory order, {r['vs_tar_zstd_fsync']:.2f}x tar+zstd "
              f"with its archive fsynced), {r['vs_tar_gz']:.1f}x tar czf's")
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
