"""SLURM's command-line tools, one small function each: sbatch, squeue, scontrol, sacct, scancel, srun.

Every call is an argument list (never a shell string) with a timeout; a tool that is missing, times
out or fails raises :class:`SlurmError` (or :class:`SlurmUnreachable` when the controller did not
answer, which is worth trying again later), so the code above can be tested without SLURM's quirks.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sweepd.errors import SlurmError as _SlurmError

TIMEOUT_S = 20.0  # two calls in one daemon step stay well inside the unit's WatchdogSec=60
# States in which a job still holds (or waits for) resources; every other state is final.
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "REQUEUE_HOLD",
          "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD"}
_UNREACHABLE = ("unable to contact slurm controller", "socket timed out", "connection refused",
                "resource temporarily unavailable", "slurm_persist_conn", "zero bytes were transmitted")


class SlurmError(_SlurmError):
    pass


class SlurmUnreachable(SlurmError):
    """The controller did not answer: try again later."""


def available() -> bool:
    return shutil.which("sbatch") is not None and shutil.which("squeue") is not None


def _run(argv: list[str], env: dict | None = None, timeout: float = TIMEOUT_S) -> str:
    tool = argv[0]
    if shutil.which(tool, path=(env or os.environ).get("PATH")) is None:
        raise SlurmError(f"{tool} not found on PATH: is this a SLURM login node? (executor = \"slurm\")")
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SlurmUnreachable(f"{tool} did not answer in {timeout:.0f} s") from None
    if p.returncode != 0:
        msg = (p.stderr.strip() or p.stdout.strip() or f"exit status {p.returncode}").splitlines()[-1]
        cls = SlurmUnreachable if any(s in msg.lower() for s in _UNREACHABLE) else SlurmError
        raise cls(msg if msg.startswith(f"{tool}:") else f"{tool}: {msg}")
    return p.stdout


def sbatch(script: Path, args: list[str] = (), options: list[str] = (), env: dict | None = None) -> str:
    """Submit a job script; returns the job id (for an array: the array's job id)."""
    out = _run(["sbatch", "--parsable", *options, str(script), *args], env=env)
    job = out.strip().splitlines()[-1].split(";")[0] if out.strip() else ""
    if not re.fullmatch(r"\d+", job):
        raise SlurmError(f"sbatch printed {out.strip()!r}, not a job id")
    return job


@dataclass(frozen=True)
class JobState:
    job_id: str     # 123, or 123_4 for an array task
    name: str
    state: str      # PENDING, RUNNING, COMPLETED, TIMEOUT, CANCELLED, ...
    reason: str     # why pending, or why it ended (None when there is nothing to say)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE


def parse_state(state: str) -> str:
    """'CANCELLED by 0' -> 'CANCELLED'; 'COMPLETED+' -> 'COMPLETED'."""
    return state.split()[0].rstrip("+").upper() if state.strip() else "UNKNOWN"


def squeue(user_only: bool = True) -> dict[str, JobState]:
    """Every job the controller still knows (finished ones too, for MinJobAge), array tasks one by one."""
    argv = ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%j|%T|%r"]
    if user_only:
        argv.append("--me")
    out = {}
    for line in _run(argv).splitlines():
        parts = line.strip().split("|", 3)
        if len(parts) == 4:
            out[parts[0]] = JobState(parts[0], parts[1], parse_state(parts[2]), parts[3])
    return out


def scontrol_state(job_id: str) -> JobState | None:
    """One job from `scontrol show job`; None when the controller has forgotten it."""
    try:
        text = _run(["scontrol", "--oneliner", "show", "job", job_id])
    except SlurmError as e:  # SlurmUnreachable too: raised again
        if "invalid job id" in str(e).lower():
            return None
        raise
    fields = dict(re.findall(r"(\w+)=(\S*)", text))
    if "JobState" not in fields:
        return None
    return JobState(job_id, fields.get("JobName", ""), parse_state(fields["JobState"]), fields.get("Reason", ""))


def sacct_state(job_id: str) -> JobState | None:
    """From the accounting database, where the cluster has one; None where it has not or knows nothing."""
    if shutil.which("sacct") is None:
        return None
    try:
        out = _run(["sacct", "--noheader", "--parsable2", "--allocations", "--jobs", job_id,
                    "--format=JobID,JobName,State,ExitCode"])
    except SlurmError:
        return None  # accounting disabled ("Slurm accounting storage is disabled") or not reachable
    for line in out.splitlines():
        parts = line.split("|")
        if len(parts) >= 4 and parts[0] == job_id:
            return JobState(job_id, parts[1], parse_state(parts[2]), f"exit code {parts[3]}")
    return None


def job_state(job_id: str, known: dict[str, JobState]) -> JobState | None:
    """squeue's answer (passed in: one call for all jobs), else scontrol's, else sacct's."""
    return known.get(job_id) or scontrol_state(job_id) or sacct_state(job_id)


def scancel(job_ids: list[str]) -> None:
    if job_ids:
        _run(["scancel", *job_ids])


def srun_step(argv: list[str], gpu_freq: str) -> int:
    """One job step of the allocation this process runs in, at ``--gpu-freq=<gpu_freq>`` (slurmstepd sets the clock
    before the step's task starts and resets it when the step ends); its output goes where this process's goes.
    Returns the step's exit status (SLURM's: the task's, or 128 + the signal that ended it)."""
    if shutil.which("srun") is None:
        raise SlurmError("srun not found on PATH: clock_control = \"slurm\" runs each clock as an srun step")
    return subprocess.run(["srun", "--nodes=1", "--ntasks=1", f"--gpu-freq={gpu_freq}", "--kill-on-bad-exit=1",
                           *argv], stdin=subprocess.DEVNULL).returncode
