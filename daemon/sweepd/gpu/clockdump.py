"""Parse ``nvidia-smi -q -d SUPPORTED_CLOCKS`` output into {memory MHz: [graphics MHz, ...]}.

The simulated GPUs take their clock tables from real dumps (``data/*.txt``) this way, so a
simulated A100 offers exactly the clocks a real A100 does.
"""

from __future__ import annotations

import re
from importlib import resources

_MEM = re.compile(r"^\s*Memory\s*:\s*(\d+)\s*MHz\s*$")
_GFX = re.compile(r"^\s*Graphics\s*:\s*(\d+)\s*MHz\s*$")


def parse(text: str) -> dict[int, list[int]]:
    """Memory clock -> graphics clocks, both highest first. Repeated dumps in one file are merged."""
    table: dict[int, list[int]] = {}
    current: int | None = None
    for line in text.splitlines():
        if m := _MEM.match(line):
            current = int(m.group(1))
            table.setdefault(current, [])
        elif (m := _GFX.match(line)) and current is not None:
            f = int(m.group(1))
            if f not in table[current]:
                table[current].append(f)
    if not table or not any(table.values()):
        raise ValueError("no 'Supported Clocks' section found")
    return {mem: sorted(g, reverse=True) for mem, g in sorted(table.items(), reverse=True)}


def load_packaged(filename: str) -> dict[int, list[int]]:
    return parse(resources.files("sweepd.gpu").joinpath("data", filename).read_text())
