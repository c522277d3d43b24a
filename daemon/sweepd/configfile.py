"""Read a TOML, JSON or YAML file into a pydantic model, with errors a person can act on.

Every problem is reported as ``file: field.path: value: reason``, all of them at once, never a
traceback. Used for sweep requests now, and for settings and policy files later.
"""

from __future__ import annotations

import json
import os
import stat
import tomllib
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from sweepd.errors import InputError, capped

M = TypeVar("M", bound=BaseModel)

MAX_FILE_BYTES = 1 << 20  # a request is a few hundred bytes; anything over 1 MiB is a mistake
MAX_DEPTH = 32  # a request nests 3 deep; a parser recursing 1000 deep would end the process
SUFFIXES = {".toml": "toml", ".json": "json", ".yaml": "yaml", ".yml": "yaml"}


class _SafeYaml(yaml.SafeLoader):
    """YAML without anchors/aliases (an alias bomb is 600 bytes that expand to gigabytes) and with a
    depth limit (a deep document would recurse the composer into a RecursionError)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in sweepd files",
                                              event.start_mark)
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, "anchors (&name) are not allowed in sweepd files",
                                              event.start_mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep",
                                                  event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def bracket_depth(text: str) -> int:
    """How deep [ and { nest in TOML or JSON text, outside strings and comments: counted before the
    parser runs, since both parsers recurse once per level."""
    depth = deepest = 0
    quote = ""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quote:
            if c == "\\" and quote == '"':
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
        elif c == "#":
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
        i += 1
    return deepest


def data_depth(data: Any) -> int:
    """How deep parsed data nests below the top-level table (iteratively: the data may be deeper than the
    recursion limit)."""
    deepest, stack = 0, [(data, 0)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, dict):
            items = list(item.values())
        elif isinstance(item, list):
            items = item
        else:
            continue
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            return d
        stack.extend((x, d + 1) for x in items)
    return deepest


class ConfigError(InputError):
    """A file that could not be read or did not validate. ``problems`` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))

    def lines(self) -> list[str]:
        return [capped(f"{self.source}: {p}") for p in self.problems]


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


MAX_PROBLEMS = 50  # a file of 100,000 unknown keys is reported by its first problems, not all of them


def problems_from(err: ValidationError) -> list[str]:
    lines = []
    errors = err.errors()
    for e in errors[:MAX_PROBLEMS]:
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{format_loc(loc)}: {short_value(e.get('input'))}: {msg}")
    if len(errors) > MAX_PROBLEMS:
        lines.append(f"... and {len(errors) - MAX_PROBLEMS} more problems")
    return lines


def parse_text(text: str, fmt: str, source: str) -> Any:
    if fmt in ("toml", "json") and bracket_depth(text) > MAX_DEPTH:
        raise ConfigError(source, [f"(file): nested more than {MAX_DEPTH} levels deep"])
    try:
        if fmt == "toml":
            data = tomllib.loads(text)
        elif fmt == "json":
            data = json.loads(text)
        else:
            data = yaml.load(text, Loader=_SafeYaml)  # noqa: S506 (a SafeLoader subclass)
    except RecursionError:
        raise ConfigError(source, [f"(file): nested more than {MAX_DEPTH} levels deep"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, [f"not valid TOML: {e}"]) from None
    except json.JSONDecodeError as e:
        raise ConfigError(source, [f"not valid JSON: {e}"]) from None
    except yaml.MarkedYAMLError as e:
        where = f" (line {e.problem_mark.line + 1})" if e.problem_mark else ""
        raise ConfigError(source, [f"not valid YAML: {e.problem or e.context}{where}"]) from None
    except yaml.YAMLError as e:
        raise ConfigError(source, [f"not valid YAML: {str(e).splitlines()[0]}"]) from None
    except ValueError as e:  # e.g. an integer literal of more digits than Python converts
        raise ConfigError(source, [f"not valid {fmt.upper()}: {str(e).splitlines()[0][:200]}"]) from None
    if data_depth(data) > MAX_DEPTH:
        raise ConfigError(source, [f"(file): nested more than {MAX_DEPTH} levels deep"])
    return data


def _read_regular(path: Path, source: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes. Opened without blocking (a FIFO swapped in would
    hang a plain read) and checked on the open file, so a device or pipe is refused, never read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise ConfigError(source, [f"cannot read: {e.strerror or e}"]) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(source, ["(file): not a regular file (a directory, pipe or device)"])
        if st.st_size > max_bytes:
            raise ConfigError(source, [f"file is {st.st_size} bytes; the limit is {max_bytes}"])
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:  # it grew while being read
                raise ConfigError(source, [f"file is over {max_bytes} bytes (it grew while being read)"])
        return b"".join(chunks)
    except OSError as e:
        raise ConfigError(source, [f"cannot read: {e.strerror or e}"]) from None
    finally:
        os.close(fd)


def read_data(path: Path, max_bytes: int = MAX_FILE_BYTES) -> Any:
    path = Path(path)
    source = str(path)
    fmt = SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(source, [f"unknown file type {path.suffix!r}: use .toml, .json or .yaml"])
    raw = _read_regular(path, source, max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(source, ["not UTF-8 text"]) from None
    if not text.strip():
        raise ConfigError(source, ["(file): empty: nothing to read"])
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
