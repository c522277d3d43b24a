"""A job's results on disk: sweep.json, trials.csv, images.csv, summary.csv, power.csv, reference/.

trials.csv is the record of what was measured: a trial counts once its row is in it. images.csv
is written before trials.csv, so a crash between the two leaves image rows with no trial row,
which a resume drops. On resume, the rows of a clock that did not finish all its trials are
dropped and the clock is measured again: every (clock, trial) ends up in exactly one row.
"""

from __future__ import annotations

import os
import platform
import secrets
import time
from pathlib import Path

from sweepd import __version__
from sweepd import atomic
from sweepd.engine import batching, stopping
from sweepd.engine.summary import summarize
from sweepd.errors import InputError
from sweepd.freqplan import ClockPoint
from sweepd.paths import Layout
from sweepd.records.manifest import BatchRecord, DeviceTime, GpuInfo, SearchRecord, SweepManifest, WorkloadInfo
from sweepd.records.rows import ImageRow, PowerRow, SummaryRow, TrialRow
from sweepd.request import Protocol, SweepRequest
from sweepd.vocab import RunState


def shard_dir(layout: Layout, job_id: str, shard: int) -> Path:
    return layout.job_results(job_id) / "shards" / str(int(shard))


def read_shard_manifest(layout: Layout, job_id: str, shard: int) -> SweepManifest | None:
    """A shard's sweep.json (None while it has none, or when it cannot be read)."""
    return SweepManifest.read_or_none(SweepManifest.path_in(shard_dir(layout, job_id, shard)))


class JobConflict(InputError):
    """The job id is taken by a finished sweep or by a different request."""


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class JobStore:
    """One job's results; a shard of a split sweep keeps its own under job_<ID>/shards/<k>/ (merged
    into job_<ID>/ at the end) and writes its images into the job's images folder like any sweep."""

    manifest: SweepManifest

    def __init__(self, layout: Layout, job_id: str, shard: tuple[int, int] | None = None,
                 full_plan_mhz: list[int | None] | None = None):
        self.job_id, self.shard = job_id, shard
        self.dir = layout.job_results(job_id) if shard is None else shard_dir(layout, job_id, shard[0])
        self.images_dir = layout.job_images(job_id)
        self.full_plan_mhz = full_plan_mhz or []  # a shard's: the whole sweep's clocks
        self.trials: list[TrialRow] = []
        self.images: list[ImageRow] = []
        self.power: list[PowerRow] = []
        self._rendered: dict[str, tuple[int, str]] = {}  # file -> (rows rendered, its text): the lists only grow

    @property
    def manifest_path(self) -> Path:
        return SweepManifest.path_in(self.dir)

    @property
    def reference_dir(self) -> Path:
        return self.dir / "reference"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def load_manifest(self) -> SweepManifest:
        return SweepManifest.read(self.manifest_path)

    # opening ---------------------------------------------------------------------------------
    def open(self, request: SweepRequest, gpu: GpuInfo, plan: list[ClockPoint], sweep_id: str | None = None) -> bool:
        """Start a new job or resume an unfinished one; returns True when resuming."""
        fingerprint = request.fingerprint()
        if self.exists():
            old = self.load_manifest()
            if old.request_sha256 != fingerprint:
                raise JobConflict(f"job {self.job_id} already holds a different request ({self.dir}); "
                                  "use another job id")
            if old.done:
                raise JobConflict(f"job {self.job_id} is already done ({self.dir}); use another job id")
            moved = old.gpu_uuid != gpu.uuid
            if moved and self.shard is not None and old.gpu_name == gpu.name:
                # a resubmitted shard runs wherever SLURM puts it: each row names its GPU
                old.gpus_used = [*(old.gpus_used or [old.gpu]), gpu]
                old.gpu = gpu
            elif moved:
                raise JobConflict(f"job {self.job_id} was measured on GPU {old.gpu_uuid}, "
                                  f"not {gpu.uuid}; a resumed sweep must stay on one GPU")
            self.manifest = old
            self._load_rows(plan, request.protocol)
            self.manifest.resumed_at = [*old.resumed_at, now_iso()]
            self.manifest.pid = os.getpid()  # the process measuring now (a foreground job's liveness)
            self.set_status(RunState.RUNNING)
            return True
        self.manifest = SweepManifest(
            sweep_id=sweep_id or secrets.token_hex(6), job_id=self.job_id, status=RunState.RUNNING,
            simulated=gpu.simulated, backend=gpu.backend, gpu=gpu, request=request, request_sha256=fingerprint,
            plan_mhz=[p.setting for p in plan], images_per_trial=None,
            versions={"sweepd": __version__, "python": platform.python_version()},
            results_dir=str(self.dir), images_dir=str(self.images_dir), started_at=now_iso(), ended_at=None,
            error=None, started_unix=time.time(), pid=os.getpid())
        if self.shard is not None:
            self.manifest.shard, self.manifest.shards = self.shard
            self.manifest.plan_mhz_all = self.full_plan_mhz
        self.write_manifest()
        return False

    def read_back(self, plan: list[ClockPoint]) -> bool:
        """The job as another process left it (a SLURM sweep's steps), to show; False when there is none."""
        manifest = SweepManifest.read_or_none(self.manifest_path)
        if manifest is None:
            return False
        self.manifest = manifest
        self._load_rows(plan, manifest.request.protocol)
        return True

    def _load_rows(self, plan: list[ClockPoint], protocol: Protocol) -> None:
        trials = TrialRow.read_all(self.dir / "trials.csv")
        complete = {p.setting for p in plan if stopping.done(protocol, trials, p.setting)}
        w = self.manifest.request.workload
        batch_done = w.batch_search and batching.phase_done(trials, w.variants, protocol)
        self.trials = [r for r in trials if (batch_done if r.batch_trial else r.setting in complete)]
        kept = {(r.setting, r.trial) for r in self.trials}
        self.images = [r for r in ImageRow.read_all(self.dir / "images.csv") if (r.setting, r.trial) in kept]
        self.power = [r for r in PowerRow.read_all(self.dir / "power.csv") if r.setting in complete]
        self._rendered.clear()

    # state -----------------------------------------------------------------------------------
    @property
    def sweep_id(self) -> str:
        return self.manifest.sweep_id

    @property
    def simulated(self) -> bool:
        return self.manifest.simulated

    def next_trial(self, point: ClockPoint) -> int:
        """The number the clock's next trial gets (a re-measurement for drift goes on counting)."""
        return max((r.trial for r in self.trials if r.setting == point.setting), default=0) + 1

    def last_was_drift_check(self) -> bool:
        return bool(self.trials) and self.trials[-1].drift_check

    def clock_done(self, point: ClockPoint, protocol: Protocol) -> bool:
        """The clock has its trials: the fixed count, or (sequential) as many as :mod:`~sweepd.engine.stopping`
        plans for it, or max_trials."""
        return stopping.done(protocol, self.trials, point.setting)

    def write_manifest(self) -> None:
        self.manifest.write(self.manifest_path)

    def set_status(self, status: RunState, error: str | None = None) -> None:
        final = RunState(status).final
        m = self.manifest
        m.status, m.error = status, error
        m.ended_at, m.ended_unix = (now_iso(), time.time()) if final else (None, None)
        self.write_manifest()

    def model_loaded(self, workload: WorkloadInfo, load_s: float = 0.0) -> None:
        """The model is loaded (``load_s``: how long that took, added up over every process of the sweep)."""
        self.manifest.workload, self.manifest.model_loaded_unix = workload, time.time()
        self.device_time().model_load_s += load_s
        self.manifest.model_loads += 1
        self.write_manifest()

    def set_search(self, record: SearchRecord) -> None:
        self.manifest.search = record
        self.write_manifest()

    def set_batch(self, record: BatchRecord) -> None:
        self.manifest.batch = record
        self.write_manifest()

    def set_images_per_trial(self, n: int) -> None:
        self.manifest.images_per_trial = n
        self.write_manifest()

    def device_time(self) -> DeviceTime:
        """Where the GPU's time went so far (added to by the sweep, written with the manifest)."""
        if self.manifest.device_time is None:
            self.manifest.device_time = DeviceTime()
        return self.manifest.device_time

    # rows ------------------------------------------------------------------------------------
    def commit_trial(self, trial_row: TrialRow, image_rows: list[ImageRow]) -> None:
        self.images.extend(image_rows)
        self._write_rows(ImageRow, "images.csv", self.images)
        self.trials.append(trial_row.stored())  # decisions from these equal a resumed process's, which reads the file
        self._write_rows(TrialRow, "trials.csv", self.trials)

    def commit_clock(self, power_rows: list[PowerRow], plan: list[ClockPoint]) -> list[SummaryRow]:
        """After a clock's last trial: power trace and summary. Returns the summary rows."""
        self.power.extend(power_rows)
        self._write_rows(PowerRow, "power.csv", self.power)
        return self.write_summary(plan)

    def _write_rows(self, cls, name: str, rows: list) -> None:
        """The whole file rewritten atomically, as ever, but only the rows added since the last write rendered
        (power.csv of a sweep with 5-minute windows holds 180,000 rows: rendering them all at every clock was
        most of such a sweep's CPU)."""
        done, text = self._rendered.get(name, (0, ""))
        if not text or done > len(rows):
            done, text = 0, cls.csv_text([])
        text += cls.csv_text(rows[done:], header=False)
        self._rendered[name] = (len(rows), text)
        atomic.write_text(self.dir / name, text)

    def summary_rows(self, plan: list[ClockPoint]) -> list[SummaryRow]:
        """The per-clock summary as it stands (summary.csv holds the same, written at each clock's end)."""
        p = self.manifest.request.protocol
        return summarize(self.trials, [q.setting for q in plan], p.target_ci_pct, p.equivalence_margin_pct)

    def write_summary(self, plan: list[ClockPoint]) -> list[SummaryRow]:
        rows = self.summary_rows(plan)
        SummaryRow.write_all(self.dir / "summary.csv", rows)
        return rows
