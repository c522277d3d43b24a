"""Clock locks never outlive a sweep: reset on error, on exit, and repaired after a crash."""

import json
import os
import socket
import subprocess
import sys

import pytest

from sweepd.gpu import open_device
from sweepd.gpu.locks import ClockGuard, GpuBusyError, read_records, repair_stale_locks
from sweepd.gpu.nvml import NvmlGpu


def names(fake):
    return [c[0] for c in fake.calls]


def test_guard_records_the_lock_and_resets_on_error(fake_nvml, tmp_path):
    gpu = NvmlGpu()
    with pytest.raises(RuntimeError):
        with ClockGuard(gpu, tmp_path) as guard:
            guard.lock(945, 1215)
            [rec] = read_records(tmp_path)
            assert rec.uuid == gpu.uuid and rec.pid == os.getpid()
            raise RuntimeError("the workload crashed")
    assert names(fake_nvml)[-2:] == ["nvmlDeviceResetGpuLockedClocks", "nvmlDeviceResetMemoryLockedClocks"]
    assert read_records(tmp_path) == []


def test_guard_without_lock_touches_nothing(fake_nvml, tmp_path):
    with ClockGuard(NvmlGpu(), tmp_path):
        pass
    assert fake_nvml.calls == []


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_lock_of_a_dead_process_is_reset_at_next_start(fake_nvml, tmp_path):
    gpu = NvmlGpu()
    (tmp_path / f"{gpu.uuid}.json").write_text(json.dumps(
        {"uuid": gpu.uuid, "backend": "nvml", "pid": dead_pid(), "host": socket.gethostname()}))
    (tmp_path / "other-host.json").write_text(json.dumps(
        {"uuid": "GPU-1", "backend": "nvml", "pid": dead_pid(), "host": "another-node"}))
    done = repair_stale_locks(tmp_path, lambda rec: open_device("nvml", uuid=rec.uuid))
    assert len(done) == 1 and "reset clocks" in done[0]
    assert ("nvmlDeviceResetGpuLockedClocks", gpu.uuid) in fake_nvml.calls
    assert [r.uuid for r in read_records(tmp_path)] == ["GPU-1"]  # another node's record is not ours to fix


def test_a_gpu_held_by_a_live_sweep_is_refused(fake_nvml, tmp_path):
    gpu = NvmlGpu()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / f"{gpu.uuid}.json").write_text(json.dumps(
            {"uuid": gpu.uuid, "pid": holder.pid, "host": socket.gethostname()}))
        with pytest.raises(GpuBusyError, match=f"pid {holder.pid}"):
            with ClockGuard(gpu, tmp_path):
                pass
    finally:
        holder.kill()
