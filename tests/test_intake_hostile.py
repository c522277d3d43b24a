"""No request file can stop the daemon: deep nesting, alias bombs, odd names, files still being
written, empty files, and any error while taking one file in."""

import json
import os
import threading
import time
from pathlib import Path

import pytest

from conftest import write_request
from daemon_helpers import Daemon
from sweepd.configfile import MAX_DEPTH, ConfigError, parse_text
from sweepd.queue import Queue
from sweepd.spool import Spool
from sweepd import paths
from sweepd.ops.admission import Admission

DEEP = 1000
HOSTILE = {
    "deep.toml": "a = " + "[" * DEEP + "]" * DEEP + "\n",
    "deep.json": '{"a": ' + "[" * DEEP + "]" * DEEP + "}",
    "deep.yaml": "a: " + "[" * DEEP + "]" * DEEP + "\n",
    "deep-block.yaml": "".join("  " * i + f"k{i}:\n" for i in range(300)) + "  " * 300 + "v: 1\n",
    "dotted.toml": ".".join(f"k{i}" for i in range(DEEP)) + " = 1\n",
    "bomb.yaml": 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
                 + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n"
                           for i in range(8)),
    "empty.toml": "",
    "blank.json": "  \n",
    "nothing.toml": "# only a comment\n",
    "bigint.toml": "[workload]\nsteps = 1" + "0" * 5000 + "\n",
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_parsing_a_hostile_file_is_one_problem_never_an_exception(tmp_path, name):
    from sweepd.configfile import read_data

    (tmp_path / name).write_text(HOSTILE[name])
    try:
        data = read_data(tmp_path / name)
    except ConfigError as e:
        assert e.problems and all(len(p) < 400 for p in e.problems)
    else:
        assert data in ({},), data  # a comment-only TOML parses to nothing; the spool rejects it as empty


def test_depth_limit_leaves_ordinary_nesting_alone():
    ok = "a = " + "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_text(ok, "toml", "x")
    assert parse_text('s = "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["  # [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n',
                      "toml", "x")


def spool(tmp_path, **kw):
    root = tmp_path / "root"
    q = Queue(root / "state" / "queue.sqlite")
    s = Spool(paths.Layout.resolve(root), q, admission=Admission(gpu_indices=None), **kw)
    s.ensure()
    return s


def test_a_file_is_taken_only_once_it_stopped_changing(tmp_path):
    now = [100.0]
    s = spool(tmp_path, settle_s=1.0, clock=lambda: now[0])
    text = 'job_id = "complete-at-last"\n' + write_request(tmp_path / "r.toml").read_text()
    target = s.incoming / "slow.toml"
    target.write_text(text[: len(text) // 2])  # half of it, written in place
    assert s.scan() == [] and s.waiting
    now[0] += 0.6
    with open(target, "a") as fh:  # more arrives: the clock starts again
        fh.write(text[len(text) // 2:])
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 1000))
    assert s.scan() == []
    now[0] += 0.6
    assert s.scan() == []  # 0.6 s unchanged is not enough
    now[0] += 0.6
    [out] = s.scan()
    assert out.accepted, out.problems
    assert s.queue.get(out.sweep_id).job_id == "complete-at-last" and not s.waiting


def test_a_writer_that_pauses_longer_than_the_settle_time_is_waited_for(tmp_path):
    now = [100.0]
    s = spool(tmp_path, settle_s=1.0, clock=lambda: now[0])
    text = write_request(tmp_path / "r.toml").read_text()
    with open(s.incoming / "paused.toml", "w") as fh:  # still open: its writer has more to say
        fh.write(text[:40])
        fh.flush()
        assert s.scan() == []
        now[0] += 5.0
        assert s.scan() == [] and s.waiting  # unchanged for 5 s, but open for writing
        fh.write(text[40:])
    s.hint_complete("paused.toml")  # closed after writing
    [out] = s.scan()
    assert out.accepted, out.problems


def test_closed_after_writing_is_complete_at_once(tmp_path):
    s = spool(tmp_path, settle_s=30.0)
    write_request(s.incoming / "now.toml")
    assert s.scan() == []
    s.hint_complete("now.toml")  # what the daemon's watcher calls on IN_CLOSE_WRITE or a rename in
    [out] = s.scan()
    assert out.accepted


def test_any_error_while_taking_one_file_rejects_that_file_and_the_next_goes_on(tmp_path, monkeypatch):
    s = spool(tmp_path, settle_s=0.1)
    write_request(s.incoming / "a-breaks.toml")
    write_request(s.incoming / "b-fine.toml")
    real = Spool.take

    def take(self, path):
        if path.name == "a-breaks.toml":
            raise RuntimeError("a bug, somewhere in intake")
        return real(self, path)

    monkeypatch.setattr(Spool, "take", take)
    for name in ("a-breaks.toml", "b-fine.toml"):
        s.hint_complete(name)
    outs = {o.name: o for o in s.scan()}
    assert not outs["a-breaks.toml"].accepted and outs["b-fine.toml"].accepted
    err = (s.rejected / "a-breaks.toml.error.txt").read_text()
    assert "RuntimeError: a bug, somewhere in intake" in err


def test_hostile_files_are_rejected_while_the_daemon_keeps_serving(tmp_path):
    d = Daemon(tmp_path / "root", settings="gpus = []\n")
    try:
        d.start()
        inc = d.root / "spool/incoming"
        names = dict(HOSTILE)
        names["x" * 240 + ".toml"] = "[workload\n"  # invalid, and its .error.txt would not fit in 255 bytes
        for name, text in names.items():
            (inc / f".{len(name)}.tmp").write_text(text)
            os.rename(inc / f".{len(name)}.tmp", inc / name)
        raw_name = os.fsencode(str(inc)) + b"/caf\xe9-\xff.toml"  # not UTF-8
        with open(raw_name, "wb") as fh:
            fh.write(b"[workload]\nsteps = 2\n")
        # written in place, slowly, without a temporary name: taken only when complete
        req = 'job_id = "slowly-written"\n' + write_request(tmp_path / "slow.toml").read_text()

        def slow_writer():
            with open(inc / "slow.toml", "w") as fh:
                for k in range(0, len(req), 60):
                    fh.write(req[k:k + 60])
                    fh.flush()
                    time.sleep(0.1)

        t = threading.Thread(target=slow_writer)
        t.start()
        t.join()
        after = 'job_id = "still-serving"\n' + write_request(tmp_path / "after.toml").read_text()
        (tmp_path / "after.toml").write_text(after)
        os.rename(tmp_path / "after.toml", inc / "after.toml")
        q = d.queue()
        end = time.monotonic() + 60
        while time.monotonic() < end:
            jobs = {r.job_id for r in q.list(("queued",))}
            if {"still-serving", "slowly-written"} <= jobs and not os.listdir(inc):
                break
            time.sleep(0.2)
        assert {r.job_id for r in q.list(("queued",))} == {"still-serving", "slowly-written"}, d.output()
        q.close()
        assert d.proc.poll() is None, d.output()
        rejected = sorted(p.name for p in (d.root / "spool/rejected").glob("*.error.txt"))
        assert len(rejected) == len(names) + 1, rejected  # every hostile file, and the non-UTF-8 name
        texts = "".join(p.read_text() for p in (d.root / "spool/rejected").glob("*.error.txt"))
        assert "nested more than" in texts and ("aliases" in texts or "anchors" in texts)
        assert "empty" in texts and "not UTF-8" in texts and "bytes long" in texts
        assert "caf\\xe9-\\xff.toml" in texts  # the original name, readable, in the error file
        audit = [json.loads(line) for line in (d.root / "state/audit.jsonl").read_text().splitlines()]
        assert sum(a["event"] == "rejected" for a in audit) == len(rejected)
    finally:
        d.close()


@pytest.mark.parametrize("kind", ["fifo", "device-link", "folder"])
def test_a_file_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path, kind):
    from sweepd.configfile import read_data

    p = tmp_path / "odd.toml"
    if kind == "fifo":
        os.mkfifo(p)  # a plain read would wait for a writer forever
    elif kind == "device-link":
        os.symlink("/dev/zero", p)  # a plain read would never end
    else:
        p.mkdir()
    with pytest.raises(ConfigError, match="not a regular file|cannot read"):
        read_data(p)


def test_generated_job_ids_do_not_collide_within_a_second():
    """A full spool is taken at hundreds of requests a second, each without a job_id drawing one: 20,000 draws
    (far more than a second's) are all distinct. With the old 24 random bits about 12 pairs collided, and the
    later request of each pair was rejected as a duplicate job (seen in test_thousand_files_dropped_at_once)."""
    from sweepd import paths

    ids = [paths.new_local_job_id().rsplit("-", 1)[1] for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(paths.check_job_id(f"local-20261128-023421-{i}") for i in ids[:3])


def test_the_spool_and_state_are_the_owners_alone_under_a_loose_umask(tmp_path):
    """Under umask 002 a group member could read every queued request and drop one of their own: the spool's
    folders and state/ are made 0700, and existing ones narrowed."""
    old = os.umask(0o002)
    try:
        (tmp_path / "root" / "spool" / "incoming").mkdir(parents=True)  # made loose by hand before
        s = spool(tmp_path)
        paths.private_dir(tmp_path / "root" / "state")
    finally:
        os.umask(old)
    for d in (s.incoming.parent, s.incoming, s.accepted, s.rejected, tmp_path / "root" / "state"):
        assert d.stat().st_mode & 0o777 == 0o700, d


def test_a_file_renamed_in_from_outside_the_spool_is_taken_at_once_and_one_still_open_is_not(tmp_path):
    """watchdog reports a file renamed in from outside spool/ as created, not moved: it waited out the settle
    time (1 s: the intake benchmark's p50 went from 2.5 ms to 1007 ms). Created and not open for writing is
    complete; created and open for writing, or anyone else's (no lease can be asked), is not."""
    now = [100.0]
    s = spool(tmp_path, settle_s=60.0, clock=lambda: now[0])
    body = write_request(tmp_path / "r.toml").read_text()
    staged = tmp_path / "staged.toml"
    staged.write_text(body)
    os.replace(staged, s.incoming / "moved-in.toml")
    s.hint_created("moved-in.toml")
    with open(s.incoming / "still-writing.toml", "w") as writer:
        writer.write(body[:20])
        writer.flush()
        s.hint_created("still-writing.toml")
        outs = {o.name: o.accepted for o in s.scan()}
        assert outs == {"moved-in.toml": True}
        writer.write(body[20:])
    s.hint_complete("still-writing.toml")  # closed after writing
    assert [o.accepted for o in s.scan()] == [True]
    if os.geteuid() == 0:
        theirs = s.incoming / "theirs.toml"
        theirs.write_text(body)
        os.chown(theirs, 65534, 65534)
        s.hint_created("theirs.toml")
        assert s.scan() == []  # waits for closed or settled: no lease can tell of another user's writer
