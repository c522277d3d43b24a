"""``results/job_<ID>/sweep.json``: what a sweep is (request, GPU, plan, versions) and how it stands.

Written by the sweep (:mod:`sweepd.engine.store`), merged from a split sweep's shards
(:mod:`sweepd.slurm.merge`), read by the report, the estimates, the catalogue and the daemon.
A shard's own manifest (``shards/<k>/sweep.json``) has ``shard`` and ``shards`` (their count); a
merged one has ``merged_shards`` and ``shards`` (one :class:`ShardPart` each).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict

from sweepd.records.base import JsonRecord, Record
from sweepd.request import SweepRequest
from sweepd.vocab import Objective, PowerReading, RunState


class GpuInfo(Record):
    """What identifies a GPU (``GpuDevice.info()``)."""
    model_config = ConfigDict(extra="allow")
    backend: str | None = None
    simulated: bool = False
    index: int | None = None
    name: str = "?"
    uuid: str | None = None
    sim_model: str | None = None
    driver: str | None = None
    # what the power samples are: "instant", or "1 s average" (NVML's power usage on Ampere and newer except the
    # A100, when the driver has no instant-power field): averages lag a window, so they are not checked against it
    power_reading: PowerReading | None = None


class WorkloadInfo(Record):
    """The loaded pipeline: where the model came from and the library versions."""
    model_config = ConfigDict(extra="allow")
    model: str | None = None
    model_path: str | None = None
    device: str | None = None
    dtype: str | None = None
    scheduler: str | None = None
    torch: str | None = None
    diffusers: str | None = None
    transformers: str | None = None
    cpu_threads: int | None = None  # torch's threads where the model ran on the CPU (added after 0.2.0.dev0)


class DeviceTime(Record):
    """Where the GPU's time went, on the device's own clock (the simulated clock on the sim), summed over
    every process that worked on the sweep: settling after clock changes, warm-up, and the rest of the
    time since the model was loaded (trial windows, which trials.csv itemises, and the host's writing)."""
    model_config = ConfigDict(extra="allow")
    total_s: float = 0.0
    settle_s: float = 0.0
    warmup_s: float = 0.0
    counter_s: float = 0.0  # waiting for the energy counter's next step around each window (added after 0.1.0)
    model_load_s: float = 0.0  # loading the model, every load (this host's seconds; one per SLURM step): not in total_s


class SearchRecord(Record):
    """An adaptive sweep's search (``frequencies.mode = "adaptive"``), as it stands."""
    model_config = ConfigDict(extra="allow")
    mode: str = "adaptive"
    objective: Objective = Objective.EDP
    evaluated_mhz: list[int] = []
    supported_count: int = 0
    fraction: float = 0.0
    chosen_mhz: int | None = None
    stopped_because: str | None = None
    notes: list[str] = []


class BatchRecord(Record):
    """A batch-size list's phase (``[workload] batch_size = [...]``): the sizes measured at the highest clock, the
    ones refused (size as text: the error, e.g. CUDA out of memory) and the size the clocks are measured at."""
    model_config = ConfigDict(extra="allow")
    sizes: list[int] = []
    objective: Objective = Objective.EDP
    refused: dict[str, str] = {}  # "4", or "4 compiled" for a compiled setting: its error
    chosen: int | None = None
    compile: list[bool] = [False]  # the compile settings measured ([workload] compile)
    chosen_compile: bool | None = None  # whether the clocks run the denoiser compiled


class ShardPart(Record):
    """One shard of a merged sweep."""
    model_config = ConfigDict(extra="allow")
    shard: int
    plan_mhz: list[int | None]
    gpu: GpuInfo | None = None
    gpus_used: list[GpuInfo] | None = None
    images_per_trial: int | None = None
    started_at: str | None = None
    ended_at: str | None = None
    resumed_at: list[str] = []


class SweepManifest(JsonRecord):
    sweep_id: str
    job_id: str
    status: RunState
    simulated: bool = False
    backend: str | None = None
    gpu: GpuInfo | None = None
    request: SweepRequest
    request_sha256: str = ""
    plan_mhz: list[int | None] = []
    images_per_trial: int | None = None
    versions: dict[str, str] = {}
    results_dir: str = ""
    images_dir: str = ""
    started_at: str = ""
    ended_at: str | None = None
    error: str | None = None
    started_unix: float = 0.0
    ended_unix: float | None = None
    pid: int | None = None  # the process measuring now (a foreground job's liveness)
    resumed_at: list[str] = []
    workload: WorkloadInfo | None = None
    model_loaded_unix: float | None = None
    model_loads: int = 0  # processes that loaded the model for this sweep (one per SLURM step with clock_control = "slurm")
    device_time: DeviceTime | None = None  # added after 0.1.0
    search: SearchRecord | None = None  # an adaptive sweep's (added after 0.1.0)
    batch: BatchRecord | None = None  # a batch-size list's phase (added after 0.1.0)
    # a shard's own manifest
    shard: int | None = None
    plan_mhz_all: list[int | None] | None = None
    gpus_used: list[GpuInfo] | None = None
    # a shard's: how many shards; a merged sweep's: one part each
    shards: int | list[ShardPart] | None = None
    # a merged sweep's
    merged_shards: int | None = None
    gpus: list[GpuInfo] | None = None

    @staticmethod
    def path_in(job_dir: Path) -> Path:
        return Path(job_dir) / "sweep.json"

    @property
    def done(self) -> bool:
        return self.status == RunState.DONE

    @property
    def shard_count(self) -> int:
        """A shard's: how many shards its sweep has (0 when this is not a shard)."""
        return self.shards if isinstance(self.shards, int) else 0

    @property
    def shard_parts(self) -> list[ShardPart]:
        """A merged sweep's shards."""
        return self.shards if isinstance(self.shards, list) else []

    @property
    def gpu_name(self) -> str:
        return self.gpu.name if self.gpu else "?"

    @property
    def gpu_uuid(self) -> str | None:
        return self.gpu.uuid if self.gpu else None

    @property
    def plan_keys(self) -> list[str]:
        return ["" if f is None else str(f) for f in self.plan_mhz]
