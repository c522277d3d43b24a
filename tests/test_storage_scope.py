"""Nothing touched outside its scope: a saved plan is checked against the current policy and tree,
rule paths stay under images/ (results/ only when allowed), units are whole jobs, restore never
leaves the root and never follows a forged manifest."""

import io
import json
import os
import subprocess
import sys
import tarfile
import time

import pytest
import zstandard

from conftest import sweepd, sweepd_env
from sweepd.request import SweepRequest
from sweepd.queue import Queue
from sweepd.storage.manifest import manifests
from storage_helpers import make_job, tree_hashes, write_policy

pytestmark = pytest.mark.usefixtures("idle_slurm")  # its jobs are numbered as SLURM numbers them

AGE = '[[rules]]\nname = "age"\nmax_age = "30d"\n'


def two_jobs(tmp_path):
    """job_1 old (the policy archives it), job_10 young (untouched): the check script's shape."""
    root = tmp_path / "root"
    make_job(root / "images", "1", age_days=60)
    make_job(root / "images", "10", age_days=1)
    policy = write_policy(tmp_path / "age.toml", AGE)
    r = sweepd("storage", "plan", "--policy", policy, "--root", root, "--json")
    assert r.returncode == 0, r.stderr
    return root, policy, json.loads(r.stdout)


def apply_plan(tmp_path, root, policy, plan):
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    return sweepd("storage", "apply", "--plan", tmp_path / "plan.json", "--policy", policy, "--root", root)


def forge_sibling(a):
    a["files"] += ["../job_10/1410MHz/1410MHz_t1_i000_s42.png"]


def forge_absolute(a):
    a["files"] += [str(a["root"]) + "/job_10/1410MHz/1410MHz_t1_i000_s42.png"]


def forge_unit(a):
    a["unit"] = "job_10"


def forge_unit_path(a):
    a["unit"] = "../images/job_10"


def forge_root(a):
    a["root"] = str(os.path.dirname(a["root"]))  # the sweepd root itself: state/, spool/, results/


def forge_kind(a):
    a["kind"] = "delete"


def forge_archive_dir(a):
    a["archive_dir"] = "/tmp"


def forge_unselected_file(a):
    a["unit"], a["files"] = "job_10", ["1410MHz/1410MHz_t1_i000_s42.png"]


@pytest.mark.parametrize("forge", [forge_sibling, forge_absolute, forge_unit, forge_unit_path, forge_root,
                                   forge_kind, forge_archive_dir, forge_unselected_file])
def test_a_forged_plan_is_refused_and_touches_nothing(tmp_path, forge):
    root, policy, plan = two_jobs(tmp_path)
    before = tree_hashes(root / "images")
    forge(plan["actions"][0])
    r = apply_plan(tmp_path, root, policy, plan)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "refused" in r.stderr and str(tmp_path / "plan.json") in r.stderr and "actions[0]" in r.stderr
    assert "Traceback" not in r.stderr
    assert tree_hashes(root / "images") == before and not (root / "archive").exists()


def test_a_plan_file_that_is_not_a_plan_names_the_field(tmp_path):
    root, policy, plan = two_jobs(tmp_path)
    plan["actions"][0]["surprise"] = 1
    r = apply_plan(tmp_path, root, policy, plan)
    assert r.returncode == 2 and "actions[0].surprise" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("how", ["keep", "queued"])
def test_a_job_protected_since_the_plan_is_skipped(tmp_path, how):
    root, policy, plan = two_jobs(tmp_path)
    before = tree_hashes(root / "images")
    if how == "keep":
        (root / "images/job_1/.keep").touch()
    else:
        q = Queue(root / "state" / "queue.sqlite")
        q.add("aaaaaaaaaaaa", "1", SweepRequest())
        q.close()
    r = apply_plan(tmp_path, root, policy, plan)
    assert r.returncode == 0, r.stderr
    assert "job_1" in r.stdout and "since the plan was made: skipped" in r.stdout
    assert tree_hashes(root / "images") == before


def test_a_clock_folder_swapped_for_a_link_after_planning_is_not_followed(tmp_path):
    root, policy, plan = two_jobs(tmp_path)
    ten = tree_hashes(root / "images/job_10")
    os.rename(root / "images/job_1/945MHz", tmp_path / "moved-away")
    os.symlink(root / "images/job_10/945MHz", root / "images/job_1/945MHz")
    r = apply_plan(tmp_path, root, policy, plan)
    assert r.returncode in (1, 2), r.stdout + r.stderr  # refused, or failed as a link: never followed
    assert "Traceback" not in r.stderr
    assert tree_hashes(root / "images/job_10") == ten
    for m in manifests(root / "archive") if (root / "archive").exists() else []:
        assert all(not x.name.startswith("job_10/") for x in m.members)
        assert all(x.name.startswith("job_1/") for x in m.members)


@pytest.mark.parametrize("path, needle", [
    ("spool", "spool/"), ("spool/incoming", "spool/"), ("state", "state/"), ("archive", "archive directory"),
    ("results", "results/"), ("{tmp}/elsewhere", "not under images/"), ("..", "overlaps"),
])
def test_rule_paths_outside_images_are_refused(tmp_path, path, needle):
    root = tmp_path / "root"
    (root / "spool/incoming").mkdir(parents=True)
    (root / "spool/incoming/waiting.toml").write_text("[workload]\n")
    path = path.replace("{tmp}", str(tmp_path))
    p = write_policy(tmp_path / "p.toml", f'[[rules]]\nname = "r"\npaths = ["{path}"]\nmax_age = "1s"\n')
    r = sweepd("policy", "check", p, "--root", root)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    r = sweepd("storage", "apply", "--policy", p, "--root", root)
    assert r.returncode == 2 and (root / "spool/incoming/waiting.toml").exists()


def test_a_rule_path_that_is_a_file_is_refused(tmp_path):
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    (root / "images/notes.txt").write_text("x")
    p = write_policy(tmp_path / "p.toml", '[[rules]]\nname = "r"\npaths = ["images/notes.txt"]\nmax_age = "1d"\n')
    r = sweepd("policy", "check", p, "--root", root)
    assert r.returncode == 2 and "is not a folder" in r.stderr


@pytest.mark.parametrize("level", ["images/job_p1", "images/job_p1/945MHz"])
def test_a_rule_naming_a_folder_inside_images_acts_on_whole_jobs(tmp_path, level):
    root = tmp_path / "root"
    make_job(root / "images", "p1", age_days=60)
    make_job(root / "images", "p2", age_days=60)
    p = write_policy(tmp_path / "p.toml", f'[[rules]]\nname = "r"\npaths = ["{level}"]\nmax_age = "30d"\n')
    # protected jobs stay protected at every level a rule names
    (root / "images/job_p1/.keep").touch()
    before = tree_hashes(root / "images")
    assert sweepd("storage", "apply", "--policy", p, "--root", root).returncode == 0
    assert tree_hashes(root / "images") == before
    (root / "images/job_p1/.keep").unlink()
    q = Queue(root / "state" / "queue.sqlite")
    q.add("bbbbbbbbbbbb", "p1", SweepRequest())
    assert sweepd("storage", "apply", "--policy", p, "--root", root).returncode == 0
    assert tree_hashes(root / "images") == before
    q.finish("bbbbbbbbbbbb", "cancelled", None, "test")
    q.close()
    r = sweepd("storage", "apply", "--policy", p, "--root", root)
    assert r.returncode == 0, r.stderr
    [m] = manifests(root / "archive")
    assert m.unit == "job_p1" and m.source_dir == str((root / "images").resolve())
    gone = {f for f in before if f not in tree_hashes(root / "images")}
    assert gone and all(f.startswith("job_p1/" if level.count("/") == 1 else "job_p1/945MHz/") for f in gone)
    assert all(f in tree_hashes(root / "images") for f in before if f.startswith("job_p2/"))
    r = sweepd("archive", "restore", "p1", "--root", root)
    assert r.returncode == 0, r.stderr
    assert tree_hashes(root / "images") == before


def test_a_unit_not_named_job_restores_by_its_name(tmp_path):
    root = tmp_path / "root"
    make_job(root / "images", "x", age_days=60)
    os.rename(root / "images/job_x", root / "images/old-stuff")
    before = tree_hashes(root / "images")
    p = write_policy(tmp_path / "p.toml", AGE)
    assert sweepd("storage", "apply", "--policy", p, "--root", root).returncode == 0
    assert tree_hashes(root / "images") == {}
    r = sweepd("archive", "restore", "old-stuff", "--root", root)
    assert r.returncode == 0, r.stderr
    assert tree_hashes(root / "images") == before


# restore ---------------------------------------------------------------------------------------
def archived_root(tmp_path):
    root = tmp_path / "root"
    make_job(root / "images", "a", clocks=(1410,), trials=1, per=2, age_days=60)
    before = tree_hashes(root / "images")
    assert sweepd("storage", "apply", "--policy", write_policy(tmp_path / "p.toml", AGE), "--root", root).returncode == 0
    [m] = manifests(root / "archive")
    return root, before, m


def test_a_forged_source_dir_is_not_followed_even_with_force(tmp_path):
    root, before, m = archived_root(tmp_path)
    outside = tmp_path / "outside"
    (outside / "job_a/1410MHz").mkdir(parents=True)
    victim = outside / "job_a/1410MHz" / next(iter(before)).split("/")[-1]
    victim.write_bytes(b"precious, not sweepd's")
    data = json.loads(open(m.manifest).read())
    data["source_dir"] = str(outside)
    open(m.manifest, "w").write(json.dumps(data))
    r = sweepd("archive", "restore", "a", "--root", root, "--force")
    assert r.returncode == 0, r.stderr
    assert "not this root's images/" in r.stderr
    assert victim.read_bytes() == b"precious, not sweepd's"
    assert tree_hashes(root / "images") == before


def test_a_forged_archive_name_is_skipped(tmp_path):
    root, before, m = archived_root(tmp_path)
    data = json.loads(open(m.manifest).read())
    data["archive"] = "../../outside.tar.zst"
    open(m.manifest, "w").write(json.dumps(data))
    r = sweepd("archive", "restore", "a", "--root", root)
    assert r.returncode == 2 and "no archive of job_a" in r.stderr and "Traceback" not in r.stderr


def evil(path, members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))
    return path


def test_every_member_is_checked_before_the_first_is_written(tmp_path):
    from sweepd.storage.archive import ArchiveError
    from sweepd.storage.restore import restore

    path = evil(tmp_path / "x.tar.zst", [("job_x/ok1.png", b"1"), ("job_x/ok2.png", b"2"), ("../evil", b"e")])
    with pytest.raises(ArchiveError, match="climbing"):
        restore(path, tmp_path / "target")
    assert not list((tmp_path / "target").rglob("*.png")) and not (tmp_path / "evil").exists()
    path = evil(tmp_path / "y.tar.zst", [("job_x/ok.png", b"1"), ("job_y/other.png", b"2")])
    with pytest.raises(ArchiveError, match="not inside job_x/"):
        restore(path, tmp_path / "target", unit="job_x")
    assert not list((tmp_path / "target").rglob("*.png"))


def test_restore_does_not_go_through_a_link_in_the_target(tmp_path):
    from sweepd.storage.archive import ArchiveError
    from sweepd.storage.restore import restore

    path = evil(tmp_path / "x.tar.zst", [("job_x/ok.png", b"1")])
    (tmp_path / "target").mkdir()
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", tmp_path / "target/job_x")
    with pytest.raises(ArchiveError, match="outside"):
        restore(path, tmp_path / "target")
    assert not list((tmp_path / "elsewhere").iterdir())


# The peak RSS of this process's own memory (VmHWM), not ru_maxrss: Linux carries ru_maxrss over from the parent's
# memory at exec (subprocess vforks), so a test session that had loaded a pipeline reported its size here.
STREAM = """
import sys
from pathlib import Path
from sweepd.storage.restore import restore
restore(Path(sys.argv[1]), Path(sys.argv[2]))
print(next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def test_restore_streams_a_large_member_in_flat_memory(tmp_path):
    size = 512 << 20  # zeros: a few hundred KB compressed
    src = tmp_path / "big.tar.zst"
    with open(src, "wb") as raw, zstandard.ZstdCompressor(level=1).stream_writer(raw) as zw:
        with tarfile.open(fileobj=zw, mode="w|") as tar:
            info = tarfile.TarInfo("job_big/huge.bin")
            info.size = size

            class Zeros(io.RawIOBase):
                left = size

                def readable(self):
                    return True

                def readinto(self, b):
                    n = min(len(b), self.left)
                    b[:n] = bytes(n)
                    self.left -= n
                    return n

            tar.addfile(info, io.BufferedReader(Zeros(), 1 << 20))
    assert src.stat().st_size < 4 << 20
    r = subprocess.run([sys.executable, "-c", STREAM, str(src), str(tmp_path / "out")], capture_output=True,
                       text=True, env=sweepd_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    rss_kib = int(r.stdout.strip().splitlines()[-1])
    assert rss_kib < 200 * 1024, f"restore took {rss_kib / 1024:.0f} MiB for a {size >> 20} MiB member"
    assert (tmp_path / "out/job_big/huge.bin").stat().st_size == size


@pytest.mark.parametrize("how", ["keep", "queued"])
def test_protection_is_checked_again_at_each_action(tmp_path, how):
    """Between the plan and its action a job may gain a .keep or a sweep (the daemon's plans included)."""
    from pathlib import Path

    from sweepd.paths import Layout
    from sweepd.storage.apply import apply
    from sweepd.storage.context import make_plan
    from sweepd.storage.policy import Policy

    layout = Layout.resolve(tmp_path / "root")
    make_job(layout.images, "late", age_days=60)
    before = tree_hashes(layout.images)
    plan = make_plan(layout, [(Path("p.toml"), Policy.model_validate({"rules": [{"name": "age", "max_age": "30d"}]}))],
                     protected=set())
    assert [a.unit for a in plan.actions] == ["job_late"]
    if how == "keep":
        (layout.images / "job_late/.keep").touch()
    else:
        q = Queue(layout.state / "queue.sqlite")
        q.add("dddddddddddd", "late", SweepRequest())
        q.close()
    out = apply(plan, layout)
    assert not out.done and not out.failed and len(out.skipped) == 1
    assert tree_hashes(layout.images) == before


@pytest.mark.parametrize("adir", ["spool/incoming", "spool", "state", "images/archive", "results/arch", "."])
def test_an_archive_folder_inside_what_sweepd_reads_or_manages_is_refused(tmp_path, adir):
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    p = write_policy(tmp_path / "p.toml", f'[[rules]]\nname = "r"\nmax_age = "1d"\narchive_dir = "{adir}"\n')
    r = sweepd("policy", "check", p, "--root", root)
    assert r.returncode == 2 and ("archive_dir" in r.stderr or "overlaps" in r.stderr), r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("mtime", [1e20, -5.0, time.time() + 10 * 86400], ids=["1e20", "before-1970", "10-days-ahead"])
def test_a_member_dated_where_no_archive_could_be_is_refused_before_anything_is_written(tmp_path, mtime):
    from sweepd.storage.archive import ArchiveError
    from sweepd.storage.restore import restore

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, when in (("job_x/ok.png", time.time() - 3600), ("job_x/odd.png", mtime)):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = 1, when
            tar.addfile(info, io.BytesIO(b"1"))
    path = tmp_path / "x.tar.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))
    with pytest.raises(ArchiveError, match="odd.png.*not a date"):
        restore(path, tmp_path / "target")
    assert not list((tmp_path / "target").rglob("*.png"))


def test_a_manifest_with_impossible_numbers_is_not_an_archive(tmp_path):
    from sweepd.records.archive import ArchiveManifest

    good = {"archive": "a.tar.zst", "unit": "job_x", "source_dir": str(tmp_path),
            "members": [{"name": "job_x/a.png", "size": 1, "sha256": "0" * 64}]}
    ArchiveManifest.model_validate(good)
    for bad in ({"size": -1}, {"size": 1 << 70}, {"sha256": "not-a-hash"}):
        with pytest.raises(ValueError):
            ArchiveManifest.model_validate(good | {"members": [good["members"][0] | bad]})


def test_a_files_error_names_its_whole_path_not_its_last_name(tmp_path):
    """Calls relative to a folder fd give OSErrors naming '037.png' alone: which job, which clock?"""
    from sweepd.storage.safefs import UnitDir

    (tmp_path / "images/job_x/945MHz").mkdir(parents=True)
    with UnitDir(tmp_path / "images", "job_x") as unit:
        for call in (lambda: unit.open("945MHz/037.png"), lambda: unit.lstat("945MHz/037.png"),
                     lambda: unit.open("1410MHz/001.png")):
            with pytest.raises(FileNotFoundError) as e:
                call()
            assert str(tmp_path / "images/job_x") in str(e.value) and e.value.filename.endswith(".png")
