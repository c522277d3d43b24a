"""`sweepd clock set/show/reset`: put the answer to use. A production lock at a sweep's recommended clock
(or a clock given in MHz), checked against the GPU's table and recorded under ``state/production-locks/``
so that `sweepd gpus` shows it and a sweep on that GPU restores it afterwards instead of resetting."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from sweepd.cli.common import RootOpt, app, console, guarded, layout_of
from sweepd.errors import InputError
from sweepd.records.gpulock import ProductionLock

clock_app = typer.Typer(help="Lock a GPU at the recommended clock for production, show it, reset it.",
                        no_args_is_help=True, rich_markup_mode=None)
app.add_typer(clock_app, name="clock")

BackendOpt = typer.Option("auto", "--backend", help="auto | nvml | sim")
SimModelOpt = typer.Option("A100", "--sim-model", help="H100 | A100 | V100, for --backend sim")
GpuOpt = typer.Option(None, "--gpu", help="GPU index (default: the first)")


def _target(target: str, layout) -> tuple[int, str, str | None, str | None]:
    """(MHz, source, the job's backend, its sim model) for a job id or a clock in MHz."""
    from sweepd.report.analysis import analyse
    from sweepd.report.data import JobNotFound, find

    try:
        a = analyse(find(layout, target))
    except JobNotFound:
        if target.isdigit():
            return int(target), "manual", None, None
        raise InputError(f"{target!r} is neither a sweep under {layout.results} nor a clock in MHz") from None
    o = a.recommended
    if o is None or o.freq_mhz is None:
        raise InputError(f"job {a.job.job_id} has no measured clock to recommend")
    req = a.job.manifest.request
    return o.freq_mhz, f"job {a.job.job_id}", a.job.manifest.backend, req.gpu.sim_model


def _open(backend: str, index: int | None, sim_model: str, uuid: str | None = None):
    from sweepd.gpu import open_device

    if backend not in ("auto", "nvml", "sim"):
        raise InputError(f"--backend {backend!r}: use auto, nvml or sim")
    return open_device(backend, index=index, uuid=uuid, sim_model=sim_model)


@clock_app.command("set")
def set_(target: str = typer.Argument(..., help="a sweep (job id) whose answer to use, or a clock in MHz"),
         gpu: Optional[int] = GpuOpt, backend: str = BackendOpt, sim_model: str = SimModelOpt,
         root: Optional[Path] = RootOpt) -> None:
    """Lock the GPU's core clock at the recommended (or given) clock until `sweepd clock reset`."""
    from sweepd.freqplan import nearest

    def go() -> int:
        layout = layout_of(root)
        freq, source, job_backend, job_sim = _target(target, layout)
        b, m = backend, sim_model
        if b == "auto" and job_backend == "sim":  # a simulated sweep's answer goes on the simulated GPU
            b, m = "sim", job_sim or sim_model
        with _open(b, gpu, m) as dev:
            mem = dev.memory_clocks()[0]
            supported = dev.graphics_clocks(mem)
            if freq not in supported:
                near = " or ".join(f"{x} MHz" for x in nearest(supported, freq))
                raise InputError(f"{freq} MHz is not a supported core clock of {dev.name} at memory {mem} MHz; "
                                 f"nearest: {near}")
            dev.lock_clocks(freq, None)
            info = dev.info()
            rec = ProductionLock(uuid=dev.uuid, index=dev.index, name=dev.name, backend=dev.backend,
                                 sim_model=info.sim_model, freq_mhz=freq, source=source,
                                 since=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            rec.write(ProductionLock.path_for(layout.production_locks, dev.uuid))
            sim = " (SIMULATED: recorded; a simulated GPU's lock lives only in sweepd)" if dev.simulated else ""
        console.print(f"{rec.name} ({rec.uuid}) locked at {freq} MHz from {source}{sim}", highlight=False)
        console.print(f"the same elsewhere: sbatch --gpu-freq={freq} ... | nvidia-smi -lgc {freq},{freq}", highlight=False)
        return 0

    raise typer.Exit(guarded(go))


@clock_app.command("show")
def show(root: Optional[Path] = RootOpt, as_json: bool = typer.Option(False, "--json")) -> None:
    """The production locks sweepd has set on this root's GPUs."""
    def go() -> int:
        recs = ProductionLock.all_in(layout_of(root).production_locks)
        if as_json:
            print(json.dumps([r.model_dump(mode="json") for r in recs], indent=1))
            return 0
        if not recs:
            console.print("no production lock: every GPU runs at its default clocks", highlight=False)
        for r in recs:
            tag = " [SIMULATED]" if r.backend == "sim" else ""
            console.print(f"GPU {r.index} {r.name} ({r.uuid}): {r.freq_mhz} MHz since {r.since}, from {r.source}{tag}",
                          highlight=False)
        return 0

    raise typer.Exit(guarded(go))


@clock_app.command("reset")
def reset(gpu: Optional[int] = GpuOpt, backend: str = BackendOpt, sim_model: str = SimModelOpt,
          root: Optional[Path] = RootOpt) -> None:
    """Reset the clocks of the GPUs sweepd locked for production (with --gpu: that one) to their defaults."""
    def go() -> int:
        layout = layout_of(root)
        recs = [r for r in ProductionLock.all_in(layout.production_locks) if gpu is None or r.index == gpu]
        if not recs:
            if backend == "nvml" or gpu is not None:  # no record: reset the GPU asked for anyway
                with _open(backend, gpu, sim_model) as dev:
                    dev.reset_clocks()
                    console.print(f"{dev.name} ({dev.uuid}): clocks reset to default", highlight=False)
                return 0
            console.print("no production lock to reset", highlight=False)
            return 0
        for r in recs:
            b = "sim" if r.backend == "sim" else "nvml"
            with _open(b, r.index if b == "sim" else None, r.sim_model or sim_model, None if b == "sim" else r.uuid) as dev:
                dev.reset_clocks()
            if r.path is not None:
                r.path.unlink(missing_ok=True)
            console.print(f"{r.name} ({r.uuid}): clocks reset to default (was {r.freq_mhz} MHz)", highlight=False)
        return 0

    raise typer.Exit(guarded(go))
