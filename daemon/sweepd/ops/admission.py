"""Whether a request can run where it is submitted, and what happens to one that cannot: one copy of each
rule, for `sweepd submit` (before the file is dropped) and the daemon's intake (as it takes the file in).

A request is admitted when this root's executor can run it (a split needs SLURM; a local sweep's GPU index
is one of the daemon's), its clocks are ones its GPU has (checked here wherever the GPU answers: the
simulated one, or a local real one), and for a local sweep its model can be loaded from here. A request
that is refused, or a waiting one that is cancelled, is set aside in ``spool/rejected/`` with a
``.error.txt`` beside it saying why: never deleted."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from sweepd import atomic
from sweepd.configfile import ConfigError
from sweepd.errors import InputError
from sweepd.freqplan import plan_for
from sweepd.gpu.base import GpuError
from sweepd.paths import Layout
from sweepd.request import SweepRequest
from sweepd.workload import modelcheck


@dataclass(frozen=True)
class Admission:
    """Where this root's daemon runs sweeps (its settings): what a request is admitted against."""
    executor: str = "local"  # the daemon's; a request's own `executor` wins
    gpu_indices: tuple[int, ...] | None = (0,)  # the local GPUs it runs on; None: any index
    max_request_hours: float | None = None  # the most GPU time one request may be estimated to take
    group_gid: int | None = None  # a group whose members may queue sweeps too (settings: spool_group)

    @classmethod
    def of(cls, settings) -> "Admission":
        """From the daemon's :class:`~sweepd.settings.Settings`."""
        return cls(settings.executor, tuple(int(g) for g in settings.gpus) or None, settings.max_request_hours,
                   group_gid(settings.spool_group))

    def owner_problem(self, uid: int, gid: int) -> str | None:
        """Why a request file owned by ``uid``:``gid`` is not taken (None: it is): this user's, or the group's."""
        if uid == os.geteuid() or (self.group_gid is not None and gid == self.group_gid):
            return None
        allowed = "this daemon's user" + (f" or group {self.group_gid}" if self.group_gid is not None else
                                          " (settings: spool_group lets a group queue sweeps)")
        return f"(file): owned by uid {uid}, group {gid}: only {allowed} may queue sweeps here"

    def executor_of(self, req: SweepRequest) -> str:
        return req.executor or self.executor


def group_gid(name: str) -> int | None:
    """The gid of ``spool_group`` (a name or a number); raises InputError for an unknown group."""
    if not name:
        return None
    import grp

    try:
        return grp.getgrgid(int(name)).gr_gid if name.isdigit() else grp.getgrnam(name).gr_gid
    except KeyError:
        raise InputError(f"settings: spool_group: {name!r}: no such group on this machine") from None


def admit(req: SweepRequest, source: str, where: Admission, layout: Layout | None = None) -> str:
    """The executor that runs ``req``; raises ConfigError (naming ``source``, each field and value) when this
    root cannot run it or its estimated GPU time is over ``max_request_hours``, and ClockPlanError for a clock its
    GPU does not have."""
    executor = where.executor_of(req)
    problems = executor_problems(req, executor, where.gpu_indices)
    if problems:
        raise ConfigError(source, problems)
    if where.max_request_hours is not None and layout is not None:
        check_hours(req, source, executor, where, layout)
    if executor == "local":
        check_clocks(req, where.gpu_indices[0] if where.gpu_indices else None)
        modelcheck.check(req.workload.model, source)  # a node may see other folders and caches: not for SLURM
    elif req.gpu.backend == "sim":  # a SLURM sweep's real GPU is on a node: its clocks are checked there
        check_clocks(req)
    return executor


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
    plan_for(req, dev)


def check_hours(req: SweepRequest, source: str, executor: str, where: Admission, layout: Layout) -> None:
    """Refuse a request estimated (by the model, at its most trials and adaptive evaluations) to take more GPU
    time than the daemon's ``max_request_hours``. The estimate's GPU: the request's own where it answers here
    (the simulated one, a local real one), else the simulated board of its ``gpu.sim_model``."""
    from sweepd.report.estimate import estimate

    g = req.gpu
    try:
        dev = _clock_table_device(g.backend if executor == "local" else "sim",
                                  g.index if g.index is not None else (where.gpu_indices or (None,))[0], g.sim_model)
    except GpuError:
        dev = _clock_table_device("sim", None, g.sim_model)
    e = estimate(req, layout, dev, from_history=False)
    hours = (e.duration_range_s[1] if e.duration_range_s else e.duration_s) / 3600
    if hours > where.max_request_hours:
        raise ConfigError(source, [
            f"(request): estimated at up to {hours:,.1f} h of GPU time on {dev.name} ({e.clocks} {req.knob.noun}s x "
            f"up to {e.trials} trials x {e.images_per_trial} images per trial, {req.workload.steps} steps); this daemon "
            f"takes requests of at most {where.max_request_hours:g} h (settings: max_request_hours): fewer clocks, "
            "trials or images, or a larger cap"])


def set_aside(path: Path, rejected: Path, why: str, name: str | None = None) -> Path:
    """Move ``path`` into ``rejected`` under a free name (``name``, a usable file name, else its own) with
    ``<name>.error.txt`` beside it holding ``why``. The error file is written first, so a request is never in
    rejected/ without its reason; nothing is overwritten (``<stem>.1<suffix>``, ...)."""
    name = name or path.name
    target = rejected / name
    n = 1
    while target.exists() or target.with_name(target.name + ".error.txt").exists():
        target = rejected / f"{Path(name).stem}.{n}{Path(name).suffix}"
        n += 1
    atomic.write_text(target.with_name(target.name + ".error.txt"), why)
    os.replace(path, target)
    return target
