"""A full scan shared with helper processes finds exactly what one process walking every folder finds: the same
files, sizes and times, .keep flags, links skipped and clock folders, under every kind of rule; a helper that fails,
answers garbage or leaves folders out costs nothing but time; and no helper outlives its scan."""

import logging
import marshal
import os
import stat
import sys
from pathlib import Path

import pytest

from sweepd.storage import scanpart
from sweepd.storage.index import PathIndex
from storage_helpers import make_job


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Twelve job folders of different shapes: clock folders, a nested folder, loose files, .keep, links."""
    images = tmp_path_factory.mktemp("scan") / "images"
    for j in range(12):
        make_job(images, f"{j:03d}", clocks=(1410, 945, 510)[: 1 + j % 3], per=1 + j % 4, size=100 + j,
                 age_days=j)
    (images / "job_003" / "1410MHz" / "deeper" / "still").mkdir(parents=True)
    (images / "job_003" / "1410MHz" / "deeper" / "still" / "x.png").write_bytes(b"x" * 7)
    (images / "job_004" / "notes.txt").write_text("top-level file of a job")
    (images / "job_005" / ".keep").touch()
    (images / "job_006" / "1410MHz" / "link.png").symlink_to(images / "job_000" / "1410MHz" / "1410MHz_t1_i000_s42.png")
    (images / "job_007" / "lnk").symlink_to(images / "job_001")
    (images / "loose.png").write_bytes(b"no job's")
    (images / "job_link").symlink_to(images / "job_002")
    (images / "job_empty").mkdir()
    return images


def seen(idx: PathIndex) -> dict:
    return {name: (u.path, u.files, u.keep_flag, u.links_skipped, u.dirs) for name, u in idx.units.items()}


RULES = {
    "every file": {},
    "globs": {"include": ["*.png"], "exclude": ["*_t2_*"]},
    "within a clock folder": {"within": "job_003/1410MHz"},
}


@pytest.mark.parametrize("helpers", [1, 2])
@pytest.mark.parametrize("rule", list(RULES))
def test_a_shared_scan_finds_what_one_process_finds(images, helpers, rule):
    before = children()
    alone = PathIndex(images, **RULES[rule]).scan(helpers=0)
    shared = PathIndex(images, **RULES[rule]).scan(helpers=helpers)
    assert seen(shared) == seen(alone)
    assert list(shared.units) == list(alone.units)  # in the order the folder lists them, too
    assert alone.nfiles > 0 and (rule != "every file" or alone.units["job_006"].links_skipped == 1)
    assert children() <= before


def children() -> set[int]:
    """This process's child processes (a helper left running would be one; the session's background daemons are
    others, hence the comparisons with what was there before)."""
    out = set()
    for task in Path("/proc/self/task").iterdir():
        out |= {int(p) for p in (task / "children").read_text().split()}
    return out


def fake_helper(tmp_path: Path, body: str) -> str:
    """An executable standing in for Python: whatever `-m module` it is given, it does `body` (a shell line)."""
    exe = tmp_path / "python"
    exe.write_text(f"#!/bin/sh\ncat >/dev/null\n{body}\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


def printf(value) -> str:
    """A shell line printing `value` as marshal writes it (octal escapes: POSIX printf has no \\x)."""
    return "printf '" + "".join(f"\\{b:03o}" for b in marshal.dumps(value)) + "'"


@pytest.mark.parametrize("body, why", [
    ("echo 'Traceback: it broke' >&2; exit 3", "exit 3: Traceback: it broke"),
    ("printf 'not marshal'", "bad marshal data"),
    (printf([]), ""),  # a well-formed answer for no folder at all: nothing to warn about, the folders walked here
    (printf([("job_000", 1, 2)]), "answered with something else"),
], ids=["crashes", "answers garbage", "leaves every folder out", "answers with something else"])
def test_a_helper_that_fails_has_its_folders_walked_by_the_scan(images, tmp_path, monkeypatch, caplog, body, why):
    alone, before = PathIndex(images).scan(helpers=0), children()
    monkeypatch.setattr(sys, "executable", fake_helper(tmp_path, body))
    with caplog.at_level(logging.WARNING, logger="sweepd.storage.scanpart"):
        shared = PathIndex(images).scan(helpers=2)
    assert seen(shared) == seen(alone)
    if why:
        assert why in caplog.text and "walked by the scanning process" in caplog.text
    else:
        assert not caplog.text
    assert children() <= before


def test_a_helper_still_running_when_the_scan_fails_is_killed(images, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", fake_helper(tmp_path, "exec sleep 60"))
    idx, before = PathIndex(images), children()
    real = idx.unit
    calls = []

    def walk_then_fail(name):
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the daemon told to stop mid-scan
        return real(name)

    idx.unit = walk_then_fail
    with pytest.raises(KeyboardInterrupt):
        idx.scan(helpers=1)
    assert children() <= before


@pytest.mark.parametrize("units, cores, want", [(63, 16, 0), (64, 16, 1), (200, 16, 3), (400, 2, 1), (400, 1, 0),
                                                (10_000, 64, scanpart.MAX_HELPERS)])
def test_helpers_only_for_many_folders_and_free_cores(monkeypatch, units, cores, want):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert scanpart.helpers_for(units) == want


@pytest.mark.parametrize("helpers", [1, 2, 3])
def test_every_folder_is_dealt_once_and_the_scanning_process_keeps_the_largest_share(helpers):
    names = [f"job_{i:04d}" for i in range(401)]
    shares = scanpart.deal(names, helpers)
    assert sorted(n for s in shares for n in s) == names
    assert len(shares) == helpers + 1 and len(shares[0]) == max(map(len, shares))
