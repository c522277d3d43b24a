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


@pytest.fixture
def fake_nvml(monkeypatch):
    """The fake pynvml module in place of the real one, fresh for each test."""
    spec = importlib.util.spec_from_file_location("pynvml", FAKES / "pynvml" / "__init__.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setitem(sys.modules, "pynvml", mod)
    for var in ("FAKE_NVML_DENY_SET", "FAKE_NVML_ABSENT", "FAKE_NVML_ENERGY_FAIL_AT", "FAKE_NVML_CAP_MHZ", "FAKE_NVML_POWER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FAKE_NVML_GPUS", "A100")
    return mod


def sweepd_env(fake_nvml: bool = False, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_NVML", "SWEEPD_ROOT", "SLURM_"))}
    if fake_nvml:
        env["PYTHONPATH"] = os.pathsep.join([str(FAKES), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def sweepd(*args, env=None, timeout=300, **kw) -> subprocess.CompletedProcess:
    """Run the real `sweepd` command (python -m sweepd) and capture its output."""
    return subprocess.run([sys.executable, "-m", "sweepd", *map(str, args)], capture_output=True, text=True,
                          env=env or sweepd_env(), timeout=timeout, **kw)


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
