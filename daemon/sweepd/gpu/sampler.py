"""A ~10 Hz thread that samples power, temperature, SM clock and clock event reasons.

NVML calls take 10-20 ms each, so they never run inside a measured window; the sweep reads the
samples that fall inside each window afterwards (observed clock, reasons, temperature).
"""

from __future__ import annotations

import logging
import threading

from sweepd.gpu.base import GpuDevice, GpuError, Sample

log = logging.getLogger(__name__)


class Sampler:
    def __init__(self, device: GpuDevice, interval_s: float = 0.1):
        self.device = device
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-sampler", daemon=True)
        self._warned = False

    def __enter__(self) -> "Sampler":
        if not self.synthetic:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)

    @property
    def synthetic(self) -> bool:
        """The simulated GPU writes its own trace on its own clock; a real one is sampled by this thread."""
        return self.device.synthesizes_samples

    def _collect(self) -> None:
        if self.synthetic:
            self.samples.extend(self.device.pop_samples())

    def _run(self) -> None:
        while not self._stop.is_set():
            d = self.device
            try:
                self.samples.append(Sample(d.now_ns(), d.power_w(), d.temperature_c(),
                                           d.sm_clock_mhz(), d.clock_event_reasons(), self._util(d)))
            except GpuError as e:
                if not self._warned:
                    log.warning("GPU sampling failed (%s); trials will lack observed clock and temperature", e)
                    self._warned = True
            self._stop.wait(self.interval_s)

    def _util(self, d: GpuDevice) -> float | None:
        try:
            return d.utilization_pct()
        except GpuError:  # not every GPU reports it: the trial's gpu_util_pct stays empty
            return None

    def window(self, t0_ns: int, t1_ns: int) -> list[Sample]:
        """The samples taken in [t0, t1): one taken at the very end belongs to what follows the window."""
        self._collect()
        return [s for s in list(self.samples) if t0_ns <= s.t_ns < t1_ns]

    def take(self) -> list[Sample]:
        """Hand over the samples so far (for the power trace) and start a fresh list."""
        self._collect()
        out, self.samples = self.samples, []
        return out
