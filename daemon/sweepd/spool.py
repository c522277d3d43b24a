"""The spool: users drop request files into spool/incoming/, sweepd takes each exactly once.

Writers create a file under a name sweepd ignores (starting with '.', or ending in .tmp or .part)
and rename it into place when complete (Maildir style), so sweepd never reads half a file.
A valid request is moved to spool/accepted/<sweep-id>.<ext> and queued; an invalid one is moved to
spool/rejected/<name> with <name>.error.txt beside it listing every problem. Nothing is dropped.

Crash safety: the file is renamed into accepted/ before its queue row is written; a restart
queues any accepted file without a row (:meth:`Spool.reconcile_accepted`).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import stat
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sweepd import atomic, audit, configfile, paths
from sweepd.configfile import ConfigError
from sweepd.freqplan import ClockPlanError, plan_clocks
from sweepd.gpu.base import GpuError
from sweepd.queue import DuplicateJob, Queue
from sweepd.request import SweepRequest

log = logging.getLogger(__name__)

SWEEP_ID_RE = re.compile(r"^[0-9a-f]{12}$")
IGNORED_SUFFIXES = (".tmp", ".part")


def ignored(name: str) -> bool:
    return name.startswith(".") or name.endswith(IGNORED_SUFFIXES) or name.endswith(".error.txt")


def new_sweep_id() -> str:
    return secrets.token_hex(6)


@lru_cache(maxsize=16)
def _clock_table_device(backend: str, index: int | None, sim_model: str):
    from sweepd.gpu import open_device

    return open_device(backend, index=index, sim_model=sim_model)


def check_clocks(req: SweepRequest, default_index: int | None = None) -> None:
    """Check the request's clocks against its GPU (simulated, or real where one answers)."""
    g = req.gpu
    try:
        dev = _clock_table_device(g.backend, g.index if g.index is not None else default_index, g.sim_model)
    except GpuError:
        return  # no such GPU here (a client on a login node): the worker checks again before running
    plan_clocks(req.frequencies, dev)


def executor_problems(req: SweepRequest, executor: str, gpu_indices: tuple[int, ...] | None) -> list[str]:
    """Why this daemon cannot run the request where it asks to run (empty: it can)."""
    if executor == "local":
        if req.split > 1:
            return [f'split: {req.split}: shards run as a SLURM job array; this daemon\'s executor is "local" '
                    '(set executor = "slurm" in the request or in the settings)']
        if gpu_indices and req.gpu.index is not None and req.gpu.index not in gpu_indices:
            return [f"gpu.index: {req.gpu.index}: this daemon runs sweeps on GPU(s) "
                    f"{list(gpu_indices)} (settings: gpus)"]
        return []
    from sweepd.slurm import commands

    if not commands.available():
        return [f'executor: "{executor}": sbatch and squeue are not on this machine\'s PATH '
                "(run the daemon on a SLURM login node, or use executor = \"local\")"]
    return []


@dataclass
class Outcome:
    name: str
    accepted: bool
    sweep_id: str | None = None
    problems: list[str] | None = None


class Spool:
    def __init__(self, root: Path, state: Path, queue: Queue, max_bytes: int = 1 << 20,
                 gpu_indices: tuple[int, ...] | None = (0,), executor: str = "local"):
        self.incoming, self.accepted, self.rejected = (root / "spool" / d for d in ("incoming", "accepted", "rejected"))
        self.state, self.queue, self.max_bytes = state, queue, max_bytes
        self.gpu_indices = gpu_indices  # None: queue only, any index is fine
        self.executor = executor  # the daemon's setting; a request's own `executor` wins

    def ensure(self) -> None:
        for d in (self.incoming, self.accepted, self.rejected):
            d.mkdir(parents=True, exist_ok=True)

    def candidates(self) -> list[Path]:
        try:
            entries = sorted(os.scandir(self.incoming), key=lambda e: e.name)
        except FileNotFoundError:
            return []
        return [Path(e.path) for e in entries if not ignored(e.name)]

    def scan(self) -> list[Outcome]:
        return [self.take(p) for p in self.candidates()]

    # one file --------------------------------------------------------------------------------
    def take(self, path: Path) -> Outcome:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return Outcome(path.name, False, problems=["vanished before it was read"])
        if not stat.S_ISREG(st.st_mode):
            return self._reject(path, ["(file): not a regular file (a directory, link or device); "
                                       "drop request files only"])
        if st.st_size > self.max_bytes:
            return self._reject(path, [f"(file): {st.st_size} bytes is over the limit of {self.max_bytes}"])
        try:
            req = configfile.validate(SweepRequest, configfile.read_data(path), path.name)
            executor = self.executor_of(req)
            problems = executor_problems(req, executor, self.gpu_indices)
            if problems:
                return self._reject(path, problems)
            if executor == "local":
                check_clocks(req, self.gpu_indices[0] if self.gpu_indices else None)
            elif req.gpu.backend == "sim":  # a real GPU's clocks are checked on the node
                check_clocks(req)
        except ConfigError as e:
            return self._reject(path, e.problems)
        except ClockPlanError as e:
            return self._reject(path, [str(e)])
        sweep_id = path.stem if SWEEP_ID_RE.match(path.stem) and not self.queue.get(path.stem) else new_sweep_id()
        job_id = self.job_id_for(req, executor, sweep_id)
        if self.queue.get(job_id):
            return self._reject(path, [f"job_id: {job_id!r}: already used by sweep {self.queue.get(job_id)['id']}"])
        target = self.accepted / f"{sweep_id}{path.suffix.lower()}"
        os.replace(path, target)
        atomic.fsync_dir(self.accepted)
        return self._enqueue(target, req, sweep_id, job_id, path.name)

    def executor_of(self, req: SweepRequest) -> str:
        return req.executor or self.executor

    @staticmethod
    def job_id_for(req: SweepRequest, executor: str, sweep_id: str) -> str:
        """The request's job id; else a local one, or for SLURM a placeholder until sbatch gives the
        array's job id (the results go to job_<SLURM_JOB_ID>/)."""
        if req.job_id:
            return req.job_id
        return f"slurm-pending-{sweep_id}" if executor == "slurm" else paths.new_local_job_id()

    def _enqueue(self, target: Path, req: SweepRequest, sweep_id: str, job_id: str, source: str) -> Outcome:
        executor = self.executor_of(req)
        try:
            self.queue.add(sweep_id, job_id, req.model_dump(mode="json", by_alias=True)
                           | {"job_id": job_id if executor == "local" else req.job_id},
                           priority=req.priority, gpu_index=req.gpu.index if executor == "local" else None,
                           source=source, spool_path=str(target), executor=executor)
        except DuplicateJob as e:
            return self._reject(target, [f"job_id: {job_id!r}: {e}"], name=source)
        audit.record(self.state, "accepted", sweep_id=sweep_id, job_id=job_id, source=source)
        log.info("accepted %s as sweep %s (job %s)", source, sweep_id, job_id)
        return Outcome(source, True, sweep_id=sweep_id)

    def _reject(self, path: Path, problems: list[str], name: str | None = None) -> Outcome:
        name = name or path.name
        target = self.rejected / name
        n = 1
        while target.exists() or target.with_name(target.name + ".error.txt").exists():
            target = self.rejected / f"{Path(name).stem}.{n}{Path(name).suffix}"
            n += 1
        text = f"sweepd rejected {name}:\n" + "".join(f"  {p}\n" for p in problems)
        atomic.write_text(target.with_name(target.name + ".error.txt"), text)
        os.replace(path, target)
        audit.record(self.state, "rejected", source=name, moved_to=str(target), problems=problems)
        log.warning("rejected %s: %s", name, "; ".join(problems))
        return Outcome(name, False, problems=problems)

    # after a crash ---------------------------------------------------------------------------
    def reconcile_accepted(self) -> int:
        """Queue accepted files that have no queue row (a crash between the rename and the insert)."""
        n = 0
        for path in sorted(self.accepted.iterdir()) if self.accepted.exists() else []:
            if not SWEEP_ID_RE.match(path.stem) or self.queue.get(path.stem):
                continue
            try:
                req = configfile.load(SweepRequest, path)
            except ConfigError as e:
                self._reject(path, e.problems)
                continue
            problems = executor_problems(req, self.executor_of(req), self.gpu_indices)
            if problems:
                self._reject(path, problems)
                continue
            job_id = self.job_id_for(req, self.executor_of(req), path.stem)
            self._enqueue(path, req, path.stem, job_id, path.name)
            n += 1
        return n
