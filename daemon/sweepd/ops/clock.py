"""Putting the answer to use: a production clock lock at a sweep's recommended clock (or a clock in MHz), checked
against the GPU's table and recorded under ``state/production-locks/`` so that `sweepd gpus` shows it and a sweep on
that GPU restores it afterwards instead of resetting; and resetting those locks."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sweepd.errors import InputError
from sweepd.gpu.base import GpuDevice
from sweepd.paths import Layout
from sweepd.records.gpulock import ProductionLock

BACKENDS = ("auto", "nvml", "sim")


@dataclass(frozen=True)
class Target:
    """The clock to lock and where it comes from: a sweep's answer, or a clock given by hand."""
    freq_mhz: int
    source: str  # "job <id>" or "manual"
    backend: str | None = None  # the sweep's backend ("sim": its answer goes on the simulated GPU)
    sim_model: str | None = None


@dataclass(frozen=True)
class Reset:
    """A GPU whose clocks were reset to their defaults, and the production lock it had (None: none recorded)."""
    name: str
    uuid: str
    was_mhz: int | None


def target_of(layout: Layout, target: str) -> Target:
    """A job id under this root (its recommended clock) or a clock in MHz."""
    from sweepd.report.analysis import analyse
    from sweepd.report.data import JobNotFound, find

    try:
        a = analyse(find(layout, target))
    except JobNotFound:
        if target.isdigit():
            return Target(int(target), "manual")
        raise InputError(f"{target!r} is neither a sweep under {layout.results} nor a clock in MHz") from None
    o = a.recommended
    if o is None or o.freq_mhz is None:
        raise InputError(f"job {a.job.job_id} has no measured clock to recommend")
    return Target(o.freq_mhz, f"job {a.job.job_id}", a.job.manifest.backend, a.job.manifest.request.gpu.sim_model)


def open_gpu(backend: str, index: int | None, sim_model: str, uuid: str | None = None) -> GpuDevice:
    from sweepd.gpu import open_device

    if backend not in BACKENDS:
        raise InputError(f"--backend {backend!r}: use auto, nvml or sim")
    return open_device(backend, index=index, uuid=uuid, sim_model=sim_model)


def set_production_clock(layout: Layout, target: str, gpu: int | None, backend: str,
                         sim_model: str) -> ProductionLock:
    """Lock the GPU's core clock at the target until reset, and record the lock."""
    from sweepd.freqplan import nearest

    t = target_of(layout, target)
    if backend == "auto" and t.backend == "sim":  # a simulated sweep's answer goes on the simulated GPU
        backend, sim_model = "sim", t.sim_model or sim_model
    with open_gpu(backend, gpu, sim_model) as dev:
        mem = dev.memory_clocks()[0]
        supported = dev.graphics_clocks(mem)
        if t.freq_mhz not in supported:
            near = " or ".join(f"{x} MHz" for x in nearest(supported, t.freq_mhz))
            raise InputError(f"{t.freq_mhz} MHz is not a supported core clock of {dev.name} at memory {mem} MHz; "
                             f"nearest: {near}")
        dev.lock_clocks(t.freq_mhz, None)
        rec = ProductionLock(uuid=dev.uuid, index=dev.index, name=dev.name, backend=dev.backend,
                             sim_model=dev.info().sim_model, freq_mhz=t.freq_mhz, source=t.source,
                             since=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        rec.write(ProductionLock.path_for(layout.production_locks, dev.uuid))
    return rec


def reset_production_clocks(layout: Layout, gpu: int | None, backend: str, sim_model: str) -> list[Reset]:
    """Reset the GPUs sweepd locked for production (``gpu``: that one) and forget their locks. With no lock
    recorded, the GPU asked for (``gpu``, or the nvml backend's first) is reset anyway; else nothing is."""
    recs = [r for r in ProductionLock.all_in(layout.production_locks) if gpu is None or r.index == gpu]
    if not recs:
        if backend == "nvml" or gpu is not None:
            with open_gpu(backend, gpu, sim_model) as dev:
                dev.reset_clocks()
                return [Reset(dev.name, dev.uuid, None)]
        return []
    out = []
    for r in recs:
        b = "sim" if r.backend == "sim" else "nvml"
        with open_gpu(b, r.index if b == "sim" else None, r.sim_model or sim_model,
                      None if b == "sim" else r.uuid) as dev:
            dev.reset_clocks()
        if r.path is not None:
            r.path.unlink(missing_ok=True)
        out.append(Reset(r.name, r.uuid, r.freq_mhz))
    return out
