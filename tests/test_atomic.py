"""Atomic writes: a reader sees the old file or the new one, never half, and no temp file is left."""

import os

import pytest

from sweepd import atomic


def test_replace_keeps_old_content_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "trials.csv"
    atomic.write_csv(target, ["a", "b"], [{"a": 1, "b": 2.5}])
    before = target.read_text()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic.write_csv(target, ["a", "b"], [{"a": 9, "b": 9}])
    assert target.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["trials.csv"]


def test_csv_cells_and_round_trip(tmp_path):
    atomic.write_csv(tmp_path / "x.csv", ["n", "f", "flag", "empty"],
                     [{"n": 3, "f": 0.1234567891, "flag": True, "empty": None}])
    assert atomic.read_csv(tmp_path / "x.csv") == [{"n": "3", "f": "0.123457", "flag": "true", "empty": ""}]
    assert atomic.read_csv(tmp_path / "missing.csv") == []


def test_files_get_the_usual_permissions(tmp_path):
    atomic.write_json(tmp_path / "sweep.json", {"a": 1})
    assert (tmp_path / "sweep.json").stat().st_mode & 0o777 == 0o666 & ~_umask()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m
