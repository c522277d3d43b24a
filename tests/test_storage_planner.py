"""The planner and apply: caps hold, oldest jobs go first, protected jobs and everything outside
the roots stay untouched, later rules see earlier actions. Hypothesis drives real file trees."""

import os
import shutil
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from sweepd.paths import Layout
from sweepd.request import SweepRequest
from sweepd.queue import Queue
from sweepd.storage.manifest import manifests
from sweepd.storage.restore import restore
from sweepd.storage.apply import apply
from sweepd.storage.context import IndexCache, make_plan
from sweepd.storage.planner import kept_by
from sweepd.storage.policy import Policy
from storage_helpers import make_job, tree_hashes


def pol(*rules):
    return [(Path("test.toml"), Policy.model_validate({"rules": list(rules)}))]


def setup_root(tmp_path):
    layout = Layout.resolve(tmp_path / "root")
    layout.images.mkdir(parents=True)
    return layout


def test_cap_evicts_oldest_jobs_first_and_archives_them(tmp_path):
    layout = setup_root(tmp_path)
    for j, age in [("new", 1), ("old", 9), ("mid", 5)]:
        make_job(layout.images, j, age_days=age)
    one_job = sum(os.path.getsize(p) for p in (layout.images / "job_new").rglob("*.png"))
    plan = make_plan(layout, pol({"name": "cap", "max_bytes": one_job * 2}))
    assert [a.unit for a in plan.actions] == ["job_old"]
    assert "over its cap" in plan.actions[0].reason and "oldest job first" in plan.actions[0].reason
    out = apply(plan, layout)
    assert not out.failed and not (layout.images / "job_old").exists()
    [m] = manifests(layout.root / "archive")
    assert m.unit == "job_old" and len(m.members) == 24


def test_protected_jobs_are_never_touched(tmp_path):
    layout = setup_root(tmp_path)
    for j, age in [("q", 9), ("k", 8), ("free", 1)]:
        make_job(layout.images, j, age_days=age)
    (layout.images / "job_k" / ".keep").touch()
    q = Queue(layout.state / "queue.sqlite")
    q.add("aaaaaaaaaaaa", "q", SweepRequest())
    q.close()
    plan = make_plan(layout, pol({"name": "cap", "max_bytes": 1000}))
    assert [a.unit for a in plan.actions] == ["job_free"]
    assert any("job_q is queued or running" in n for n in plan.notes)
    assert any("job_k holds a .keep file" in n for n in plan.notes)
    assert any("still over" in n for n in plan.notes)


def test_age_and_per_job_keep(tmp_path):
    layout = setup_root(tmp_path)
    make_job(layout.images, "old", age_days=40)
    make_job(layout.images, "young", clocks=tuple(range(1410, 500, -15)), per=1, trials=1, age_days=1)
    plan = make_plan(layout, pol({"name": "age", "max_age": "30d"},
                                 {"name": "trim", "max_age": "365d", "per_job": {"keep": "representative"}}))
    by = {(a.rule, a.unit): a for a in plan.actions}
    assert by[("age", "job_old")].whole and "40.0 days old" in by[("age", "job_old")].reason
    trim = by[("trim", "job_young")]
    kept = {f.split("/")[0] for f in tree_hashes(layout.images / "job_young")} - {f.split("/")[0] for f in trim.files}
    assert kept == {"1410MHz", "1260MHz", "1110MHz", "960MHz", "810MHz", "660MHz", "510MHz"}
    assert ("trim", "job_old") not in by  # the age rule already took it: later rules see earlier actions


def test_keep_first_trial_and_samples():
    files = [f"945MHz/945MHz_t{t}_i{i:03d}_s{42 + i}.png" for t in (1, 2, 3) for i in range(4)]
    assert {f for f in kept_by("first_trial", files)} == {f for f in files if "_t1_" in f}
    assert len(kept_by(2, files)) == 2 and kept_by("none", files) == set()


def test_min_free_counts_planned_frees(tmp_path):
    from sweepd.storage.planner import Planner

    layout = setup_root(tmp_path)
    for j, age in [("a", 3), ("b", 2), ("c", 1)]:
        make_job(layout.images, j, age_days=age)
    job = sum(os.path.getsize(p) for p in (layout.images / "job_a").rglob("*.png"))
    cache = IndexCache()
    fake_fs = lambda path: (1_000_000, 10_000_000)  # free, size: a full-ish filesystem
    rules = [(r, "t") for r in Policy.model_validate({"rules": [{"name": "free", "min_free": 1_000_000 + job + 1}]}).rules]
    plan = Planner(layout, set(), cache.get, free_bytes=fake_fs).plan(rules)
    assert [a.unit for a in plan.actions] == ["job_a", "job_b"]


def test_symlinks_are_never_followed(tmp_path):
    layout = setup_root(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.png").write_bytes(b"x" * 100_000)
    make_job(layout.images, "a", age_days=9)
    os.symlink(outside / "precious.png", layout.images / "job_a" / "945MHz" / "link.png")
    os.symlink(outside, layout.images / "job_linkdir")
    plan = make_plan(layout, pol({"name": "age", "max_age": "1d"}))
    assert [a.unit for a in plan.actions] == ["job_a"]
    apply(plan, layout)
    assert (outside / "precious.png").read_bytes() == b"x" * 100_000
    assert (layout.images / "job_linkdir").is_symlink()


jobs = st.lists(st.tuples(st.integers(1, 30), st.integers(1, 6), st.booleans()), min_size=1, max_size=6)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(jobs=jobs, cap_share=st.floats(0.0, 1.0), use_files=st.booleans())
def test_caps_hold_after_apply_and_nothing_else_is_touched(tmp_path, jobs, cap_share, use_files):
    base = tmp_path / f"h{time.monotonic_ns()}"
    layout = setup_root(base)
    sentinel = base / "elsewhere"
    sentinel.mkdir()
    (sentinel / "keep-me.png").write_bytes(b"s" * 5000)
    protected = set()
    for n, (age, per, prot) in enumerate(jobs):
        make_job(layout.images, f"j{n}", clocks=(1410, 945), trials=1, per=per, size=1000 + 100 * n, age_days=age)
        if prot:
            (layout.images / f"job_j{n}" / ".keep").touch()
            protected.add(f"job_j{n}")
    before = tree_hashes(layout.images)
    total_b = sum(os.path.getsize(layout.images / f) for f in before)
    prot_b = sum(os.path.getsize(layout.images / f) for f in before if f.split("/")[0] in protected)
    cap = max(1, int(total_b * cap_share))
    rule = {"name": "cap", "max_files": max(1, int(len(before) * cap_share))} if use_files else \
        {"name": "cap", "max_bytes": cap}
    out = apply(make_plan(layout, pol(rule)), layout)
    assert not out.failed
    after = tree_hashes(layout.images)
    # protected jobs untouched, byte for byte
    assert {f: h for f, h in before.items() if f.split("/")[0] in protected} == \
        {f: h for f, h in after.items() if f.split("/")[0] in protected}
    # the cap holds, unless only protected jobs are left
    if use_files:
        assert len(after) <= rule["max_files"] or set(f.split("/")[0] for f in after) <= protected
    else:
        used = sum(os.path.getsize(layout.images / f) for f in after)
        assert used <= cap or used == prot_b
    # nothing lost: every removed file is in a verified archive, byte for byte
    restored = base / "restored"
    for m in manifests(layout.root / "archive"):
        restore(layout.root / "archive" / m.archive, restored)
    got = tree_hashes(restored) if restored.exists() else {}
    assert {f: h for f, h in before.items() if f not in after} == got
    assert (sentinel / "keep-me.png").read_bytes() == b"s" * 5000
    shutil.rmtree(base)


def test_a_file_dated_in_the_future_does_not_keep_its_job_young(tmp_path):
    """One file dated in 2100 (a clock ahead, or a date set by hand) left the whole job outside max_age for ever."""
    from storage_helpers import make_job
    from sweepd.storage.context import make_plan
    from sweepd.storage.policy import Policy

    root = tmp_path / "root"
    layout = Layout.resolve(root)
    make_job(layout.images, "old", age_days=60)
    make_job(layout.images, "young", age_days=1)
    future = next((layout.images / "job_old").rglob("*.png"))
    os.utime(future, (4102444800, 4102444800))  # 2100-01-01
    only_future = make_job(layout.images, "ahead", age_days=-3650)  # every file ten years ahead: written now
    pol = Policy.model_validate({"rules": [{"name": "age", "max_age": "30d"}]})
    plan = make_plan(layout, [(tmp_path / "p.toml", pol)], protected=set())
    assert [a.unit for a in plan.actions] == ["job_old"] and plan.actions[0].whole
    assert "job_old: 1 file(s) dated after now" in " ".join(plan.notes)
    assert f"job_ahead: {len(only_future)} file(s) dated after now" in " ".join(plan.notes)
