"""The archive manifest, `<archive>.manifest.json` beside each `<unit>-<hash>.tar.zst`.

A manifest is read back from disk, where anyone can edit it: the archive name must be a plain
file name in the archive folder, the unit a single folder name, and a manifest that does not
validate is skipped (listed by name in the log), never followed.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from pydantic import ValidationError

from sweepd.records.archive import SUFFIX, ArchiveManifest

log = logging.getLogger(__name__)


def manifest_path(archive_path: Path) -> Path:
    return archive_path.with_name(archive_path.name.removesuffix(SUFFIX) + ".manifest.json")


def write(path: Path, m: ArchiveManifest) -> None:
    from sweepd import atomic

    atomic.write_text(path, m.model_dump_json(indent=1, exclude={"manifest"}) + "\n")


def read(path: Path) -> ArchiveManifest | None:
    try:
        data = json.loads(Path(path).read_text())
        m = ArchiveManifest.model_validate(data)
    except (OSError, ValueError, ValidationError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        log.warning("skipping archive manifest %s: %s", path, first)
        return None
    m.manifest = str(path)
    return m


def manifests(archive_dir: Path, unit: str | None = None) -> list[ArchiveManifest]:
    """The valid manifests in an archive folder; only one unit's (archives are named <unit>-<hash>) when given."""
    pattern = f"{glob_escape(unit)}-*.manifest.json" if unit else "*.manifest.json"
    out = []
    for p in sorted(Path(archive_dir).glob(pattern)):
        m = read(p)
        if m is not None and (unit is None or m.unit == unit):
            out.append(m)
    return out


def glob_escape(s: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", s)
