"""Daemon settings: packaged defaults < user file < SWEEPD_* < --config, errors name the file."""

import tomllib

import pytest

from sweepd import settings
from sweepd.configfile import ConfigError


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for var in ("SWEEPD_GPUS", "SWEEPD_RECONCILE_INTERVAL_S", "SWEEPD_MAX_RESUMES", "SWEEPD_ROOT"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "config/sweepd").mkdir(parents=True)
    return tmp_path / "config/sweepd/sweepd.toml"


def test_packaged_file_documents_exactly_the_model_defaults(xdg):
    data = tomllib.loads(settings.packaged_defaults().read_text())
    defaults = {name: f.get_default(call_default_factory=True) for name, f in settings.Settings.model_fields.items()}
    assert settings.Settings.model_validate(data).model_dump() == defaults
    assert set(data) == set(defaults)
    assert settings.load().gpus == [0]


def test_precedence_user_then_env_then_config(xdg, tmp_path, monkeypatch):
    xdg.write_text("reconcile_interval_s = 7\nmax_resumes = 5\ngpus = [0, 1]\n")
    s = settings.load()
    assert (s.reconcile_interval_s, s.max_resumes, s.gpus) == (7, 5, [0, 1])
    monkeypatch.setenv("SWEEPD_RECONCILE_INTERVAL_S", "9")
    assert settings.load().reconcile_interval_s == 9
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("reconcile_interval_s = 11\n")
    s = settings.load(cfg)
    assert s.reconcile_interval_s == 11 and s.max_resumes == 5


@pytest.mark.parametrize("text, needle", [
    ("reconcile_interval_s = -1\n", "reconcile_interval_s: -1:"),
    ("gpus = [0, 0]\n", "more than once"),
    ("gpu = [0]\n", "gpu: [0]: Extra inputs"),
    ('on_interrupted = "retry"\n', "on_interrupted: 'retry':"),
    ("reconcile_interval_s = \n", "not valid TOML"),
])
def test_a_bad_user_file_is_named_with_field_and_value(xdg, text, needle):
    xdg.write_text(text)
    with pytest.raises(ConfigError) as e:
        settings.load()
    assert str(xdg) in str(e.value) and needle in str(e.value)


def test_bad_environment_value(xdg, monkeypatch):
    monkeypatch.setenv("SWEEPD_MAX_RESUMES", "lots")
    with pytest.raises(ConfigError, match="max_resumes"):
        settings.load()


def test_missing_config_file_is_an_error(xdg, tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        settings.load(tmp_path / "nope.toml")
