"""The archive manifest, `<archive>.manifest.json` beside each `<unit>-<hash>.tar.zst`.

A manifest is read back from disk, where anyone can edit it: the archive name must be a plain
file name in the archive folder, the unit a single folder name, and a manifest that does not
validate is skipped by the storage manager (:mod:`sweepd.storage.manifest`), never followed.
Unknown keys are dropped, not kept: nothing an edit adds is carried on.
"""

from __future__ import annotations

import re

from pydantic import ConfigDict, Field, field_validator

from sweepd.records.base import Record

SUFFIX = ".tar.zst"
MAX_BYTES = 1 << 60  # every size read from a manifest is checked against what a filesystem can hold
_PLAIN = re.compile(r"^[^/\0]+\Z")


class Member(Record):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str
    size: int = Field(ge=0, le=MAX_BYTES)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ArchiveReason(Record):
    """Why an archive was made: the policy rule that asked for it (what its manifest records)."""
    model_config = ConfigDict(frozen=True)
    rule: str | None = None
    policy: str | None = None
    reason: str | None = None
    job_id: str | None = None


class ArchiveManifest(Record):
    model_config = ConfigDict(extra="ignore")
    schema_version: int = 1  # 0.1.0's have none: the same fields
    archive: str
    unit: str
    source_dir: str
    members: list[Member]
    bytes: int = Field(0, ge=0, le=MAX_BYTES)
    zstd_level: int = Field(3, ge=-131072, le=22)
    created: str = ""
    rule: str | None = None
    policy: str | None = None
    reason: str | None = None
    job_id: str | None = None
    manifest: str = Field("", exclude=True)  # where it was read from (not written)

    @field_validator("archive")
    @classmethod
    def _plain_archive(cls, v: str) -> str:
        if not _PLAIN.match(v) or v in (".", "..") or not v.endswith(SUFFIX):
            raise ValueError(f"not a plain *{SUFFIX} file name")
        return v

    @field_validator("unit")
    @classmethod
    def _plain_unit(cls, v: str) -> str:
        if not _PLAIN.match(v) or v in (".", ".."):
            raise ValueError("not a single folder name")
        return v

    @property
    def member_bytes(self) -> int:
        return sum(m.size for m in self.members)
