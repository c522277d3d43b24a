"""Merge the shards of a split sweep (results/job_<ID>/shards/<k>/) into one result in job_<ID>/.

The merged trials.csv, images.csv, power.csv and summary.csv hold every shard's rows in the whole
sweep's clock order (highest first), so the report and the estimates read a merged sweep like any
other. sweep.json is written last: until it exists, job_<ID>/ is not a finished result. Merging
again gives the same files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from sweepd import atomic
from sweepd.engine.store import IMAGE_FIELDS, POWER_FIELDS, TRIAL_FIELDS
from sweepd.engine.summary import SUMMARY_FIELDS, summarize
from sweepd.paths import Layout


class MergeError(ValueError):
    pass


def _key(f: object) -> str:
    return "" if f is None else str(f)


def shard_manifests(top: Path) -> dict[int, dict]:
    out = {}
    for d in sorted((top / "shards").glob("*")) if (top / "shards").is_dir() else []:
        if d.name.isdigit() and (d / "sweep.json").exists():
            try:
                out[int(d.name)] = json.loads((d / "sweep.json").read_text())
            except (OSError, ValueError) as e:
                raise MergeError(f"{d / 'sweep.json'}: unreadable: {e}") from None
    return out


def merge(layout: Layout, job_id: str) -> Path:
    """Write the merged result; raises MergeError naming what is missing or unfinished."""
    top = layout.job_results(job_id)
    manifests = shard_manifests(top)
    if not manifests:
        raise MergeError(f"job {job_id}: no shards under {top / 'shards'}")
    first = manifests[min(manifests)]
    n = int(first.get("shards") or 0)
    missing = [k for k in range(n) if k not in manifests]
    unfinished = [f"{k} ({m.get('status')})" for k, m in sorted(manifests.items()) if m.get("status") != "done"]
    if missing or unfinished:
        raise MergeError(f"job {job_id}: cannot merge: " + "; ".join(
            ([f"shard(s) {missing} have no results"] if missing else [])
            + ([f"shard(s) {', '.join(unfinished)} not done"] if unfinished else [])))
    if len({m.get("request_sha256") for m in manifests.values()}) != 1:
        raise MergeError(f"job {job_id}: the shards ran different requests")

    order = [_key(f) for f in first["plan_mhz_all"]]
    pos = {f: i for i, f in enumerate(order)}
    rows: dict[str, list[dict]] = {"trials.csv": [], "images.csv": [], "power.csv": []}
    for k in sorted(manifests):
        for name in rows:
            rows[name] += atomic.read_csv(top / "shards" / str(k) / name)
    trials = sorted(rows["trials.csv"], key=lambda r: (pos.get(r["freq_mhz"], len(pos)), int(r["trial"])))
    images = sorted(rows["images.csv"], key=lambda r: (pos.get(r["freq_mhz"], len(pos)), int(r["trial"]),
                                                       int(r["index"])))
    power = sorted(rows["power.csv"], key=lambda r: (pos.get(r["freq_mhz"], len(pos)), float(r["t_s"])))
    atomic.write_csv(top / "trials.csv", TRIAL_FIELDS, trials)
    atomic.write_csv(top / "images.csv", IMAGE_FIELDS, images)
    atomic.write_csv(top / "power.csv", POWER_FIELDS, power)
    atomic.write_csv(top / "summary.csv", SUMMARY_FIELDS, summarize(trials, order))
    ref = top / "shards" / "0" / "reference"
    if ref.is_dir():  # shard 0 measured the highest clock: the sweep's reference images
        shutil.copytree(ref, top / "reference", dirs_exist_ok=True)

    shards = [{"shard": k, "plan_mhz": m["plan_mhz"], "gpu": m.get("gpu"), "gpus_used": m.get("gpus_used"),
               "images_per_trial": m.get("images_per_trial"), "started_at": m.get("started_at"),
               "ended_at": m.get("ended_at"), "resumed_at": m.get("resumed_at", [])}
              for k, m in sorted(manifests.items())]
    gpus = {g["uuid"]: g for m in manifests.values() for g in (m.get("gpus_used") or [m.get("gpu")]) if g}
    manifest = dict(first) | {
        "status": "done", "error": None, "plan_mhz": first["plan_mhz_all"], "merged_shards": n, "shards": shards,
        "gpus": list(gpus.values()), "simulated": any(m.get("simulated") for m in manifests.values()),
        "results_dir": str(top),
        "started_at": min(m["started_at"] for m in manifests.values()),
        "ended_at": max(m.get("ended_at") or "" for m in manifests.values()),
        "started_unix": min(m["started_unix"] for m in manifests.values()),
        "ended_unix": max(m.get("ended_unix") or 0 for m in manifests.values()),
    }
    for key in ("shard", "plan_mhz_all", "resumed_at", "gpus_used"):
        manifest.pop(key, None)
    atomic.write_json(top / "sweep.json", manifest)
    return top


def merge_and_report(layout: Layout, job_id: str) -> Path:
    top = merge(layout, job_id)
    from sweepd.report.build import build

    build(top)
    return top
