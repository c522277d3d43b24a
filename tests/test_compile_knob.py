"""torch.compile as a knob like batch size (issue #25): `compile = [false, true]` measures both at the highest clock
first, the better is carried into the clocks, the report says what compiling saves; a denoiser that cannot be
compiled (no C++ compiler) is that setting refused with its error, never a crash."""

import json
import os

import pytest

from conftest import sweepd, sweepd_env
from sweepd import atomic
from sweepd.configfile import ConfigError, load
from sweepd.engine import runner
from sweepd.paths import Layout
from sweepd.report.analysis import analyse
from sweepd.report.data import load as load_job
from sweepd.request import SweepRequest


def request(**workload) -> SweepRequest:
    return SweepRequest.model_validate({
        "workload": {"model": "tiny", "steps": 2, "width": 32, "height": 32} | workload,
        "gpu": {"backend": "sim", "sim_model": "A100", "sim_noise": "none"},
        "frequencies": {"mode": "custom", "list": [1410, 1095, 780]},
        "protocol": {"warmup": 1, "trials": 2, "min_window_s": 0.2, "settle_s": 0}, "images": {"mode": "benchmark"}})


def test_a_compile_list_is_measured_first_and_the_clocks_run_the_setting_it_chose(tmp_path):
    store = runner.run_blank(request(compile=[False, True], batch_size=[1, 2]), Layout.resolve(tmp_path), "c")
    rec = store.manifest.batch
    assert rec.compile == [False, True] and rec.sizes == [1, 2] and rec.chosen_compile is not None
    knob_rows = [(r.batch_size, bool(r.compiled)) for r in store.trials if r.batch_trial]
    assert sorted(set(knob_rows)) == [(1, False), (1, True), (2, False), (2, True)]
    assert knob_rows.index((1, True)) > knob_rows.index((2, False))  # eager first: compiling is a warm-up of its own
    clocks = [r for r in store.trials if r.role is None]
    assert {bool(r.compiled) for r in clocks} == {rec.chosen_compile} and {r.batch_size for r in clocks} == {rec.chosen}
    line = analyse(load_job(store.dir)).batch.line(True)
    assert "1 compiled:" in line and "compile: " in line and "J/image vs eager" in line, line


def test_compile_settings_are_checked_and_an_old_request_keeps_its_fingerprint(tmp_path):
    for bad in ("[]", "[true, true]"):
        path = tmp_path / "r.toml"
        path.write_text(f'[workload]\nmodel = "tiny"\ncompile = {bad}\n')
        with pytest.raises(ConfigError) as e:
            load(SweepRequest, path)
        assert "workload.compile" in str(e.value), str(e.value)
    assert request().fingerprint() == SweepRequest.model_validate(
        request().model_dump() | {"workload": request().workload.model_dump() | {"compile": False}}).fingerprint()
    assert request(compile=True).workload.variants == [(1, True)] and not request(compile=True).workload.batch_search


def _run(tmp_path, backend: str, env: dict | None = None):
    """One clock after the knob phase: what is under test is the phase, not the sweep."""
    path = tmp_path / "r.toml"
    path.write_text(f"""job_id = "k"
[workload]
model = "tiny"
steps = 2
width = 32
height = 32
compile = [false, true]
compile_backend = "{backend}"
[gpu]
backend = "sim"
[frequencies]
mode = "custom"
list = [1410]
[protocol]
warmup = 1
trials = 2
min_window_s = 0.2
settle_s = 0
[images]
mode = "benchmark"
""")
    r = sweepd("run", path, "--root", tmp_path / "root", env=env)  # in this process: torch is imported once
    d = tmp_path / "root" / "results" / "job_k"
    return r, d


@pytest.mark.slow
def test_the_real_pipeline_runs_its_denoiser_compiled_on_the_cpu(tmp_path):
    """torch.compile through dynamo with its eager backend (tracing, no code generation: seconds on a CPU, where
    inductor's C++ takes minutes); the same path as inductor's up to the backend."""
    r, d = _run(tmp_path, "eager")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = atomic.read_csv(d / "trials.csv")
    compiled = [t for t in rows if t["role"] == "batch" and t["compiled"] == "true"]
    assert compiled and all(t["status"] == "ok" for t in compiled)
    assert json.loads((d / "sweep.json").read_text())["batch"]["refused"] == {}


@pytest.mark.slow
def test_no_cpp_compiler_refuses_the_compiled_setting_with_its_error_and_the_sweep_goes_on(tmp_path):
    nocc = tmp_path / "nocc"
    nocc.mkdir()
    for name in ("gcc", "g++", "cc", "c++"):
        (nocc / name).symlink_to("/bin/false")
    env = sweepd_env(CC=str(nocc / "gcc"), CXX=str(nocc / "g++"), PATH=f"{nocc}{os.pathsep}{os.environ['PATH']}")
    r, d = _run(tmp_path, "inductor", env)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stdout + r.stderr
    batch = json.loads((d / "sweep.json").read_text())["batch"]
    assert batch["chosen_compile"] is False and "C++ compiler" in batch["refused"]["1 compiled"], batch
    rows = atomic.read_csv(d / "trials.csv")
    assert {t["freq_mhz"] for t in rows if not t["role"] and t["status"] == "ok"} == {"1410"}
    assert "batch 1 compiled refused: CompileFailed: torch.compile (backend inductor) could not compile the unet" \
        in r.stdout.replace("\n", " "), r.stdout
