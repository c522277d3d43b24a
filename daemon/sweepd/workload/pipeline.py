"""Stable Diffusion through diffusers: loaded once per sweep, then asked for images by seed.

This is the only module (with :mod:`sweepd.workload.tiny`) that imports torch and diffusers;
the CLI and the daemon never load it. The engine calls :meth:`Workload.generate` and
:meth:`Workload.synchronize` and knows nothing of torch.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np

from sweepd.errors import SweepdError
from sweepd.request import Workload as WorkloadSpec
from sweepd.workload import tiny

log = logging.getLogger(__name__)

SCHEDULER_CLASSES = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "pndm": "PNDMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "heun": "HeunDiscreteScheduler",
    "unipc": "UniPCMultistepScheduler",
}


class WorkloadError(SweepdError):
    """The model could not be loaded or run as requested."""


def _torch_device(gpu_uuid: str | None, simulated: bool):
    import torch

    if not torch.cuda.is_available():
        return torch.device("cpu")
    if gpu_uuid and not simulated:
        # NVML indices ignore CUDA_VISIBLE_DEVICES; match the NVML GPU to a CUDA device by UUID.
        for i in range(torch.cuda.device_count()):
            uuid = str(getattr(torch.cuda.get_device_properties(i), "uuid", ""))
            if uuid and gpu_uuid.removeprefix("GPU-") == uuid.removeprefix("GPU-"):
                return torch.device("cuda", i)
        log.warning("no CUDA device has UUID %s; using cuda:0", gpu_uuid)
    return torch.device("cuda", 0)


class Workload:
    def __init__(self, spec: WorkloadSpec, cache: Path, gpu_uuid: str | None = None, simulated: bool = False):
        import torch
        from diffusers.utils import logging as dlogging
        from transformers.utils import logging as tlogging

        for lib in (dlogging, tlogging):  # their chatter goes through sweepd's logging: sweep.log, not the terminal
            lib.disable_default_handler()
            lib.enable_propagation()
            lib.disable_progress_bar()
        import diffusers
        from diffusers import StableDiffusionPipeline
        self.spec = spec
        self._torch = torch
        self.device = _torch_device(gpu_uuid, simulated)
        if spec.dtype == "auto":
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        else:
            dtype = getattr(torch, spec.dtype)
        source = str(tiny.ensure(cache)) if spec.model == "tiny" else spec.model
        offline = spec.model == "tiny" or Path(spec.model).exists() or os.environ.get("HF_HUB_OFFLINE") == "1"
        try:
            with warnings.catch_warnings():  # newer diffusers renamed torch_dtype; older ones only know it
                warnings.simplefilter("ignore", FutureWarning)
                pipe = StableDiffusionPipeline.from_pretrained(source, torch_dtype=dtype, local_files_only=offline,
                                                               safety_checker=None, requires_safety_checker=False)
        except Exception as e:  # diffusers raises many types for a missing or broken model
            raise WorkloadError(f"cannot load model {spec.model!r}: {type(e).__name__}: {e}") from None
        if spec.scheduler != "default":
            cls = getattr(diffusers, SCHEDULER_CLASSES[spec.scheduler])
            pipe.scheduler = cls.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        self.dtype = dtype
        self.source = source

    def info(self) -> dict:
        import diffusers
        import transformers

        return {"model": self.spec.model, "model_path": self.source, "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."), "scheduler": type(self.pipe.scheduler).__name__,
                "torch": self._torch.__version__, "diffusers": diffusers.__version__,
                "transformers": transformers.__version__}

    def prompt_for(self, index: int) -> str:
        prompts = self.spec.prompts
        return prompts[index % len(prompts)]

    def generate(self, first_index: int, count: int) -> list[np.ndarray]:
        """Images ``first_index .. first_index+count-1``; image k always uses seed ``seed + k``."""
        torch, s = self._torch, self.spec
        indices = range(first_index, first_index + count)
        gen_device = "cpu" if self.device.type == "mps" else self.device
        generators = [torch.Generator(gen_device).manual_seed(s.seed + k) for k in indices]
        with torch.inference_mode():
            out = self.pipe(
                prompt=[self.prompt_for(k) for k in indices],
                negative_prompt=[s.negative_prompt] * count if s.negative_prompt else None,
                num_inference_steps=s.steps, guidance_scale=s.guidance_scale,
                width=s.width, height=s.height, generator=generators, output_type="np")
        return [np.clip(np.rint(img * 255), 0, 255).astype(np.uint8) for img in out.images]

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)

    def release_memory(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()
