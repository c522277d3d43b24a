"""Archive-then-delete as a transaction: kill it at every step and nothing is lost; a full archive
filesystem fails the action with the sources untouched; restore is byte-identical and refuses
members that would land outside its target."""

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap

import pytest
import zstandard

from conftest import sweepd, sweepd_env
from sweepd.storage import archive
from sweepd.storage.manifest import manifests
from sweepd.storage.restore import restore
from storage_helpers import make_job, tree_hashes, write_policy

STEPS = ["mid_write", "after_write", "after_verify", "after_rename", "after_manifest", "mid_delete"]


def root_with_jobs(tmp_path):
    root = tmp_path / "root"
    originals = {}
    for j, age in [("a", 9), ("b", 8)]:
        originals.update(make_job(root / "images", j, age_days=age))
    policy = write_policy(tmp_path / "p.toml", '[[rules]]\nname = "age"\nmax_age = "1d"\n')
    return root, policy, originals


def nothing_lost(root, originals, tmp_path):
    """Every original file is either still in place or in a verified, restorable archive."""
    present = tree_hashes(root / "images")
    restored = tmp_path / "check"
    shutil.rmtree(restored, ignore_errors=True)
    for m in manifests(root / "archive"):
        archive.verify(root / "archive" / m.archive, m.members)
        restore(root / "archive" / m.archive, restored)
    archived = tree_hashes(restored) if restored.exists() else {}
    for f, h in originals.items():
        assert present.get(f) == h or archived.get(f) == h, f"lost {f}"


@pytest.mark.parametrize("step", STEPS)
def test_kill_at_each_step_then_rerun_loses_nothing(tmp_path, step):
    root, policy, originals = root_with_jobs(tmp_path)
    r = sweepd("storage", "apply", "--policy", policy, "--root", root, env=sweepd_env(SWEEPD_CRASH_AT=step),
               process=True)  # it dies like kill -9: a process of its own
    assert r.returncode == 137, r.stderr  # died at the step, like kill -9
    nothing_lost(root, originals, tmp_path)
    if step in ("mid_write", "after_write", "after_verify"):
        assert tree_hashes(root / "images") == originals  # sources untouched before the archive is final
    r = sweepd("storage", "apply", "--policy", policy, "--root", root)
    assert r.returncode == 0, r.stderr
    assert tree_hashes(root / "images") == {}
    assert not list((root / "archive").glob("*.partial"))
    nothing_lost(root, originals, tmp_path)
    assert len(manifests(root / "archive")) == 2


def _flip_a_bit(data, k):
    if k == 3:  # a block well inside the frame
        data = bytearray(data)
        data[len(data) // 2] ^= 0x01
    return bytes(data)


def _lose_a_write(data, k):
    return b"" if k == 3 else data


def _stop_half_way(data, k):  # what is there is a whole frame's beginning: only the length tells
    return b"" if k >= 3 else data


@pytest.mark.parametrize("damage", [_flip_a_bit, _lose_a_write, _stop_half_way])
def test_an_archive_that_does_not_hold_what_was_compressed_is_refused_and_nothing_is_deleted(tmp_path, monkeypatch,
                                                                                           damage):
    """The read-back of a fresh archive is the whole zstd frame as it lands in the file, its content checksum
    and its length: a bit flipped in a stored (incompressible) block, a write lost, a file cut short are caught
    before any source is touched."""
    from sweepd.storage import durable

    base = tmp_path / "images"
    (base / "job_z" / "1410MHz").mkdir(parents=True)
    originals = {}
    for i in range(6):
        data = os.urandom(400_000)  # incompressible: zstd stores it raw, so a flipped bit breaks no structure
        (base / "job_z" / "1410MHz" / f"i{i}.png").write_bytes(data)
        originals[f"job_z/1410MHz/i{i}.png"] = data
    real = durable.Durable.write
    calls = []

    def hurt(self, data):
        calls.append(len(data))
        bad = damage(bytes(data), len(calls))
        if bad:
            real(self, bad)
        return len(data)  # the compressor is told all went well

    monkeypatch.setattr(durable.Durable, "write", hurt)
    files = sorted(f"1410MHz/i{i}.png" for i in range(6))
    with pytest.raises(archive.ArchiveError, match="cannot be read back|reads back as"):
        archive.archive(base, "job_z", files, tmp_path / "arch", threads=0)
    assert len(calls) > 4
    assert not list((tmp_path / "arch").iterdir())  # the partial is gone, no archive, no manifest
    assert {f: (base / f).read_bytes() for f in originals} == originals
    monkeypatch.setattr(durable.Durable, "write", real)
    done = archive.archive(base, "job_z", files, tmp_path / "arch")  # undamaged, the same action goes through
    assert [m.sha256 for m in archive.verify(done.path, done.members)] == [m.sha256 for m in done.members]


def test_restore_round_trip_through_the_cli(tmp_path):
    root, policy, originals = root_with_jobs(tmp_path)
    assert sweepd("storage", "apply", "--policy", policy, "--root", root).returncode == 0
    listing = json.loads(sweepd("archive", "list", "--root", root, "--json").stdout)
    assert sorted(m["unit"] for m in listing) == ["job_a", "job_b"]
    r = sweepd("archive", "restore", "a", "--root", root)
    assert r.returncode == 0 and "restored 24 file(s) of job_a" in r.stdout
    assert f"touch {root / 'images/job_a/.keep'}" in r.stdout  # how to keep it from being archived again
    assert tree_hashes(root / "images") == {f: h for f, h in originals.items() if f.startswith("job_a/")}
    r = sweepd("archive", "restore", "nope", "--root", root)
    assert r.returncode == 2 and "no archive of job_nope" in r.stderr


def test_restore_refuses_a_file_that_differs_unless_forced(tmp_path):
    root, policy, originals = root_with_jobs(tmp_path)
    sweepd("storage", "apply", "--policy", policy, "--root", root)
    victim = root / "images/job_a/945MHz/945MHz_t1_i000_s42.png"
    victim.parent.mkdir(parents=True)
    victim.write_bytes(b"changed")
    r = sweepd("archive", "restore", "job_a", "--root", root)
    assert r.returncode == 1 and "exists with other content" in r.stderr
    assert sweepd("archive", "restore", "job_a", "--root", root, "--force").returncode == 0
    assert tree_hashes(root / "images/job_a")["945MHz/945MHz_t1_i000_s42.png"] == originals["job_a/945MHz/945MHz_t1_i000_s42.png"]


def evil_archive(path, member: tarfile.TarInfo, data=b"evil"):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        if member.isfile():
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
        else:
            tar.addfile(member)
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))
    return path


@pytest.mark.parametrize("name, kind, link, needle", [
    ("/etc/evil", tarfile.REGTYPE, "", "absolute"),
    ("job_x/../../evil", tarfile.REGTYPE, "", "climbing"),
    ("job_x/link", tarfile.SYMTYPE, "/etc/passwd", "leaves the target"),
    ("job_x/link", tarfile.SYMTYPE, "../../../outside", "leaves the target"),
    ("job_x/hard", tarfile.LNKTYPE, "/etc/passwd", "refusing link member"),
])
def test_restore_refuses_members_that_leave_the_target(tmp_path, name, kind, link, needle):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    path = evil_archive(tmp_path / "evil.tar.zst", info)
    with pytest.raises(archive.ArchiveError, match=needle):
        restore(path, tmp_path / "target")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()


ENOSPC_SCRIPT = textwrap.dedent("""
    import json, os, subprocess, sys
    from pathlib import Path
    from sweepd.storage import archive
    unit, arch, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    arch.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(arch)], check=True)
    if mode == "mid_write":
        archive._room = lambda d, need: None  # let the write start: the kernel's ENOSPC must be handled
    files = sorted(str(p.relative_to(unit)) for p in unit.rglob("*.png"))
    try:
        archive.archive(unit.parent, unit.name, files, arch)
        print(json.dumps({"ok": True}))
    except archive.ArchiveError as e:
        print(json.dumps({"ok": False, "error": str(e), "left": os.listdir(arch)}))
""")


@pytest.mark.parametrize("mode", ["precheck", "mid_write"])
def test_full_archive_filesystem_fails_the_action_and_keeps_the_sources(tmp_path, mode):
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 and not unshare:
        pytest.skip("needs root or unshare to mount a small tmpfs: CI runs as root")
    originals = make_job(tmp_path / "images", "a", size=20_000, incompressible=True)  # like real PNGs
    cmd = [sys.executable, "-c", ENOSPC_SCRIPT, str(tmp_path / "images/job_a"), str(tmp_path / "archive"), mode]
    if os.geteuid() != 0:
        cmd = [unshare, "-rm", *cmd]
    else:
        cmd = [unshare, "-m", *cmd] if unshare else cmd  # a private mount namespace: nothing leaks
    r = subprocess.run(cmd, capture_output=True, text=True, env=sweepd_env(), timeout=60)
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["ok"] is False
    assert ("has" in res["error"] and "bytes free" in res["error"]) if mode == "precheck" else "full" in res["error"]
    assert "sources left untouched" in res["error"] and res["left"] == []
    assert tree_hashes(tmp_path / "images") == originals


def test_clean_flags_only_remove_what_the_limits_select(tmp_path):
    root = tmp_path / "root"
    old = make_job(root / "images", "old", age_days=10)
    new = make_job(root / "images", "new", age_days=1)
    r = sweepd("storage", "clean", "--root", root)
    assert r.returncode == 2 and "nothing to do" in r.stderr
    r = sweepd("storage", "clean", "--older-than", "5", "--dry-run", "--root", root)
    assert r.returncode == 0 and "would run: 1" in r.stdout and "failed" not in r.stdout
    assert tree_hashes(root / "images") == old | new
    r = sweepd("storage", "clean", "--older-than", "5", "--archive", "--root", root)
    assert r.returncode == 0, r.stderr
    assert tree_hashes(root / "images") == new
    assert [m.unit for m in manifests(root / "archive")] == ["job_old"]
    r = sweepd("storage", "clean", "--job-id", "new", "--keep-samples", "1", "--root", root)
    assert r.returncode == 0
    left = tree_hashes(root / "images")
    assert len(left) == 4 and all(f.endswith("_t1_i000_s42.png") for f in left)  # one per clock, deleted as asked


def test_plan_json_then_apply_exactly_that_plan(tmp_path):
    root, policy, originals = root_with_jobs(tmp_path)
    r = sweepd("storage", "plan", "--policy", policy, "--root", root, "--json")
    plan = json.loads(r.stdout)
    assert [a["unit"] for a in plan["actions"]] == ["job_a", "job_b"]
    plan["actions"] = plan["actions"][:1]  # apply only the first action of the saved plan
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    r = sweepd("storage", "apply", "--plan", tmp_path / "plan.json", "--policy", policy, "--root", root)
    assert r.returncode == 0, r.stderr
    assert {f.split("/")[0] for f in tree_hashes(root / "images")} == {"job_b"}
    audit = [json.loads(line) for line in (root / "state/audit.jsonl").read_text().splitlines()]
    assert [a["event"] for a in audit] == ["storage_archive_then_delete"] and audit[0]["unit"] == "job_a"


def test_report_shows_usage_against_caps(tmp_path):
    root = tmp_path / "root"
    make_job(root / "images", "a", age_days=3)
    policy = write_policy(tmp_path / "p.toml", '[[rules]]\nname = "cap"\nmax_bytes = "10MiB"\n')
    r = sweepd("storage", "report", "--policy", policy, "--root", root, "--json")
    [row] = json.loads(r.stdout)
    assert row["files"] == 24 and row["max_bytes"] == 10 * 2**20 and row["jobs"][0]["unit"] == "job_a"
    assert "max 10.0 MiB" in sweepd("storage", "report", "--policy", policy, "--root", root).stdout


def test_shipped_research_policy_brings_a_root_under_its_cap(tmp_path):
    """policies/research.toml as shipped, with only its 200 GiB cap scaled down to this test's size."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "policies/research.toml").read_text()
    assert 'max_bytes = "200GiB"' in text
    policy = write_policy(tmp_path / "research.toml", text.replace('max_bytes = "200GiB"', 'max_bytes = "200KiB"', 1))
    root = tmp_path / "root"
    originals = {}
    for j, age in [("a", 6), ("b", 5), ("c", 4), ("d", 3)]:
        originals.update(make_job(root / "images", j, age_days=age, size=4000))
    used = sum((root / "images" / f).stat().st_size for f in originals)
    assert used > 200 * 1024
    plan = sweepd("storage", "plan", "--policy", policy, "--root", root, "--json")
    actions = json.loads(plan.stdout)["actions"]
    assert [a["unit"] for a in actions][:2] == ["job_a", "job_b"]
    assert all("over its cap" in a["reason"] and a["rule"] == "images-quota" for a in actions)
    assert sweepd("storage", "apply", "--policy", policy, "--root", root).returncode == 0
    left = tree_hashes(root / "images")
    assert sum((root / "images" / f).stat().st_size for f in left) <= 200 * 1024
    nothing_lost(root, originals, tmp_path)


def test_the_pieces_made_anew_stay_under_the_daemons_mmap_threshold(tmp_path, monkeypatch):
    """The daemon's allocator maps every block of 256 KiB or more on its own (procs.steady_malloc): zstd's output
    pieces, a new bytes object each, must stay under it, and the read-back reads into the same few buffers, or each
    piece costs a mapping and its page faults (1 MiB pieces: 900,000 faults and 1.3 s more for 2 GB). The archive
    still holds everything."""
    from sweepd import procs
    from sweepd.storage import durable, readback

    written, read = [], []
    real_write, real_read = durable.Durable.write, readback.ReadBack.read
    monkeypatch.setattr(durable.Durable, "write", lambda self, data: (written.append(len(data)),
                                                                       real_write(self, data))[1])
    monkeypatch.setattr(readback.ReadBack, "read", lambda self, n=-1: (lambda d: (read.append((len(d), id(d.obj))),
                                                                                  d)[1])(real_read(self, n)))
    base = tmp_path / "images"
    (base / "job_p" / "1410MHz").mkdir(parents=True)
    files = []
    for i in range(3):
        (base / "job_p" / "1410MHz" / f"i{i}.png").write_bytes(os.urandom(3 << 20))  # stored raw: as big as it is
        files.append(f"1410MHz/i{i}.png")
    done = archive.archive(base, "job_p", files, tmp_path / "arch")
    assert sum(written) == sum(n for n, _ in read) == done.path.stat().st_size > 9 << 20
    assert max(written) < procs.LONG_RUNNING_MMAP_BYTES
    assert len(read) > 9 and len({buf for _, buf in read}) == readback.ReadBack.RING
    assert [m.sha256 for m in archive.verify(done.path, done.members)] == [m.sha256 for m in done.members]
