"""Which clocks a sweep visits, from the real clock tables."""

import pytest

from sweepd.freqplan import ClockPlanError, nearest, plan_clocks
from sweepd.gpu.sim import SimulatedGpu
from sweepd.request import Frequencies


@pytest.mark.parametrize("model, count, top, mem", [("H100", 86, 1785, 2619), ("A100", 61, 1410, 1215),
                                                    ("V100", 117, 1380, 877)])
def test_dvfs_visits_every_supported_clock_above_the_floor(model, count, top, mem):
    plan = plan_clocks(Frequencies(), SimulatedGpu(model))
    assert len(plan) == count
    assert plan[0].freq_mhz == top and plan[-1].freq_mhz >= 510
    assert [p.freq_mhz for p in plan] == sorted((p.freq_mhz for p in plan), reverse=True)
    assert {p.mem_mhz for p in plan} == {mem}


def test_stride_floor_and_memory_clock():
    gpu = SimulatedGpu("H100")
    plan = plan_clocks(Frequencies(stride=10, floor_mhz=1000, memory_mhz=1593), gpu)
    assert [p.freq_mhz for p in plan] == [1785, 1635, 1485, 1335, 1185, 1035]
    assert {p.mem_mhz for p in plan} == {1593}


def test_custom_clocks_run_high_to_low():
    plan = plan_clocks(Frequencies(mode="custom", list=[510, 1410, 945]), SimulatedGpu("A100"))
    assert [p.freq_mhz for p in plan] == [1410, 945, 510]


def test_unsupported_custom_clock_names_the_nearest_supported_ones():
    with pytest.raises(ClockPlanError) as e:
        plan_clocks(Frequencies(mode="custom", list=[1410, 950, 2000]), SimulatedGpu("A100"))
    msg = str(e.value)
    assert e.value.field == "frequencies.list"
    assert "950 MHz is not supported" in msg and "945 MHz or 960 MHz" in msg
    assert "2000 MHz is not supported" in msg and "nearest: 1410 MHz" in msg


def test_unsupported_memory_clock_and_floor_too_high():
    with pytest.raises(ClockPlanError, match="frequencies.memory_mhz"):
        plan_clocks(Frequencies(memory_mhz=1000), SimulatedGpu("A100"))
    with pytest.raises(ClockPlanError, match="frequencies.floor_mhz"):
        plan_clocks(Frequencies(floor_mhz=2000), SimulatedGpu("A100"))


def test_baseline_has_one_point_without_clock_control():
    [p] = plan_clocks(Frequencies(mode="baseline"), SimulatedGpu("V100"))
    assert p.freq_mhz is None and p.label == "baseline" and p.key == ""


def test_nearest():
    assert nearest([1410, 1395, 1380], 1390) == [1380, 1395]
    assert nearest([1410, 1395], 100) == [1395]


def test_the_measuring_order_keeps_the_highest_clock_first_and_visits_every_clock_once():
    from sweepd.freqplan import ClockPoint, measuring_order

    plan = [ClockPoint(f, 1215) for f in (1410, 1305, 1200, 1095, 1005, 945, 885)]
    f = lambda pts: [p.freq_mhz for p in pts]  # noqa: E731
    assert f(measuring_order(plan, "descending", 1)) == f(plan)
    assert f(measuring_order(plan, "serpentine", 1)) == [1410, 1305, 1095, 945, 885, 1005, 1200]
    a, b = measuring_order(plan, "shuffled", 1), measuring_order(plan, "shuffled", 2)
    assert a == measuring_order(plan, "shuffled", 1) and a != b  # the seed decides, and only the seed
    for order in (a, b):
        assert order[0] == plan[0] and sorted(f(order)) == sorted(f(plan))
