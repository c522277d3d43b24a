"""Putting the answer to use: a production clock lock at a sweep's recommended clock (or a clock in MHz), or a
production power cap at a power sweep's recommended limit (or "200W"), checked against the GPU and recorded under
``state/production-locks/`` so that `sweepd gpus` shows it and a sweep on that GPU restores it afterwards instead of
resetting; and resetting them."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from sweepd.errors import InputError
from sweepd.gpu.base import GpuDevice
from sweepd.paths import Layout
from sweepd.records.gpulock import ProductionLock
from sweepd.vocab import Knob

BACKENDS = ("auto", "nvml", "sim")


@dataclass(frozen=True)
class Target:
    """The clock to lock (or the power limit to set) and where it comes from: a sweep's answer, or one given by hand."""
    freq_mhz: int | None
    source: str  # "job <id>" or "manual"
    backend: str | None = None  # the sweep's backend ("sim": its answer goes on the simulated GPU)
    sim_model: str | None = None
    power_limit_w: int | None = None  # a power sweep's answer, or "200W": a cap, the clock left alone


@dataclass(frozen=True)
class Reset:
    """A GPU whose clocks were reset to their defaults, and the production lock it had (None: none recorded)."""
    name: str
    uuid: str
    was: str | None  # what the production lock had set, in words (None: none recorded)
    power_reset: bool = False  # the power limit was set back to the default too


def target_of(layout: Layout, target: str) -> Target:
    """A job id under this root (its recommended clock, or a power sweep's limit), a clock in MHz or a limit in W."""
    from sweepd.report.analysis import analyse
    from sweepd.report.data import JobNotFound, find

    try:
        a = analyse(find(layout, target))
    except JobNotFound:
        m = re.fullmatch(r"(\d+)\s*(mhz|w)?", target.strip().lower())
        if m and m.group(2) == "w":
            return Target(None, "manual", power_limit_w=int(m.group(1)))
        if m:
            return Target(int(m.group(1)), "manual")
        raise InputError(f"{target!r} is neither a sweep under {layout.results} nor a clock in MHz nor a power limit "
                         "such as 200W") from None
    o = a.recommended
    if o is None or o.freq_mhz is None:
        raise InputError(f"job {a.job.job_id} has no measured {a.knob.noun} to recommend")
    m = a.job.manifest
    if a.knob is Knob.POWER_LIMIT:
        return Target(None, f"job {a.job.job_id}", m.backend, m.request.gpu.sim_model, power_limit_w=o.freq_mhz)
    return Target(o.freq_mhz, f"job {a.job.job_id}", m.backend, m.request.gpu.sim_model)


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
        path = ProductionLock.path_for(layout.production_locks, dev.uuid)
        had = ProductionLock.read_or_none(path)  # the other knob's production setting stays
        if t.power_limit_w is not None:
            dev.set_power_limit(t.power_limit_w)  # out of the board's range: one line naming it
            freq, power = (had.freq_mhz if had else None), t.power_limit_w
        else:
            assert t.freq_mhz is not None
            mem = dev.memory_clocks()[0]
            supported = dev.graphics_clocks(mem)
            if t.freq_mhz not in supported:
                near = " or ".join(f"{x} MHz" for x in nearest(supported, t.freq_mhz))
                raise InputError(f"{t.freq_mhz} MHz is not a supported core clock of {dev.name} at memory {mem} "
                                 f"MHz; nearest: {near}")
            dev.lock_clocks(t.freq_mhz, None)
            freq, power = t.freq_mhz, (had.power_limit_w if had else None)
        rec = ProductionLock(uuid=dev.uuid, index=dev.index, name=dev.name, backend=dev.backend,
                             sim_model=dev.info().sim_model, freq_mhz=freq, power_limit_w=power, source=t.source,
                             since=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        rec.write(path)
    return rec


def reset_production_clocks(layout: Layout, gpu: int | None, backend: str, sim_model: str) -> list[Reset]:
    """Reset the GPUs sweepd locked for production (``gpu``: that one) and forget their locks. With no lock
    recorded, the GPU asked for (``gpu``, or the nvml backend's first) is reset anyway; else nothing is."""
    recs = [r for r in ProductionLock.all_in(layout.production_locks) if gpu is None or r.index == gpu]
    if not recs:
        if backend == "nvml" or gpu is not None:
            with open_gpu(backend, gpu, sim_model) as dev:
                dev.reset_clocks()
                dev.reset_power_limit()
                return [Reset(dev.name, dev.uuid, None, True)]
        return []
    out = []
    for r in recs:
        b = "sim" if r.backend == "sim" else "nvml"
        with open_gpu(b, r.index if b == "sim" else None, r.sim_model or sim_model,
                      None if b == "sim" else r.uuid) as dev:
            dev.reset_clocks()
            if r.power_limit_w is not None:
                dev.reset_power_limit()
        if r.path is not None:
            r.path.unlink(missing_ok=True)
        out.append(Reset(r.name, r.uuid, r.what, r.power_limit_w is not None))
    return out
