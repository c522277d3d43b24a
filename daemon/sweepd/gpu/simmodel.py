"""How a simulated GPU's time and power depend on its core clock, calibrated to real GPUs.

The model (per GPU, all clocks in MHz, ``f_max`` the highest supported clock):

- time:  t(f) = t(f_max) * ((1 - c) + c * f_max / f)            for f >= f_knee
         t(f) = t(f_knee) * f_knee / f                             below it
  Above the ridge ``f_knee`` the work is mostly memory-bound: ``c`` is the small share that scales
  with the core clock. Below the ridge it is compute-bound and time grows as 1/f (roofline).
- voltage: v(f) = v_min below the knee ``f_knee``, rising linearly to 1 at ``f_max``
  (real V/f curves flatten at a minimum voltage).
- power: P(f) = P_max * (s + d * (f / f_max) * v(f)^2), s + d = 1
  ``s`` is the clock-independent part (memory, uncore, leakage), ``d`` the dynamic part.

Energy E = P * t is U-shaped: above the knee, voltage falls with the clock and energy drops fast
while time hardly changes; below it, time grows as 1/f while the clock-independent power keeps
drawing, so energy and EDP rise again.

Calibration (:func:`calibrate`) solves ``c``, ``s``, ``d``, ``v_min`` and the knee from the measured
Stable Diffusion optima in ``data/anchor-sd-results.json`` so that the energy-delay product (EDP)
is minimal at the measured EDP-optimal clock, energy there is lower than at ``f_max`` by the
measured saving, and time there is longer by the measured slowdown (at least 1 %: a lower clock is
never faster in this model). ``v_min`` is set so that just below the knee power's log-slope is
``KNEE_SHARPNESS`` times that of t^2 in the memory-bound regime.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

from sweepd import families

KNEE_SHARPNESS = 0.5
MIN_SLOWDOWN = 0.01

@dataclass(frozen=True)
class Board:
    """A simulated board: its name, its clock table (an nvidia-smi dump), power at f_max under Stable Diffusion and
    idle power (W), and its memory (GiB)."""
    name: str
    dump: str
    p_max: float
    p_idle: float
    memory_gib: float


BOARDS = {
    "A100": Board("NVIDIA A100-PCIE-40GB (simulated)", "a100-pcie-40gb.txt", 230.0, 35.0, 40.0),
    "H100": Board("NVIDIA H100 NVL (simulated)", "h100-nvl.txt", 360.0, 60.0, 94.0),
    "V100": Board("Tesla V100-PCIE-32GB (simulated)", "v100-pcie-32gb.txt", 230.0, 30.0, 32.0),
}
# each board's power limit (W): default, min, max, as NVIDIA's specifications and nvidia-smi -q give them for these
# boards (A100 PCIe 40GB, H100 NVL, V100 PCIe 32GB); a cap within them is modelled by gpu.simcap
POWER_LIMITS_W = {"A100": (250, 150, 250), "H100": (400, 200, 400), "V100": (250, 100, 250)}


# Batching. Per image, a batch of b costs BATCH_FIXED + (1 - BATCH_FIXED) / b of one image's time and energy, at
# the same power: SD 1.5 at 512x512 and the highest clock used 38 % less energy per image at batch 8 on an H100
# SXM and 36 % less at batch 4 on an H200 (data/h100, data/h200). Their time per image fell more (-73 %, -68 %):
# at batch 1 both were host-bound and drew far less than full power, which the simulated batch 1, calibrated to
# the GPU-bound anchors, does not; the model keeps the energy gain and the board's power.
BATCH_FIXED = 0.54
# Memory a batch needs: SD 1.5's fp16 weights and workspace, and each 512x512 image's activations (scaled by
# pixels). Rough figures, there for a batch-size list to find where a board runs out.
GIB_FIXED = 2.6
GIB_PER_IMAGE_512 = 1.1


def batch_factor(images: int) -> float:
    """Per-image time and energy of a batch of ``images`` against one image alone."""
    return BATCH_FIXED + (1 - BATCH_FIXED) / max(images, 1)


def gib_needed(images: int, gib_per_image: float = GIB_PER_IMAGE_512, gib_fixed: float = GIB_FIXED) -> float:
    return gib_fixed + images * gib_per_image


def gib_fixed(model: str) -> float:
    """The model's weights on the GPU: its family's (:mod:`sweepd.families`)."""
    return families.info(model).weights_gib


def _pixel_share(model: str, width: int, height: int) -> float:
    """The image's pixels against its family's native resolution; a built-in tiny model stands in for its family
    at the native resolution whatever it renders (tiny: SD at 512x512)."""
    f = families.info(model)
    return 1.0 if model in families.TINY else width * height / f.native_px ** 2


def gib_per_image(model: str, width: int, height: int) -> float:
    """One image's activations (see s_per_image for the tiny models)."""
    return families.info(model).gib_per_image_native * _pixel_share(model, width, height)


@dataclass(frozen=True)
class SimModel:
    gpu: str
    f_max: int
    f_knee: int
    c: float
    s: float
    d: float
    v_min: float
    p_max_w: float
    p_idle_w: float

    def slowdown(self, f_mhz: float) -> float:
        """t(f) / t(f_max)."""
        ridge = max(f_mhz, self.f_knee)
        return ((1 - self.c) + self.c * self.f_max / ridge) * ridge / f_mhz

    def voltage(self, f_mhz: float) -> float:
        if f_mhz <= self.f_knee:
            return self.v_min
        return self.v_min + (1 - self.v_min) * (f_mhz - self.f_knee) / (self.f_max - self.f_knee)

    def busy_power_w(self, f_mhz: float) -> float:
        return self.p_max_w * (self.s + self.d * (f_mhz / self.f_max) * self.voltage(f_mhz) ** 2)

    def energy_ratio(self, f_mhz: float) -> float:
        """E(f) / E(f_max) for the same work."""
        return self.busy_power_w(f_mhz) * self.slowdown(f_mhz) / self.p_max_w


@cache
def anchors() -> dict[str, dict]:
    text = resources.files("sweepd.gpu").joinpath("data/anchor-sd-results.json").read_text()
    return {r["gpu"]: r for r in json.loads(text)["results"]}


@cache
def calibrate(gpu: str) -> SimModel:
    a = anchors()[gpu]
    board = BOARDS[gpu]
    f_max = a["max_frequency_mhz"]
    f_opt = a["optimal_frequency_edp_mhz"]
    saving = a["energy_savings_edp_percent"] / 100
    slow = max(a["performance_vs_max_edp_percent"] / 100, MIN_SLOWDOWN)
    ratio = f_max / f_opt
    c = slow / (ratio - 1)
    p_ratio = (1 - saving) / (1 + slow)  # P(f_opt) / P(f_max)
    t2_slope = 2 * c * ratio / (1 + slow)  # |d ln t^2 / d ln f| at f_opt
    dyn = p_ratio * KNEE_SHARPNESS * t2_slope  # the dynamic power left at f_opt, as a share of P_max
    s = p_ratio - dyn
    d = 1 - s
    v_min = (dyn / (d / ratio)) ** 0.5
    if not (0 < s < 1 and 0 < v_min < 1):
        raise ValueError(f"cannot calibrate {gpu} from {a}")
    return SimModel(gpu, f_max, f_opt, c, s, d, v_min, board.p_max, board.p_idle)


# The work: seconds per denoising step at 512x512 at f_max, from the measured SD v1.4 runs (50 steps,
# data/anchor-sd-results.json).
S_PER_STEP_512 = {"A100": 11.0 / 50, "H100": 8.75 / 50, "V100": 14.0 / 50}


def s_per_image(gpu: str, model: str, steps: int, width: int, height: int) -> float:
    """The modelled seconds per image at the board's highest clock: SD 1.5's at 512x512 scaled by the family's work
    per step (:mod:`sweepd.families`, from the ML.ENERGY leaderboard) and the pixels. The built-in tiny models stand
    in for their family at its native resolution (tiny: SD at 512x512) on the simulated GPU: the CPU renders a tiny
    image, the board is timed as if it ran the family at that many steps (so a simulated sweep costs seconds of CPU,
    not hours of it)."""
    return S_PER_STEP_512[gpu] * steps * families.info(model).step_work * _pixel_share(model, width, height)


@dataclass(frozen=True)
class Noise:
    """Timing noise of a real machine, fitted to per-image traces of SD on a real H200 and H100: each batch's
    time is multiplied by a log-normal jitter and, with probability ``stall_p``, by a host stall."""
    jitter: float  # sigma of log(time / median)
    stall_p: float
    stall_min: float
    stall_max: float


NOISE = {
    # the H200 VM of 2026-11-27: per-image MAD-sigma 5-10 %, stalls of x1.4-1.65 in ~8 % of images
    "measured": Noise(jitter=0.07, stall_p=0.08, stall_min=1.35, stall_max=1.65),
    "none": Noise(jitter=0.0, stall_p=0.0, stall_min=1.0, stall_max=1.0),
}
