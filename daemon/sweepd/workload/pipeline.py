"""Stable Diffusion through diffusers: loaded once per sweep, then asked for images by seed.

Any diffusers text-to-image pipeline of the families sweepd knows (:mod:`sweepd.families`: SD 1.x/2.x, SDXL,
SD3/3.5, FLUX), loaded as its model_index.json names it (``AutoPipelineForText2Image``).

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

from sweepd.errors import CompileFailed, SweepdError
from sweepd.families import TINY, Family, render_size
from sweepd.records.manifest import WorkloadInfo
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


def cpu_threads(model: str, env: dict | None = None) -> int:
    """How many CPU threads torch may use when the model runs on the CPU: ``SWEEPD_CPU_THREADS`` if set, 1 for the
    built-in tiny model (its operations are too small to share, and a second thread spinning against a busy
    machine made each image 10x slower), else SLURM's ``SLURM_CPUS_PER_TASK``, else the CPUs this process may run
    on (its affinity), never torch's default of every core on the machine."""
    env = os.environ if env is None else env
    for key in ("SWEEPD_CPU_THREADS",) + (() if model in TINY else ("SLURM_CPUS_PER_TASK",)):
        value = env.get(key, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise WorkloadError(f"{key}={value!r}: give a whole number of threads, at least 1")
            return int(value)
    if model in TINY:
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity on this platform
        return max(1, os.cpu_count() or 1)


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


def _left_out(folder: Path) -> dict:
    """The components a local pipeline was saved without (``[null, null]`` in model_index.json), passed as None:
    diffusers refuses to load a pipeline with a required component missing unless it is told so (SD3 without T5)."""
    import json

    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: None for k, v in index.items() if not k.startswith("_") and v in ([None, None], None)} \
        if isinstance(index, dict) else {}


def _why(e: BaseException) -> str:
    """An exception in one line: its type and first line, and its root cause's where it wraps one (torch's
    BackendCompilerFailed says only which backend raised; the cause says why, e.g. no working C++ compiler)."""
    def first(x: BaseException) -> str:
        return f"{type(x).__name__}: " + next((ln.strip() for ln in str(x).splitlines() if ln.strip()), "")[:240]

    root, seen = e, {id(e)}
    while (nxt := root.__cause__ or root.__context__) is not None and id(nxt) not in seen:
        root = nxt
        seen.add(id(nxt))
    return first(e) + ("" if root is e else f" ({first(root)})")


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
        from diffusers import AutoPipelineForText2Image
        self.spec = spec
        self.family = spec.family
        self._torch = torch
        self.device = _torch_device(gpu_uuid, simulated)
        self.cpu_threads = None
        if self.device.type == "cpu":
            self.cpu_threads = cpu_threads(spec.model)
            torch.set_num_threads(self.cpu_threads)
        if spec.dtype == "auto":
            dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        else:
            dtype = getattr(torch, spec.dtype)
        built_in = spec.model in TINY
        source = str(tiny.ensure(cache, spec.model)) if built_in else spec.model
        offline = built_in or Path(spec.model).exists() or os.environ.get("HF_HUB_OFFLINE") == "1"
        # the pipeline class model_index.json names (SD 1.x/2.x, SDXL, SD3/3.5, FLUX, ...); the safety checker is
        # SD 1.x's alone
        extra = {"safety_checker": None, "requires_safety_checker": False} if self.family.family is Family.SD else {}
        extra |= _left_out(Path(source))  # e.g. SD3 saved without its T5 encoder
        try:
            with warnings.catch_warnings():  # newer diffusers renamed torch_dtype; older ones only know it
                warnings.simplefilter("ignore", FutureWarning)
                pipe = AutoPipelineForText2Image.from_pretrained(source, torch_dtype=dtype, local_files_only=offline,
                                                                 **extra)
        except Exception as e:  # diffusers raises many types for a missing or broken model
            raise WorkloadError(f"cannot load model {spec.model!r} ({self.family.title}): {type(e).__name__}: "
                                f"{e}") from None
        if spec.scheduler != "default" and not self.family.flow_matching:  # flow matching: euler is its own
            cls = getattr(diffusers, SCHEDULER_CLASSES[spec.scheduler])
            pipe.scheduler = cls.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(self.device)
        self.dtype = dtype
        self.source = source
        self.denoiser_name = "unet" if getattr(self.pipe, "unet", None) is not None else "transformer"
        self._eager = getattr(self.pipe, self.denoiser_name)
        self._compiled = None  # torch.compile's wrapper, made on first use and kept (compiling is slow)
        self._compile_checked: set[int] = set()  # batch sizes the compiled denoiser has run (compiled) without error

    def info(self) -> WorkloadInfo:
        import diffusers
        import transformers

        return WorkloadInfo(model=self.spec.model, model_path=self.source, device=str(self.device),
                            dtype=str(self.dtype).removeprefix("torch."), scheduler=type(self.pipe.scheduler).__name__,
                            cpu_threads=self.cpu_threads, torch=self._torch.__version__,
                            diffusers=diffusers.__version__, transformers=transformers.__version__)

    def prompt_for(self, index: int) -> str:
        prompts = self.spec.prompts
        return prompts[index % len(prompts)]

    def generate(self, first_index: int, count: int) -> list[np.ndarray]:
        """Images ``first_index .. first_index+count-1``; image k always uses seed ``seed + k``."""
        torch, s = self._torch, self.spec
        indices = range(first_index, first_index + count)
        gen_device = "cpu" if self.device.type == "mps" else self.device
        generators = [torch.Generator(gen_device).manual_seed(s.seed + k) for k in indices]
        kwargs = {"negative_prompt": [s.negative_prompt] * count if s.negative_prompt else None} \
            if self.family.negative_prompt else {}
        width, height = render_size(s.model, s.width, s.height)
        if self.compiled and count not in self._compile_checked:  # torch compiles again for a new batch size
            return self._first_compiled(indices, generators, kwargs, width, height)
        return self._run(indices, generators, kwargs, width, height)

    def _run(self, indices: range, generators: list, kwargs: dict, width: int, height: int) -> list[np.ndarray]:
        s = self.spec
        with self._torch.inference_mode():
            out = self.pipe(
                prompt=[self.prompt_for(k) for k in indices], num_inference_steps=s.steps,
                guidance_scale=s.guidance_scale, width=width, height=height, generator=generators,
                output_type="np", **kwargs)
        return [np.clip(np.rint(img * 255), 0, 255).astype(np.uint8) for img in out.images]

    def _first_compiled(self, indices: range, generators: list, kwargs: dict, width: int, height: int
                        ) -> list[np.ndarray]:
        """The compiled denoiser's first call, where torch compiles it: a failure there (no C++ compiler, an
        operation the backend cannot compile) is the knob's, not a bug; the eager denoiser is put back."""
        from sweepd.gpu.base import is_out_of_memory

        try:
            images = self._run(indices, generators, kwargs, width, height)
        except Exception as e:
            if is_out_of_memory(e):
                raise
            self.set_compiled(False)
            self._compiled = None
            raise CompileFailed(f"torch.compile (backend {self.spec.compile_backend}) could not compile the "
                                f"{self.denoiser_name}: {_why(e)}") from None
        self._compile_checked.add(len(indices))
        return images

    def set_compiled(self, on: bool) -> None:
        """The denoiser (UNet or transformer) compiled with torch.compile (``[workload] compile_backend``), or the
        eager one again. Compiling happens in the first call; an error there is :class:`CompileFailed`."""
        if on and self._compiled is None:
            self._compiled = self._torch.compile(self._eager, backend=self.spec.compile_backend)
        setattr(self.pipe, self.denoiser_name, self._compiled if on else self._eager)

    @property
    def compiled(self) -> bool:
        return self._compiled is not None and getattr(self.pipe, self.denoiser_name) is self._compiled

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.synchronize(self.device)

    def release_memory(self) -> None:
        if self.device.type == "cuda":
            self._torch.cuda.empty_cache()
