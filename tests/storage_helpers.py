"""Image trees for storage tests: job folders of PNG-named files with chosen sizes and ages."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path


def make_job(images: Path, job: str, clocks=(1410, 1200, 945, 510), trials=2, per=3, size=4000,
             age_days: float = 1.0, seed: int = 0, incompressible: bool = False) -> dict[str, str]:
    """Write one job's images; returns {relative path under images/: sha256}."""
    out = {}
    when = time.time() - age_days * 86400
    for f in clocks:
        d = images / f"job_{job}" / f"{f}MHz"
        d.mkdir(parents=True, exist_ok=True)
        for t in range(1, trials + 1):
            for i in range(per):
                p = d / f"{f}MHz_t{t}_i{i:03d}_s{42 + i}.png"
                data = os.urandom(size) if incompressible else \
                    hashlib.sha256(f"{job}/{f}/{t}/{i}/{seed}".encode()).digest() * (size // 32)
                p.write_bytes(data)
                os.utime(p, (when, when))
                out[str(p.relative_to(images))] = hashlib.sha256(data).hexdigest()
    return out


def tree_hashes(images: Path) -> dict[str, str]:
    return {str(p.relative_to(images)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in images.rglob("*") if p.is_file() and not p.is_symlink() and p.name != ".keep"}


def write_policy(path: Path, body: str) -> Path:
    path.write_text(body)
    return path
