import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
FAKES = TESTS / "fakes"
REPO = TESTS.parent


def pytest_configure(config):
    # Build the tiny model once per test session, in a private cache that subprocesses share.
    if "SWEEPD_CACHE_DIR" not in os.environ:
        cache = Path(config.cache.makedir("sweepd-cache"))
        os.environ["SWEEPD_CACHE_DIR"] = str(cache)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may download
    isolate_home()


def isolate_home() -> None:
    """HOME and the XDG folders of this session (and every process it starts) in a fresh temporary folder: the
    developer's own ~/.config/sweepd (settings, policies) and data never reach a test. Python's user site stays
    where it was, so packages installed with --user still import."""
    import site
    import tempfile

    os.environ.setdefault("PYTHONUSERBASE", site.getuserbase())
    home = Path(tempfile.mkdtemp(prefix="sweepd-test-home-"))
    os.environ["HOME"] = str(home)
    for var, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_DATA_HOME", ".local/share"),
                     ("XDG_STATE_HOME", ".local/state"), ("XDG_CACHE_HOME", ".cache"),
                     ("XDG_RUNTIME_DIR", "run")):
        os.environ[var] = str(home / sub)
        (home / sub).mkdir(parents=True, exist_ok=True)


def pytest_collection_modifyitems(config, items):
    """Tests marked run_first go first and those marked run_last go last (each group in its own order): the SLURM
    cluster's tests start a sweep that takes minutes of SLURM's own clock, and it is checked at the end, so the
    rest of the suite runs meanwhile."""
    first = [i for i in items if "run_first" in i.keywords and "run_last" not in i.keywords]
    last = [i for i in items if "run_last" in i.keywords]
    items[:] = first + [i for i in items if "run_first" not in i.keywords and "run_last" not in i.keywords] + last


def load_fake_pynvml():
    """A fresh copy of the fake pynvml module (its recorded calls and counters start empty)."""
    spec = importlib.util.spec_from_file_location("pynvml", FAKES / "pynvml" / "__init__.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def idle_slurm(tmp_path, monkeypatch):
    """A SLURM whose squeue answers with no jobs, first on PATH (this and every process it starts): what storage
    protection asks of SLURM (see sweepd.storage.protection) must not depend on whether this machine's controller
    is up. Tests of SLURM itself use the real one (marked `slurm`)."""
    bin_dir = tmp_path / "idle-slurm-bin"
    bin_dir.mkdir()
    for tool in ("sbatch", "squeue", "scontrol", "scancel"):
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


@pytest.fixture
def fake_nvml(monkeypatch):
    """The fake pynvml module in place of the real one, fresh for each test."""
    mod = load_fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    for var in ("FAKE_NVML_DENY_SET", "FAKE_NVML_ABSENT", "FAKE_NVML_ENERGY_FAIL_AT", "FAKE_NVML_CAP_MHZ", "FAKE_NVML_POWER",
                "FAKE_NVML_API_RESTRICTED", "FAKE_NVML_MIG", "FAKE_NVML_UTIL_PCT", "FAKE_NVML_LOG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FAKE_NVML_GPUS", "A100")
    return mod


def sweepd_env(fake_nvml: bool = False, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_NVML", "SWEEPD_ROOT", "SLURM_"))}
    if fake_nvml:
        env["PYTHONPATH"] = os.pathsep.join([str(FAKES), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def sweepd(*args, env=None, timeout=300, process: bool = False, **kw) -> subprocess.CompletedProcess:
    """Run a `sweepd` command and capture its output: in this process through typer's CliRunner (what a
    command does does not need a process to show), or as a real `python -m sweepd` process with
    ``process=True`` (and always for `serve`). Either way the result is a CompletedProcess."""
    argv = [str(a) for a in args]
    if process or argv[:1] == ["serve"]:
        return subprocess.run([sys.executable, "-m", "sweepd", *argv], capture_output=True, text=True,
                              env=env or sweepd_env(), timeout=timeout, **kw)
    return in_process(argv, env or sweepd_env(), **kw)


def in_process(argv: list[str], env: dict, input: str | None = None) -> subprocess.CompletedProcess:
    """`sweepd ARGV` in this process with ``env`` as its whole environment, as a fresh process would see it:
    the fake pynvml when ``env``'s PYTHONPATH names it, sweepd's caches empty, signal handlers restored."""
    import signal

    import typer
    from click.testing import CliRunner

    from sweepd.cli import app

    changes = {k: None for k in os.environ if k not in env}
    changes.update(env)
    fake = str(FAKES) in env.get("PYTHONPATH", "").split(os.pathsep)
    saved_nvml = sys.modules.get("pynvml")
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    _clear_caches()
    try:
        if fake:  # it reads FAKE_NVML_* when called, from the environment the invocation sets
            sys.modules["pynvml"] = load_fake_pynvml()
        result = CliRunner().invoke(typer.main.get_command(app), argv, env=changes, input=input, prog_name="sweepd")
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
        if saved_nvml is None:
            sys.modules.pop("pynvml", None)
        else:
            sys.modules["pynvml"] = saved_nvml
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        import traceback

        stderr += "".join(traceback.format_exception(result.exception))  # what a process would print
    return subprocess.CompletedProcess(["sweepd", *argv], result.exit_code, result.stdout, stderr)


def _clear_caches() -> None:
    """Every functools cache in sweepd's modules: a process starts without them."""
    for name, mod in list(sys.modules.items()):
        if name == "sweepd" or name.startswith("sweepd."):
            for value in list(vars(mod).values()):
                if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", "") == name:
                    value.cache_clear()


def write_request(path: Path, *, clocks=(1410, 945, 510), trials=2, backend="sim", images="research",
                  extra: str = "") -> Path:
    clock_list = ", ".join(map(str, clocks))
    path.write_text(f"""
[workload]
model = "tiny"
prompt = "a test; $HOME `x`"
steps = 2
width = 32
height = 32
[gpu]
backend = "{backend}"
sim_model = "A100"
[frequencies]
mode = "custom"
list = [{clock_list}]
[protocol]
warmup = 1
trials = {trials}
min_window_s = 0.3
settle_s = 0
[images]
mode = "{images}"
{extra}
""")
    return path


def measured(trials: list[dict]) -> list[dict]:
    """trials.csv rows that measure their clock (the baseline's re-measurements for drift left out)."""
    return [t for t in trials if not t.get("role")]


def wait_for_rows(path: Path, n: int, proc: subprocess.Popen | None = None, timeout: float = 120) -> None:
    """Wait until a CSV has at least n data rows (a sweep is that far along)."""
    from sweepd import atomic

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if len(atomic.read_csv(path)) >= n:
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process exited {proc.returncode} before {path} had {n} rows")
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {n} rows")
