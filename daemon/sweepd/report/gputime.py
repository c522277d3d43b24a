"""Where a sweep's GPU time went: the trial windows the answer needs (``min_trials`` per clock), the extra
trials sequential sampling added, the baseline's re-measurements, a batch-size list's windows, settling,
warm-up, the waits for the energy counter's steps, loading the model (each SLURM step loads it again) and the rest
(the host writing images and rows while the GPU waits). On the simulated GPU these are simulated seconds, and the
model's loads (this machine's seconds) are counted but not timed."""

from __future__ import annotations

from dataclasses import dataclass

from sweepd.report.data import JobResults


@dataclass
class GpuTime:
    total_s: float
    measure_s: float  # the first min_trials windows of each clock
    extra_s: float  # windows beyond them (sequential sampling to the CI target)
    drift_s: float  # the baseline measured again
    settle_s: float
    warmup_s: float
    other_s: float
    batch_s: float = 0.0  # a batch-size list's windows at the highest clock
    counter_s: float = 0.0  # waiting for the energy counter's steps around the windows
    load_s: float = 0.0  # loading the model, every time a process did (in total_s; 0 on the simulated GPU)
    loads: int = 1  # how many times the model was loaded (a SLURM sweep: once per step)

    def line(self) -> str:
        parts = [("measurement", self.measure_s, False), ("extra trials", self.extra_s, False),
                 ("baseline again", self.drift_s, False), ("batch sizes", self.batch_s, True),
                 ("settle", self.settle_s, False), ("warm-up", self.warmup_s, False),
                 ("counter steps", self.counter_s, True), (f"model loads ({self.loads})", self.load_s, True),
                 ("other", self.other_s, False)]
        parts = [(name, s) for name, s, if_any in parts if s or not if_any]  # if_any: said only where it took time
        share = ", ".join(f"{name} {s / self.total_s * 100:.0f}%" for name, s in parts) if self.total_s else ""
        loads = f"; the model loaded {self.loads} times (not timed on the simulated GPU)" \
            if self.loads > 1 and not self.load_s else ""
        return f"GPU time {self.total_s / 60:.1f} min: {share}{loads}"


def breakdown(job: JobResults) -> GpuTime | None:
    """None for a sweep that did not record its device time (sweepd 0.1)."""
    dt = job.manifest.device_time
    if dt is None or not dt.total_s:
        return None
    least = job.manifest.request.protocol.least
    measure = extra = drift = batch = 0.0
    seen: dict[int | None, int] = {}  # each clock's own windows so far
    for t in job.trials:
        if t.time_s is None:
            continue
        if t.drift_check:
            drift += t.time_s
        elif t.batch_trial:
            batch += t.time_s
        else:
            seen[t.setting] = seen.get(t.setting, 0) + 1
            if seen[t.setting] <= least:
                measure += t.time_s
            else:
                extra += t.time_s
    other = max(0.0, dt.total_s - measure - extra - drift - batch - dt.settle_s - dt.warmup_s - dt.counter_s)
    load = 0.0 if job.manifest.simulated else dt.model_load_s  # the sim's figures never hold this machine's time
    return GpuTime(dt.total_s + load, measure, extra, drift, dt.settle_s, dt.warmup_s, other, batch, dt.counter_s,
                   load, max(1, job.manifest.model_loads))
