"""`sweepd run`, `sweepd demo` and `sweepd gpus`: sweeps in the foreground. Nothing here imports torch;
the engine loads it when the model loads."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
from importlib import resources
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from sweepd import configfile, families, paths
from sweepd.cli.common import (layout_of, ImagesOpt, ResultsOpt, RootOpt, VerboseOpt,
                               app, console, err, guarded, setup_logging)
from sweepd.errors import InputError
from sweepd.request import SweepRequest
from sweepd.vocab import RunState


@contextlib.contextmanager
def job_log(path: Path):
    """A foreground sweep logs to results/job_<ID>/sweep.log too (as a daemon's worker does), so that
    `sweepd logs` shows it; the terminal keeps its own progress display."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s sweepd: %(levelname)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


def execute(request: SweepRequest, layout: paths.Layout, job_id: str | None, force: bool = False,
            resuming: bool = False) -> int:
    from sweepd.ops import sweeps
    from sweepd.progress import ConsoleObserver, summary_table

    ready = sweeps.prepare(request, layout, job_id, force)
    job, p = ready.job, request.protocol
    tag = " on a SIMULATED GPU" if ready.simulated else ""
    trials = str(p.trials) if not p.sequential else f"{p.min_trials}-{p.max_trials} (to a {p.target_ci_pct:g} % CI)"
    console.print(f"sweep job {job}: {ready.clocks_text} x {trials} trials{tag}; "
                  f"results in {layout.job_results(job)}", highlight=False)
    if ready.in_steps:  # clock_control = "slurm": this process drives srun steps, which measure and report
        console.print("clock_control = slurm: each clock is an srun --gpu-freq step (the model loads in each)",
                      highlight=False)
        with job_log(layout.job_results(job) / "sweep.log"):
            outcome = sweeps.measure_in_steps(request, layout, job, ready.plan)
    else:
        with ConsoleObserver(console, ready.expected_clocks * p.least, p.most, ready.simulated) as obs, \
                job_log(layout.job_results(job) / "sweep.log"):
            outcome = sweeps.measure_and_report(request, layout, job, obs, finish_done=resuming)
    store = outcome.store
    rows = store.summary_rows(ready.plan) if store.trials else []  # display only: the sweep wrote summary.csv
    if rows:
        console.print(summary_table(rows, ready.simulated, f"job {job}: {request.workload.model}, "
                                                           f"{store.manifest.gpu_name}"))
        from sweepd.report.flags import verdict

        answer, flags = verdict(store.dir)  # what the report says, said here too
        for line in answer:
            console.print(line, highlight=False)
        for line in flags:
            console.print(f"[yellow]flag:[/] {escape(line)}", highlight=False)
    console.print(f"results: {store.dir}", highlight=False)
    if store.images_dir.exists():
        console.print(f"images:  {store.images_dir}", highlight=False)
    if (store.dir / "report.html").exists():
        console.print(f"report:  {store.dir / 'report.html'}", highlight=False)
    if outcome.status == RunState.DONE:
        return 0
    err.print(f"sweep {outcome.status}: {outcome.error}", highlight=False, markup=False)
    if outcome.status == RunState.INTERRUPTED:
        err.print(f"resume with: sweepd run --resume {job}", highlight=False)
    return outcome.exit_code


@app.command()
def run(
    request_file: Optional[Path] = typer.Argument(None, help="sweep request (.toml, .json or .yaml)"),
    root: Optional[Path] = RootOpt, images_dir: Optional[Path] = ImagesOpt, results_dir: Optional[Path] = ResultsOpt,
    job_id: Optional[str] = typer.Option(None, "--job-id", help="job id (default: $SLURM_JOB_ID or a new local id)"),
    resume: Optional[str] = typer.Option(None, "--resume", metavar="JOB", help="resume an unfinished job"),
    no_save_images: bool = typer.Option(False, "--no-save-images", help="measure only (images.mode = benchmark)"),
    custom_frequencies: Optional[str] = typer.Option(None, "--custom-frequencies", metavar="'510,960,1410'",
                                                     help="sweep these clocks (frequencies.mode = custom)"),
    force: bool = typer.Option(False, "--force", help="run even if the images would not fit"),
    verbose: bool = VerboseOpt,
) -> None:
    """Run a sweep in the foreground."""
    setup_logging(verbose)
    layout = layout_of(root, images_dir, results_dir)

    def go() -> int:
        from sweepd.ops import sweeps

        if resume:
            return execute(sweeps.resume_request(layout, resume), layout, resume, force=True, resuming=True)
        if request_file is None:
            raise InputError("give a request file, or --resume JOB")
        return execute(sweeps.new_request(request_file, no_save_images, custom_frequencies), layout, job_id, force)

    raise typer.Exit(guarded(go))


def _family_batches(total_gib: float | None) -> dict:
    """Each family's largest batch at its native resolution on a board with ``total_gib`` of memory, by the figures
    a sweep is refused at before its model loads (sweepd.families' weights and activations); {} when unknown."""
    from sweepd.gpu.simmodel import gib_needed

    if total_gib is None:
        return {}
    out = {}
    for f, info in families.FAMILIES.items():
        b = 0
        while b < 64 and gib_needed(b + 1, info.gib_per_image_native, info.weights_gib) <= total_gib:
            b += 1
        out[f] = b
    return out


@app.command(hidden=True)
def step(spec_file: Path = typer.Argument(..., help="the step's spec (state/slurm-steps/<ID>/step.json)"),
         verbose: bool = VerboseOpt) -> None:
    """One srun --gpu-freq step of a sweep with clock_control = "slurm"; `sweepd run` starts these."""
    setup_logging(verbose)

    def go() -> int:
        from sweepd.errors import RecordError
        from sweepd.ops import sweeps
        from sweepd.progress import ConsoleObserver
        from sweepd.records.step import StepSpec

        try:
            spec = StepSpec.read(spec_file)
        except RecordError as e:
            raise InputError(str(e)) from None
        if spec.probe:
            seen = sweeps.probe_step(spec)
            console.print(f"step 0: srun --gpu-freq={spec.freq_mhz}: the GPU runs at {seen} MHz; SLURM sets clocks "
                          "here", highlight=False)
            return 0
        p = spec.request.protocol
        if spec.split is not None:  # a shard of the daemon's SLURM executor: progress in the shard's status.json
            outcome = sweeps.run_step(spec, sweeps.shard_observer(spec))
        else:
            with ConsoleObserver(console, p.least, p.most, spec.request.gpu.backend == "sim") as obs, \
                    job_log(spec.layout.job_results(spec.job_id) / "sweep.log"):
                outcome = sweeps.run_step(spec, obs)
        if outcome.status in (RunState.DONE, RunState.RUNNING):
            return 0
        err.print(f"sweep {outcome.status}: {outcome.error}", highlight=False, markup=False)
        return outcome.exit_code

    raise typer.Exit(guarded(go))


@app.command()
def demo(root: Optional[Path] = RootOpt, verbose: bool = VerboseOpt) -> None:
    """Run examples/quickstart.toml: tiny model, simulated A100, 10 clocks (about 20 s on 2 cores)."""
    setup_logging(verbose)
    layout = layout_of(root)
    source = resources.files("sweepd.examples").joinpath("quickstart.toml")

    def go() -> int:
        req = configfile.validate(SweepRequest, configfile.parse_text(source.read_text(), "toml", "quickstart.toml"),
                                  "examples/quickstart.toml")
        return execute(req, layout, None)

    raise typer.Exit(guarded(go))


@app.command()
def gpus(backend: str = typer.Option("auto", help="auto | nvml | sim"),
         as_json: bool = typer.Option(False, "--json"), root: Optional[Path] = RootOpt) -> None:
    """List GPUs, their backend and supported clocks, and the production lock `sweepd clock set` left."""
    setup_logging(False)
    from sweepd.gpu import list_devices

    def go() -> int:
        if backend not in ("auto", "nvml", "sim"):
            raise InputError(f"--backend {backend!r}: use auto, nvml or sim")
        from sweepd.records.gpulock import ProductionLock

        from sweepd.gpu.controls import all_controls

        locks = {r.uuid: r for r in ProductionLock.all_in(layout_of(root).production_locks)}
        out = []
        for dev in list_devices(backend):
            with dev:
                mems = dev.memory_clocks()
                out.append((dev.info(), {str(m): dev.graphics_clocks(m) for m in mems}, dev.mig_enabled(),
                            all_controls(dev), _family_batches(dev.total_memory_gib()), dev.power_limits_w()))
        if as_json:
            console.print_json(json.dumps([info.model_dump(mode="json") | {"clocks": clocks} | {
                "production_lock_mhz": locks[info.uuid].freq_mhz if info.uuid in locks else None,
                "production_power_limit_w": locks[info.uuid].power_limit_w if info.uuid in locks else None, "mig": mig,
                "clock_controls": [{"control": a.control, "usable": a.usable, "why": a.why} for a in controls],
                "largest_batch": {str(f): b for f, b in fits.items()},
                "power_limit_w": None if power is None else dataclasses.asdict(power)}
                for info, clocks, mig, controls, fits, power in out]))
            return 0
        word = {True: "yes", False: "no", None: "unknown"}
        for info, table, mig, controls, fits, power in out:
            # the simulated boards are alternatives (gpu.sim_model), not several GPUs of one machine
            label = f'sim_model = "{info.sim_model}"' if info.simulated else f"GPU {info.index}"
            tag = "  [SIMULATED]" if info.simulated else ""
            console.print(f"{label}: {info.name}  {info.uuid}  backend={info.backend}{tag}", highlight=False)
            if info.uuid in locks:
                r = locks[info.uuid]
                console.print(f"  production lock: {r.what} since {r.since}, from {r.source} "
                              "(sweepd clock reset)", highlight=False)
            if mig:
                console.print("  MIG mode: on (no sweep: NVML cannot meter a MIG slice's power or energy)",
                              highlight=False)
            elif not info.simulated:
                console.print("  clock_control: " + "; ".join(f"{a.control} {word[a.usable]} ({a.why})"
                                                              for a in controls), highlight=False)
            if power is not None:
                console.print(f"  power limit: {power.current_w} W (default {power.default_w} W; settable "
                              f"{power.min_w}-{power.max_w} W)", highlight=False)
            if fits:
                console.print("  largest batch at each family's native size (estimated): " + ", ".join(
                    f"{families.FAMILIES[f].title} {b}" if b else f"{families.FAMILIES[f].title} none (its "
                    f"{families.FAMILIES[f].weights_gib:g} GiB of weights do not fit)" for f, b in fits.items()),
                    highlight=False)
            for mem, clocks in table.items():
                sweep = [f for f in clocks if f >= 510]
                console.print(f"  memory {mem} MHz: {len(clocks)} core clocks {clocks[0]}..{clocks[-1]} MHz "
                              f"({len(sweep)} at >= 510 MHz)", highlight=False)
        return 0

    raise typer.Exit(guarded(go))


