"""`sweepd clock set/show/reset`: put the answer to use. A production lock at a sweep's recommended clock (or a clock
given in MHz), or a production power cap at a power sweep's recommended limit (or one given as "200W"), checked
against the GPU and recorded under ``state/production-locks/`` so that `sweepd gpus` shows it and a sweep on that GPU
restores it afterwards instead of resetting. One interface for both knobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from sweepd.cli.common import RootOpt, app, console, guarded, layout_of
from sweepd.records.gpulock import ProductionLock

clock_app = typer.Typer(help="Lock a GPU at the recommended clock (or cap it at the recommended power limit) for "
                             "production, show it, reset it.",
                        no_args_is_help=True, rich_markup_mode=None)
app.add_typer(clock_app, name="clock")

BackendOpt = typer.Option("auto", "--backend", help="auto | nvml | sim")
SimModelOpt = typer.Option("A100", "--sim-model", help="H100 | A100 | V100, for --backend sim")
GpuOpt = typer.Option(None, "--gpu", help="GPU index (default: the first)")


@clock_app.command("set")
def set_(target: str = typer.Argument(..., help='a sweep (job id) whose answer to use, a clock in MHz, or a power '
                                                  'limit such as "200W"'),
         gpu: Optional[int] = GpuOpt, backend: str = BackendOpt, sim_model: str = SimModelOpt,
         root: Optional[Path] = RootOpt) -> None:
    """Lock the GPU's core clock at the recommended (or given) clock, or cap its power at the recommended (or given)
    limit, until `sweepd clock reset`."""
    from sweepd.ops.clock import set_production_clock

    def go() -> int:
        rec = set_production_clock(layout_of(root), target, gpu, backend, sim_model)
        sim = " (SIMULATED: recorded; a simulated GPU's lock lives only in sweepd)" if rec.backend == "sim" else ""
        held = " and ".join(([f"locked at {rec.freq_mhz} MHz"] if rec.freq_mhz is not None else [])
                            + ([f"capped at {rec.power_limit_w} W"] if rec.power_limit_w is not None else []))
        console.print(f"{rec.name} ({rec.uuid}) {held} from {rec.source}{sim}", highlight=False)
        if rec.freq_mhz is not None:
            console.print(f"the same elsewhere: sbatch --gpu-freq={rec.freq_mhz} ... | "
                          f"nvidia-smi -lgc {rec.freq_mhz},{rec.freq_mhz}", highlight=False)
        if rec.power_limit_w is not None:
            console.print(f"the same elsewhere: nvidia-smi -pl {rec.power_limit_w}", highlight=False)
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
            console.print(f"GPU {r.index} {r.name} ({r.uuid}): {r.what} since {r.since}, from {r.source}{tag}",
                          highlight=False)
        return 0

    raise typer.Exit(guarded(go))


@clock_app.command("reset")
def reset(gpu: Optional[int] = GpuOpt, backend: str = BackendOpt, sim_model: str = SimModelOpt,
          root: Optional[Path] = RootOpt) -> None:
    """Reset the clocks and power limits of the GPUs sweepd set for production (with --gpu: that one) to their
    defaults."""
    from sweepd.ops.clock import reset_production_clocks

    def go() -> int:
        done = reset_production_clocks(layout_of(root), gpu, backend, sim_model)
        if not done:
            console.print("no production lock to reset", highlight=False)
        for r in done:
            was = f" (was {r.was})" if r.was else ""
            what = "clocks and power limit" if r.power_reset else "clocks"
            console.print(f"{r.name} ({r.uuid}): {what} reset to default{was}", highlight=False)
        return 0

    raise typer.Exit(guarded(go))
