"""The SLURM executor's decisions, one shard at one poll, without SLURM: every branch of
sweepd.slurm.transition (what the executor then carries out is the end-to-end tests' part)."""

import pytest

from sweepd.records.queuerows import ShardRow
from sweepd.records.status import WorkerStatus
from sweepd.slurm.commands import JobState
from sweepd.slurm.transition import Step, SweepEnd, adopted_array, sweep_end, transition
from sweepd.vocab import SweepState


def shard(state="running", attempts=1, slurm_state="RUNNING", error=None):
    return ShardRow(sweep_id="s", shard=0, slurm_id="9_0", state=state, slurm_state=slurm_state, attempts=attempts,
                    error=error)


def status(state, exit_code=None, error=None, task="9_0", input_error=False):
    return WorkerStatus(sweep_id="s", job_id="9", state=state, exit_code=exit_code, error=error,
                        slurm_array_task=task, input_error=input_error)


def decide(sh, js, st=None, *, done=False, cancel=False, retries=2):
    return transition(sh, js, st, results_done=done, cancel_requested=cancel, max_retries=retries)


def job(state, reason=""):
    return JobState("9_0", "sweepd-s", state, reason)


def test_a_running_job_is_tracked_only_when_something_changed():
    assert decide(shard(), job("RUNNING")).step is Step.WAIT
    d = decide(shard(state="pending", slurm_state="PENDING"), job("RUNNING"))
    assert (d.step, d.state, d.slurm_state) == (Step.TRACK, "running", "RUNNING")
    d = decide(shard(), job("PENDING", "Resources"))
    assert (d.step, d.state, d.slurm_state) == (Step.TRACK, "pending", "PENDING (Resources)")


@pytest.mark.parametrize("slurm", ["COMPLETED", "TIMEOUT", "CANCELLED"])
def test_a_shard_whose_results_are_complete_is_done_however_slurm_ended_it(slurm):
    d = decide(shard(), job(slurm), status("done"))
    assert (d.step, d.state, d.end.slurm_state, d.end.worker_state) == (Step.DONE, "done", slurm, "done")
    assert decide(shard(), job(slurm), None, done=True).step is Step.DONE  # sweep.json says done


def test_a_job_killed_by_its_time_limit_is_retried_with_more_time():
    d = decide(shard(), job("TIMEOUT"), status("running"))
    assert (d.step, d.state, d.killed_by_time_limit) == (Step.RETRY, "interrupted", True)
    assert "ended TIMEOUT" in d.error
    d = decide(shard(), job("NODE_FAIL"), None)
    assert (d.step, d.killed_by_time_limit) == (Step.RETRY, False)


@pytest.mark.parametrize("code, input_error, blame", [(70, False, "a bug in sweepd"), (2, False, "request is at fault"),
                                                      (None, True, "request is at fault")])
def test_a_shard_that_failed_for_a_bug_or_its_input_is_not_retried(code, input_error, blame):
    d = decide(shard(), job("FAILED"), status("failed", code, "TypeError: x", input_error=input_error))
    assert (d.step, d.state) == (Step.FAIL, "failed") and blame in d.error and "worker: TypeError: x" in d.error


def test_a_gpu_error_is_retried_and_retries_end_at_max_retries():
    assert decide(shard(), job("FAILED"), status("failed", 3, "GPU: busy")).step is Step.RETRY
    d = decide(shard(attempts=3), job("FAILED"), status("failed", 3, "GPU: busy"), retries=2)
    assert (d.step, d.state) == (Step.FAIL, "failed") and "gave up after 3 attempts" in d.error


def test_a_status_file_of_an_earlier_attempt_says_nothing_of_this_one():
    d = decide(shard(), job("FAILED"), status("done", task="8_0"))
    assert d.step is Step.RETRY


def test_a_job_slurm_forgot_ends_as_its_status_file_says():
    assert decide(shard(), None, status("done")).step is Step.DONE
    d = decide(shard(), None, None)
    assert d.step is Step.RETRY and "UNKNOWN" in d.error


def test_a_cancelled_sweeps_shard_ends_cancelled_not_retried():
    d = decide(shard(), job("CANCELLED"), status("interrupted"), cancel=True)
    assert (d.step, d.state, d.error) == (Step.CANCELLED, "cancelled", "cancelled by user")


def test_a_shard_whose_resubmission_failed_is_submitted_again_or_given_up():
    d = decide(shard(state="interrupted", error="sbatch: down"), None)
    assert (d.step, d.end) == (Step.RETRY, None) and d.error == "sbatch: down"
    assert decide(shard(state="interrupted", attempts=5), None, retries=2).step is Step.FAIL


def ended(k, state, error=None):
    return ShardRow(sweep_id="s", shard=k, slurm_id=f"9_{k}", state=state, attempts=1, error=error)


def test_a_split_sweep_ends_only_when_every_shard_has_and_merges_only_when_all_are_done():
    assert sweep_end([], False) is None
    assert sweep_end([ended(0, "done"), ended(1, "running")], False) is None
    assert sweep_end([ended(0, "done"), ended(1, "interrupted")], False) is None  # to be resubmitted
    assert sweep_end([ended(0, "done"), ended(1, "done")], False) == SweepEnd(None)
    failed = sweep_end([ended(0, "done"), ended(1, "failed", "gpu fell off the bus")], False)
    assert failed == SweepEnd(SweepState.FAILED, "shard 1: gpu fell off the bus")
    assert sweep_end([ended(0, "cancelled"), ended(1, "done")], True) == SweepEnd(SweepState.CANCELLED,
                                                                                    "cancelled by user")


def test_a_sweep_the_daemon_died_submitting_is_found_by_its_job_name_or_submitted_again():
    known = {"7_0": JobState("7_0", "sweepd-aaaaaaaaaaaa", "RUNNING", ""),
             "7_1": JobState("7_1", "sweepd-aaaaaaaaaaaa", "PENDING", ""),
             "8": JobState("8", "sweepd-bbbbbbbbbbbb", "RUNNING", ""),  # not an array task: not sweepd's
             "9_0": JobState("9_0", "someone-else", "RUNNING", "")}
    assert adopted_array("aaaaaaaaaaaa", known) == "7"
    assert adopted_array("bbbbbbbbbbbb", known) is None
    assert adopted_array("cccccccccccc", known) is None
