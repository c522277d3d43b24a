"""The sweep request: every bad input is a clear error naming the field and value."""

import json

import pytest
import yaml

from conftest import sweepd
from sweepd import configfile
from sweepd.configfile import ConfigError
from sweepd.request import SweepRequest, load_request

GOOD = """
[workload]
model = "tiny"
prompt = ["a cat; rm -rf / $(whoami)", "it's \\"quoted\\" & $HOME"]
steps = 20
scheduler = "euler_a"
[gpu]
backend = "sim"
sim_model = "H100"
[frequencies]
mode = "custom"
list = [1785, 1320]
[protocol]
trials = 5
[images]
mode = "benchmark"
"""


def problems(data) -> list[str]:
    with pytest.raises(ConfigError) as e:
        configfile.validate(SweepRequest, data, "req.toml")
    return e.value.problems


def test_toml_json_yaml_load_the_same_request(tmp_path):
    (tmp_path / "r.toml").write_text(GOOD)
    req = load_request(tmp_path / "r.toml")
    data = req.model_dump(mode="json", by_alias=True)
    (tmp_path / "r.json").write_text(json.dumps(data))
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    assert load_request(tmp_path / "r.json") == req == load_request(tmp_path / "r.yaml")
    assert req.frequencies.clocks == [1785, 1320] and req.gpu.sim_model == "H100"


def test_shell_characters_in_prompts_are_kept_as_text(tmp_path):
    (tmp_path / "r.toml").write_text(GOOD)
    req = load_request(tmp_path / "r.toml")
    assert req.workload.prompts == ["a cat; rm -rf / $(whoami)", 'it\'s "quoted" & $HOME']


@pytest.mark.parametrize("data, path, needle", [
    ({"workload": {"stepz": 3}}, "workload.stepz", "Extra inputs"),
    ({"gpu": {"backend": "cuda"}}, "gpu.backend", "'auto', 'nvml' or 'sim'"),
    ({"workload": {"steps": 0}}, "workload.steps", "greater than or equal to 1"),
    ({"workload": {"steps": "many"}}, "workload.steps", "valid integer"),
    ({"workload": {"width": 500}}, "workload.width", "multiple of 8"),
    ({"workload": {"prompt": []}}, "workload.prompt", "at least one prompt"),
    ({"workload": {"scheduler": "magic"}}, "workload.scheduler", "'ddim'"),
    ({"frequencies": {"mode": "custom"}}, "frequencies", "needs frequencies.list"),
    ({"frequencies": {"mode": "custom", "list": [1410, 1410]}}, "frequencies.list", "more than once"),
    ({"frequencies": {"mode": "dvfs", "list": [1410]}}, "frequencies", 'only used with mode = "custom"'),
    ({"gpu": {"index": 0, "uuid": "GPU-12345678-1234"}}, "gpu", "not both"),
    ({"protocol": {"trials": 0}}, "protocol.trials", "greater than or equal to 1"),
    ({"job_id": "../../etc"}, "job_id", "not allowed"),
    ({"job_id": "a/b"}, "job_id", "not allowed"),
    ({"job_id": ".hidden"}, "job_id", "not allowed"),
    ({"images": {"mode": "all"}}, "images.mode", "'benchmark'"),
])
def test_bad_fields_are_named_with_their_value(data, path, needle):
    lines = problems(data)
    assert any(line.startswith(path + ":") and needle in line for line in lines), lines


def test_every_problem_is_reported_at_once():
    lines = problems({"workload": {"steps": 0, "height": 7}, "protocol": {"trials": -1}, "bogus": 1})
    assert len(lines) == 4


@pytest.mark.parametrize("name, text, needle", [
    ("r.toml", "[workload\nsteps = 1", "not valid TOML"),
    ("r.json", "{", "not valid JSON"),
    ("r.yaml", "a: [", "not valid YAML"),
    ("r.ini", "x=1", "unknown file type"),
    ("r.toml", "steps = 3", "Extra inputs"),
])
def test_unreadable_files_are_reported(tmp_path, name, text, needle):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError) as e:
        load_request(tmp_path / name)
    assert needle in str(e.value) and str(tmp_path / name) in str(e.value)


def test_huge_and_binary_files_are_rejected(tmp_path):
    (tmp_path / "big.toml").write_text("# x\n" * 300_000)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="limit is"):
        load_request(tmp_path / "big.toml")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_request(tmp_path / "bin.toml")


def test_fingerprint_ignores_job_id_only():
    a = SweepRequest(job_id="one")
    assert a.fingerprint() == SweepRequest(job_id="two").fingerprint()
    assert a.fingerprint() != SweepRequest.model_validate({"workload": {"steps": 3}}).fingerprint()


def test_cli_reports_bad_request_without_traceback(tmp_path):
    (tmp_path / "bad.toml").write_text('[workload]\nsteps = 0\n[frequencies]\nfloor_mhz = "low"\n')
    r = sweepd("run", tmp_path / "bad.toml", "--root", tmp_path / "root")
    assert r.returncode == 2
    assert "workload.steps: 0:" in r.stderr and "frequencies.floor_mhz: 'low':" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    assert not (tmp_path / "root" / "results").exists()


def test_protocol_trials_fixed_or_sequential():
    from sweepd.request import Protocol

    fixed = Protocol(trials=2)
    assert not fixed.sequential and (fixed.least, fixed.most) == (2, 2)
    seq = Protocol()
    assert seq.sequential and (seq.least, seq.most, seq.target_ci_pct) == (3, 10, 2.0)
    assert seq.equivalence_margin_pct == 2.0
    with pytest.raises(ValueError, match="min_trials"):
        Protocol(min_trials=5, max_trials=4)


def test_a_010_requests_fingerprint_is_unchanged_so_its_sweep_still_resumes():
    import json
    from pathlib import Path

    from sweepd.request import SweepRequest

    for name in ("job_fixture2/sweep.json", "sweep-foreground.json", "job_75/sweep.json"):
        m = json.loads((Path(__file__).parent / "fixtures" / "v0.1.0" / name).read_text())
        assert SweepRequest.model_validate(m["request"]).fingerprint() == m["request_sha256"], name
