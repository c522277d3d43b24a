"""Read a TOML, JSON or YAML file into a pydantic model, with errors a person can act on.

Every problem is reported as ``file: field.path: value: reason``, all of them at once, never a
traceback. Used for sweep requests now, and for settings and policy files later.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)

MAX_FILE_BYTES = 1 << 20  # a request is a few hundred bytes; anything over 1 MiB is a mistake
SUFFIXES = {".toml": "toml", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}


class ConfigError(Exception):
    """A file that could not be read or did not validate. ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def format_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def short_value(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def problems_from(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{format_loc(loc)}: {short_value(e.get('input'))}: {msg}")
    return lines


def parse_text(text: str, fmt: str, source: str) -> Any:
    try:
        if fmt == "toml":
            return tomllib.loads(text)
        if fmt == "json":
            return json.loads(text)
        return yaml.safe_load(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, [f"not valid TOML: {e}"]) from None
    except json.JSONDecodeError as e:
        raise ConfigError(source, [f"not valid JSON: {e}"]) from None
    except yaml.YAMLError as e:
        raise ConfigError(source, [f"not valid YAML: {str(e).splitlines()[0]}"]) from None


def read_data(path: Path) -> Any:
    path = Path(path)
    source = str(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(source, [f"unknown file type {path.suffix!r}: use .toml, .json or .yaml"])
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(source, [f"file is {size} bytes; the limit is {MAX_FILE_BYTES}"])
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError(source, [f"cannot read: {e.strerror or e}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(source, ["not UTF-8 text"]) from None
    return parse_text(text, fmt, source)


def validate(model: type[M], data: Any, source: str) -> M:
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(top level): {short_value(data)}: expected a table of settings"])
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, problems_from(e)) from None


def load(model: type[M], path: Path) -> M:
    return validate(model, read_data(path), str(path))
