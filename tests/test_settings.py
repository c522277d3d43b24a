"""Daemon settings: packaged defaults < user file < SWEEPD_* < --config, errors name the file."""

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import sweepd, sweepd_env
from sweepd import settings
from sweepd.configfile import ConfigError


@pytest.fixture
def xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    for var in ("SWEEPD_GPUS", "SWEEPD_RECONCILE_INTERVAL_S", "SWEEPD_MAX_RESUMES", "SWEEPD_ROOT", "SWEEPD_IMAGES_DIR",
                "SWEEPD_RESULTS_DIR"):
        monkeypatch.delenv(var, raising=False)
    (tmp_path / "config/sweepd").mkdir(parents=True)
    return tmp_path / "config/sweepd/sweepd.toml"


def test_packaged_file_documents_exactly_the_model_defaults(xdg):
    data = tomllib.loads(settings.packaged_defaults().read_text())
    defaults = settings.Settings.model_construct().model_dump()
    assert settings.Settings.model_validate(data).model_dump() == defaults
    assert set(data) == set(defaults)
    assert set(data["slurm"]) == set(defaults["slurm"])
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


def test_a_partial_slurm_section_in_the_user_file_keeps_the_other_defaults(xdg, monkeypatch):
    xdg.write_text('executor = "slurm"\n[slurm]\npartition = "gpu-a100"\nsbatch = ["--qos=short"]\n')
    monkeypatch.setenv("SWEEPD_SLURM__MAX_RETRIES", "5")
    s = settings.load()
    assert s.executor == "slurm"
    assert (s.slurm.partition, s.slurm.sbatch, s.slurm.max_retries, s.slurm.gres) == \
        ("gpu-a100", ["--qos=short"], 5, "gpu:1")


def test_slurm_settings_errors_name_the_file_field_and_value(xdg):
    xdg.write_text('[slurm]\nsbatch = ["--qos=x\\necho pwned"]\npartition = "a b"\n')
    with pytest.raises(ConfigError) as e:
        settings.load()
    text = str(e.value)
    assert str(xdg) in text and "slurm.sbatch" in text and "line breaks" in text
    assert "slurm.partition" in text and "'a b'" in text


def test_the_layout_takes_root_images_and_results_from_the_settings_file(xdg, tmp_path, monkeypatch):
    from sweepd.configfile import ConfigError
    from sweepd.paths import Layout
    from sweepd.settings import layout

    xdg.write_text(f'root = "{tmp_path}/r"\nimages_dir = "{tmp_path}/scratch"\nresults_dir = "{tmp_path}/proj"\n')
    assert layout() == Layout(tmp_path / "r", tmp_path / "scratch", tmp_path / "proj")
    monkeypatch.setenv("SWEEPD_RESULTS_DIR", str(tmp_path / "env"))
    assert layout(images=tmp_path / "flag").images == tmp_path / "flag"   # the flag wins
    assert layout().results == tmp_path / "env"                           # then the environment
    assert Layout.resolve(tmp_path / "x").images == tmp_path / "x/images"  # paths alone reads no settings
    xdg.write_text("gpus = [-1]\n")  # a broken file is said, never silently ignored
    with pytest.raises(ConfigError, match="gpus"):
        layout(root=tmp_path / "x")
    r = sweepd("list", "--root", tmp_path / "x", env=sweepd_env(XDG_CONFIG_HOME=str(xdg.parent.parent)))
    assert r.returncode == 2 and "gpus" in r.stderr and str(xdg) in r.stderr and "Traceback" not in r.stderr

def test_the_users_own_settings_and_policies_cannot_reach_the_suite():
    """conftest puts HOME and every XDG folder of the session in a temporary folder: a developer's
    ~/.config/sweepd/settings.toml or policies/ (the README suggests copying policies there) is never read."""
    import pwd

    from sweepd import paths

    real_home = Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()
    home = Path(os.environ["HOME"]).resolve()
    assert home != real_home and home.name.startswith("sweepd-test-home-")
    for kind in ("config", "data", "cache"):
        assert paths.xdg(kind).resolve().is_relative_to(home), kind
    # a process started by the suite sees the same (what sweepd's settings and policies are read from)
    out = subprocess.run([sys.executable, "-c", "from sweepd import paths; print(paths.xdg('config'))"],
                         capture_output=True, text=True, env=sweepd_env(), check=True).stdout.strip()
    assert Path(out).resolve().is_relative_to(home) and not Path(out).resolve().is_relative_to(real_home / ".config")
