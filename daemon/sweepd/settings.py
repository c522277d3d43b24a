"""Daemon settings (pydantic-settings): packaged etc/sweepd.toml < user file < SWEEPD_* < --config.

Each file is checked on its own first, so an error names the file that holds it.
"""

from __future__ import annotations

import contextvars
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from sweepd import configfile, paths
from sweepd.configfile import ConfigError
from sweepd.sbatchopts import SLURM_NAME, check_sbatch_options

_files: contextvars.ContextVar[tuple[Path, ...]] = contextvars.ContextVar("settings_files", default=())


class SlurmSettings(BaseModel):
    """How sweeps become SLURM jobs (``executor = "slurm"``). A request's own [slurm] values win."""
    model_config = ConfigDict(extra="forbid")

    partition: str = Field("", pattern=r"^$|" + SLURM_NAME)
    account: str = Field("", pattern=r"^$|" + SLURM_NAME)
    gres: str = Field("gpu:1", pattern=r"^[A-Za-z0-9_.:,-]{1,100}$")
    sbatch: list[str] = Field(default_factory=list)
    time_margin: float = Field(0.5, ge=0, le=10)
    time_extra_minutes: int = Field(5, ge=0, le=1440)
    time_min_minutes: int = Field(10, ge=1)
    time_max_minutes: int = Field(0, ge=0)
    max_retries: int = Field(3, ge=0, le=100)
    poll_interval_s: float = Field(10.0, gt=0, le=3600)
    python: str = ""
    node_state_dir: str = ""
    template: str = ""

    @field_validator("sbatch")
    @classmethod
    def _sbatch(cls, v: list[str]) -> list[str]:
        return check_sbatch_options(v)

    @field_validator("python", "node_state_dir", "template")
    @classmethod
    def _path(cls, v: str) -> str:
        if v and (not v.startswith("/") or any(ord(c) < 32 for c in v)):
            raise ValueError(f"{v!r}: give an absolute path (or leave it empty for the default)")
        return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWEEPD_", extra="forbid", validate_default=True,
                                      env_nested_delimiter="__")

    root: str = ""
    images_dir: str = ""
    results_dir: str = ""
    gpus: list[int] = Field(default_factory=lambda: [0])
    executor: Literal["local", "slurm"] = "local"
    slurm: SlurmSettings = SlurmSettings()

    @field_validator("gpus")
    @classmethod
    def _gpu_indices(cls, v: list[int]) -> list[int]:
        if any(g < 0 for g in v):
            raise ValueError(f"GPU indices are 0 or more; got {v}")
        if len(set(v)) != len(v):
            raise ValueError(f"a GPU appears more than once in {v}")
        return v
    reconcile_interval_s: float = Field(2.0, gt=0, le=3600)
    max_request_bytes: int = Field(1 << 20, gt=0)
    max_request_hours: float = Field(168.0, gt=0, allow_inf_nan=False)
    enforce_max_wait_s: float = Field(5.0, ge=0.5, le=3600, allow_inf_nan=False)
    spool_group: str = ""  # a group whose members may drop requests into spool/incoming/ ("": the owner only)
    spool_settle_s: float = Field(1.0, ge=0.1, le=60)
    on_interrupted: Literal["resume", "leave"] = "resume"
    max_resumes: int = Field(3, ge=0)
    stop_timeout_s: float = Field(240.0, gt=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        # earlier wins: init > --config > environment > user file > packaged defaults.
        # Outside load() (model_validate of one file's values) only the given values count.
        if not _files.get():
            return (init_settings,)
        etc, user, *config = _files.get()
        return (init_settings, *[TomlConfigSettingsSource(settings_cls, f) for f in config], env_settings,
                TomlConfigSettingsSource(settings_cls, user), TomlConfigSettingsSource(settings_cls, etc))


def packaged_defaults() -> Path:
    return Path(str(resources.files("sweepd.etc").joinpath("sweepd.toml")))


def user_file() -> Path:
    return paths.config_dir() / "sweepd.toml"


def load(config: Path | None = None) -> Settings:
    files = [packaged_defaults(), user_file()] + ([Path(config)] if config else [])
    for f in files:
        if f.exists() or f == config:
            data = configfile.read_data(f)
            try:
                Settings.model_validate(data)  # only this file's values (and defaults): errors name the file
            except ValidationError as e:
                raise ConfigError(str(f), configfile.problems_from(e)) from None
    token = _files.set(tuple(files))
    try:
        return Settings()
    except ValidationError as e:
        raise ConfigError("settings (SWEEPD_* environment)", configfile.problems_from(e)) from None
    finally:
        _files.reset(token)


def layout(root=None, images=None, results=None, s: Settings | None = None, config: Path | None = None):
    """The one place the root/images/results layout is resolved: flag, then SWEEPD_*, then the settings
    (`s`, else the files: a settings file that does not validate is a ConfigError), then the defaults."""
    from sweepd.paths import Layout

    if s is None and None in (root, images, results):
        s = load(config)
    conf = {"root": s.root, "images_dir": s.images_dir, "results_dir": s.results_dir} if s is not None else {}
    return Layout.resolve(root, images, results, configured=conf)
