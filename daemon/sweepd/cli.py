"""The ``sweepd`` command line. Thin: parse, call the engine, print, pick an exit code.

Nothing here imports torch; ``sweepd run`` and ``sweepd demo`` load it inside the engine only
when the model loads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from importlib import resources
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from sweepd import configfile, paths
from sweepd.configfile import ConfigError
from sweepd.engine.store import JobConflict
from sweepd.freqplan import ClockPlanError
from sweepd.gpu.base import GpuError, GpuPermissionError
from sweepd.request import SweepRequest, load_request
from sweepd.queue import QueueError
from sweepd.slurm.commands import SlurmError

# Plain click help (rich_markup_mode=None): typer's rich help prints a "<bool>" placeholder after every flag.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False, rich_markup_mode=None,
                  help="DVFS energy sweeps of Stable Diffusion on NVIDIA GPUs (or a simulated one).")
# Piped or redirected output gets every value in full (rich would cut tables at 80 columns); a terminal
# keeps its own width.
_WIDE = 100_000
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else _WIDE)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else _WIDE)  # never wrapped: greppable

EXIT_FAILED, EXIT_INPUT, EXIT_GPU, EXIT_INTERRUPTED = 1, 2, 3, 4

VerboseOpt = typer.Option(False, "-v", "--verbose", help="log debug detail, library messages included")
RootOpt = typer.Option(None, "--root", envvar="SWEEPD_ROOT", help="sweepd's root folder (default: XDG data dir)")
ImagesOpt = typer.Option(None, "--images-dir", envvar="SWEEPD_IMAGES_DIR", help="images/ elsewhere (e.g. scratch)")
ResultsOpt = typer.Option(None, "--results-dir", envvar="SWEEPD_RESULTS_DIR", help="results/ elsewhere")


def fail(message: str, code: int) -> int:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return code


def _setup_logging(verbose: bool) -> None:
    """The terminal gets sweepd's own messages; the libraries' chatter (and the per-clock progress lines,
    which the terminal shows its own way) goes to sweep.log only, or with -v to the terminal too."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="sweepd: %(levelname)s: %(message)s")
    if not verbose:
        for h in logging.getLogger().handlers:
            h.addFilter(lambda r: r.name.startswith("sweepd") and not r.name.startswith("sweepd.progress")
                        or r.levelno >= logging.ERROR)
    from sweepd import quiet

    quiet.libraries(verbose)


def apply_flags(request: SweepRequest, no_save_images: bool, custom: str | None) -> SweepRequest:
    """The old framework's flags, as overrides of the request."""
    data = request.model_dump(mode="json", by_alias=True)
    if no_save_images:
        data["images"]["mode"] = "benchmark"
    if custom is not None:
        try:
            clocks = [int(x) for x in custom.replace(" ", "").split(",") if x]
        except ValueError:
            raise ConfigError("--custom-frequencies", [f"{custom!r}: expected MHz values separated by commas"]) from None
        data["frequencies"].update(mode="custom", list=clocks)
    return configfile.validate(SweepRequest, data, "command line")


def execute(request: SweepRequest, layout: paths.Layout, job_id: str | None, force: bool = False) -> int:
    from sweepd.engine import runner
    from sweepd.progress import ConsoleObserver, optima_lines, summary_table

    job = runner.resolve_job_id(request, job_id)
    for folder in (layout.state, layout.results, layout.images):  # one clear line, before anything else
        paths.ensure_writable(folder)
    if not force and not (layout.job_results(job) / "sweep.json").exists():  # a resume already has its room
        from sweepd.report.fit import check

        check(request, layout)
    device, plan, _ = runner.prepare(request, layout, job)  # fails fast on a bad GPU or clock
    simulated = device.simulated
    device.close()
    tag = " on a SIMULATED GPU" if simulated else ""
    console.print(f"sweep job {job}: {len(plan)} clock(s) x {request.protocol.trials} trials{tag}; "
                  f"results in {layout.job_results(job)}", highlight=False)
    with ConsoleObserver(console, len(plan) * request.protocol.trials, request.protocol.trials, simulated) as obs, \
            job_log(layout.job_results(job) / "sweep.log"):
        outcome = runner.run(request, layout, job, obs)
    rows = outcome.store.summary_rows(plan)  # display only: the sweep wrote summary.csv itself
    if rows:
        console.print(summary_table(rows, simulated, f"job {job}: {request.workload.model}, "
                                                     f"{outcome.store.manifest['gpu']['name']}"))
        for line in optima_lines(rows):
            console.print(line + (" (simulated)" if simulated else ""), highlight=False)
        from sweepd.report.flags import doubts

        for line in doubts(outcome.store.dir):  # whatever the report doubts, said here too
            console.print(f"[yellow]flag:[/] {line}", highlight=False)
    console.print(f"results: {outcome.store.dir}", highlight=False)
    if outcome.store.images_dir.exists():
        console.print(f"images:  {outcome.store.images_dir}", highlight=False)
    if (outcome.store.dir / "report.html").exists():
        console.print(f"report:  {outcome.store.dir / 'report.html'}", highlight=False)
    if outcome.status == "done":
        return 0
    err.print(f"sweep {outcome.status}: {outcome.error}", highlight=False)
    if outcome.status == "interrupted":
        err.print(f"resume with: sweepd run --resume {job}", highlight=False)
        return EXIT_INTERRUPTED
    return EXIT_FAILED


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


def guarded(fn) -> int:
    """Turn sweepd's expected errors into one clear line and an exit code, never a traceback."""
    try:
        return fn()
    except ConfigError as e:
        for p in e.problems:
            err.print(f"[bold red]error:[/] {e.source}: {p}", highlight=False)
        return EXIT_INPUT
    except (ClockPlanError, JobConflict, ValueError) as e:  # PolicyError is a ValueError
        return fail(str(e), EXIT_INPUT)
    except GpuPermissionError as e:
        return fail(str(e), EXIT_GPU)
    except GpuError as e:
        return fail(f"GPU: {e}", EXIT_GPU)
    except SlurmError as e:
        return fail(f"SLURM: {e}", 1)
    except QueueError as e:  # e.g. a queue written by a newer sweepd
        return fail(str(e), EXIT_FAILED)
    except OSError as e:  # the filesystem said no (full, read-only, permissions): one line, not a traceback
        where = f": {e.filename}" if e.filename else ""
        return fail(f"{e.strerror or e}{where}", EXIT_FAILED)


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
    _setup_logging(verbose)
    layout = paths.Layout.resolve(root, images_dir, results_dir)

    def go() -> int:
        if resume:
            manifest = layout.job_results(resume) / "sweep.json"
            if not manifest.exists():
                raise ValueError(f"--resume {resume}: no sweep at {manifest}")
            req = configfile.validate(SweepRequest, json.loads(manifest.read_text())["request"], str(manifest))
            return execute(req, layout, resume, force=True)
        if request_file is None:
            raise ValueError("give a request file, or --resume JOB")
        req = apply_flags(load_request(request_file), no_save_images, custom_frequencies)
        from sweepd.workload import modelcheck

        modelcheck.check(req.workload.model, str(request_file))
        if req.split > 1:  # `run` measures here, on one GPU; `executor` only matters to the daemon
            raise ValueError(f"split: {req.split}: a split sweep runs as a SLURM job array; submit it to a daemon "
                             'with executor = "slurm" (sweepd submit), or set split = 1 to run it here')
        return execute(req, layout, job_id, force)

    raise typer.Exit(guarded(go))


@app.command()
def demo(root: Optional[Path] = RootOpt, verbose: bool = VerboseOpt) -> None:
    """Run examples/quickstart.toml: tiny model, simulated A100, 10 clocks (about a minute on 2 cores)."""
    _setup_logging(verbose)
    layout = paths.Layout.resolve(root)
    source = resources.files("sweepd.examples").joinpath("quickstart.toml")

    def go() -> int:
        req = configfile.validate(SweepRequest, configfile.parse_text(source.read_text(), "toml", "quickstart.toml"),
                                  "examples/quickstart.toml")
        return execute(req, layout, None)

    raise typer.Exit(guarded(go))


@app.command()
def gpus(backend: str = typer.Option("auto", help="auto | nvml | sim"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """List GPUs, their backend and supported clocks."""
    _setup_logging(False)
    from sweepd.gpu import list_devices

    def go() -> int:
        if backend not in ("auto", "nvml", "sim"):
            raise ValueError(f"--backend {backend!r}: use auto, nvml or sim")
        out = []
        for dev in list_devices(backend):
            with dev:
                mems = dev.memory_clocks()
                out.append(dev.info() | {"clocks": {str(m): dev.graphics_clocks(m) for m in mems}})
        if as_json:
            console.print_json(json.dumps(out))
            return 0
        for d in out:
            # the simulated boards are alternatives (gpu.sim_model), not several GPUs of one machine
            label = f'sim_model = "{d["sim_model"]}"' if d["simulated"] else f"GPU {d['index']}"
            tag = "  [SIMULATED]" if d["simulated"] else ""
            console.print(f"{label}: {d['name']}  {d['uuid']}  backend={d['backend']}{tag}", highlight=False)
            for mem, clocks in d["clocks"].items():
                sweep = [f for f in clocks if f >= 510]
                console.print(f"  memory {mem} MHz: {len(clocks)} core clocks {clocks[0]}..{clocks[-1]} MHz "
                              f"({len(sweep)} at >= 510 MHz)", highlight=False)
        return 0

    raise typer.Exit(guarded(go))


def _version(value: bool) -> None:
    if value:
        from sweepd import __version__

        print(f"sweepd {__version__}")
        raise typer.Exit(0)


@app.callback()
def _top(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="print the version and exit")) -> None:
    """DVFS energy sweeps of Stable Diffusion on NVIDIA GPUs (or a simulated one)."""


def main() -> None:
    app()


# The daemon and client commands register themselves on `app`.
from sweepd import client, report_cli, service, storage_cli  # noqa: E402,F401
