"""Nothing lost when archive/delete runs race: hand-run applies against each other and against the
daemon's enforcement, looped, each round checked byte for byte (in place, or restorable)."""

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import sweepd, sweepd_env
from sweepd.paths import Layout
from sweepd.storage import archive
from sweepd.storage.enforce import StorageManager
from sweepd.storage.lock import StorageBusy, StorageLock
from sweepd.storage.manifest import manifests
from sweepd.storage.restore import restore
from sweepd.storage.safefs import Identity, UnitDir
from storage_helpers import make_job, tree_hashes, write_policy

ROUNDS = 20


def restorable(root: Path, originals: dict[str, str], where: Path) -> list[str]:
    """The originals neither in place nor restorable byte for byte from a verified archive."""
    present = tree_hashes(root / "images")
    for m in manifests(root / "archive"):
        archive.verify(root / "archive" / m.archive, m.members)
        restore(root / "archive" / m.archive, where, force=True)
    back = tree_hashes(where) if where.exists() else {}
    return [f for f, h in originals.items() if present.get(f) != h and back.get(f) != h]


DAEMON_SIDE = """
import sys
from pathlib import Path
from sweepd.paths import Layout
from sweepd.storage.enforce import StorageManager
mgr = StorageManager(Layout.resolve(sys.argv[1]), [Path(sys.argv[2])])
mgr.load()
mgr._enforce(None, "schedule")  # what the daemon's scheduled run does (its exceptions not swallowed here)
"""


@pytest.mark.slow  # a real daemon racing hand-run applies over 2,000 files
def test_hand_applies_and_the_daemons_enforcement_racing_lose_nothing(tmp_path):
    """Per round: two `sweepd storage apply` processes and the daemon's enforcement code in a third, all
    started at once on the same root; files big enough that their archive runs overlap."""
    policy = write_policy(tmp_path / "age.toml", '[[rules]]\nname = "age"\nmax_age = "30d"\n')
    lost_rounds = []
    for n in range(ROUNDS):
        root = tmp_path / f"r{n}"
        originals = {}
        for j in range(4):
            originals.update(make_job(root / "images", f"x{j}", clocks=(1410, 945), trials=2, per=3,
                                      size=60_000 + 500 * j, age_days=60 if j % 2 else 1, seed=n, incompressible=True))
        hand = [sys.executable, "-m", "sweepd", "storage", "apply", "--policy", str(policy), "--root", str(root)]
        daemon_side = [sys.executable, "-c", DAEMON_SIDE, str(root), str(policy)]
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sweepd_env())
                 for cmd in (hand, daemon_side, hand)]
        for p in procs:
            _, errs = p.communicate(timeout=120)
            assert p.returncode == 0, errs.decode()
        lost = restorable(root, originals, tmp_path / f"back{n}")
        if lost:
            lost_rounds.append((n, len(lost)))
        # the old jobs are gone from images/, the young ones untouched
        assert {f.split("/")[0] for f in tree_hashes(root / "images")} == {"job_x0", "job_x2"}
        assert not list((root / "archive").glob("*.partial"))
    assert not lost_rounds, f"files lost in (round, count): {lost_rounds}"


def test_a_real_daemon_and_a_hand_apply_lose_nothing(tmp_path):
    from daemon_helpers import Daemon

    root = tmp_path / "root"
    originals = {}
    for j in range(8):
        originals.update(make_job(root / "images", f"d{j}", clocks=(1410, 945, 510), trials=2, per=3,
                                  size=4000, age_days=60 if j % 2 else 1, incompressible=True))
    d = Daemon(root, settings="gpus = []\n")
    policies = d.config_home / "sweepd" / "policies"
    policies.mkdir(parents=True)
    write_policy(policies / "age.toml", '[[rules]]\nname = "age"\nmax_age = "30d"\nschedule = { every = "1s" }\n')
    try:
        d.start()
        r = sweepd("storage", "apply", "--policy", policies / "age.toml", "--root", root, timeout=120)
        assert r.returncode == 0, r.stderr
        end = time.monotonic() + 30
        while time.monotonic() < end and any((root / "images" / f"job_d{j}").exists() for j in (1, 3, 5, 7)):
            time.sleep(0.2)
    finally:
        d.close()
    assert restorable(root, originals, tmp_path / "back") == []
    assert {f.split("/")[0] for f in tree_hashes(root / "images")} == {"job_d0", "job_d2", "job_d4", "job_d6"}


def test_the_storage_lock_excludes_a_second_holder_and_names_the_first(tmp_path):
    first = StorageLock(tmp_path).acquire()
    try:
        with pytest.raises(StorageBusy, match=f"held by pid {os.getpid()}"):
            StorageLock(tmp_path).acquire(timeout_s=0.3)
        # a hand-run apply waits, saying for whom, and gives up only after its own timeout
        root = tmp_path / "root"
        make_job(root / "images", "w", age_days=60)
        policy = write_policy(tmp_path / "p.toml", '[[rules]]\nname = "age"\nmax_age = "30d"\n')
        held = StorageLock(root / "state").acquire()
        p = subprocess.Popen([sys.executable, "-m", "sweepd", "storage", "apply", "--policy", str(policy),
                              "--root", str(root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=sweepd_env())
        said = ""
        while "waiting for" not in said:  # it says so as it starts waiting (EOF first would mean it did not wait)
            line = p.stderr.readline()
            assert line, f"the apply ended without waiting: exit {p.wait()}, {said}"
            said += line
        assert p.poll() is None and (root / "images/job_w").exists()  # waiting, nothing touched
        held.release()
        out, errs = p.communicate(timeout=60)
        errs = said + errs
        assert p.returncode == 0 and f"pid {os.getpid()}" in errs, errs
        assert not (root / "images/job_w").exists()
    finally:
        first.release()


def test_a_lock_dies_with_its_holder(tmp_path):
    code = (f"from sweepd.storage.lock import StorageLock; StorageLock({str(tmp_path)!r}).acquire(); "
            "print('held', flush=True); import os; os._exit(9)")
    child = subprocess.run([sys.executable, "-c", code], env=sweepd_env(), capture_output=True, text=True, timeout=60)
    assert (child.returncode, child.stdout) == (9, "held\n"), child.stderr  # it held the lock, then died
    StorageLock(tmp_path).acquire(timeout_s=1).release()


def test_a_file_changed_after_archiving_is_not_deleted(tmp_path):
    images = tmp_path / "images"
    make_job(images, "c", clocks=(1410,), trials=1, per=3)
    files = sorted(str(p.relative_to(images / "job_c")) for p in (images / "job_c").rglob("*.png"))
    done = archive.archive(images, "job_c", files, tmp_path / "archive")
    victim = images / "job_c" / files[1]
    victim.write_bytes(b"new content written after the archive was made")
    with pytest.raises(archive.ArchiveError, match="changed since it was archived"):
        archive.delete_sources(images, "job_c", files, done)
    assert victim.read_bytes() == b"new content written after the archive was made"


def test_deletion_trusts_the_archive_read_back_not_the_caller(tmp_path):
    """A member list claiming more than the archive on disk holds deletes nothing beyond it."""
    images = tmp_path / "images"
    make_job(images, "m", clocks=(1410,), trials=1, per=3)
    files = sorted(str(p.relative_to(images / "job_m")) for p in (images / "job_m").rglob("*.png"))
    done = archive.archive(images, "job_m", files[:2], tmp_path / "archive")
    with UnitDir(images, "job_m") as u:
        st = u.lstat(files[2])
    done.sources[files[2]] = (Identity.of(st), hashlib.sha256((images / "job_m" / files[2]).read_bytes()).hexdigest())
    with pytest.raises(archive.ArchiveError, match="not in .* as read back"):
        archive.delete_sources(images, "job_m", files, done)
    assert (images / "job_m" / files[2]).exists()


def test_partials_are_unique_per_process_and_a_dead_ones_are_cleared(tmp_path):
    images = tmp_path / "images"
    make_job(images, "p", clocks=(1410,), trials=1, per=2)
    files = sorted(str(p.relative_to(images / "job_p")) for p in (images / "job_p").rglob("*.png"))
    adir = tmp_path / "archive"
    adir.mkdir()
    with UnitDir(images, "job_p") as u:
        name = archive.archive_name(u, files)
    stale = adir / f"{name}.tar.zst.999999999-dead.partial"  # no such pid
    live = adir / f"{name}.tar.zst.{os.getpid()}-live.partial"  # someone alive is writing this one
    stale.write_bytes(b"half")
    live.write_bytes(b"half, in progress")
    archive.archive(images, "job_p", files, adir)
    assert not stale.exists() and live.read_bytes() == b"half, in progress"
