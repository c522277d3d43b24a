"""Sizes ("20GiB"), durations ("30d") and shares ("10%") as people write them in policy files."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator, ByteSize, TypeAdapter

_DURATION = re.compile(r"\s*(\d{1,15}(?:\.\d{1,15})?)\s*(s|m|h|d|w)\s*\Z")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_BYTES = TypeAdapter(ByteSize)


MIN_DURATION_S = 1.0
MAX_DURATION_S = 100 * 365 * 86400.0  # a century: past it, a schedule or an age is a typo


def parse_duration(value: object) -> float:
    """'90s', '15m', '12h', '30d', '2w' (or a number of seconds) -> seconds: finite, at least 1 s, at most 100 years."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError("a duration is a number and a unit: s, m, h, d or w (e.g. \"30d\")")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        m = _DURATION.match(value)
        if not m:
            raise ValueError("a duration is a number and a unit: s, m, h, d or w (e.g. \"30d\")")
        seconds = float(m.group(1)) * _SECONDS[m.group(2)]
    if not math.isfinite(seconds):
        raise ValueError("a duration must be finite")
    if seconds < MIN_DURATION_S:
        raise ValueError(f"a duration must be at least {MIN_DURATION_S:g} s")
    if seconds > MAX_DURATION_S:
        raise ValueError("a duration must be at most 100 years")
    return seconds


def parse_bytes(value: object) -> int:
    """'20GiB', '500 MB', 1048576 -> bytes."""
    try:
        n = int(_BYTES.validate_python(value))
    except (ValueError, TypeError):  # pydantic's ValidationError is a ValueError
        raise ValueError("a size is a number and a unit, e.g. \"20GiB\", \"500MB\"") from None
    if n <= 0:
        raise ValueError("a size must be positive")
    return n


def parse_bytes_or_share(value: object) -> int | float:
    """'10%' -> 0.10 (a share of the filesystem); anything else -> bytes."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError("a share of the filesystem is a number and %, e.g. \"10%\"") from None
        if not 0 < share < 1:
            raise ValueError("a share of the filesystem is between 0% and 100%")
        return share
    return parse_bytes(value)


Duration = Annotated[float, BeforeValidator(parse_duration)]
Bytes = Annotated[int, BeforeValidator(parse_bytes)]
BytesOrShare = Annotated[float, BeforeValidator(parse_bytes_or_share)]


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
