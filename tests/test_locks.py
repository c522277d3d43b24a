"""Clock locks never outlive a sweep: reset on error, on exit, and repaired after a crash."""

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import sweepd_env

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


def test_one_sweep_per_gpu_is_claimed_before_the_model_loads_and_dies_with_its_holder(tmp_path):
    """Two runs started seconds apart on one GPU both passed the busy check (it looks for a clock-lock record,
    written at the first lock, after the model loaded): now the second is refused at once, naming the first."""
    from sweepd.gpu.locks import GpuClaim

    records = tmp_path / "gpu-locks"
    code = ("import sys, time; from sweepd.gpu import open_device; from sweepd.gpu.locks import GpuClaim\n"
            f"c = GpuClaim(open_device('sim'), {str(records)!r}).__enter__(); print('claimed', flush=True)\n"
            "sys.stdin.readline()")
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=sweepd_env())
    try:
        assert holder.stdout.readline() == "claimed\n"
        with pytest.raises(GpuBusyError, match=f"being swept by pid {holder.pid}: one sweep per GPU"):
            with GpuClaim(open_device("sim"), records):
                pass
        with GpuClaim(open_device("sim", index=1), records):  # another GPU is free
            pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with GpuClaim(open_device("sim"), records):  # the holder's end freed it, with nothing to repair
        pass
