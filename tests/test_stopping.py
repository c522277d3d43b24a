"""The sequential protocol's stopping rule (engine/stopping.py): a clock's own trials never decide when it stops,
so the t interval reported for it keeps its 95 %. Whole sweeps against the simulated GPU's truth: bench/coverage.py."""

import random
import statistics

from sweepd.engine import stopping
from sweepd.records.rows import TrialRow
from sweepd.request import Protocol
from sweepd.stats import ci95_half, ci95_pct


def row(f, trial, j, role=None):
    return TrialRow(sweep_id="s", job_id="j", backend="sim", simulated=True, gpu_name="g", gpu_uuid="u",
                    freq_mhz=f, trial=trial, images=4, steps=2, time_s=4.0, energy_j=4 * j, j_per_image=j,
                    s_per_image=1.0, avg_power_w=j, status="ok", role=role)


def test_fixed_trials_are_exactly_that_many():
    p = Protocol(trials=4)
    rows = [row(1410, k, 100.0 + k) for k in range(1, 4)]
    assert not stopping.done(p, rows, 1410)
    assert stopping.done(p, rows + [row(1410, 4, 90.0)], 1410)


def test_the_first_clock_stops_early_only_when_its_pilot_is_flat_beyond_doubt():
    p = Protocol()
    flat = [row(1410, k, 100.0) for k in range(1, 4)]
    assert stopping.done(p, flat, 1410)  # no noise (a GPU without any): min_trials
    noisy = [row(1410, 1, 100.0), row(1410, 2, 100.9), row(1410, 3, 99.5)]
    # its own 95 % CI is +-1.8 %, within the target (sweepd 0.2 stopped here); at its spread's upper bound the
    # pilot asks for 8 trials
    assert ci95_pct([r.j_per_image for r in noisy]) < 2 and not stopping.done(p, noisy, 1410)
    more = noisy + [row(1410, k, 100.0) for k in range(4, 8)]
    assert not stopping.done(p, more, 1410)  # four flat trials later: still planned at eight, never re-decided
    assert stopping.done(p, more + [row(1410, 8, 100.0)], 1410)


def test_a_later_clock_is_planned_from_the_clocks_before_it_not_from_its_own_trials():
    p = Protocol()
    rng = random.Random(1)
    first = [row(1410, k, 100 * (1 + rng.gauss(0, 0.02))) for k in range(1, 11)]
    cv = statistics.stdev(r.j_per_image for r in first) / statistics.fmean(r.j_per_image for r in first)
    n = stopping.plan_for(p, cv)
    assert 3 < n < 10
    for own in ([80.0] * n, [70.0, 90.0] * n):  # flat or wildly spread: the same count
        rows = first + [row(945, k + 1, own[k]) for k in range(n)]
        assert stopping.done(p, rows[:-1], 945) is False and stopping.done(p, rows, 945) is True
    # a clock measured later (no rows yet) is planned from every clock so far; drift rows do not count
    drift = [row(1410, 11 + k, 50.0 + 40 * k, role="drift") for k in range(3)]
    assert stopping.needed(p, [], stopping.groups_before(first + drift, 510)) == n


def _coverage(rule: str, reps: int = 3000, cv: float = 0.03) -> float:
    """How often a clock's 95 % interval covers its mean under a stopping rule, with normal trials of this CV."""
    p, rng, hits = Protocol(), random.Random(7), 0
    before = [[100 * (1 + rng.gauss(0, cv)) for _ in range(10)]]  # the sweep's first clock
    for _ in range(reps):
        xs: list[float] = []
        while True:
            if rule == "own" and len(xs) >= p.least and ci95_pct(xs) <= p.target_ci_pct or len(xs) >= p.most:
                break
            if rule == "planned" and len(xs) >= stopping.needed(p, xs, before):
                break
            xs.append(100 * (1 + rng.gauss(0, cv)))
        hits += abs(statistics.fmean(xs) - 100) <= ci95_half(xs)
    return hits / reps


def test_stopping_on_a_narrow_looking_interval_undercovers_and_planning_does_not():
    # stopping when a clock's own interval first reaches the target (sweepd 0.2's rule) undercovers, as the
    # coverage benchmark found on the simulated GPU; planning the count from the other clocks covers 95 %
    assert _coverage("own", cv=0.03) < 0.92
    planned = _coverage("planned", cv=0.03)
    assert 0.935 <= planned <= 0.965, planned
    # and a quiet GPU costs no more than before: min_trials
    assert stopping.needed(Protocol(), [], [[100.0, 100.01, 99.99]]) == Protocol().least
