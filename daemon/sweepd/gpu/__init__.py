"""The GPU layer: open a device by the request's ``[gpu]`` section.

``open_device`` is the only entry point the rest of sweepd uses; see :mod:`sweepd.gpu.base` for
the interface and its errors.
"""

from __future__ import annotations

import logging

from sweepd.gpu.base import GpuDevice, GpuError, GpuUnavailable

log = logging.getLogger(__name__)


def open_device(backend: str = "auto", index: int | None = None, uuid: str | None = None,
                sim_model: str = "A100", sim_noise: str = "none", sim_host_s_per_image: float = 0.0,
                sim_seed: int = 0, sim_s_per_image: float = 0.1, sim_cold_start_s: float = 0.0,
                sim_memory_gib: float | None = None, sim_gib_per_image: float | None = None,
                sim_power_offsets_pct: list[float] | None = None, sim_speed_offsets_pct: list[float] | None = None,
                sim_gib_fixed: float | None = None) -> GpuDevice:
    """``nvml``: a real GPU or an error; ``sim``: a simulated one; ``auto``: real if NVML answers.
    The ``sim_*`` arguments shape the simulated GPU (:class:`~sweepd.gpu.sim.SimulatedGpu`)."""
    if backend in ("nvml", "auto"):
        from sweepd.gpu.nvml import NvmlGpu

        try:
            return NvmlGpu(index=index, uuid=uuid)
        except GpuUnavailable as e:
            if backend == "nvml":
                raise
            log.warning("no NVIDIA GPU answered (%s): using the simulated %s; results are labelled simulated",
                        e, sim_model)
    if backend not in ("nvml", "auto", "sim"):
        raise GpuError(f"unknown GPU backend {backend!r}: use auto, nvml or sim")
    from sweepd.gpu.sim import SimulatedGpu

    i = index or 0
    by_index = lambda xs: (xs[i] if xs and i < len(xs) else 0.0)  # noqa: E731  (GPUs the list leaves out: none)
    return SimulatedGpu(sim_model, index=i, noise=sim_noise, host_s_per_image=sim_host_s_per_image,
                        seed=sim_seed, s_per_image=sim_s_per_image, cold_start_s=sim_cold_start_s,
                        memory_gib=sim_memory_gib, gib_per_image=sim_gib_per_image,
                        power_offset_pct=by_index(sim_power_offsets_pct), speed_offset_pct=by_index(sim_speed_offsets_pct),
                        **({"gib_fixed": sim_gib_fixed} if sim_gib_fixed is not None else {}))


def list_devices(backend: str = "auto") -> list[GpuDevice]:
    """Every real GPU (``nvml``), the three simulated ones (``sim``), or whichever ``auto`` finds."""
    if backend in ("nvml", "auto"):
        from sweepd.gpu import nvml

        try:
            nvml.init()
            try:
                count = nvml.device_count()
            finally:
                nvml.shutdown()
            if count or backend == "nvml":
                return [nvml.NvmlGpu(index=i) for i in range(count)]
        except GpuUnavailable:
            if backend == "nvml":
                raise
            log.warning("no NVIDIA GPU answered: listing the simulated GPUs")
    from sweepd.gpu.sim import SimulatedGpu
    from sweepd.gpu.simmodel import BOARDS

    return [SimulatedGpu(m) for m in BOARDS]
