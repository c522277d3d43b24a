"""Who may touch a root (issue #26): the spool and state/ are the owner's alone unless spool_group lets a group
drop requests; a request or a lock record owned by anyone else is ignored and said so. Another user is played for
real: a child process that gives up root for uid 65534 (nobody) and, for the group, gid 100 (users)."""

import logging
import os
import stat
import subprocess

import pytest

from conftest import write_request
from sweepd import paths
from sweepd.ops.admission import Admission, group_gid
from sweepd.queue import Queue
from sweepd.spool import Spool

NOBODY, USERS = 65534, 100
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="playing another user needs root (CI runs as root)")


@pytest.fixture
def tmp_path():
    """A folder every user may pass through (pytest's own are under a 0700 one): what stops the other user is
    then the root's own modes, as on a shared machine."""
    import shutil
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="sweepd-perm-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def spool(tmp_path, group: str = "") -> Spool:
    root = tmp_path / "root"
    s = Spool(paths.Layout.resolve(root), Queue(root / "state/queue.sqlite"),
              admission=Admission(gpu_indices=None, group_gid=group_gid(group)), settle_s=0)
    s.ensure()
    return s


def as_other_user(script: str, gid: int = NOBODY) -> subprocess.CompletedProcess:
    """``script`` run by /bin/sh as uid 65534 in group ``gid`` only."""
    def drop():
        os.setgroups([gid])
        os.setgid(gid)
        os.setuid(NOBODY)
    return subprocess.run(["/bin/sh", "-c", script], preexec_fn=drop, capture_output=True, text=True, timeout=60)


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_without_a_group_nobody_else_can_read_queue_or_plant_anything(tmp_path):
    s = spool(tmp_path)
    root = tmp_path / "root"
    (s.incoming / "mine.toml").write_text(write_request(tmp_path / "r.toml").read_text())
    assert mode(root / "spool") == mode(s.incoming) == mode(s.accepted) == mode(root / "state") == 0o700
    for target in ("spool/incoming/theirs.toml", "state/gpu-locks/planted.json", "spool/incoming/mine.toml"):
        r = as_other_user(f"echo x >> '{root / target}'")
        assert r.returncode != 0 and "Permission denied" in r.stderr, (target, r.stderr)
    r = as_other_user(f"cat '{s.incoming / 'mine.toml'}'")
    assert r.returncode != 0 and "Permission denied" in r.stderr


def test_a_group_member_may_drop_a_request_when_spool_group_says_so_and_nothing_else(tmp_path):
    s = spool(tmp_path, group="users")
    root = tmp_path / "root"
    assert mode(s.incoming) == 0o2770 and os.stat(s.incoming).st_gid == USERS and mode(root / "spool") == 0o710
    assert mode(s.accepted) == mode(root / "state") == 0o700
    write_request(tmp_path / "r.toml")
    (tmp_path / "r.toml").chmod(0o644)
    r = as_other_user(f"cat '{tmp_path / 'r.toml'}' > '{s.incoming / 'theirs.toml'}'", gid=USERS)
    assert r.returncode == 0, r.stderr
    for where in ("state/x.json", "spool/accepted/x.toml"):
        r = as_other_user(f"echo x > '{root / where}'", gid=USERS)
        assert r.returncode != 0 and "Permission denied" in r.stderr, where
    s.hint_complete("theirs.toml")
    [out] = s.scan()
    assert out.accepted  # setgid incoming/: the group's file


def test_a_request_owned_by_someone_else_is_rejected_and_says_why(tmp_path):
    s = spool(tmp_path)
    p = s.incoming / "foreign.toml"
    p.write_text(write_request(tmp_path / "r.toml").read_text())
    os.chown(p, NOBODY, NOBODY)  # as if written in by another user (a root that was once open to them)
    s.hint_complete(p.name)
    [out] = s.scan()
    assert not out.accepted and "owned by uid 65534" in out.problems[0] and "spool_group" in out.problems[0]
    assert (s.rejected / "foreign.toml.error.txt").exists() and not s.queue.list()


def test_a_lock_record_planted_by_someone_else_locks_nothing(tmp_path, caplog):
    from sweepd.gpu.locks import ClockGuard
    from sweepd.gpu.sim import SimulatedGpu
    from sweepd.records.gpulock import ClockLockRecord

    locks = paths.private_dir(tmp_path / "gpu-locks")
    dev = SimulatedGpu("A100")
    planted = locks / f"{dev.uuid}.json"
    import socket

    ClockLockRecord(uuid=dev.uuid, pid=1, host=socket.gethostname(), sm_mhz=1410, backend="sim").write(planted)
    os.chown(planted, NOBODY, NOBODY)
    with caplog.at_level(logging.WARNING), ClockGuard(dev, locks):  # pid 1 lives: it said "GPU busy" for ever
        pass
    assert "owned by uid 65534" in caplog.text
