"""Power limits, the device layer (issue #29, first step): each NVML call sweepd makes for a power cap mapped to the
device API (milliwatts to watts, NVML's errors to sweepd's), read, set, reset and refused out of range in one line
naming the board's range; under a cap the fake GPU runs at the highest clock whose power fits, as firmware does on
average. `sweepd gpus` shows each GPU's limit, default and range. The power-limit sweep itself comes next."""

import json

import pytest

from conftest import sweepd, sweepd_env
from sweepd.gpu.base import GpuPermissionError, PowerLimitOutOfRange, PowerLimits
from sweepd.gpu.nvml import NvmlGpu


def test_a_power_limit_is_read_set_and_reset_through_nvml(fake_nvml):
    with NvmlGpu() as gpu:
        assert gpu.power_limits_w() == PowerLimits(250, 250, 150, 250)  # the A100 PCIe's
        gpu.set_power_limit(150)
        assert gpu.power_limits_w().current_w == 150
        assert gpu.sm_clock_mhz() < 1410 and gpu.power_w() <= 150  # the cap moves the clock down until power fits
        gpu.reset_power_limit()
        assert gpu.power_limits_w().current_w == 250 and gpu.sm_clock_mhz() == 1410
    sets = [c[2] for c in fake_nvml.calls if c[0] == "nvmlDeviceSetPowerManagementLimit"]
    assert sets == [150_000, 250_000]  # milliwatts, as NVML takes them


def test_a_limit_outside_the_boards_range_is_one_line_naming_it(fake_nvml):
    with NvmlGpu() as gpu:
        with pytest.raises(PowerLimitOutOfRange) as e:
            gpu.set_power_limit(1000)
    assert e.value.exit_code == 2 and str(e.value) == (
        "a power limit of 1000 W on NVIDIA A100-PCIE-40GB: the board takes 150 to 250 W (default 250 W)")
    assert not [c for c in fake_nvml.calls if c[0] == "nvmlDeviceSetPowerManagementLimit"]  # refused before NVML


def test_setting_a_limit_without_root_is_a_permission_error(fake_nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")
    with NvmlGpu() as gpu, pytest.raises(GpuPermissionError):
        gpu.set_power_limit(200)


def test_a_limit_set_by_another_process_is_what_every_process_reads(fake_nvml, monkeypatch, tmp_path):
    """FAKE_NVML_STATE: as on one machine, a cap set by a privileged party (nvidia-smi -pl, zeusd) is seen by all."""
    monkeypatch.setenv("FAKE_NVML_STATE", str(tmp_path / "state.json"))
    with NvmlGpu() as gpu:
        gpu.set_power_limit(175)
    state = json.loads((tmp_path / "state.json").read_text())
    assert next(iter(state.values()))["power_limit"] == [175_000]
    with NvmlGpu() as gpu:
        assert gpu.power_limits_w().current_w == 175


def test_sweepd_gpus_shows_each_gpus_power_limit_and_range(tmp_path):
    env = sweepd_env(fake_nvml=True, FAKE_NVML_GPUS="A100,H100,V100")
    a100, h100, v100 = json.loads(sweepd("gpus", "--backend", "nvml", "--json", "--root", tmp_path, env=env).stdout)
    assert a100["power_limit_w"] == {"current_w": 250, "default_w": 250, "min_w": 150, "max_w": 250}
    assert (h100["power_limit_w"]["max_w"], v100["power_limit_w"]["min_w"]) == (400, 100)
    text = sweepd("gpus", "--backend", "sim", "--root", tmp_path).stdout
    assert "power limit: 250 W (default 250 W; settable 150-250 W)" in text  # the simulated boards' real ranges


def _run(gpu, n=20):
    """n batches of one image; (J/image, s/image, the sampled clocks)."""
    gpu.pop_samples()
    e0, t0 = gpu._energy_at(gpu._now), gpu._now
    for _ in range(n):
        with gpu.busy(1):
            pass
    clocks = [s.sm_mhz for s in gpu.pop_samples()]
    return (gpu._energy_at(gpu._now) - e0) / n, (gpu._now - t0) / n, clocks


def test_the_simulated_gpu_under_a_cap_dithers_between_two_clocks_and_costs_more_than_a_lock_there():
    """gpu.simcap's assumptions: the firmware holds the average power at the limit by spending a share of the time
    at the clock above it and the rest at the one below; each batch starts uncapped for a moment (an overshoot)."""
    from sweepd.gpu.sim import SimulatedGpu

    gpu = SimulatedGpu("A100", noise="none", s_per_image=1.0)
    j0, s0, clocks0 = _run(gpu)
    assert set(clocks0) == {1410}
    gpu.set_power_limit(175)
    mix = gpu.cap()
    assert mix.lo_mhz < mix.hi_mhz and 0 < mix.hi_share < 1
    assert abs(mix.watts(gpu.busy_w) - 175) < 1e-6  # on average exactly the limit
    j, s, clocks = _run(gpu)
    assert set(clocks) == {mix.lo_mhz, mix.hi_mhz}  # a capped clock has a spread; a locked one has none
    assert j < j0 and s > s0
    assert gpu.power_limits_w().current_w == 175
    gpu.reset_power_limit()
    gpu.lock_clocks(mix.hi_mhz)  # the supported clock just above the cap's mean
    j_lock, s_lock, clocks_lock = _run(gpu)
    # as fast within 1 %, for less energy: the cap's overshoot and its time below the locked clock cost it
    assert set(clocks_lock) == {mix.hi_mhz} and abs(s_lock / s - 1) < 0.01 and j_lock < j
    with pytest.raises(PowerLimitOutOfRange):
        gpu.set_power_limit(1000)


def test_a_cap_the_locked_clock_already_fits_under_changes_nothing():
    from sweepd.gpu.sim import SimulatedGpu

    gpu = SimulatedGpu("A100", noise="none", s_per_image=1.0)
    gpu.lock_clocks(810)
    j, s, _ = _run(gpu)
    gpu.set_power_limit(240)
    assert gpu.cap() is None and _run(gpu)[:2] == pytest.approx((j, s))


def test_a_cap_set_through_the_guard_is_reset_on_exit_and_after_a_sigkill_at_the_next_start(fake_nvml, monkeypatch,
                                                                                             tmp_path):
    """The same record and repair as locked clocks: the next start (run, worker, daemon) resets a dead process's cap."""
    import os
    import subprocess
    import sys

    from conftest import sweepd_env
    from sweepd.engine import runner
    from sweepd.gpu.locks import ClockGuard, read_records
    from sweepd.paths import Layout

    state = tmp_path / "nvml-state.json"
    monkeypatch.setenv("FAKE_NVML_STATE", str(state))
    layout = Layout.resolve(tmp_path)
    with NvmlGpu() as gpu, ClockGuard(gpu, layout.gpu_locks) as guard:
        guard.cap_power(200)
        [rec] = read_records(layout.gpu_locks)
        assert rec.power_limit_w == 200 and gpu.power_limits_w().current_w == 200
        guard.lock(1095, None)
    with NvmlGpu() as gpu:
        assert gpu.power_limits_w().current_w == 250 and gpu.sm_clock_mhz() == 1410
    assert read_records(layout.gpu_locks) == []
    code = ("import os, sys; from sweepd.gpu.nvml import NvmlGpu; from sweepd.gpu.locks import ClockGuard; "
            "g = ClockGuard(NvmlGpu(), sys.argv[1]).__enter__(); g.cap_power(175); os._exit(137)")
    env = sweepd_env(fake_nvml=True, FAKE_NVML_GPUS="A100", FAKE_NVML_STATE=str(state))
    r = subprocess.run([sys.executable, "-c", code, str(layout.gpu_locks)], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 137, r.stderr
    with NvmlGpu() as gpu:
        assert gpu.power_limits_w().current_w == 175  # killed with the cap set: nothing reset it
    done = runner.repair_locks(layout)
    assert len(done) == 1 and read_records(layout.gpu_locks) == []
    with NvmlGpu() as gpu:
        assert gpu.power_limits_w().current_w == 250



@pytest.mark.parametrize("knob", ["clock", "power"])
def test_a_sweep_killed_with_sigkill_gives_the_gpu_back_with_its_production_lock_and_cap(fake_nvml, monkeypatch,
                                                                                           tmp_path, knob):
    """`sweepd clock set` left 945 MHz and a 200 W cap on the GPU; a sweep of either knob lifted or reset them and
    was killed. Its release would have put both back; the next start's repair resets the GPU and puts them back
    too (it reset to the board's defaults before, and the production settings were lost)."""
    import subprocess
    import sys

    from conftest import sweepd_env
    from sweepd.engine import runner
    from sweepd.gpu.locks import read_records
    from sweepd.paths import Layout
    from sweepd.records.gpulock import ProductionLock

    state = tmp_path / "nvml-state.json"
    monkeypatch.setenv("FAKE_NVML_STATE", str(state))
    layout = Layout.resolve(tmp_path)
    with NvmlGpu() as gpu:  # as `sweepd clock set` leaves them
        gpu.lock_clocks(945, None)
        gpu.set_power_limit(200)
        ProductionLock(uuid=gpu.uuid, index=gpu.index, name=gpu.name, backend=gpu.backend, freq_mhz=945,
                       power_limit_w=200, source="manual").write(
            ProductionLock.path_for(layout.production_locks, gpu.uuid))
    sweep = "g.lock(1095, None)" if knob == "clock" else "g.cap_power(175)"
    code = ("import os, sys; from pathlib import Path; from sweepd.gpu.nvml import NvmlGpu; "
            "from sweepd.gpu.locks import ClockGuard; "
            f"g = ClockGuard(NvmlGpu(), sys.argv[1], Path(sys.argv[2])).__enter__(); {sweep}; os._exit(137)")
    env = sweepd_env(fake_nvml=True, FAKE_NVML_GPUS="A100", FAKE_NVML_STATE=str(state))
    r = subprocess.run([sys.executable, "-c", code, str(layout.gpu_locks), str(layout.production_locks)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 137, r.stderr
    with NvmlGpu() as gpu:  # killed mid-sweep: its own setting holds, the other knob's production one lifted
        assert (gpu.sm_clock_mhz(), gpu.power_limits_w().current_w) == ((1095, 250) if knob == "clock" else
                                                                          (1005, 175))  # unlocked, under the cap
    [line] = runner.repair_locks(layout)
    assert "production setting put back (945 MHz and a 200 W cap)" in line, line
    assert read_records(layout.gpu_locks) == []
    with NvmlGpu() as gpu:
        assert gpu.sm_clock_mhz() == 945 and gpu.power_limits_w().current_w == 200


def test_a_refused_cap_leaves_no_record(fake_nvml, monkeypatch, tmp_path):
    from sweepd.gpu.locks import ClockGuard, read_records

    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")
    with NvmlGpu() as gpu, ClockGuard(gpu, tmp_path) as guard:
        with pytest.raises(GpuPermissionError):
            guard.cap_power(200)
        assert read_records(tmp_path) == [] and guard.capped is None
