"""Policy files: every problem named with file, field path and value; unsafe roots refused."""

import pytest

from conftest import sweepd
from sweepd.configfile import ConfigError
from sweepd.paths import Layout
from sweepd.storage import policy
from sweepd.storage.planner import PolicyError, resolve_root


def check(tmp_path, body):
    f = tmp_path / "p.toml"
    f.write_text(body)
    return sweepd("policy", "check", f, "--root", tmp_path / "root")


def test_shipped_policies_are_valid(tmp_path):
    from pathlib import Path

    shipped = sorted((Path(__file__).parent.parent / "policies").glob("*.toml"))
    assert {p.name for p in shipped} >= {"research.toml", "archive-all.toml"}
    r = sweepd("policy", "check", *shipped, "--root", tmp_path)
    assert r.returncode == 0 and r.stdout.count(": ok") == len(shipped)


@pytest.mark.parametrize("body, needle", [
    ('[[rules]]\nname = "a"\nmax_bytes = "lots"\n', "rules[0].max_bytes: 'lots': a size is a number and a unit"),
    ('[[rules]]\nname = "a"\nmax_age = "3 fortnights"\n', "rules[0].max_age: '3 fortnights': a duration"),
    ('[[rules]]\nname = "a"\nmax_age = "30d"\naction = "delete"\n', "confirm_delete = true"),
    ('[[rules]]\nname = "a"\n', "the rule limits nothing"),
    ('[[rules]]\nname = "a"\nmax_age = "1d"\nschedule = { cron = "61 * * * *" }\n', "rules[0].schedule.cron"),
    ('[[rules]]\nname = "a"\nmax_age = "1d"\nschedule = { every = "1h", cron = "0 3 * * *" }\n', "exactly one"),
    ('[[rules]]\nname = "a"\nmax_age = "1d"\nmax_byte = 3\n', "rules[0].max_byte: 3: Extra inputs"),
    ('[[rules]]\nname = "a"\nmax_age = "1d"\n[rules.per_job]\nkeep = "some"\n', "rules[0].per_job.keep: 'some'"),
    ('[[rules]]\nname = "a"\nmax_age = "1d"\n[[rules]]\nname = "a"\nmax_age = "2d"\n', "repeated: ['a']"),
    ('[[rules]]\nname = "a"\nmin_free = "120%"\n', "rules[0].min_free"),
])
def test_problems_name_file_field_and_value(tmp_path, body, needle):
    r = check(tmp_path, body)
    assert r.returncode == 2 and needle in r.stderr and str(tmp_path / "p.toml") in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_units():
    p = policy.Policy.model_validate({"rules": [{"name": "a", "max_bytes": "20GiB", "max_age": "30d",
                                                 "min_free": "10%"}]})
    r = p.rules[0]
    assert (r.max_bytes, r.max_age, r.min_free) == (20 * 2**30, 30 * 86400, 0.10)


@pytest.mark.parametrize("raw, needle", [
    ("/", "the filesystem root"),
    ("~", "home directory itself"),
    ("archive", "overlaps the archive directory"),
    ("results", "overlaps results/"),
    (".", "overlaps"),
    ("state", "overlaps sweepd's state/"),
])
def test_unsafe_roots_are_refused(tmp_path, raw, needle):
    layout = Layout.resolve(tmp_path / "root")
    rule = policy.Rule(name="r", paths=[raw], max_age="1d")
    with pytest.raises(PolicyError, match=needle):
        resolve_root(layout, rule, raw)


def test_results_only_with_allow_results(tmp_path):
    layout = Layout.resolve(tmp_path / "root")
    rule = policy.Rule(name="r", paths=["results"], max_age="1d", allow_results=True)
    assert resolve_root(layout, rule, "results").path == (tmp_path / "root/results").resolve()


def test_load_reports_bad_toml(tmp_path):
    (tmp_path / "p.toml").write_text("[[rules]\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        policy.load(tmp_path / "p.toml")


def test_a_rule_name_used_in_two_files_is_refused(tmp_path):
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text('[[rules]]\nname = "age"\nmax_age = "30d"\n')
    b.write_text('[[rules]]\nname = "other"\nmax_age = "9d"\n[[rules]]\nname = "age"\nmax_age = "60d"\n')
    with pytest.raises(ConfigError, match=r"rules\[1\]\.name: 'age': already the name of a rule in .*a\.toml"):
        policy.load_all([a, b])
