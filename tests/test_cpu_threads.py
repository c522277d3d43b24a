"""torch's CPU threads sized to what the process may use (workload.pipeline.cpu_threads): one for the tiny model,
SLURM's allotment or the process's affinity otherwise, never every core of a shared login node."""

import os

import pytest

from sweepd.workload.pipeline import WorkloadError, cpu_threads


def test_the_tiny_model_runs_on_one_thread_and_others_on_what_the_process_may_use():
    assert cpu_threads("tiny", {}) == 1
    assert cpu_threads("tiny", {"SLURM_CPUS_PER_TASK": "8"}) == 1  # too small to share, whatever SLURM allots
    assert cpu_threads("some/model", {"SLURM_CPUS_PER_TASK": "3"}) == 3
    assert cpu_threads("some/model", {}) == len(os.sched_getaffinity(0))
    assert cpu_threads("tiny", {"SWEEPD_CPU_THREADS": "2"}) == 2  # the setting wins
    with pytest.raises(WorkloadError, match="SWEEPD_CPU_THREADS='many'"):
        cpu_threads("tiny", {"SWEEPD_CPU_THREADS": "many"})


@pytest.mark.slow  # loads the tiny pipeline (diffusers' import alone takes seconds)
def test_a_tiny_workload_sets_torchs_threads_and_records_them():
    import torch

    from sweepd import paths
    from sweepd.request import Workload as Spec
    from sweepd.workload.pipeline import Workload

    before = torch.get_num_threads()
    try:  # the session's tiny model (conftest builds it once)
        w = Workload(Spec(model="tiny", steps=1, width=32, height=32), paths.cache_dir(), simulated=True)
        assert torch.get_num_threads() == 1 and w.info().cpu_threads == 1
    finally:
        torch.set_num_threads(before)
