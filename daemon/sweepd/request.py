"""The sweep request: what to run, on which GPU, at which clocks, how to measure, what to keep.

One small pydantic model per section, each with ``extra="forbid"`` so a typo is an error, not a
silently ignored key. Clock values are checked against the GPU later (:mod:`sweepd.freqplan`),
since only the GPU knows what it supports.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sweepd import configfile, families
from sweepd.paths import check_job_id
from sweepd.sbatchopts import SLURM_NAME, check_sbatch_options
from sweepd.vocab import ClockControl, Knob

# Fields added after 0.1.0: left out of the fingerprint at their defaults, so a 0.1 sweep still resumes.
ADDED_SINCE_0_1 = (("gpu", "sim_noise"), ("gpu", "sim_host_s_per_image"), ("gpu", "sim_cold_start_s"),
                   ("gpu", "sim_memory_gib"), ("gpu", "sim_power_offsets_pct"), ("gpu", "sim_speed_offsets_pct"),
                   ("protocol", "target_ci_pct"), ("protocol", "min_trials"), ("protocol", "max_trials"),
                   ("protocol", "order"), ("protocol", "baseline_every"), ("frequencies", "objective"),
                   ("frequencies", "max_slowdown_pct"), ("protocol", "equivalence_margin_pct"), ("workload", "preset"),
                   ("workload", "compile"), ("workload", "compile_backend"))
MAX_BATCH = 64
TINY_MAX_PIXELS = 512 * 512  # the built-in tiny model stands in for SD at 512x512 (gpu.simmodel); larger is CPU only
SCHEDULERS = ("default", "ddim", "ddpm", "pndm", "euler", "euler_a", "dpmpp_2m", "heun", "unipc")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Workload(_Section):
    model: str = Field("tiny", min_length=1, max_length=500,
                       description='"tiny" (built-in random-weight model), a Hugging Face id or a local path')
    prompt: str | list[str] = "a photograph of an astronaut riding a horse"
    negative_prompt: str | None = None
    steps: int = Field(50, ge=1, le=1000)
    width: int = Field(512, ge=8, le=4096)
    height: int = Field(512, ge=8, le=4096)
    guidance_scale: float = Field(7.5, ge=0, le=100)
    scheduler: Literal[SCHEDULERS] = "default"  # type: ignore[valid-type]
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
    seed: int = Field(42, ge=0, le=2**32 - 1)
    batch_size: int | list[int] = Field(
        1, description="images per generate() call; a list (e.g. [1, 2, 4, 8]) measures each at the highest clock "
                       "first and sweeps the clocks at the best one")
    compile: bool | list[bool] = Field(
        False, description="torch.compile the denoiser (UNet or transformer); [false, true] measures both at the "
                           "highest clock first, like a batch_size list, and sweeps the clocks with the better")
    compile_backend: Literal["inductor", "cudagraphs", "aot_eager", "eager"] = Field(
        "inductor", description="torch.compile's backend: inductor (kernels compiled for the GPU, or C++ on a CPU), "
                                "cudagraphs (CUDA graphs alone); aot_eager and eager trace without compiling")
    preset: Literal["mlenergy-v2", "mlenergy-v3"] | None = Field(
        None, description="the ML.ENERGY leaderboard's settings for the model's family (resolution, steps, batch "
                          "sizes); a field the request sets itself wins, and the report says what differs")

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data: object) -> object:
        """A preset fills the fields the request leaves out with the leaderboard's settings for the model's family."""
        if not isinstance(data, dict) or not data.get("preset"):
            return data
        return families.preset(str(data["preset"]), str(data.get("model") or "tiny")) | data

    @field_validator("prompt")
    @classmethod
    def _prompt(cls, v: str | list[str]) -> str | list[str]:
        # Prompts are data, never shell: '$', ';' and quotes pass through untouched.
        prompts = [v] if isinstance(v, str) else v
        if not prompts:
            raise ValueError("give at least one prompt")
        for p in prompts:
            if not p.strip():
                raise ValueError("a prompt must not be empty")
            if "\x00" in p:
                raise ValueError("a prompt must not contain NUL characters")
            if len(p) > 2000:
                raise ValueError("a prompt longer than 2000 characters is not supported")
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch_sizes(cls, v: int | list[int]) -> int | list[int]:
        sizes = [v] if isinstance(v, int) else v
        if not sizes:
            raise ValueError("give at least one batch size")
        for b in sizes:
            if not 1 <= b <= MAX_BATCH:
                raise ValueError(f"a batch size must be 1 to {MAX_BATCH}; {b} is not")
        if len(set(sizes)) != len(sizes):
            raise ValueError(f"batch sizes must differ; {sizes} repeats one")
        return v

    @property
    def batch_sizes(self) -> list[int]:
        """Every batch size the request asks for (one, unless batch_size is a list)."""
        return [self.batch_size] if isinstance(self.batch_size, int) else list(self.batch_size)

    @field_validator("compile")
    @classmethod
    def _compile(cls, v: bool | list[bool]) -> bool | list[bool]:
        if isinstance(v, list) and (not v or len(set(v)) != len(v)):
            raise ValueError(f"give false, true, or [false, true]; {v} is not")
        return v

    @property
    def compile_options(self) -> list[bool]:
        """Whether the denoiser is compiled: one setting, or both to measure (a list)."""
        return [self.compile] if isinstance(self.compile, bool) else list(self.compile)

    @property
    def variants(self) -> list[tuple[int, bool]]:
        """Every (batch size, compiled) the knob phase measures, eager first (compiling is a warm-up of its own)."""
        return [(b, c) for c in self.compile_options for b in self.batch_sizes]

    @property
    def batch_search(self) -> bool:
        """A list of batch sizes or of compile settings: the sweep measures each first (engine.batching)."""
        return len(self.variants) > 1

    @field_validator("width", "height")
    @classmethod
    def _multiple_of_8(cls, v: int) -> int:
        if v % 8:
            raise ValueError(f"must be a multiple of 8 (Stable Diffusion latents are 1/8 of the image); {v} is not")
        return v

    @property
    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    @property
    def family(self) -> "families.FamilyInfo":
        return families.info(self.model)

    @model_validator(mode="after")
    def _family_options(self) -> "Workload":
        """A request option this model's family lacks is refused here, naming the field."""
        families.check_options(self.model, self.scheduler, self.negative_prompt)
        return self

    @model_validator(mode="after")
    def _tiny_size(self) -> "Workload":
        if self.model == "tiny" and self.width * self.height > TINY_MAX_PIXELS:
            raise ValueError(f"width x height: {self.width} x {self.height}: the built-in tiny model stands in for "
                             "Stable Diffusion at 512 x 512 (what the simulated GPU times and sizes); larger images "
                             "would only cost this machine's CPU and memory (its attention grows with the square of "
                             "the pixels): at most 512 x 512 pixels with model = \"tiny\"")
        return self


class Gpu(_Section):
    backend: Literal["auto", "nvml", "sim"] = "auto"
    index: int | None = Field(None, ge=0)
    uuid: str | None = Field(None, pattern=r"^(GPU|MIG)-[0-9A-Fa-f-]{8,}$")
    sim_model: Literal["H100", "A100", "V100"] = "A100"
    sim_noise: Literal["measured", "none"] = Field(
        "measured", description="the simulated GPU's timing noise: a real machine's (seeded by workload.seed) or none")
    sim_host_s_per_image: float = Field(
        0.0, ge=0, le=3600, allow_inf_nan=False,
        description="the simulated host side's seconds per image: a floor the clock cannot go below (0: none)")
    sim_cold_start_s: float = Field(
        0.0, ge=0, le=86400, allow_inf_nan=False,
        description="the simulated host runs slow (x1.6) for this many seconds after the model loads, as a real one "
                    "did right after loading: what re-measuring the baseline catches (0: never)")
    sim_memory_gib: float | None = Field(
        None, gt=0, le=4096, allow_inf_nan=False,
        description="the simulated board's memory (default: the real board's); a batch that needs more fails "
                    "as CUDA out of memory would")
    sim_power_offsets_pct: list[float] = Field(
        default_factory=list, max_length=64,
        description="chip-to-chip variation of simulated GPUs, by GPU index: GPU k draws this much more power "
                    "(busy and idle), e.g. [0, 5]; a GPU the list leaves out has none")
    sim_speed_offsets_pct: list[float] = Field(
        default_factory=list, max_length=64,
        description="the same for speed, by GPU index: GPU k's time per image divided by 1 + this / 100")
    clock_control: ClockControl = ClockControl.AUTO
    zeusd_socket: str | None = Field(None, max_length=4096,
                                     description="clock_control = \"zeusd\": its socket (default: ZEUSD_SOCK_PATH, "
                                                 "else /run/zeusd/zeusd.sock)")

    @field_validator("sim_power_offsets_pct", "sim_speed_offsets_pct")
    @classmethod
    def _offsets(cls, v: list[float]) -> list[float]:
        bad = [x for x in v if not -50 <= x <= 100 or x != x]
        if bad:
            raise ValueError(f"each offset is a percentage from -50 to 100; got {bad}")
        return v

    @model_validator(mode="after")
    def _one_selector(self) -> "Gpu":
        if self.index is not None and self.uuid is not None:
            raise ValueError("give either gpu.index or gpu.uuid, not both")
        return self


def _settings(v: list[int] | None, what: str, unit: str) -> list[int] | None:
    """A list of a knob's settings: at least one, each positive, none twice."""
    if v is not None:
        if not v:
            raise ValueError(f"give at least one {what}")
        bad = [x for x in v if x <= 0]
        if bad:
            raise ValueError(f"{what}s are positive {unit} values; got {bad}")
        if len(set(v)) != len(v):
            raise ValueError(f"a {what} appears more than once")
    return v


class Frequencies(_Section):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True,
                              serialize_by_alias=True)
    mode: Literal["dvfs", "custom", "baseline", "adaptive"] = "dvfs"
    floor_mhz: int = Field(510, ge=1, le=5000)
    clocks: list[int] | None = Field(None, alias="list", max_length=512, description='the clocks of mode = "custom", in MHz')
    stride: int = Field(1, ge=1)
    memory_mhz: int | None = Field(None, ge=1)
    objective: Literal["energy", "edp", "ed2p"] | None = Field(
        None, description='what mode = "adaptive" and a batch_size list minimise (default edp)')
    max_slowdown_pct: float | None = Field(None, gt=0, le=1000, allow_inf_nan=False,
                                           description='mode = "adaptive": at most this much slower than the '
                                                       'highest clock')

    @field_validator("clocks")
    @classmethod
    def _list(cls, v: list[int] | None) -> list[int] | None:
        return _settings(v, "clock", "MHz")

    @model_validator(mode="after")
    def _mode_needs_list(self) -> "Frequencies":
        if self.mode == "custom" and not self.clocks:
            raise ValueError('mode = "custom" needs frequencies.list')
        if self.mode != "custom" and self.clocks:
            raise ValueError(f'frequencies.list is only used with mode = "custom", not {self.mode!r}')
        if self.mode != "adaptive" and self.max_slowdown_pct is not None:
            raise ValueError(f'frequencies.max_slowdown_pct is only used with mode = "adaptive", not {self.mode!r}')
        return self

    @property
    def search_objective(self) -> str:
        return self.objective or "edp"


class Power(_Section):
    """A power-limit sweep ([power]): the board's power limit is the knob, the clock is left to the firmware. The
    limits are checked against the board's constraints before anything runs (:func:`sweepd.freqplan.plan_limits`)."""
    limits: list[int] | None = Field(None, max_length=64, description="the power limits to sweep, in W")
    step_w: int | None = Field(None, ge=5, le=500, description="instead of limits: from the board's maximum down to "
                                                               "min_w (default: the board's minimum) in these steps")
    min_w: int | None = Field(None, ge=1, le=5000, description="with step_w: the lowest limit, in W")

    @field_validator("limits")
    @classmethod
    def _limits(cls, v: list[int] | None) -> list[int] | None:
        return _settings(v, "power limit", "W")

    @model_validator(mode="after")
    def _one_way(self) -> "Power":
        if (self.limits is None) == (self.step_w is None):
            raise ValueError("give power.limits = [W, ...] or power.step_w (from the board's maximum down), one of them")
        if self.min_w is not None and self.step_w is None:
            raise ValueError("power.min_w is only used with power.step_w")
        return self


class Protocol(_Section):
    warmup: int = Field(1, ge=0, le=100, description="images generated, unmeasured, after each clock change")
    trials: int | None = Field(None, ge=1, le=100, description="exactly this many trials per clock; default: "
                                                             "min_trials, then more until target_ci_pct")
    target_ci_pct: float = Field(2.0, gt=0, le=100, allow_inf_nan=False,
                                 description="95 % CI half-width of mean J/image, in % of the mean, to reach")
    min_trials: int = Field(3, ge=2, le=100)
    max_trials: int = Field(10, ge=2, le=100)
    min_window_s: float = Field(2.0, gt=0, le=3600)
    images_per_trial: int | None = Field(None, ge=1, le=10000,
                                         description="a fixed count; default: as many as fill min_window_s")
    settle_s: float = Field(1.0, ge=0, le=600)
    cooldown_s: float = Field(0.0, ge=0, le=3600)
    order: Literal["descending", "serpentine", "shuffled"] = Field(
        "descending", description="the order clocks are measured in after the first (highest): descending, "
                                  "serpentine (down every other clock, then up the rest) or shuffled (by the seed)")
    baseline_every: int | None = Field(None, ge=1, le=1000, description="re-measure the baseline clock after every "
                                                                        "this many clocks (it always is at the end)")
    equivalence_margin_pct: float = Field(
        2.0, gt=0, le=100, allow_inf_nan=False,
        description="a slowdown within this much of the highest clock counts as none: a clock is host-bound (its "
                    "saving free) only when the 95 % upper bound of its slowdown is within it")

    @model_validator(mode="after")
    def _range(self) -> "Protocol":
        if self.min_trials > self.max_trials:
            raise ValueError(f"min_trials ({self.min_trials}) is more than max_trials ({self.max_trials})")
        return self

    @property
    def sequential(self) -> bool:
        """Trials are added until the precision target is met (no fixed ``trials``)."""
        return self.trials is None

    @property
    def least(self) -> int:
        return self.trials or self.min_trials

    @property
    def most(self) -> int:
        return self.trials or self.max_trials

    def check_after(self, i: int, last: bool) -> bool:
        """Whether the baseline is measured again after the ``i``-th clock a process measured (0-based)."""
        return last or bool(self.baseline_every and (i + 1) % self.baseline_every == 0)

    def drift_checks(self, clocks: int) -> int:
        """How many times a fresh sweep of ``clocks`` clocks measures its baseline again."""
        return sum(self.check_after(i, i == clocks - 1) for i in range(1, clocks)) if clocks > 1 else 0


class Images(_Section):
    mode: Literal["benchmark", "research", "archive"] = "research"


class Slurm(_Section):
    """Per-request SLURM options (``executor = "slurm"``); each one wins over the daemon's settings."""
    partition: str | None = Field(None, pattern=SLURM_NAME)
    account: str | None = Field(None, pattern=SLURM_NAME)
    time_limit_minutes: int | None = Field(None, ge=1, le=60 * 24 * 30,
                                           description="default: the estimate plus the margin in the settings")
    sbatch: list[str] = Field(default_factory=list, description='extra "#SBATCH" options, e.g. "--constraint=a100"')

    @field_validator("sbatch")
    @classmethod
    def _sbatch(cls, v: list[str]) -> list[str]:
        return check_sbatch_options(v)


class SweepRequest(_Section):
    workload: Workload = Workload()
    gpu: Gpu = Gpu()
    frequencies: Frequencies = Frequencies()
    power: Power | None = Field(None, description="a power-limit sweep instead of a clock sweep")
    protocol: Protocol = Protocol()
    images: Images = Images()
    job_id: str | None = None
    priority: int = Field(0, ge=-1000, le=1000, description="higher runs first in the daemon's queue")
    executor: Literal["local", "slurm"] | None = Field(None, description="default: the daemon's setting")
    split: int = Field(1, ge=1, le=64, description="run as a SLURM job array of this many shards")
    slurm: Slurm = Slurm()

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, v: str | None) -> str | None:
        return None if v is None else check_job_id(v)

    @model_validator(mode="after")
    def _fits_together(self) -> "SweepRequest":
        if self.split > 1 and self.executor == "local":
            raise ValueError(f'split = {self.split} runs shards as a SLURM job array: it needs executor = "slurm"')
        if self.split > 1 and self.frequencies.mode == "adaptive":
            raise ValueError(f'split = {self.split}: an adaptive search decides each clock from the ones before it, '
                             'on one GPU; use split = 1')
        if self.frequencies.objective is not None and not (self.frequencies.mode == "adaptive"
                                                           or self.workload.batch_search):
            raise ValueError('frequencies.objective is only used with mode = "adaptive" or a list of batch sizes '
                             f'or compile settings, not mode {self.frequencies.mode!r} with one of each')
        if self.power is not None:
            self._power_fits()
        if self.split > 1 and self.workload.batch_search:
            raise ValueError(f'split = {self.split}: a list of batch sizes picks one before the clocks are measured, '
                             'on one GPU; use split = 1')
        return self

    def _power_fits(self) -> None:
        """A power sweep turns the limit and leaves the clock to the firmware: no clock settings beside it."""
        if self.frequencies.mode == "adaptive":
            raise ValueError('frequencies.mode = "adaptive": the search ranks clocks by a roofline in the clock and '
                             'picks among a clock table; a power sweep measures each of its limits (give fewer, or '
                             'step_w)')
        default = Frequencies()
        clock_fields = [f for f in Frequencies.model_fields if f != "objective"
                        and getattr(self.frequencies, f) != getattr(default, f)]
        if clock_fields:
            raise ValueError(f"frequencies.{clock_fields[0]}: a power sweep ([power]) leaves the clock to the "
                             "firmware; sweep clocks and power limits in two requests (`sweepd compare` puts them "
                             "side by side)")
        if not self.gpu.clock_control.sets_power_limits:
            raise ValueError(f'gpu.clock_control = "{self.gpu.clock_control}" cannot set a power limit; a power sweep '
                             'needs "lock" (NVML as root), "zeusd" or "auto"')

    @property
    def knob(self) -> Knob:
        return Knob.CLOCK if self.power is None else Knob.POWER_LIMIT

    def with_job_id(self, job_id: str | None) -> "SweepRequest":
        """This request under another job id (the one the queue gave it)."""
        return self.model_copy(update={"job_id": job_id})

    def fingerprint(self) -> str:
        """Identifies what is measured (not the job id, priority or where it runs), to match a sweep on resume."""
        # Which GPU (index, uuid) and which zeusd socket are not part of it: the store checks the GPU's UUID
        # itself, and a SLURM shard runs on whichever GPU it is given.
        data = self.model_dump(mode="json", exclude={"job_id": True, "priority": True, "executor": True,
                                                     "split": True, "slurm": True,
                                                     "gpu": {"index", "uuid", "zeusd_socket"}})
        # whether clocks are set, not how: the same sweep resumed where another control is available (and a 0.1
        # request, whose default was "lock", keeps its fingerprint now that the default is "auto")
        data["gpu"]["clock_control"] = "lock" if self.gpu.clock_control.sets_clocks else "observe"
        if data["power"] is None:  # a clock sweep's fingerprint as before [power] existed
            del data["power"]
        for section, name in ADDED_SINCE_0_1:  # at their defaults, a 0.1 request's fingerprint is unchanged
            default = type(type(self).model_fields[section].default).model_fields[name].get_default(
                call_default_factory=True)
            if data[section][name] == default:
                del data[section][name]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


def load_request(path: Path) -> SweepRequest:
    return configfile.load(SweepRequest, Path(path))
