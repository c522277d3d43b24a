"""`sweepd report` and `sweepd estimate`."""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from sweepd.cli.common import layout_of, ImagesOpt, ResultsOpt, RootOpt, app, console, guarded
from sweepd.errors import InputError
from sweepd.records.rows import SummaryRow
from sweepd.storage.units import human


@app.command()
def report(
    jobs: list[str] = typer.Argument(..., help="job_<ID>, job id or sweep id; several to compare"),
    root: Optional[Path] = RootOpt, images_dir: Optional[Path] = ImagesOpt, results_dir: Optional[Path] = ResultsOpt,
    bound: float = typer.Option(5.0, "--bound", help="slowdown bound in % vs the max clock"),
    cv: float = typer.Option(5.0, "--cv", help="flag clocks whose J/image CV is above this %"),
    as_json: bool = typer.Option(False, "--json"), as_csv: bool = typer.Option(False, "--csv"),
) -> None:
    """The optimal clock and what it saves; plots and report.html in the job's results folder."""
    from sweepd.ops import report as ops
    from sweepd.progress import summary_table
    from sweepd.report.words import answer_lines

    layout = layout_of(root, images_dir, results_dir)

    def go() -> int:
        analyses = ops.analyse_jobs(layout, jobs, bound, cv)
        if as_json:  # reading only: no plot or page is written, nothing heavy is imported
            print(json.dumps([a.to_json() for a in analyses] if len(analyses) > 1 else analyses[0].to_json(), indent=1))
            return 0
        if as_csv:
            keys = [k for k in SummaryRow.columns() if k not in ("job_id", "simulated")]
            w = csv.writer(sys.stdout)
            w.writerow(["job_id", "simulated", *keys])
            for a in analyses:
                for r in a.rows:
                    w.writerow([a.job.job_id, "true" if a.job.simulated else "false", *(getattr(r, k) for k in keys)])
            return 0
        built = ops.build_reports(analyses, bound, cv)
        for b in built:
            if b.note:
                console.print(f"note: {b.note}", highlight=False)
        for b in built:
            a, page = b.analysis, b.page
            if a.rows:
                console.print(summary_table(a.rows, a.job.simulated, a.job.label))
            console.print(f"baseline: {a.knob.show(a.baseline)} (the highest {a.knob.noun} measured); "
                          f"slowdown bound +{bound:g}%", highlight=False)
            for line in answer_lines(a):
                console.print(line, highlight=False)
            for f in a.flag_lines:
                console.print(f"[yellow]flag:[/] {f}", highlight=False)
            if page is not None:
                console.print(f"report: {page}", highlight=False)
        if len(analyses) > 1:
            t = Table(title="sweeps compared", title_justify="left")
            for col in ("job", "GPU", "baseline", "min EDP at", "energy", "time", "min energy at", "energy"):
                t.add_column(col)
            for a in analyses:
                e, d = a.best("energy", False), a.best("edp", False)
                sim = " (simulated)" if a.job.simulated and "simulated" not in a.job.gpu_name else ""
                k = a.knob
                t.add_row(a.job.job_id, a.job.gpu_name + sim, k.show(a.baseline),
                          k.show(d.freq_mhz) if d else "-", f"{-d.energy_saving_pct:+.1f}%" if d else "-",
                          f"{d.time_change_pct:+.1f}%" if d else "-", k.show(e.freq_mhz) if e else "-",
                          f"{-e.energy_saving_pct:+.1f}%" if e else "-")
            console.print(t)
            try:
                console.print(f"compared curves: {ops.compare(layout, analyses)}", highlight=False)
            except OSError as e:
                console.print(f"note: compared curves not written ({e.strerror or e})", highlight=False)
        return 0

    raise typer.Exit(guarded(go))


def estimate_table() -> str:
    """The README's storage table: a full SD 1.5 sweep (512x512, 50 steps, 5 trials, every clock >= 510 MHz)."""
    import tempfile

    from sweepd.gpu.sim import SimulatedGpu
    from sweepd.report.estimate import estimate
    from sweepd.request import SweepRequest

    lines = ["| GPU (clocks >= 510 MHz) | images generated | benchmark | research | archive | duration | adaptive |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    with tempfile.TemporaryDirectory() as tmp:
        layout = layout_of(tmp)
        for gpu in ("H100", "A100", "V100"):
            req = SweepRequest.model_validate({"workload": {"model": "runwayml/stable-diffusion-v1-5"},
                                               "gpu": {"backend": "sim", "sim_model": gpu}, "protocol": {"trials": 5}})
            e = estimate(req, layout, SimulatedGpu(gpu))
            ada = estimate(req.model_copy(update={"frequencies": req.frequencies.model_copy(
                update={"mode": "adaptive"})}), layout, SimulatedGpu(gpu))
            cells = [f"{m.images_saved} files, {human(m.bytes)}" for m in e.modes]
            lo, hi = ada.duration_range_s
            lines.append(f"| {gpu} ({e.clocks}) | {e.images_generated} | {' | '.join(cells)} | {e.duration_s / 3600:.1f} h "
                         f"| {ada.clocks} clocks, {ada.duration_s / 3600:.2f} h ({lo / 3600:.2f}-{hi / 3600:.2f}) |")
    return "\n".join(lines)


@dataclass
class SlurmPlan:
    shards: int
    shard_s: float
    time_limit_minutes: int


def _slurm_plan(req, duration_s: float) -> SlurmPlan | None:
    """For a sweep that will run on SLURM: each shard's duration and the time limit its job gets."""
    from sweepd import settings as settings_mod
    from sweepd.slurm.script import shard_seconds, time_limit_minutes

    s = settings_mod.load()
    if (req.executor or s.executor) != "slurm":
        return None
    shard_s = shard_seconds(duration_s, req.split)
    return SlurmPlan(req.split, shard_s, time_limit_minutes(req, s.slurm, shard_s))


@app.command()
def compare(
    a: str = typer.Argument(..., help="the first sweep (A): job_<ID>, job id or sweep id"),
    b: str = typer.Argument(..., help="the second sweep (B)"),
    root: Optional[Path] = RootOpt, images_dir: Optional[Path] = ImagesOpt, results_dir: Optional[Path] = ResultsOpt,
    bound: float = typer.Option(5.0, "--bound", help="slowdown bound in % vs each sweep's highest setting"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Two finished sweeps of one workload side by side (two knobs, two GPUs, two models): for each objective which
    reaches the lower value, by how much, with a 95 % CI; both time-energy frontiers, drawn."""
    from sweepd.ops import report as ops
    from sweepd.report.compare import ascii_plot

    layout = layout_of(root, images_dir, results_dir)

    def go() -> int:
        done = ops.compare_two(layout, a, b, bound, write=not as_json)
        c = done.comparison
        if as_json:  # reading only: nothing is written
            print(json.dumps(c.to_json(), indent=1))
            return 0
        for line in c.lines():
            console.print(line, highlight=False, markup=False)
        for line in ascii_plot(c):
            console.print(line, highlight=False, markup=False)
        if done.folder is not None:
            console.print(f"frontiers: {done.folder / 'frontiers.png'}; report: {done.folder / 'report.html'}",
                          highlight=False)
        elif done.note:
            console.print(f"note: {done.note}", highlight=False)
        return 0

    raise typer.Exit(guarded(go))


@app.command()
def estimate(
    request_file: Optional[Path] = typer.Argument(None, help="sweep request"),
    root: Optional[Path] = RootOpt, images_dir: Optional[Path] = ImagesOpt, results_dir: Optional[Path] = ResultsOpt,
    as_json: bool = typer.Option(False, "--json"),
    table: bool = typer.Option(False, "--table", help="print the README's storage table for H100/A100/V100"),
) -> None:
    """Before running: clocks, trials, images, duration, and image bytes and files per mode against the room."""
    from sweepd.fit import estimate_request
    from sweepd.request import load_request

    def go() -> int:
        if table:
            print(estimate_table())
            return 0
        if request_file is None:
            raise InputError("give a request file (or --table)")
        req = load_request(request_file)
        e = estimate_request(req, layout_of(root, images_dir, results_dir))
        slurm = _slurm_plan(req, e.duration_s)
        if as_json:
            print(json.dumps(e.to_json() | ({"slurm": asdict(slurm)} if slurm else {}), indent=1))
            return 0
        sim = " [SIMULATED GPU]" if e.simulated else ""
        w = req.workload
        preset = f"; preset {w.preset}" if w.preset else ""
        console.print(f"workload: {w.model} ({w.family.title}), {w.width} x {w.height}, {w.steps} steps, batch "
                      f"{w.batch_size}{preset}", highlight=False, markup=False)
        if e.adaptive_evaluations:
            lo, _, hi = e.adaptive_evaluations
            console.print(f"adaptive search: about {e.clocks} of the candidate clocks ({lo} to {hi}); "
                          f"{e.duration_range_s[0] / 60:.1f} to {e.duration_range_s[1] / 60:.1f} min", highlight=False)
        console.print(f"{e.gpu}{sim}: {e.clocks} {req.knob.noun}s x {e.trials} trials x {e.images_per_trial} images = "
                      f"{e.images_generated} images; about {e.duration_s / 60:.1f} min ({e.time_source})",
                      highlight=False)
        console.print(f"{human(e.bytes_per_image)} per image ({e.bytes_source}); {human(e.free_bytes)} free",
                      highlight=False)
        for m in e.modes:
            mark = "fits" if m.fits else f"DOES NOT FIT: {m.why}"
            req = "  <- this request" if m.mode == e.request_mode else ""
            console.print(f"  {m.mode:<9} {m.images_saved:>6} files {human(m.bytes):>10}  {mark}{req}", highlight=False)
        if slurm:
            console.print(f"SLURM: {slurm.shards} shard(s) of about {slurm.shard_s / 60:.1f} min each; "
                          f"time limit {slurm.time_limit_minutes} min per job", highlight=False)
        return 0

    raise typer.Exit(guarded(go))
