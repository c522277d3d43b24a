"""The NVML backend, run against a fake pynvml module (no GPU here): every call and error code."""

import logging

import pytest

from sweepd.gpu import list_devices, open_device
from sweepd.gpu.base import GpuNotFound, GpuPermissionError, GpuUnavailable, decode_reasons
from sweepd.gpu.nvml import NvmlGpu


def test_identity_and_clock_tables(fake_nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_GPUS", "A100,H100")
    with NvmlGpu(index=1) as gpu:
        assert gpu.name == "NVIDIA H100 NVL" and gpu.backend == "nvml" and not gpu.simulated
        assert gpu.memory_clocks() == [2619, 1593]
        assert len([f for f in gpu.graphics_clocks(2619) if f >= 510]) == 86
        uuid = gpu.uuid
    with NvmlGpu(uuid=uuid) as same:
        assert same.index == 1
    assert fake_nvml._state["init"] == 0  # every nvmlInit has its nvmlShutdown


def test_lock_sets_core_and_memory_and_reset_undoes_both(fake_nvml):
    with NvmlGpu(index=0) as gpu:
        gpu.lock_clocks(945, 1215)
        assert gpu.sm_clock_mhz() == 945
        gpu.reset_clocks()
    names = [c[0] for c in fake_nvml.calls]
    assert names == ["nvmlDeviceSetGpuLockedClocks", "nvmlDeviceSetMemoryLockedClocks",
                     "nvmlDeviceResetGpuLockedClocks", "nvmlDeviceResetMemoryLockedClocks"]
    assert fake_nvml.calls[0][2:] == (945, 945)


def test_memory_lock_not_supported_before_ampere_is_tolerated(fake_nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_GPUS", "V100")
    with NvmlGpu() as gpu:
        gpu.lock_clocks(1095, 877)
        gpu.reset_clocks()
    assert [c[0] for c in fake_nvml.calls] == ["nvmlDeviceSetGpuLockedClocks", "nvmlDeviceResetGpuLockedClocks"]


def test_no_permission_says_what_is_missing_and_how_to_observe(fake_nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")
    with NvmlGpu() as gpu, pytest.raises(GpuPermissionError) as e:
        gpu.lock_clocks(945, 1215)
    assert "CAP_SYS_ADMIN" in str(e.value) and 'clock_control = "observe"' in str(e.value)


def test_no_driver_and_bad_index(fake_nvml, monkeypatch):
    with pytest.raises(GpuNotFound, match="index 3 does not exist; this machine has 1"):
        NvmlGpu(index=3)
    with pytest.raises(GpuNotFound):
        NvmlGpu(uuid="GPU-deadbeef-0000")
    monkeypatch.setenv("FAKE_NVML_ABSENT", "1")
    with pytest.raises(GpuUnavailable, match="no NVIDIA driver"):
        NvmlGpu()


def test_auto_falls_back_to_the_simulator_with_a_warning(fake_nvml, monkeypatch, caplog):
    monkeypatch.setenv("FAKE_NVML_ABSENT", "1")
    with caplog.at_level(logging.WARNING):
        gpu = open_device("auto", sim_model="V100")
    assert gpu.simulated and gpu.backend == "sim" and "simulated" in caplog.text
    with pytest.raises(GpuUnavailable):
        open_device("nvml")
    assert [d.backend for d in list_devices("auto")] == ["sim"] * 3


def test_auto_takes_the_real_gpu_when_nvml_answers(fake_nvml):
    gpu = open_device("auto")
    assert gpu.backend == "nvml" and not gpu.simulated
    gpu.close()


def test_energy_power_temperature_and_reasons(fake_nvml, monkeypatch):
    monkeypatch.setenv("FAKE_NVML_CAP_MHZ", "1200")
    with NvmlGpu() as gpu:
        gpu.lock_clocks(1410, None)
        assert gpu.power_w() > 0 and gpu.temperature_c() == 45
        assert gpu.sm_clock_mhz() == 1200
        assert decode_reasons(gpu.clock_event_reasons()) == "sw_power_cap"
        assert isinstance(gpu.energy_mj(), int)


def test_decode_reasons():
    assert decode_reasons(0) == ""
    assert decode_reasons(0x4 | 0x40) == "sw_power_cap|hw_thermal_slowdown"
    assert decode_reasons(0x10000) == "0x10000"


def test_utilisation_is_read_and_sampled_and_its_absence_leaves_the_rest(fake_nvml, monkeypatch):
    import time

    from sweepd.gpu.sampler import Sampler

    monkeypatch.setenv("FAKE_NVML_UTIL_PCT", "63")
    with NvmlGpu(index=0) as gpu:
        assert gpu.utilization_pct() == 63.0
        with Sampler(gpu, interval_s=0.01) as s:
            time.sleep(0.05)
        assert s.samples and all(x.util_pct == 63.0 for x in s.samples)
        monkeypatch.setenv("FAKE_NVML_UTIL_PCT", "unsupported")  # a GPU or driver that does not report it
        with Sampler(gpu, interval_s=0.01) as s:
            time.sleep(0.05)
        assert s.samples and all(x.util_pct is None and x.power_w > 0 for x in s.samples)


def test_power_is_read_instant_where_the_driver_has_the_field_else_as_the_1s_average(fake_nvml, monkeypatch):
    """NVML's power usage is a 1 s average on Ampere and newer (A100 aside): on a real H200 at batch 4 its samples
    fell 5-20 % short of the energy counter over 2 s windows. The instant-power field is read where it answers."""
    with NvmlGpu() as gpu:
        assert gpu.power_w() > 0 and gpu.power_reading() == "instant" and gpu.info().power_reading == "instant"
    monkeypatch.setenv("FAKE_NVML_POWER", "average")  # an older driver: the field answers NOT_SUPPORTED
    with NvmlGpu() as gpu:
        assert gpu.power_reading() == "1 s average" and gpu.power_w() > 0
        assert gpu.info().power_reading == "1 s average"
