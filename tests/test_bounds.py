"""Bounds that know the work, and error lines a person can read (issue #26): the tiny model at most at the size it
stands in for, every error line capped however long the input, names escaped wherever a log shows them."""

import logging

import pytest

from conftest import sweepd, write_request
from sweepd import configfile, logsetup
from sweepd.configfile import ConfigError
from sweepd.errors import MAX_LINE
from sweepd.request import SweepRequest


@pytest.mark.parametrize("size", [(4096, 4096), (1024, 512), (520, 512)])
def test_the_tiny_model_is_refused_above_the_size_it_stands_in_for(size):
    with pytest.raises(ConfigError, match=r"at most 512 x 512 pixels") as e:
        configfile.validate(SweepRequest, {"workload": {"width": size[0], "height": size[1]}}, "r.toml")
    assert f"{size[0]} x {size[1]}" in str(e.value)
    SweepRequest.model_validate({"workload": {"width": 1024, "height": 256}})  # as many pixels as 512 x 512
    SweepRequest.model_validate({"workload": {"model": "/models/sd15", "width": 4096, "height": 4096}})


def test_run_refuses_4096_squared_on_the_tiny_model_before_anything_runs(tmp_path):
    req = write_request(tmp_path / "r.toml")
    req.write_text(req.read_text().replace("width = 32", "width = 4096").replace("height = 32", "height = 4096"))
    r = sweepd("run", req, "--root", tmp_path / "root")
    assert r.returncode == 2 and "at most 512 x 512 pixels" in r.stderr and not (tmp_path / "root/results").exists()


def test_a_long_list_of_unsupported_clocks_is_one_short_line(tmp_path):
    req = write_request(tmp_path / "r.toml", clocks=tuple(range(1001, 1501)))
    r = sweepd("run", req, "--root", tmp_path / "root")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and len(lines[0]) < MAX_LINE + 100, lines
    assert "[0] 1001 MHz is not supported" in lines[0] and "472 unsupported clocks, the first 5" in lines[0]  # 28 of the 500 are A100 clocks
    huge = write_request(tmp_path / "h.toml", clocks=tuple(range(1, 10001)))
    r = sweepd("run", huge, "--root", tmp_path / "root")
    assert r.returncode == 2 and "at most 512 items" in r.stderr and len(r.stderr) < 2 * MAX_LINE


def test_every_error_line_is_capped_however_long_its_input():
    long = ConfigError("r.toml", ["x" * 100_000])
    assert all(len(line) < MAX_LINE + 100 for line in long.lines()) and "more characters" in long.lines()[0]
    assert len(ConfigError("r.toml", ["y" * 100_000]).line()) < MAX_LINE + 100


def test_a_name_cannot_forge_a_log_line(capsys):
    logsetup.terminal(logging.INFO, "sweepd: %(levelname)s: %(message)s")
    logging.getLogger("sweepd.test").warning("rejected %s", "a.toml\nsweepd: ERROR: forged\r\x1b[2K")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a.toml\\nsweepd: ERROR: forged\\r\\x1b[2K" in err


def test_a_request_named_with_a_newline_is_rejected_under_its_escaped_name(tmp_path):
    from sweepd import paths
    from sweepd.ops.admission import Admission
    from sweepd.queue import Queue
    from sweepd.spool import Spool

    root = tmp_path / "root"
    s = Spool(paths.Layout.resolve(root), Queue(root / "state/queue.sqlite"), admission=Admission(gpu_indices=None),
              settle_s=0)
    s.ensure()
    name = "r.toml\nsweepd: INFO: accepted forged.toml"
    (s.incoming / name).write_text("[workload\n")
    s.hint_complete(name)
    [out] = s.scan()
    assert not out.accepted and "\n" not in out.name and "\\n" in out.name


def test_a_batch_the_gpu_cannot_hold_is_refused_before_the_model_loads(tmp_path):
    model = tmp_path / "sd15"
    model.mkdir()
    (model / "model_index.json").write_text("{}")  # never loaded: refused before
    req = write_request(tmp_path / "r.toml")
    req.write_text(req.read_text().replace('model = "tiny"', f'model = "{model}"')
                   .replace("width = 32", "width = 4096").replace("height = 32", "height = 4096"))
    r = sweepd("run", req, "--root", tmp_path / "root")
    assert r.returncode == 2 and "GiB of GPU memory" in r.stderr and "has 40 GiB" in r.stderr, r.stderr
    assert not list((tmp_path / "root/results").glob("job_*/sweep.json"))


def test_nvml_reports_the_boards_memory(fake_nvml):
    from sweepd.gpu.nvml import NvmlGpu, init, shutdown

    init()
    try:
        assert NvmlGpu(0).total_memory_gib() == pytest.approx(40.0)
    finally:
        shutdown()


def huge_request(tmp_path):
    """Every A100 clock x 100 trials x 10,000 images of 2 steps: millions of minutes of GPU time."""
    req = tmp_path / "huge.toml"
    req.write_text('[workload]\nmodel = "tiny"\nsteps = 2\nwidth = 32\nheight = 32\n[gpu]\nbackend = "sim"\n'
                   '[frequencies]\nmode = "dvfs"\n[protocol]\ntrials = 100\nimages_per_trial = 10000\n'
                   '[images]\nmode = "benchmark"\n')
    return req


def test_a_request_over_max_request_hours_is_refused_with_its_estimate(tmp_path):
    from sweepd import paths
    from sweepd.ops.admission import Admission
    from sweepd.queue import Queue
    from sweepd.spool import Spool

    req = huge_request(tmp_path)
    r = sweepd("submit", req, "--root", tmp_path / "root")
    assert r.returncode == 2 and "max_request_hours" in r.stderr and "h of GPU time" in r.stderr, r.stderr
    root = tmp_path / "root"
    s = Spool(paths.Layout.resolve(root), Queue(root / "state/queue.sqlite"),
              admission=Admission(gpu_indices=None, max_request_hours=168.0), settle_s=0)
    s.ensure()
    (s.incoming / "huge.toml").write_text(req.read_text())
    (s.incoming / "small.toml").write_text(write_request(tmp_path / "small.toml").read_text())
    for name in ("huge.toml", "small.toml"):
        s.hint_complete(name)
    outs = {o.name: o for o in s.scan()}
    assert outs["small.toml"].accepted and not outs["huge.toml"].accepted
    assert "max_request_hours" in (s.rejected / "huge.toml.error.txt").read_text()
