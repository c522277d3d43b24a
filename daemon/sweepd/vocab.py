"""sweepd's words, each spelled once: the states a sweep, a shard, a worker and a trial can be in, a trial row's
role, the objectives, what a power reading is. They are ``StrEnum``s: a record's field typed with one refuses any
other word when a file is read, and a member is the plain string it stands for in files, SQL and CSV."""

from __future__ import annotations

from enum import StrEnum


class SweepState(StrEnum):
    """A queued sweep's state (the queue's ``sweeps.state``)."""
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        """Nothing more happens to it (an interrupted sweep may still be resumed)."""
        return self in (SweepState.DONE, SweepState.FAILED, SweepState.CANCELLED)


class ListedState(StrEnum):
    """A sweep's state as `sweepd list` and `sweepd status` show it: the queue's states, a request no daemon has
    taken in yet (waiting in spool/incoming/), and a foreground job's sweep.json status."""
    WAITING = "waiting"
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    UNKNOWN = "unknown"  # a sweep.json that does not say


class Origin(StrEnum):
    """Where `sweepd list` found a sweep."""
    QUEUE = "queue"
    SPOOL = "spool"
    FOREGROUND = "foreground"


class ShardState(StrEnum):
    """A SLURM shard's state (the queue's ``shards.state``)."""
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    INTERRUPTED = "interrupted"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (ShardState.DONE, ShardState.FAILED, ShardState.CANCELLED)


class RunState(StrEnum):
    """How a sweep process stands (status.json's ``state``) and how a sweep ended (sweep.json's ``status``)."""
    STARTING = "starting"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def final(self) -> bool:
        return self in (RunState.DONE, RunState.FAILED, RunState.INTERRUPTED)


class TrialStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"


class Role(StrEnum):
    """What a trial row is for, when it is not a measurement of its clock (those have no role)."""
    DRIFT = "drift"  # the reference clock measured again, to see whether the GPU drifted
    BATCH = "batch"  # a window of the batch-size phase, at the highest clock
    REFERENCE = "reference"  # a later shard's own GPU measured at the reference clock (split sweeps)


class Bound(StrEnum):
    """What sets the pace at a clock (engine.summary): the GPU, the host (the time is shown flat), neither shown
    (unresolved at this precision), or no utilisation to tell by."""
    GPU = "gpu"
    HOST = "host"
    UNRESOLVED = "unresolved"
    UNKNOWN = "unknown"


class Objective(StrEnum):
    """What "best" means: J/image (energy), J x s per image (EDP) or J x s^2 per image (ED2P)."""
    ENERGY = "energy"
    EDP = "edp"
    ED2P = "ed2p"

    @property
    def time_power(self) -> int:
        """Each objective is J/image x (s/image) ** this."""
        return {"energy": 0, "edp": 1, "ed2p": 2}[self.value]

    @property
    def title(self) -> str:
        return {"energy": "minimum energy", "edp": "minimum EDP", "ed2p": "minimum ED2P"}[self.value]

    @property
    def summary_column(self) -> str:
        """Its column in summary.csv."""
        return {"energy": "j_per_image_mean", "edp": "edp", "ed2p": "ed2p"}[self.value]

    def of(self, j_per_image: float, s_per_image: float) -> float:
        return j_per_image * s_per_image ** self.time_power


class Knob(StrEnum):
    """What a sweep turns: the locked core clock (MHz), or the board's power limit (W; the clock is left to the
    firmware, which regulates a cap by moving it). A sweep turns one; its rows are keyed by that knob's setting."""
    CLOCK = "clock"
    POWER_LIMIT = "power_limit"

    @property
    def unit(self) -> str:
        return "MHz" if self is Knob.CLOCK else "W"

    @property
    def noun(self) -> str:
        return "clock" if self is Knob.CLOCK else "power limit"

    def show(self, setting: int | None) -> str:
        """A setting with its unit ("1410 MHz", "250 W"); None: the baseline (the GPU's own clock and limit)."""
        return "baseline" if setting is None else f"{setting} {self.unit}"


class ClockControl(StrEnum):
    """How a sweep sets each clock ([gpu] clock_control): the first of the others this user has (auto, the default),
    NVML's locked clocks (root or CAP_SYS_ADMIN), application clocks (anyone, where an admin lifted the API
    restriction: `nvidia-smi -acp UNRESTRICTED`), locked clocks through an admin's zeusd, SLURM's `srun --gpu-freq`
    (each clock its own job step, inside an allocation), or not at all (observe: whatever clock the GPU runs; only
    when asked)."""
    AUTO = "auto"
    LOCK = "lock"
    APPLICATION = "application"
    ZEUSD = "zeusd"
    SLURM = "slurm"
    OBSERVE = "observe"

    @property
    def sets_clocks(self) -> bool:
        return self is not ClockControl.OBSERVE

    @property
    def sets_power_limits(self) -> bool:
        """NVML as root (lock) and zeusd set a board's power limit; application clocks and srun --gpu-freq cannot."""
        return self in (ClockControl.AUTO, ClockControl.LOCK, ClockControl.ZEUSD)


class PowerReading(StrEnum):
    """What a GPU's power samples are: instant, or NVML's 1 s average (Ampere and newer except the A100, when the
    driver has no instant-power field), which lags a window and is not checked against it."""
    INSTANT = "instant"
    AVERAGE_1S = "1 s average"
