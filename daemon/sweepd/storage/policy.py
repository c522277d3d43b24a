"""Retention policies: TOML files of [[rules]], validated by small pydantic models.

Each part of a rule has its own model with ``extra="forbid"``: the rule itself, its per-job
limits, its schedule. Action kinds live in a registry (ACTIONS) so each states its own needs.
``sweepd policy check FILE`` prints every problem as ``file: rules[i].field: value: reason``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sweepd import configfile
from sweepd.configfile import ConfigError
from sweepd.storage.units import Bytes, BytesOrShare, Duration, parse_duration

KEEP = ("representative", "first_trial", "none")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PerJob(_Model):
    """Limits on each job's folder; `keep` says which images survive a trim."""
    max_bytes: Bytes | None = None
    max_files: int | None = Field(None, ge=1)
    keep: Literal[KEEP] | None = None  # type: ignore[valid-type]
    keep_samples: int | None = Field(None, ge=0, description="keep the first N images of each clock")

    @model_validator(mode="after")
    def _something(self) -> "PerJob":
        if all(v is None for v in (self.max_bytes, self.max_files, self.keep, self.keep_samples)):
            raise ValueError("give max_bytes, max_files, keep or keep_samples")
        if self.keep is not None and self.keep_samples is not None:
            raise ValueError("give keep or keep_samples, not both")
        return self


class Schedule(_Model):
    """When the rule runs on its own: `every = "1h"` or `cron = "0 3 * * *"` (minute hour day month weekday)."""
    every: Duration | None = None
    cron: str | None = None

    @field_validator("cron")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is not None:
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(v)
            except ValueError as e:
                raise ValueError(f"not a crontab expression: {e}") from None
        return v

    @model_validator(mode="after")
    def _one(self) -> "Schedule":
        if (self.every is None) == (self.cron is None):
            raise ValueError("give exactly one of every or cron")
        return self


class ActionSpec(_Model):
    """What an action needs: does it archive, does it delete, must the user confirm it."""
    archives: bool
    deletes: bool
    needs_confirm: bool = False


ACTIONS: dict[str, ActionSpec] = {
    "archive_then_delete": ActionSpec(archives=True, deletes=True),
    "archive": ActionSpec(archives=True, deletes=False),
    "delete": ActionSpec(archives=False, deletes=True, needs_confirm=True),
}


class Rule(_Model):
    name: str = Field(min_length=1, max_length=100)
    paths: list[str] = Field(default_factory=lambda: ["images"], min_length=1)
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    max_bytes: Bytes | None = None
    max_files: int | None = Field(None, ge=1)
    min_free: BytesOrShare | None = None
    max_age: Duration | None = None
    per_job: PerJob | None = None
    action: Literal[tuple(ACTIONS)] = "archive_then_delete"  # type: ignore[valid-type]
    confirm_delete: bool = False
    allow_results: bool = False
    archive_dir: str = "archive"
    zstd_level: int = Field(3, ge=1, le=22)
    zstd_threads: int = Field(-1, ge=-1, le=256, description="-1: one per core, 0: none")
    schedule: Schedule = Field(default_factory=lambda: Schedule(every=parse_duration("1h")))
    order: Literal["oldest_job_first"] = "oldest_job_first"

    @model_validator(mode="after")
    def _sane(self) -> "Rule":
        if ACTIONS[self.action].needs_confirm and not self.confirm_delete:
            raise ValueError(f'action = "{self.action}" removes files without an archive: '
                             "add confirm_delete = true if that is really what you want")
        if not any(v is not None for v in (self.max_bytes, self.max_files, self.min_free, self.max_age, self.per_job)):
            raise ValueError("the rule limits nothing: give max_bytes, max_files, min_free, max_age or [rules.per_job]")
        return self

    @property
    def spec(self) -> ActionSpec:
        return ACTIONS[self.action]


class Policy(_Model):
    rules: list[Rule] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> "Policy":
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {dupes}")
        return self


def load(path: Path) -> Policy:
    return configfile.load(Policy, Path(path))


def load_all(paths: list[Path]) -> list[tuple[Path, Policy]]:
    """Every file, in name order; raises ConfigError for the first that does not validate, and for a rule
    name that two files both use (each rule has one schedule, one timer, one line in the audit)."""
    out = [(p, load(p)) for p in sorted(paths)]
    seen: dict[str, Path] = {}
    for path, pol in out:
        for i, rule in enumerate(pol.rules):
            if rule.name in seen:
                raise ConfigError(str(path), [f"rules[{i}].name: {rule.name!r}: already the name of a rule in "
                                              f"{seen[rule.name]}; rule names are unique across policy files"])
            seen[rule.name] = path
    return out
