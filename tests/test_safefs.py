"""UnitDir (storage/safefs.py): the folders of a unit opened once and kept open while it is, never a link followed."""

from __future__ import annotations

import os

import pytest

from sweepd.storage import safefs
from sweepd.storage.safefs import Identity, UnitDir, UnsafePath


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def job(tmp_path, folders: int = 5, per: int = 4):
    base = tmp_path / "images"
    rels = []
    for f in range(folders):
        d = base / "job_a" / f"{1410 - 15 * f}MHz" / "deep"
        d.mkdir(parents=True)
        for i in range(per):
            (d / f"i{i}.png").write_bytes(f"{f}-{i}".encode())
            rels.append(f"{1410 - 15 * f}MHz/deep/i{i}.png")
    return base, rels


def test_each_folder_is_opened_once_per_unit_and_closed_with_it(tmp_path, monkeypatch):
    base, rels = job(tmp_path)
    opened: list[str] = []
    real = os.open
    monkeypatch.setattr(safefs.os, "open", lambda p, flags, *a, **k: (opened.append(str(p)), real(p, flags, *a, **k))[1])
    before = open_fds()
    with UnitDir(base, "job_a") as unit:
        for rel in rels:
            unit.lstat(rel)
            fh, st = unit.open(rel)
            with fh:
                assert fh.read() == unit.path.joinpath(rel).read_bytes()
            assert Identity.of(unit.lstat(rel)) == Identity.of(st)
    folders = [p for p in opened if not p.endswith(".png")]
    assert len(folders) == 2 + 2 * 5  # the base and the unit, then each clock folder and its "deep" once
    assert opened.count("deep") == 5 and len(opened) - len(folders) == len(rels)
    assert open_fds() == before


def test_beyond_keep_open_folders_are_closed_oldest_first_and_all_still_works(tmp_path, monkeypatch):
    monkeypatch.setattr(UnitDir, "KEEP_OPEN", 3)
    base, rels = job(tmp_path, folders=6, per=2)
    before = open_fds()
    with UnitDir(base, "job_a") as unit:
        for rel in rels + rels[::-1]:
            fh, _ = unit.open(rel)
            with fh:
                assert fh.read() == unit.path.joinpath(rel).read_bytes()
            assert len(open_fds() - before) <= 1 + 3  # the unit and at most KEEP_OPEN folders
        for rel in rels:
            assert unit.unlink_if(rel, Identity.of(unit.lstat(rel)))
        unit.prune(rels)
    assert open_fds() == before and not (base / "job_a").exists()


def test_a_folder_swapped_for_a_link_is_never_followed_opened_before_or_not(tmp_path):
    base, rels = job(tmp_path, folders=2, per=1)
    outside = tmp_path / "outside" / "deep"
    outside.mkdir(parents=True)
    (outside / "i0.png").write_bytes(b"not this job's")
    first, second = rels  # 1410MHz/deep/i0.png, 1395MHz/deep/i0.png
    with UnitDir(base, "job_a") as unit:
        fh, _ = unit.open(first)
        fh.close()
        for rel in (first, second):  # the first's folder was opened before the swap, the second's was not
            clock = base / "job_a" / rel.split("/")[0]
            clock.rename(clock.with_name(clock.name + ".moved"))
            clock.symlink_to(outside.parent)
        fh, _ = unit.open(first)  # the folder as it was opened: the job's own file, moved with it
        with fh:
            assert fh.read() == b"0-0"
        with pytest.raises(UnsafePath, match="link"):
            unit.open(second)
        with pytest.raises(UnsafePath, match="link"):
            unit.unlink_if(second, Identity.of(os.stat(outside / "i0.png")))
    assert (outside / "i0.png").read_bytes() == b"not this job's"


def test_prune_forgets_the_folders_it_removes(tmp_path):
    base, rels = job(tmp_path, folders=2, per=1)
    first = rels[0]  # 1410MHz/deep/i0.png; 1395MHz keeps the unit from being empty
    with UnitDir(base, "job_a") as unit:
        assert unit.unlink_if(first, Identity.of(unit.lstat(first)))
        before = len(open_fds())
        unit.prune([first])
        assert len(open_fds()) == before - 2  # "1410MHz" and "1410MHz/deep" were open; both removed and closed
        (base / "job_a" / "1410MHz" / "deep").mkdir(parents=True)  # made again: the new folder, not the old fd
        (base / "job_a" / "1410MHz" / "deep" / "new.png").write_bytes(b"new")
        assert unit.lstat("1410MHz/deep/new.png").st_size == 3
