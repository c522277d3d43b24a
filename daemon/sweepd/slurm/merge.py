"""Merge the shards of a split sweep (results/job_<ID>/shards/<k>/) into one result in job_<ID>/.

The merged trials.csv, images.csv, power.csv and summary.csv hold every shard's rows in the whole
sweep's clock order (highest first), so the report and the estimates read a merged sweep like any
other. Every shard measured the reference (highest) clock on its own GPU; a later shard's rows there become
``role = "reference"`` (its GPU's reference, :mod:`sweepd.engine.gpunorm`), and summary.csv is normalised
per GPU. sweep.json is written last: until it exists, job_<ID>/ is not a finished result. Merging
again gives the same files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sweepd.engine.gpunorm import REFERENCE, normalised
from sweepd.engine.summary import summarize
from sweepd.errors import InputError, RecordError
from sweepd.paths import Layout
from sweepd.records.manifest import DeviceTime, GpuInfo, ShardPart, SweepManifest
from sweepd.records.rows import ImageRow, PowerRow, SummaryRow, TrialRow
from sweepd.vocab import Role


class MergeError(InputError):
    """The shards cannot be merged (missing, unfinished, unreadable or of different requests)."""
    pass


def shard_manifests(top: Path) -> dict[int, SweepManifest]:
    out = {}
    for d in sorted((top / "shards").glob("*")) if (top / "shards").is_dir() else []:
        if d.name.isdigit() and SweepManifest.path_in(d).exists():
            try:
                out[int(d.name)] = SweepManifest.read(SweepManifest.path_in(d))
            except RecordError as e:
                raise MergeError(str(e)) from None
    return out


def _device_time(manifests: list[SweepManifest]) -> DeviceTime | None:
    """The shards' GPU time added up (GPU time, not the wall time: shards run side by side)."""
    times = [m.device_time for m in manifests if m.device_time is not None]
    if not times:
        return None
    return DeviceTime(total_s=sum(t.total_s for t in times), settle_s=sum(t.settle_s for t in times),
                      warmup_s=sum(t.warmup_s for t in times))


def merge(layout: Layout, job_id: str) -> Path:
    """Write the merged result; raises MergeError naming what is missing or unfinished."""
    top = layout.job_results(job_id)
    manifests = shard_manifests(top)
    if not manifests:
        raise MergeError(f"job {job_id}: no shards under {top / 'shards'}")
    first = manifests[min(manifests)]
    n = first.shard_count
    missing = [k for k in range(n) if k not in manifests]
    unfinished = [f"{k} ({m.status})" for k, m in sorted(manifests.items()) if not m.done]
    if missing or unfinished:
        raise MergeError(f"job {job_id}: cannot merge: " + "; ".join(
            ([f"shard(s) {missing} have no results"] if missing else [])
            + ([f"shard(s) {', '.join(unfinished)} not done"] if unfinished else [])))
    if len({m.request_sha256 for m in manifests.values()}) != 1:
        raise MergeError(f"job {job_id}: the shards ran different requests")

    order = list(first.plan_mhz_all or [])
    pos = {f: i for i, f in enumerate(order)}
    trials: list[TrialRow] = []
    images: list[ImageRow] = []
    power: list[PowerRow] = []
    ref_mhz = order[0] if order else None
    try:
        for k in sorted(manifests):
            d = top / "shards" / str(k)
            rows = TrialRow.read_all(d / "trials.csv")
            if k:  # a later shard's own measurements of the reference clock: its GPU's reference, not the sweep's
                rows = [r.model_copy(update={"role": REFERENCE}) if r.setting == ref_mhz and r.role in (None, Role.DRIFT)
                        else r for r in rows]
            trials += rows
            images += ImageRow.read_all(d / "images.csv")
            power += [r for r in PowerRow.read_all(d / "power.csv") if not (k and r.setting == ref_mhz)]
    except RecordError as e:
        raise MergeError(str(e)) from None
    trials.sort(key=lambda r: (pos.get(r.setting, len(pos)), r.trial))
    images.sort(key=lambda r: (pos.get(r.setting, len(pos)), r.trial, r.index))
    power.sort(key=lambda r: (pos.get(r.setting, len(pos)), r.t_s))
    TrialRow.write_all(top / "trials.csv", trials)
    ImageRow.write_all(top / "images.csv", images)
    PowerRow.write_all(top / "power.csv", power)
    p = first.request.protocol
    SummaryRow.write_all(top / "summary.csv", summarize(normalised(trials, ref_mhz), order, p.target_ci_pct,
                                                        p.equivalence_margin_pct))
    ref = top / "shards" / "0" / "reference"
    if ref.is_dir():  # shard 0 measured the highest clock: the sweep's reference images
        shutil.copytree(ref, top / "reference", dirs_exist_ok=True)

    parts = [ShardPart(shard=k, plan_mhz=m.plan_mhz, gpu=m.gpu, gpus_used=m.gpus_used,
                       images_per_trial=m.images_per_trial, started_at=m.started_at, ended_at=m.ended_at,
                       resumed_at=m.resumed_at) for k, m in sorted(manifests.items())]
    gpus: dict[str | None, GpuInfo] = {g.uuid: g for m in manifests.values() for g in (m.gpus_used or [m.gpu]) if g}
    merged = SweepManifest.model_validate(first.model_dump() | {  # validated: a new record, not a copy
        "status": "done", "error": None, "plan_mhz": order, "merged_shards": n, "shards": parts,
        "gpus": list(gpus.values()), "simulated": any(m.simulated for m in manifests.values()),
        "results_dir": str(top),
        "started_at": min(m.started_at for m in manifests.values()),
        "ended_at": max(m.ended_at or "" for m in manifests.values()),
        "started_unix": min(m.started_unix for m in manifests.values()),
        "ended_unix": max(m.ended_unix or 0 for m in manifests.values()),
        "shard": None, "plan_mhz_all": None, "resumed_at": [], "gpus_used": None,
        "device_time": _device_time(list(manifests.values())),
    })
    merged.write(SweepManifest.path_in(top))  # last: until it exists, job_<ID>/ is not a finished result
    return top


def merge_and_report(layout: Layout, job_id: str) -> Path:
    top = merge(layout, job_id)
    from sweepd.report.build import build

    build(top)
    return top
