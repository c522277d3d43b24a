"""Every generated image's row in images.csv, the PNGs a sweep keeps, and the reference images: the
sweep's first window's, which every later image is compared with (PSNR; ``inf``: identical)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from sweepd.engine import imaging
from sweepd.engine.store import JobStore
from sweepd.engine.summary import desc
from sweepd.freqplan import ClockPoint, representative
from sweepd.gpu.base import GpuDevice
from sweepd.records.rows import ImageRow
from sweepd.request import SweepRequest


class Prompts(Protocol):
    def prompt_for(self, index: int) -> str: ...


@dataclass
class ImageRecorder:
    request: SweepRequest
    device: GpuDevice
    store: JobStore
    plan: list[ClockPoint]
    reference: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._load_reference()

    def keeps(self, k: int, first: bool) -> bool:
        """Whether a trial's images are saved: every one in archive mode; in research mode the first trial of
        its own (not a drift or batch-size window) at representative clocks."""
        mode = self.request.images.mode
        if mode != "research":
            return mode == "archive"
        whole = desc(self.store.manifest.plan_mhz_all or [p.setting for p in self.plan])
        if self.store.shard and self.store.shard[0] and self.plan[k].setting == whole[0]:
            return False  # a later shard's own reference measurement: shard 0 keeps that clock's images
        return first and whole.index(self.plan[k].setting) in representative(len(whole))

    def rows(self, workload: Prompts, images: list[np.ndarray], point: ClockPoint,
             trial: int, per_image: list[float], keep: bool, compare: bool = True) -> list[ImageRow]:
        """Every image's row; the sweep's first images become the reference the others are compared with."""
        seed0, first_trial = self.request.workload.seed, compare and not self.reference
        rows = []
        for i, img in enumerate(images):
            seed = seed0 + i
            if first_trial:
                self.reference[i] = img
                imaging.save_png(self.store.reference_dir / f"i{i:03d}_s{seed}.png", img)
            ref = self.reference.get(i) if compare else None
            saved = ""
            if keep:
                path = self.store.images_dir / point.label / imaging.image_name(point.label, trial, i, seed)
                imaging.save_png(path, img, self._png_text(workload, point, trial, i, seed))
                saved = str(path)
            rows.append(ImageRow(sweep_id=self.store.sweep_id, job_id=self.store.job_id,
                                 simulated=self.device.simulated, freq_mhz=point.freq_mhz, power_limit_w=point.power_limit_w, trial=trial, index=i,
                                 seed=seed, sha256=imaging.pixel_sha256(img),
                                 psnr_vs_ref=None if ref is None else _psnr_2dp(imaging.psnr(img, ref)),
                                 saved_path=saved, time_s=per_image[i] if i < len(per_image) else None))
        return rows

    def _png_text(self, workload: Prompts, point: ClockPoint, trial: int, i: int, seed: int) -> dict[str, str]:
        w = self.request.workload
        return {"prompt": workload.prompt_for(i), "negative_prompt": w.negative_prompt or "", "model": w.model,
                "steps": str(w.steps), "seed": str(seed), "clock_mhz": point.key or "baseline",
                "trial": str(trial), "job_id": self.store.job_id, "sweep_id": self.store.sweep_id,
                "gpu": self.device.name, "simulated": str(self.device.simulated).lower(), "software": "sweepd"}

    def _load_reference(self) -> None:
        """A resumed sweep's reference images, from the first process's reference/ folder."""
        for path in sorted(self.store.reference_dir.glob("i*_s*.png")):
            self.reference[int(path.name[1:4])] = imaging.load_png(path)


def _psnr_2dp(value: float) -> float | None:
    """PSNR to 2 decimals (inf: identical images; None when undefined)."""
    if math.isinf(value):
        return value
    return None if math.isnan(value) else round(value, 2)
