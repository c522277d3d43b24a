"""Clock control without root (issue #24, first step): application clocks where an administrator lifted NVML's API
restriction, set and reset like locks (crash repair too); MIG refused before anything loads; `sweepd gpus` says
which control this user has and why not the others. Run through the NVML backend against the fake pynvml."""

import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import FAKES, sweepd, sweepd_env
from sweepd.engine import clockcontrol, runner
from sweepd.errors import InputError
from sweepd.gpu import open_device
from sweepd.gpu.base import GpuPermissionError
from sweepd.gpu import controls
from sweepd.gpu.controls import availability
from sweepd.gpu.locks import ClockGuard, read_records, repair_stale_locks
from sweepd.gpu.nvml import NvmlGpu
from sweepd.paths import Layout
from sweepd.records.gpulock import ProductionLock
from sweepd.request import SweepRequest
from sweepd.vocab import ClockControl

CLOCKS = (1410, 945, 510)


def request(control: str = "application", clocks=CLOCKS, mode: str = "custom") -> SweepRequest:
    return SweepRequest.model_validate({
        "workload": {"model": "tiny", "steps": 2, "width": 32, "height": 32},
        "gpu": {"backend": "nvml", "clock_control": control},
        "frequencies": {"mode": mode, "list": list(clocks)} if mode == "custom" else {"mode": mode},
        "protocol": {"warmup": 0, "trials": 2, "images_per_trial": 2, "min_window_s": 0.05, "settle_s": 0},
        "images": {"mode": "benchmark"}})


def calls(fake) -> list[str]:
    return [c[0] for c in fake.calls]


def test_an_application_clock_sweep_sets_each_clock_and_resets_them_without_root(fake_nvml, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")  # locked clocks refused, as for a user without root
    monkeypatch.setenv("FAKE_NVML_API_RESTRICTED", "0")  # an administrator's `nvidia-smi -acp UNRESTRICTED`
    store = runner.run_blank(request(), Layout.resolve(tmp_path), "app")
    sets = [c[2:] for c in fake_nvml.calls if c[0] == "nvmlDeviceSetApplicationsClocks"]
    assert sets[:3] == [(1215, f) for f in CLOCKS]  # (memory, graphics), as NVML has it; then the reference again
    assert calls(fake_nvml)[-1] == "nvmlDeviceResetApplicationsClocks"
    assert not [c for c in calls(fake_nvml) if "Locked" in c]
    assert {r.freq_mhz for r in store.trials if not r.role} == set(CLOCKS)
    assert read_records(tmp_path / "state/gpu-locks") == []
    with NvmlGpu() as gpu, ClockGuard(gpu, tmp_path / "locks", control=ClockControl.APPLICATION) as guard:
        guard.lock(945, None)
        assert gpu.sm_clock_mhz() == 945  # what the sampler records as each trial's observed clock
        [rec] = read_records(tmp_path / "locks")
        assert rec.control == "application"


def test_restricted_application_clocks_are_refused_before_the_model_with_what_an_admin_can_do(fake_nvml, monkeypatch,
                                                                                               tmp_path):
    monkeypatch.setattr(controls, "privileged", lambda: False)  # tests run as root here; the user does not
    with NvmlGpu() as gpu:
        assert availability(gpu, ClockControl.APPLICATION).usable is False
        assert availability(gpu, ClockControl.LOCK).usable is False
        assert availability(gpu, ClockControl.OBSERVE).usable is True
    with pytest.raises(GpuPermissionError, match=r"nvidia-smi -acp UNRESTRICTED.*sweepd gpus"):
        runner.prepare(request(), Layout.resolve(tmp_path), "app")
    with pytest.raises(GpuPermissionError, match="needs root or CAP_SYS_ADMIN"):
        runner.prepare(request("lock"), Layout.resolve(tmp_path), "app")
    runner.prepare(request("observe"), Layout.resolve(tmp_path), "obs")[0].close()  # observing needs nothing
    assert fake_nvml.calls == []  # nothing was set to find out


def test_root_refused_by_the_driver_all_the_same_gets_one_line(fake_nvml, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")  # restricted, and the driver says no even to this process
    with pytest.raises(GpuPermissionError, match=r"only root may set them.*nvidia-smi -acp UNRESTRICTED"):
        runner.run_blank(request(), Layout.resolve(tmp_path), "app")
    assert read_records(tmp_path / "state/gpu-locks") == []


def test_a_production_lock_would_override_application_clocks_so_the_sweep_is_refused(fake_nvml, monkeypatch,
                                                                                      tmp_path):
    monkeypatch.setenv("FAKE_NVML_API_RESTRICTED", "0")
    layout = Layout.resolve(tmp_path)
    with NvmlGpu() as gpu:
        ProductionLock(uuid=gpu.uuid, freq_mhz=1200).write(ProductionLock.path_for(layout.production_locks, gpu.uuid))
    with pytest.raises(InputError, match="locked clocks override application clocks"):
        runner.prepare(request(), layout, "app")


def test_application_clocks_left_by_a_dead_sweep_are_reset_at_the_next_start(fake_nvml, tmp_path):
    gpu = NvmlGpu()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"{gpu.uuid}.json").write_text(json.dumps(
        {"uuid": gpu.uuid, "control": "application", "backend": "nvml", "pid": dead.pid, "host": socket.gethostname()}))
    done = repair_stale_locks(tmp_path, lambda rec: open_device("nvml", uuid=rec.uuid))
    assert len(done) == 1 and calls(fake_nvml) == ["nvmlDeviceResetApplicationsClocks"]
    assert read_records(tmp_path) == []


@pytest.mark.parametrize("how", ["mig mode", "a MIG slice in CUDA_VISIBLE_DEVICES"])
def test_mig_is_refused_before_anything_loads(fake_nvml, monkeypatch, tmp_path, how):
    if how == "mig mode":
        monkeypatch.setenv("FAKE_NVML_MIG", "1")
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "MIG-4f3b1a2c-0000-5000-8000-000000000001")
    for control in ("lock", "application", "observe"):
        with pytest.raises(clockcontrol.MigMode, match="NVML cannot meter a MIG slice's power or energy") as e:
            runner.prepare(request(control), Layout.resolve(tmp_path), "m")
        assert e.value.exit_code == 3 and "\n" not in str(e.value)
    assert not (tmp_path / "results").exists()


def test_gpus_says_which_control_this_user_has_and_shows_mig(tmp_path):
    env = sweepd_env(fake_nvml=True, FAKE_NVML_GPUS="A100,V100", FAKE_NVML_API_RESTRICTED="0")
    r = sweepd("gpus", "--backend", "nvml", "--json", "--root", tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    a100, v100 = json.loads(r.stdout)
    assert a100["mig"] is False and v100["mig"] is False  # a V100 has no MIG: not supported, so not on
    usable = {c["control"]: c["usable"] for c in a100["clock_controls"]}
    # root; lifted; no zeusd; not inside a SLURM allocation (sweepd_env leaves no SLURM_ variable)
    assert usable == {"lock": True, "application": True, "zeusd": False, "slurm": False, "observe": True}
    text = sweepd("gpus", "--backend", "nvml", "--root", tmp_path, env=env | {"FAKE_NVML_MIG": "1"}).stdout
    assert text.count("MIG mode: on") == 1  # the A100; the V100 cannot be in MIG mode
    assert "application yes (anyone: an administrator lifted the API restriction)" in text
    assert "zeusd no (zeusd at " in text and "does not answer" in text
    assert "slurm no (not inside a SLURM allocation" in text
    inside = sweepd("gpus", "--backend", "nvml", "--root", tmp_path, env=env | {"SLURM_JOB_ID": "31"}).stdout
    assert "slurm unknown (inside SLURM job 31: whether srun --gpu-freq sets clocks here, the first step tells)" \
        in inside


def test_an_unknown_clock_control_names_the_choices(tmp_path):
    req = tmp_path / "r.toml"
    req.write_text('[workload]\nmodel = "tiny"\n[gpu]\nclock_control = "root"\n')
    r = sweepd("run", req, "--root", tmp_path)
    assert r.returncode == 2 and "gpu.clock_control" in r.stderr and "'application'" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


@pytest.fixture
def zeusd(tmp_path, monkeypatch):
    """The zeusd stand-in (tests/fakes/zeusd.py) on a socket of its own, setting clocks as root into a state file
    that this process's fake NVML reads, as a sweep's NVML reads what the real zeusd set."""
    state, sock, log = tmp_path / "nvml-state.json", tmp_path / "zeusd.sock", tmp_path / "zeusd.log"
    monkeypatch.setenv("FAKE_NVML_STATE", str(state))
    env = sweepd_env(fake_nvml=True, FAKE_NVML_GPUS="A100", FAKE_NVML_STATE=str(state))
    args = [sys.executable, str(FAKES / "zeusd.py"), "--socket", str(sock), "--log", str(log)]

    def start(*extra: str) -> subprocess.Popen:
        p = subprocess.Popen(args + list(extra), env=env, stdout=subprocess.PIPE, text=True)
        assert p.stdout.readline().strip() == "ready"
        started.append(p)
        return p

    started: list[subprocess.Popen] = []
    start()
    yield type("Zeusd", (), {"socket": str(sock), "log": log, "start": staticmethod(start),
                             "calls": staticmethod(lambda: [json.loads(x) for x in log.read_text().splitlines()]),
                             "stop": staticmethod(lambda: [p.kill() or p.wait() for p in started])})
    for p in started:
        p.kill()
        p.wait()


def writes(zeusd) -> list[tuple]:
    return [(c["route"], c["params"].get("min_clock_mhz")) for c in zeusd.calls() if c["method"] == "POST"]


def test_a_zeusd_sweep_sets_every_clock_through_its_socket_and_resets_them(fake_nvml, zeusd, monkeypatch, tmp_path):
    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")  # this user may not lock clocks itself
    req = request("zeusd")
    req.gpu.zeusd_socket = zeusd.socket
    runner.run_blank(req, Layout.resolve(tmp_path), "z")
    w = writes(zeusd)
    assert [m for r, m in w if r == "/gpu/set_gpu_locked_clocks"][:3] == [str(f) for f in CLOCKS]
    assert w[-2:] == [("/gpu/reset_gpu_locked_clocks", None), ("/gpu/reset_mem_locked_clocks", None)]
    assert all(c["params"].get("block") == "true" and c["params"]["gpu_ids"] == "0"
               for c in zeusd.calls() if c["method"] == "POST")
    assert fake_nvml.calls == []  # nothing set through this process's own NVML
    with NvmlGpu() as gpu, ClockGuard(gpu, tmp_path / "locks", control=ClockControl.ZEUSD,
                                      zeusd_socket=zeusd.socket) as guard:
        guard.lock(945, None)
        assert gpu.sm_clock_mhz() == 945  # what zeusd set is what the sweep's NVML observes
    assert gpu.sm_clock_mhz() == 1410


def test_zeusd_clocks_left_by_a_dead_sweep_are_reset_through_zeusd_at_the_next_start(fake_nvml, zeusd, tmp_path):
    gpu = NvmlGpu()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"{gpu.uuid}.json").write_text(json.dumps(
        {"uuid": gpu.uuid, "control": "zeusd", "zeusd_socket": zeusd.socket, "index": 0, "backend": "nvml",
         "pid": dead.pid, "host": socket.gethostname()}))
    done = repair_stale_locks(tmp_path, lambda rec: open_device("nvml", uuid=rec.uuid))
    assert len(done) == 1 and writes(zeusd) == [("/gpu/reset_gpu_locked_clocks", None),
                                                ("/gpu/reset_mem_locked_clocks", None)]
    assert read_records(tmp_path) == []


def test_zeusd_without_gpu_control_or_not_running_is_refused_before_the_model(fake_nvml, zeusd, tmp_path):
    req = request("zeusd")
    req.gpu.zeusd_socket = zeusd.socket
    zeusd.stop()
    with pytest.raises(GpuPermissionError, match="does not answer"):
        runner.prepare(req, Layout.resolve(tmp_path), "z")
    zeusd.start("--no-gpu-control")
    with pytest.raises(GpuPermissionError, match="gpu-control API group disabled"):
        runner.prepare(req, Layout.resolve(tmp_path), "z")


def test_a_process_killed_with_clocks_set_through_zeusd_is_reset_through_zeusd_at_the_next_start(fake_nvml, zeusd,
                                                                                                 tmp_path):
    """kill -9 leaves the clock locked (zeusd does not know its client died): a real process sets a clock through
    zeusd with the sweep's own ClockGuard and dies without a reset; the next start's repair (what `sweepd run`,
    a worker and the daemon call first) finds its record and resets through the same socket."""
    layout = Layout.resolve(tmp_path)
    code = ("import os, sys; from sweepd.gpu.nvml import NvmlGpu; from sweepd.gpu.locks import ClockGuard; "
            "from sweepd.vocab import ClockControl; g = NvmlGpu(); "
            "ClockGuard(g, sys.argv[1], control=ClockControl.ZEUSD, zeusd_socket=sys.argv[2]).__enter__().lock(945, None); "
            "os._exit(137)")
    env = sweepd_env(fake_nvml=True, FAKE_NVML_GPUS="A100", FAKE_NVML_DENY_SET="1",
                     FAKE_NVML_STATE=os.environ["FAKE_NVML_STATE"])
    r = subprocess.run([sys.executable, "-c", code, str(layout.gpu_locks), zeusd.socket], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 137, r.stderr
    assert writes(zeusd)[-1] == ("/gpu/set_gpu_locked_clocks", "945")  # left locked
    [rec] = read_records(layout.gpu_locks)
    assert rec.control == "zeusd" and rec.zeusd_socket == zeusd.socket
    done = runner.repair_locks(layout)
    assert len(done) == 1 and writes(zeusd)[-2:] == [("/gpu/reset_gpu_locked_clocks", None),
                                                      ("/gpu/reset_mem_locked_clocks", None)]
    assert read_records(layout.gpu_locks) == []


def test_auto_takes_the_first_control_this_user_has_and_never_observes_unasked(fake_nvml, monkeypatch, tmp_path):
    layout = Layout.resolve(tmp_path)
    assert SweepRequest.model_validate({"workload": {"model": "tiny"}}).gpu.clock_control == "auto"  # the default
    with NvmlGpu() as gpu:
        assert clockcontrol.control_for(request("auto"), gpu) == ["lock", "application"]  # root here; no zeusd
        monkeypatch.setattr(controls, "privileged", lambda: False)
        monkeypatch.setenv("FAKE_NVML_API_RESTRICTED", "0")
        assert clockcontrol.control_for(request("auto"), gpu) == ["application"]
        monkeypatch.setenv("FAKE_NVML_API_RESTRICTED", "1")
        with pytest.raises(GpuPermissionError) as e:
            clockcontrol.control_for(request("auto"), gpu)
    line = str(e.value)
    assert "\n" not in line and all(w in line for w in (
        "lock: locking clocks needs root", "application: restricted to root", "zeusd: zeusd at", "slurm: ",
        "nvidia-smi -acp UNRESTRICTED", 'clock_control = "observe"'))
    with pytest.raises(GpuPermissionError, match="cannot set clocks"):  # before anything loads
        runner.prepare(request("auto"), layout, "a")
    runner.prepare(request("auto", mode="baseline"), layout, "b")[0].close()  # a baseline sets no clock
    monkeypatch.setenv("FAKE_NVML_API_RESTRICTED", "0")
    runner.run_blank(request("auto"), layout, "a")
    assert calls(fake_nvml)[-1] == "nvmlDeviceResetApplicationsClocks"


def test_a_0_1_request_keeps_its_fingerprint_whatever_control_sets_its_clocks():
    base = {"workload": {"model": "tiny"}}
    fp = {c: SweepRequest.model_validate(base | {"gpu": {"clock_control": c}}).fingerprint()
          for c in ("auto", "lock", "application", "zeusd", "observe")}
    assert fp["auto"] == fp["lock"] == fp["application"] == fp["zeusd"] != fp["observe"]


def test_auto_tries_each_control_at_the_first_clock_since_a_driver_may_refuse_even_root(fake_nvml, monkeypatch,
                                                                                      tmp_path):
    """Root in a container without CAP_SYS_ADMIN on the host's GPU: asked, lock looks available; tried, it is
    refused. At the first clock auto tries each candidate in turn and the sweep keeps the first that works; what
    was refused left no record and no clock behind."""
    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")
    monkeypatch.setenv("FAKE_NVML_API_RESTRICTED", "0")
    layout = Layout.resolve(tmp_path)
    runner.run_blank(request("auto"), layout, "a")
    c = calls(fake_nvml)
    assert "nvmlDeviceSetGpuLockedClocks" not in c  # refused (the fake logs only what it did), not half-set
    assert c[0] == "nvmlDeviceSetApplicationsClocks" and c[-1] == "nvmlDeviceResetApplicationsClocks"
    assert read_records(layout.gpu_locks) == []
    monkeypatch.setenv("FAKE_NVML_API_RESTRICTED", "1")
    with pytest.raises(GpuPermissionError) as e:
        runner.run_blank(request("auto"), layout, "b")
    line = str(e.value)
    assert "every clock control was refused at the first clock" in line and "\n" not in line
    assert "lock: locking the core clock at 1410 MHz: permission denied" in line
    assert "application: setting application clocks on NVIDIA A100-PCIE-40GB: permission denied" in line
    assert read_records(layout.gpu_locks) == []


def test_auto_does_not_offer_application_clocks_on_a_gpu_with_a_production_lock(fake_nvml, monkeypatch, tmp_path):
    monkeypatch.setattr(controls, "privileged", lambda: False)
    monkeypatch.setenv("FAKE_NVML_API_RESTRICTED", "0")
    layout = Layout.resolve(tmp_path)
    with NvmlGpu() as gpu:
        assert clockcontrol.control_for(request("auto"), gpu, layout) == ["application"]
        ProductionLock(uuid=gpu.uuid, freq_mhz=1200).write(ProductionLock.path_for(layout.production_locks, gpu.uuid))
        with pytest.raises(GpuPermissionError, match="application: a production lock .* would override it"):
            clockcontrol.control_for(request("auto"), gpu, layout)


@pytest.mark.parametrize("control", ["application", "zeusd"])
def test_sigterm_mid_sweep_resets_the_clocks_through_the_control_that_set_them(fake_nvml, zeusd, monkeypatch, tmp_path,
                                                                              control):
    """A real SIGTERM (scancel, systemctl stop) to the process measuring, after its first trial: the sweep stops
    after that trial and resets on its way out, as on a normal exit and, after a SIGKILL, at the next start (the
    tests above). In this process: the signal, its handler and the guard are the same as in `sweepd run`'s."""
    import signal

    from sweepd.vocab import RunState

    monkeypatch.setenv("FAKE_NVML_DENY_SET", "1")
    monkeypatch.setenv("FAKE_NVML_API_RESTRICTED", "0")

    class SignalAfterFirstTrial:
        def clock_started(self, *a): ...

        def trial_done(self, *a):
            os.kill(os.getpid(), signal.SIGTERM)

        def clock_done(self, *a): ...

    req = request(control)
    req.gpu.zeusd_socket = zeusd.socket
    out = runner.run(req, Layout.resolve(tmp_path), "t", SignalAfterFirstTrial())
    assert out.status == RunState.INTERRUPTED and out.exit_code == 4 and "SIGTERM" in out.error
    assert len(out.store.trials) == 1  # stopped after the trial it was in
    if control == "zeusd":
        assert writes(zeusd)[-2:] == [("/gpu/reset_gpu_locked_clocks", None), ("/gpu/reset_mem_locked_clocks", None)]
    else:
        assert calls(fake_nvml)[-1] == "nvmlDeviceResetApplicationsClocks" and \
            "nvmlDeviceSetApplicationsClocks" in calls(fake_nvml)
    assert read_records(tmp_path / "state/gpu-locks") == []
    state = next(iter(json.loads((tmp_path / "nvml-state.json").read_text()).values()))
    assert (state["locked"], state["mem_locked"], state["app"]) == (None, None, None)
