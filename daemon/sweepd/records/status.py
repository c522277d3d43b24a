"""A sweep process's ``status.json`` (its progress and how it ended) and the daemon's ``daemon.json``.

A worker (the daemon's or a SLURM node's) rewrites ``status.json`` atomically; the daemon, the
SLURM executor and ``sweepd status``/``list`` read it.
"""

from __future__ import annotations

from pathlib import Path

from sweepd.errors import EXIT_INPUT, EXIT_INTERNAL
from sweepd.records.base import JsonRecord
from sweepd.vocab import Knob, RunState


class WorkerStatus(JsonRecord):
    sweep_id: str
    job_id: str
    pid: int | None = None
    state: RunState = RunState.STARTING
    clock: int = 0
    clocks: int = 0
    freq: str | None = None  # the setting's label, e.g. "1410MHz" (a power sweep's: "250W")
    trials_done: int = 0
    trials_per_clock: int = 0
    last_j_per_image: float | None = None
    updated: float | None = None
    error: str | None = None
    input_error: bool = False  # the request is at fault: retrying cannot help
    exit_code: int | None = None  # the process's exit code, once it ended (sweepd.errors; added after 0.2.0.dev0)
    # a SLURM shard's
    shard: int | None = None
    shards: int | None = None
    node: str | None = None
    slurm_job_id: str | None = None
    slurm_array_task: str | None = None
    knob: Knob = Knob.CLOCK  # what the sweep turns (added after 0.2.0.dev0: older files are clock sweeps)

    @property
    def retry_cannot_help(self) -> bool:
        """The request is at fault (EXIT_INPUT) or sweepd has a bug (EXIT_INTERNAL): running it again ends the same."""
        return self.input_error or self.exit_code in (EXIT_INPUT, EXIT_INTERNAL)

    @staticmethod
    def path_in(job_dir: Path) -> Path:
        return Path(job_dir) / "status.json"

    def progress_line(self) -> str:
        """"clock 3/10 1410MHz, trial 2/3, 91.2 J/img" ("power limit 2/6 225W, ..." in a power sweep; or the state
        before the first setting)."""
        if not self.clocks:
            return self.state
        last = f", {self.last_j_per_image:.1f} J/img" if self.last_j_per_image else ""
        return f"{self.where}, trial {self.trials_done}/{self.trials_per_clock}{last}"

    @property
    def where(self) -> str:
        """"clock 3/10 1410MHz", "power limit 2/6 225W": the setting being measured."""
        return f"{self.knob.noun} {self.clock}/{self.clocks} {self.freq}"


class DaemonState(JsonRecord):
    """``state/daemon.json``: the running daemon's view of itself, for ``sweepd status``."""
    pid: int | None = None
    status: str | None = None
    settings_error: str | None = None
    policy_error: str | None = None
    fault: str | None = None  # what the daemon cannot do now (the queue or state/ failing), until it heals
    updated: float | None = None
