"""The two kinds of record: a JSON file that knows how to read and write itself, and a CSV row."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, Iterable, Self

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from sweepd import atomic
from sweepd.errors import RecordError


def _problems(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
                     for err in e.errors()[:5])


class Record(BaseModel):
    """Every record. A file's unknown keys may be kept where a record says so (``extra="allow"``: a newer
    sweepd's fields survive a rewrite by this one), but an attribute set in code by a name the record does not
    declare is a bug (a typo such as ``trails_done``) and raises AttributeError instead of being kept. A value
    assigned is validated as one read from a file would be."""
    model_config = ConfigDict(validate_assignment=True)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in type(self).model_fields and not name.startswith("_"):
            raise AttributeError(f"{type(self).__name__} has no field {name!r}")
        super().__setattr__(name, value)


class JsonRecord(Record):
    """A JSON file. Unknown keys are kept (a newer sweepd's fields survive a rewrite by this one);
    a file without ``schema_version`` was written by sweepd 0.1.0 (schema 1)."""
    model_config = ConfigDict(extra="allow", validate_assignment=True)
    SCHEMA: ClassVar[int] = 2
    schema_version: int = 1

    @classmethod
    def parse(cls, data: Any, source: str = "") -> Self:
        if not isinstance(data, dict):
            raise RecordError(f"{source}: not a JSON object")
        try:
            record = cls.model_validate(data)
        except ValidationError as e:
            raise RecordError(f"{source}: not a {cls.__name__}: {_problems(e)}") from None
        if record.schema_version > cls.SCHEMA:
            raise RecordError(f"{source}: schema {record.schema_version}, written by a newer sweepd "
                              f"(this one reads up to {cls.SCHEMA}): upgrade sweepd")
        return record

    @classmethod
    def read(cls, path: Path) -> Self:
        """Raises RecordError naming the file (missing, unreadable, not JSON, not this record)."""
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise RecordError(f"{path}: no such file") from None
        except (OSError, ValueError) as e:
            raise RecordError(f"{path}: unreadable: {e}") from None
        return cls.parse(data, str(path))

    @classmethod
    def read_or_none(cls, path: Path) -> Self | None:
        """The record, or None when the file is missing or cannot be read as one."""
        try:
            return cls.read(path)
        except RecordError:
            return None

    def to_json(self) -> dict:
        return self.model_dump(mode="json")

    def write(self, path: Path) -> None:
        self.schema_version = type(self).SCHEMA
        atomic.write_json(path, self.to_json())


def _allows_none(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


_NULLABLE: dict[type, frozenset[str]] = {}


class CsvRow(Record):
    """One row of a CSV file; the columns are the fields, in order. An empty cell is None where the
    field allows it; booleans are written "true"/"false" and floats with 6 significant digits."""
    model_config = ConfigDict(extra="ignore")

    @model_validator(mode="before")
    @classmethod
    def _empty_is_none(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nullable = cls._nullable()
            return {k: (None if v == "" and k in nullable else v) for k, v in data.items()}
        return data

    @classmethod
    def _nullable(cls) -> frozenset[str]:
        if cls not in _NULLABLE:
            _NULLABLE[cls] = frozenset(k for k, f in cls.model_fields.items() if _allows_none(f.annotation))
        return _NULLABLE[cls]

    @classmethod
    def columns(cls) -> list[str]:
        return list(cls.model_fields)

    def stored(self) -> Self:
        """This row as it reads back from its file (floats to 6 significant digits). What is decided from rows
        (when a clock has enough trials, where an adaptive search goes next) is decided from these, so a process
        that resumes from the file decides exactly as the one that wrote it would have."""
        return self.model_validate({k: atomic.cell(v) for k, v in self.model_dump().items()})

    @classmethod
    def read_all(cls, path: Path) -> list[Self]:
        """Every row (none when the file is missing); a row that does not parse raises RecordError."""
        out = []
        for n, raw in enumerate(atomic.read_csv(path), start=2):
            try:
                out.append(cls.model_validate(raw))
            except ValidationError as e:
                raise RecordError(f"{path}: line {n}: {_problems(e)}") from None
        return out

    @classmethod
    def write_all(cls, path: Path, rows: Iterable[Self]) -> None:
        atomic.write_csv(path, cls.columns(), (r.model_dump() for r in rows))

    @classmethod
    def csv_text(cls, rows: Iterable[Self], header: bool = True) -> str:
        return atomic.csv_text(cls.columns(), (r.model_dump() for r in rows), header)
