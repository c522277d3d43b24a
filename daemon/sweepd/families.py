"""The Stable Diffusion generations sweepd runs, and what differs between them: the diffusers pipeline, the native
resolution, whether a scheduler can be swapped and a negative prompt given, the GPU's work per image and the GPU
memory the weights and each image take. Pure data and name matching: no torch, so the checks before a sweep (the
request, `estimate`, `gpus`, the simulated GPU) know a model's family without loading it.

Work and memory (the simulated GPU's calibration, :mod:`sweepd.gpu.simmodel`): each family's time per denoising
step at its native resolution relative to SD 1.5 at 512x512, from ML.ENERGY's leaderboard latencies at batch 1 on
H100 (v2, 2024: Openjourney-v4, an SD 1.5 fine-tune, 0.87 s at 25 steps; SDXL 2.26 s at 25 steps, 1024x1024; v3,
2025-12: SD3.5-medium 3.53 s at 28 steps, 1024x1024). FLUX.1 has no latency there in sweepd's data: its step is
scaled from SD3.5-medium by the denoisers' parameters (12 B against 2.5 B), an estimate, and said so. Weights are
the fp16 sizes of each family's published checkpoints (denoiser and text encoders); an image's activations are
assumed to take what SD 1.5's do per pixel (1.1 GiB at 512x512), FLUX's a quarter more: assumptions, not measured.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Family(StrEnum):
    SD = "sd"  # SD 1.x and 2.x: UNet, one CLIP text encoder
    SDXL = "sdxl"  # UNet with two CLIP text encoders and size conditioning
    SD3 = "sd3"  # SD3 and SD3.5: MMDiT transformer, two CLIPs and T5, flow matching
    FLUX = "flux"  # FLUX.1: transformer, CLIP and T5, flow matching, guidance-distilled


@dataclass(frozen=True)
class FamilyInfo:
    family: Family
    title: str  # as a person names it
    pipelines: tuple[str, ...]  # diffusers pipeline classes of this family (model_index.json's _class_name)
    native_px: int  # the resolution it was trained for (width = height)
    flow_matching: bool  # its scheduler is FlowMatchEulerDiscreteScheduler: the DDPM-family names do not apply
    negative_prompt: bool  # its pipeline takes a negative prompt
    step_work: float  # time per denoising step at native_px, relative to SD 1.5 at 512x512 (see the top)
    step_work_source: str
    weights_gib: float  # fp16 weights on the GPU
    gib_per_image_native: float  # one image's activations at native_px, fp16


SD15_STEP_S_H100 = 0.87 / 25  # ML.ENERGY v2, Openjourney-v4 on H100, batch 1: the unit of step_work

FAMILIES: dict[Family, FamilyInfo] = {f.family: f for f in (
    FamilyInfo(Family.SD, "SD 1.x/2.x", ("StableDiffusionPipeline",), 512, False, True, 1.0,
               "the calibration's unit", 2.6, 1.1),
    FamilyInfo(Family.SDXL, "SDXL", ("StableDiffusionXLPipeline",), 1024, False, True,
               round(2.26 / 25 / SD15_STEP_S_H100, 2), "ML.ENERGY v2: SDXL on H100, 2.26 s at 25 steps", 6.9, 4.4),
    FamilyInfo(Family.SD3, "SD3/SD3.5", ("StableDiffusion3Pipeline",), 1024, True, True,
               round(3.53 / 28 / SD15_STEP_S_H100, 2), "ML.ENERGY v3: SD3.5-medium on H100, 3.53 s at 28 steps",
               15.5, 4.4),
    FamilyInfo(Family.FLUX, "FLUX.1", ("FluxPipeline",), 1024, True, False,
               round(3.53 / 28 / SD15_STEP_S_H100 * 12 / 2.5, 2),
               "estimated: SD3.5-medium's step scaled by the denoiser's parameters (12 B / 2.5 B)", 33.0, 5.5),
)}

TINY = {"tiny": Family.SD, "tiny-sdxl": Family.SDXL, "tiny-sd3": Family.SD3, "tiny-flux": Family.FLUX}
TINY_RENDER_PX = 128  # tiny-sdxl/sd3/flux render at most this wide on the CPU (their attention grows with the square
# of the pixels); the simulated GPU times and sizes the family at its native resolution all the same

# Hub ids whose family the name tells (an offline machine has nothing else to read); the first match wins.
_ID_PATTERNS = (
    (re.compile(r"stable-diffusion-xl|sdxl|sd_xl|playground-v2", re.I), Family.SDXL),
    (re.compile(r"stable-diffusion-3|sd3", re.I), Family.SD3),
    (re.compile(r"flux", re.I), Family.FLUX),
    (re.compile(r"stable-diffusion|openjourney|dreamshaper|realistic-vision|sd-?1|sd-?2", re.I), Family.SD),
)


def render_size(model: str, width: int, height: int) -> tuple[int, int]:
    """What the CPU renders: a later family's tiny model at most TINY_RENDER_PX wide, anything else as asked."""
    if model in TINY and model != "tiny":
        return min(width, TINY_RENDER_PX), min(height, TINY_RENDER_PX)
    return width, height


def of_pipeline(class_name: str) -> Family | None:
    """A diffusers pipeline class (``model_index.json``'s ``_class_name``) -> its family; None: not one sweepd knows."""
    return next((f.family for f in FAMILIES.values() if class_name in f.pipelines), None)


def of_hub_id(model: str) -> Family | None:
    return next((family for pattern, family in _ID_PATTERNS if pattern.search(model)), None)


def of_folder(folder: Path) -> Family | None:
    """A folder saved by diffusers: its model_index.json names the pipeline."""
    try:
        data = json.loads((Path(folder) / "model_index.json").read_text())
    except (OSError, ValueError):
        return None
    return of_pipeline(str(data.get("_class_name", ""))) if isinstance(data, dict) else None


def of_model(model: str) -> Family | None:
    """The family of a request's ``workload.model``: a built-in tiny one, a local folder, or a hub id (by its name)."""
    if model in TINY:
        return TINY[model]
    path = Path(model).expanduser()
    if model.startswith(("/", ".", "~")) or path.is_dir():
        return of_folder(path)
    return of_hub_id(model)


def info(model: str) -> FamilyInfo:
    """The model's family, SD 1.x/2.x when it cannot be told (what sweepd assumed before it knew families)."""
    return FAMILIES[of_model(model) or Family.SD]


# ML.ENERGY leaderboard settings by family (ml-energy/leaderboard-v2 `data/diffusion/text-to-image`: 25 steps;
# ml-energy/leaderboard v3 `public/data/tasks/text-to-image.json`: SD3.5 28 steps, FLUX 50, 1024x1024, batch 1-16).
PRESETS: dict[str, dict[Family, dict]] = {
    "mlenergy-v2": {
        Family.SD: {"width": 768, "height": 768, "steps": 25, "batch_size": [1, 2, 4, 8, 16]},
        Family.SDXL: {"width": 1024, "height": 1024, "steps": 25, "batch_size": [1, 2, 4, 8, 16]},
        Family.SD3: {"width": 1024, "height": 1024, "steps": 25, "batch_size": [1, 2, 4, 8, 16]},
    },
    "mlenergy-v3": {
        Family.SD3: {"width": 1024, "height": 1024, "steps": 28, "batch_size": [1, 2, 4, 8, 16]},
        Family.FLUX: {"width": 1024, "height": 1024, "steps": 50, "batch_size": [1, 2, 4, 8, 16]},
    },
}


def preset(name: str, model: str) -> dict:
    """The leaderboard's settings for ``model``'s family (a request's preset); ValueError when it measured none."""
    by_family = PRESETS.get(name)
    if by_family is None:
        return {}  # the request's Literal names the choices
    family = of_model(model)
    if family not in by_family:
        measured = ", ".join(FAMILIES[f].title for f in by_family)
        what = FAMILIES[family].title if family else "a family sweepd cannot tell from its name"
        raise ValueError(f"preset {name!r}: the leaderboard measured {measured}; model {model!r} is {what}")
    return dict(by_family[family])


def check_options(model: str, scheduler: str, negative_prompt: str | None) -> None:
    """ValueError naming the field when the request asks for what the model's family lacks."""
    f = of_model(model)
    info = FAMILIES[f] if f else None
    if info and info.flow_matching and scheduler not in ("default", "euler"):
        raise ValueError(f"scheduler: {scheduler!r}: {info.title} samples by flow matching "
                         "(FlowMatchEulerDiscreteScheduler); use \"default\" or \"euler\"")
    if info and not info.negative_prompt and negative_prompt:
        raise ValueError(f"negative_prompt: {info.title} takes no negative prompt (guidance-distilled); leave it out")
