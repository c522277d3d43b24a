"""The simulated GPU: calibration against real SD optima, counter quantisation, time stretching."""

import pytest

from sweepd.freqplan import plan_clocks
from sweepd.gpu.sim import HEADROOM, SimulatedGpu
from sweepd.gpu.simmodel import anchors, calibrate
from sweepd.request import Frequencies


@pytest.mark.parametrize("model", ["A100", "H100", "V100"])
def test_model_optimum_matches_the_measured_sd_optimum(model):
    """Over the GPU's real clock table, EDP is minimal at the measured clock with the measured saving."""
    a, m = anchors()[model], calibrate(model)
    clocks = [p.freq_mhz for p in plan_clocks(Frequencies(), SimulatedGpu(model))]
    edp = {f: m.energy_ratio(f) * m.slowdown(f) for f in clocks}
    best = min(edp, key=edp.get)
    assert best == a["optimal_frequency_edp_mhz"]
    assert (1 - m.energy_ratio(best)) * 100 == pytest.approx(a["energy_savings_edp_percent"], abs=0.5)
    # U-shaped: the lowest clock costs more energy than the optimum, and is slower than the maximum
    assert m.energy_ratio(clocks[-1]) > m.energy_ratio(best) and m.slowdown(clocks[-1]) > 1.5


def test_a100_saves_about_a_quarter_at_945():
    m = calibrate("A100")
    assert 0.72 < m.energy_ratio(945) < 0.76 and 1.0 < m.slowdown(945) < 1.05


class FakeTime:
    def __init__(self):
        self.now = 1000.0

    def clock(self):
        return self.now

    def sleep(self, s):
        self.now += s


def test_energy_counter_moves_in_100ms_steps_at_idle_power():
    t = FakeTime()
    gpu = SimulatedGpu("A100", clock=t.clock, sleep=t.sleep)
    t.now += 0.05
    assert gpu.energy_mj() == 0  # no step published yet
    t.now += 0.06
    assert gpu.energy_mj() == int(gpu.model.p_idle_w * 0.1 * 1000)
    t.now += 0.09  # 0.20 s: the second step
    assert gpu.energy_mj() == int(gpu.model.p_idle_w * 0.2 * 1000)


def test_busy_stretches_work_by_the_slowdown_and_draws_busy_power():
    t = FakeTime()
    gpu = SimulatedGpu("A100", clock=t.clock, sleep=t.sleep)
    gpu.lock_clocks(510, 1215)
    start, e0 = t.now, gpu.energy_mj()
    with gpu.busy():
        t.now += 1.0  # the real work took 1 s
    elapsed = t.now - start
    assert elapsed == pytest.approx(gpu.model.slowdown(510) * HEADROOM)
    t.now += 0.1 - (t.now - 1000.0) % 0.1 + 1e-9  # to the next published step
    joules = (gpu.energy_mj() - e0) / 1000
    assert joules >= gpu.model.busy_power_w(510) * elapsed * 0.95
    assert gpu.power_w() == gpu.model.p_idle_w


def test_jitter_is_absorbed_and_a_long_stall_still_shows():
    t = FakeTime()
    gpu = SimulatedGpu("H100", clock=t.clock, sleep=t.sleep)  # at its max clock: slowdown 1
    durations = []
    for real in (1.0, 1.1, 0.9, 1.05, 3.0):  # CPU jitter, then a stall
        start = t.now
        with gpu.busy():
            t.now += real
        durations.append(t.now - start)
    assert durations[0] == pytest.approx(1.25) and durations[1] == pytest.approx(1.25)
    assert durations[2] == pytest.approx(0.9 * 1.25) and durations[3] == pytest.approx(0.9 * 1.25)
    assert durations[4] == pytest.approx(3.0)  # longer than the headroom: it shows, as on a real machine
    with pytest.raises(Exception, match="not a supported core clock"):
        gpu.lock_clocks(1000)


def test_sim_identity_says_simulated():
    gpu = SimulatedGpu("V100")
    assert gpu.simulated and "(simulated)" in gpu.name and gpu.info().simulated is True
