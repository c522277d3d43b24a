"""The command line: cheap to start, no torch in the daemon's import path."""

import json
import subprocess
import sys

from conftest import sweepd


def test_importing_sweepd_and_help_do_not_import_torch():
    code = ("import sys, sweepd, sweepd.cli, sweepd.gpu, sweepd.engine.runner, sweepd.freqplan;"
            "print(json.dumps([m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", "import json;" + code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
    r = sweepd("--help")
    assert r.returncode == 0 and "demo" in r.stdout and "gpus" in r.stdout


def test_gpus_lists_the_simulated_gpus_and_their_clocks():
    r = sweepd("gpus", "--backend", "sim", "--json")
    assert r.returncode == 0, r.stderr
    gpus = {g["sim_model"]: g for g in json.loads(r.stdout)}
    assert {m: sum(f >= 510 for f in g["clocks"][max(g["clocks"], key=int)]) for m, g in gpus.items()} == \
        {"A100": 61, "H100": 86, "V100": 117}
    assert all(g["simulated"] for g in gpus.values())
    text = sweepd("gpus", "--backend", "sim").stdout
    assert "[SIMULATED]" in text and "61 at >= 510 MHz" in text


def test_gpus_with_a_bad_backend_is_a_clear_error():
    r = sweepd("gpus", "--backend", "cuda")
    assert r.returncode == 2 and "--backend 'cuda'" in r.stderr and "Traceback" not in r.stderr


def test_resume_of_unknown_job_and_missing_request(tmp_path):
    r = sweepd("run", "--resume", "nope", "--root", tmp_path)
    assert r.returncode == 2 and "no sweep at" in r.stderr
    r = sweepd("run", "--root", tmp_path)
    assert r.returncode == 2 and "give a request file" in r.stderr
    r = sweepd("run", tmp_path / "missing.toml", "--root", tmp_path)
    assert r.returncode == 2 and "cannot read" in r.stderr
