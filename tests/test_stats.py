"""The statistics behind the answer: Welch's test, ratio CIs, bottlenecks, drift and equivalent sets, on
trial rows made up here (whole sweeps on the simulated GPU: test_fidelity.py)."""

import math
import statistics

import pytest

from sweepd.engine.summary import Range, bottleneck, drifts, reference_trials, summarize
from sweepd.records.rows import TrialRow
from sweepd.report import optima
from sweepd.engine.summary import by_clock
from sweepd.stats import ratio_ci95, significantly_greater, welch_diff


def test_welch_difference_matches_the_textbook_and_needs_two_values_a_side():
    a, b = [20.0, 22.0, 24.0], [10.0, 11.0, 12.0, 13.0]
    d, half = welch_diff(a, b)
    se = math.sqrt(statistics.variance(a) / 3 + statistics.variance(b) / 4)
    assert d == pytest.approx(22 - 11.5)
    # Welch-Satterthwaite: (4/3 + 5/12)^2 / ((4/3)^2 / 2 + (5/12)^2 / 3) = 3.2347, not rounded down: t = 3.0557
    # (scipy.stats.t.ppf(0.975, 3.2347); 3.182 at df 3 made the interval 4 % too wide)
    assert half == pytest.approx(3.055712710425896 * se, rel=1e-6)
    assert significantly_greater(a, b) and not significantly_greater(b, a)
    assert welch_diff([1.0], b)[1] == math.inf and not significantly_greater([100.0], b)
    assert not significantly_greater([10.0, 12.0], [11.0, 11.5])  # overlapping: no claim


def test_t_and_chi_square_quantiles_match_scipy_for_any_degrees_of_freedom():
    from sweepd.stats import chi2_quantile, t95, t_quantile

    # scipy.stats.t.ppf(0.975, df) and chi2.ppf, computed once (SciPy is not a dependency)
    for df, q in [(1, 12.706204736174694), (2, 4.302652729749462), (3.2, 3.0728289297131623),
                  (7.5, 2.333039626864974), (31, 2.039513446396408), (100, 1.9839715185235518)]:
        assert t95(df) == pytest.approx(q, rel=1e-9), df
    assert t95(31) / 1.96 > 1.039  # 1.96 beyond df 30 was 3.9 % too narrow at df 31
    assert t_quantile(0.005, 9) == pytest.approx(3.689662392304245, rel=1e-9)
    assert chi2_quantile(0.1, 2) == pytest.approx(0.21072103131565273, rel=1e-9)
    assert chi2_quantile(0.9, 7.5) == pytest.approx(12.692400073293852, rel=1e-9)


def test_ratio_ci_holds_the_true_ratio_and_is_none_with_one_value():
    r, lo, hi = ratio_ci95([75.0, 76.0, 74.0, 75.5], [100.0, 101.0, 99.0, 100.5])
    assert lo < 0.75 < hi and r == pytest.approx(0.75, abs=0.002) and hi - lo < 0.03
    assert ratio_ci95([75.0], [100.0, 101.0]) == (75 / 100.5, None, None)


def row(f, trial, j, s, util=None, role=None, ok=True):
    return TrialRow(sweep_id="s", job_id="j", backend="sim", simulated=True, gpu_name="g", gpu_uuid="u",
                    freq_mhz=f, trial=trial, images=4, steps=2, time_s=4 * s, energy_j=4 * j, j_per_image=j,
                    s_per_image=s, avg_power_w=j / s, status="ok" if ok else "failed", gpu_util_pct=util, role=role)


def rows(f, j, s, util=None, n=4, spread=0.01, role=None, first=1):
    """n trials around (j, s) with a small, fixed spread."""
    k = [1 + spread * x for x in (-1.5, -0.5, 0.5, 1.5, 0.0, 1.0)[:n]]
    return [row(f, first + i, j * x, s * x, util, role) for i, x in enumerate(k)]


def test_a_flat_clock_with_an_idle_gpu_is_host_bound_and_a_slower_one_gpu_bound_down_to_the_last():
    # host floor at the top (flat time, GPU 60 % busy), then time grows as the clock falls
    order = [1410, 1200, 945, 780, 645, 510]
    low = rows(780, 85, 1.3, 95) + rows(645, 95, 1.6, 88) + rows(510, 110, 2.0, 97)
    trials = rows(1410, 100, 1.0, 60, spread=0.002) + rows(1200, 90, 1.0, 62, spread=0.002) \
        + rows(945, 80, 1.0, 70, spread=0.002) + low
    out = summarize(trials, order)
    assert [r.bound for r in out] == ["host", "host", "host", "gpu", "gpu", "gpu"]  # 645: slower than 780 is enough
    assert [(b.from_mhz, b.to_mhz, b.bound) for b in bottleneck(out)] == [(1410, 945, "host"), (780, 510, "gpu")]
    # the same flat means measured to +-1 %: no slowdown shown, but none beyond 2 % ruled out either. Absence of
    # evidence is not "host-bound, the saving is free"
    loose = summarize(rows(1410, 100, 1.0, 60) + rows(1200, 90, 1.0, 62) + rows(945, 80, 1.0, 70) + low, order)
    assert [r.bound for r in loose] == ["host", "unresolved", "unresolved", "gpu", "gpu", "gpu"]
    # a wider margin (protocol.equivalence_margin_pct) accepts them
    assert [r.bound for r in summarize(rows(1410, 100, 1.0, 60) + rows(1200, 90, 1.0, 62), [1410, 1200],
                                       margin_pct=5.0)] == ["host", "host"]
    # a busy GPU whose time hardly changes with the clock (memory-bound) is GPU-bound, not host-bound
    busy = summarize(rows(1410, 100, 1.0, 99) + rows(1200, 90, 1.0, 98), [1410, 1200])
    assert [r.bound for r in busy] == ["gpu", "gpu"]
    # without utilisation readings (sweepd 0.1's files) a flat clock cannot be told apart
    old = summarize(rows(1410, 100, 1.0) + rows(1200, 90, 1.0) + rows(510, 110, 2.0), [1410, 1200, 510])
    assert [r.bound for r in old] == ["unknown", "unknown", "gpu"]


def test_a_drifted_baseline_is_replaced_by_its_remeasurement_only_beyond_noise_and_target():
    cold = rows(1410, 160, 1.6)  # the first measurement, right after the model loaded: slow
    again = rows(1410, 100, 1.0, role="drift", first=5, n=3)
    trials = cold + rows(945, 75, 1.02) + again
    (d,) = drifts(trials)
    assert d.j_pct == pytest.approx(-37.5, abs=0.5) and d.exceeds(2.0) and d.n == 3
    assert reference_trials(trials, [1410, 945], 2.0) == again
    out = summarize(trials, [1410, 945], 2.0)
    # savings against the re-measurement: 945 MHz saves 25 % and is 2 % slower, not "37 % faster"
    assert out[1].energy_saving_pct_vs_max == pytest.approx(25, abs=0.5)
    assert out[1].time_change_pct_vs_max == pytest.approx(2.5, abs=0.5)
    # the reference clock's row is the reference it stands for: its re-measurement, not its cold first one
    assert out[0].n == 3 and out[0].j_per_image_mean == pytest.approx(100, abs=1) and out[0].energy_saving_pct_vs_max == 0
    # a small drift inside the noise keeps the first measurement as the reference
    noisy = rows(1410, 100, 1.0, spread=0.05) + rows(1410, 103, 1.0, role="drift", first=5, n=3, spread=0.05)
    (d,) = drifts(noisy)
    assert not d.exceeds(2.0) and reference_trials(noisy, [1410], 2.0) == noisy[:4]


def test_the_equivalent_set_holds_every_clock_not_significantly_worse_and_the_saving_has_a_ci():
    trials = (rows(1410, 100, 1.0, spread=0.01) + rows(1095, 80, 1.02, spread=0.01)
              + rows(1005, 76.5, 1.03, spread=0.03) + rows(945, 76, 1.04, spread=0.01)
              + rows(780, 90, 1.3, spread=0.01))
    order = [1410, 1095, 1005, 945, 780]
    out = summarize(trials, order)
    o = optima.find("energy", False, out, by_clock(trials), reference_trials(trials, order, 2.0), 5.0)
    assert o.freq_mhz == 945 and o.freq == 945 and sorted(o.equivalent_mhz) == [945, 1005]
    lo, hi = o.energy_saving_ci95
    assert lo < o.energy_saving_pct < hi and lo > 20 and o.saving_certain
    assert o.time_change_ci95[0] < 4 < o.time_change_ci95[1]
    # one trial a clock: no CI, and nothing can be ruled out
    single = [r for r in trials if r.trial == 1]
    o1 = optima.find("energy", False, summarize(single, order), by_clock(single), reference_trials(single, order, 2.0),
                     5.0)
    assert o1.energy_saving_ci95 is None and sorted(o1.equivalent_mhz) == sorted(order)


def test_a_host_bound_range_of_one_clock_says_nothing_about_the_clocks_below_it():
    """The real H200 at batch 4: only 1980 MHz had the GPU idle enough to count as host-bound; 'down to 1980 MHz
    the energy saving is free' said nothing true."""
    from sweepd.report.analysis import _sentence

    one = _sentence(Range(1980, 1980, "host"), 2.0)
    assert one.startswith("host-bound at 1980 MHz") and "down to" not in one and "free" not in one
    assert "down to 945 MHz the energy saving is free" in _sentence(Range(1410, 945, "host"), 2.0)
    assert "not resolved at this precision" in _sentence(Range(1305, 1050, "unresolved"), 2.0)


def test_a_windows_power_sample_energy_carries_the_standard_error_its_spread_gives():
    from sweepd.engine.measure import power_energy
    from sweepd.gpu.base import Sample

    steady = power_energy([Sample(i, 400.0 + (i % 2), 40, 1980, 0) for i in range(24)], 2.4)
    assert steady.joules == pytest.approx(961.2) and steady.se < 0.3
    # 10 Hz samples of 0.15 s bursts land on 700 W or 150 W: a 10 % miss is within what they can tell
    bursty = power_energy([Sample(i, 700.0 if i % 3 else 150.0, 40, 1980, 0) for i in range(24)], 2.4)
    assert 3 * bursty.se > 0.1 * bursty.joules
    assert power_energy([Sample(i, 400.0, 40, 1980, 0) for i in range(9)], 2.4) is None  # under 1 s of samples


def test_on_a_real_h200_no_free_saving_from_absence_of_evidence_and_no_reference_against_itself():
    """The real H200 at batch 4 (tests/fixtures/h200-batch4): the stride sweep called 1980-1050 MHz host-bound
    ("the saving is free") because no difference was significant, where the per-image trace shows 1305 MHz 33 %
    slower; the adaptive sweep's ED2P answer was "1980 MHz, energy -4.8 %", the reference against its own
    re-measurement."""
    from pathlib import Path

    from sweepd.vocab import Objective

    fixtures = Path(__file__).parent / "fixtures" / "h200-batch4"
    stride = TrialRow.read_all(fixtures / "stride-trials.csv")
    plan = sorted({t.freq_mhz for t in stride}, reverse=True)
    out = summarize(stride, plan, 2.0)
    claimed = [r.freq_mhz for r in out[1:] if r.bound == "host"]
    assert claimed == [], [(r.freq_mhz, r.bound) for r in out]  # 3 trials of 2 s cannot show a slowdown within 2 %
    assert any(r.bound == "unresolved" for r in out)
    ada = TrialRow.read_all(fixtures / "adaptive-trials.csv")
    order = sorted({t.freq_mhz for t in ada}, reverse=True)
    rows, ref = summarize(ada, order, 2.0), reference_trials(ada, order, 2.0)
    assert rows[0].energy_saving_pct_vs_max == pytest.approx(0) and rows[0].time_change_pct_vs_max == pytest.approx(0)
    for metric in Objective:
        o = optima.find(metric, False, rows, by_clock(ada), ref, 5.0)
        if o.freq_mhz == 1980:  # stay at the reference: no saving of it against itself is claimed
            assert o.is_reference and o.energy_saving_ci95 is None and o.next_best.freq_mhz != 1980
        else:
            assert not o.is_reference
