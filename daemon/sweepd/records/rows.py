"""The rows of a job's CSV files: trials.csv, images.csv, power.csv and summary.csv.

The column order is the field order; 0.1.0's files have the same columns. A clock is ``freq_mhz``
(None, an empty cell, for a baseline sweep without clock control). A power-limit sweep's rows have the limit in
``power_limit_w`` and no ``freq_mhz`` (the firmware picks the clock). Either way a row's ``setting`` is the knob's
value it was measured at: the key every statistic and report groups by.
"""

from __future__ import annotations

import math

from sweepd.records.base import CsvRow
from sweepd.vocab import Bound, Role, TrialStatus


def clock_key(freq_mhz: int | None) -> str:
    """A clock as text: "1410", or "" for the baseline (no clock control)."""
    return "" if freq_mhz is None else str(freq_mhz)


def clock_label(freq_mhz: int | None) -> str:
    return "baseline" if freq_mhz is None else str(freq_mhz)


class _Setting:
    """A row with ``freq_mhz`` and ``power_limit_w`` fields (declared on each row, in its column order)."""

    @property
    def setting(self) -> int | None:
        """The knob's value this row was measured at: the power limit (W) in a power sweep, else the clock (MHz)."""
        limit = getattr(self, "power_limit_w")
        return limit if limit is not None else getattr(self, "freq_mhz")


class TrialRow(_Setting, CsvRow):
    """One measured window (a trial) at one clock; failed trials too, with their error."""
    sweep_id: str
    job_id: str
    backend: str
    simulated: bool
    gpu_name: str
    gpu_uuid: str
    freq_mhz: int | None
    mem_clock_mhz: int | None = None
    trial: int
    images: int = 0
    steps: int
    time_s: float | None = None
    energy_j: float | None = None
    j_per_image: float | None = None
    s_per_image: float | None = None
    avg_power_w: float | None = None
    observed_sm_clock_mhz: int | None = None
    throttle_reasons: str | None = None
    temp_c: float | None = None
    status: TrialStatus
    error: str | None = None
    # added after 0.1.0 (empty in its files)
    s_per_image_median: float | None = None  # the median of the window's per-image times (robust to stalls)
    gpu_util_pct: float | None = None  # mean GPU utilisation over the window (nvmlDeviceGetUtilizationRates)
    role: Role | None = None  # None: a measurement of its clock; else what else it is for (sweepd.vocab.Role)
    energy_j_power: float | None = None  # the window's energy from the ~10 Hz power samples (a check on energy_j)
    batch_size: int | None = None  # images per generate() call (empty: the request's one batch_size)
    energy_j_power_se: float | None = None  # energy_j_power's standard error from the samples' spread: 10 Hz
    # samples of a bursty load (SD at batch 4: 0.2 s bursts) miss the counter by up to 10 % without either being off
    energy_tail_j: float | None = None  # idle energy after the last image, up to the counter's next step, taken out
    # of energy_j (instant power times that wait; empty where only 1 s power averages exist: no correction)
    compiled: bool | None = None  # the denoiser ran torch.compiled ([workload] compile; empty: not compiled)
    power_limit_w: int | None = None  # the board's power limit set for this window (a power sweep; empty: default)
    sm_clock_mean_mhz: float | None = None  # the SM clock over the window's ~10 Hz samples: its mean and its
    sm_clock_std_mhz: float | None = None  # spread (a locked clock has none; a capped GPU's clock moves)

    @property
    def ok(self) -> bool:
        return self.status == TrialStatus.OK

    @property
    def drift_check(self) -> bool:
        """A re-measurement of the baseline clock (for drift), not part of its clock's statistics."""
        return self.role == Role.DRIFT

    @property
    def compile_failed(self) -> bool:
        """A window (or its warm-up) whose denoiser torch.compile could not compile."""
        return not self.ok and bool(self.error) and self.error.startswith("CompileFailed")

    @property
    def out_of_memory(self) -> bool:
        """A window that failed because its batch did not fit in the GPU's memory."""
        return not self.ok and bool(self.error) and "out of memory" in self.error.lower()

    @property
    def batch_trial(self) -> bool:
        """A window of the batch-size phase, not part of its clock's statistics."""
        return self.role == Role.BATCH


class ImageRow(_Setting, CsvRow):
    """Every image generated in a trial, saved or not."""
    sweep_id: str
    job_id: str
    simulated: bool
    freq_mhz: int | None
    trial: int
    index: int
    seed: int
    sha256: str
    psnr_vs_ref: float | None = None  # inf: identical to the reference clock's image
    saved_path: str | None = None
    time_s: float | None = None  # this image's generation time: its batch's time / the batch size (not in 0.1.0)
    power_limit_w: int | None = None  # a power sweep's limit

    @property
    def differs(self) -> bool:
        """The image differs from the reference clock's (PSNR below infinity)."""
        return self.psnr_vs_ref is not None and not math.isinf(self.psnr_vs_ref)


class PowerRow(_Setting, CsvRow):
    """One sample of the ~10 Hz power trace."""
    freq_mhz: int | None
    t_s: float
    power_w: float
    temp_c: float | None = None
    sm_clock_mhz: int | None = None
    throttle_reasons: str | None = None
    simulated: bool
    power_limit_w: int | None = None  # a power sweep's limit


class SummaryRow(_Setting, CsvRow):
    """One setting's statistics over its successful trials; savings are against the highest (clock or limit)."""
    freq_mhz: int | None
    n: int
    s_per_image_mean: float
    s_per_image_std: float
    j_per_image_mean: float
    j_per_image_std: float
    cv: float
    avg_power_w: float
    edp: float
    ed2p: float
    energy_saving_pct_vs_max: float
    time_change_pct_vs_max: float
    backend: str | None = None
    simulated: bool
    # added after 0.1.0 (empty in its files)
    ci95_pct: float | None = None  # 95 % CI half-width of mean J/image, in % of the mean (None: one trial)
    s_ci95_pct: float | None = None  # the same for mean s/image
    gpu_util_pct: float | None = None  # mean over the trials (None: the GPU does not report it)
    bound: Bound | None = None  # what sets the pace at this clock (see engine.summary)
    power_limit_w: int | None = None  # a power sweep's limit
    sm_clock_mean_mhz: float | None = None  # the SM clock over the trials' samples (a power sweep: where the cap
    sm_clock_std_mhz: float | None = None  # put it, and how much it moved)

    @property
    def key(self) -> str:
        return clock_key(self.setting)

    @property
    def label(self) -> str:
        return clock_label(self.setting)
