"""Admission has one copy (sweepd.ops.admission): `sweepd submit` and the daemon's intake refuse the same
requests for the same reason, and a reload hands the intake every setting admission reads."""

import pytest

from conftest import sweepd, sweepd_env, write_request
from sweepd import paths
from sweepd.settings import Settings
from sweepd.ops.admission import Admission
from sweepd.queue import Queue
from sweepd.spool import Spool

CASES = {  # a request this root cannot run, and what both say of it
    "split": ('split = 2\n', "split: 2: shards run as a SLURM job array"),
    "gpu": ('[gpu]\nindex = 3\n', "gpu.index: 3: this daemon runs sweeps on GPU(s) [0]"),
    "clock": (None, "1234 MHz is not supported"),
    "model": ('model = "/no/such/model"\n', "no such folder"),
}


def request_for(tmp_path, case):
    body = write_request(tmp_path / "base.toml").read_text()
    extra, _ = CASES[case]
    if case == "clock":
        body = body.replace("list = [1410, 945, 510]", "list = [1410, 1234]")
    elif case == "gpu":
        body = body.replace('[gpu]\nbackend = "sim"', '[gpu]\nbackend = "sim"\nindex = 3')
    elif case == "model":
        body = body.replace('model = "tiny"', extra.strip())
    else:
        body = extra + body
    path = tmp_path / f"{case}.toml"
    path.write_text(body)
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_submit_and_the_intake_refuse_the_same_requests_for_the_same_reason(tmp_path, case):
    path = request_for(tmp_path, case)
    root = tmp_path / "root"
    r = sweepd("submit", path, "--root", root, env=sweepd_env(SWEEPD_GPUS="[0]"))
    _, says = CASES[case]
    assert r.returncode == 2 and says in r.stderr, r.stderr
    assert not list((root / "spool" / "incoming").glob("*"))  # nothing dropped
    layout = paths.Layout.resolve(root)
    q = Queue(layout.queue_db)
    s = Spool(layout, q, admission=Admission("local", (0,)), settle_s=0)
    s.ensure()
    (layout.incoming / path.name).write_bytes(path.read_bytes())
    s.hint_complete(path.name)  # renamed in, as a writer does
    (out,) = s.scan()
    assert not out.accepted and any(says in p for p in out.problems), out
    assert says in (layout.rejected / f"{path.name}.error.txt").read_text()
    q.close()


def test_a_reload_hands_the_intake_the_new_gpu_list(tmp_path):
    layout = paths.Layout.resolve(tmp_path / "root")
    q = Queue(layout.queue_db)
    s = Spool(layout, q, admission=Admission("local", (0,)), settle_s=0)
    s.ensure()
    body = write_request(tmp_path / "r.toml").read_text().replace('[gpu]\nbackend = "sim"',
                                                                  '[gpu]\nbackend = "sim"\nindex = 1')
    (layout.incoming / "a.toml").write_text(body)
    s.hint_complete("a.toml")
    (out,) = s.scan()
    assert not out.accepted and "gpu.index: 1" in out.problems[0]

    reloaded = Settings(executor="local", gpus=[0, 1])  # the settings a SIGHUP reads: GPUs 0 and 1 now
    s.configure(s.max_bytes, Admission.of(reloaded), s.settle_s)
    (layout.incoming / "b.toml").write_text(body)
    s.hint_complete("b.toml")
    (out,) = s.scan()
    assert out.accepted, out.problems
    q.close()
