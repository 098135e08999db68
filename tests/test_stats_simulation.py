"""Proof by simulation: the error rates and request counts that pytest_canary.stats claims.

Every scenario is seeded (numpy ``Generator``), so a run is reproducible bit for bit; the
bounds are derived so that a correct method passes them except with probability ~0.001 *before*
the seed was fixed, i.e. the seeded outcome is not a lucky draw.

The bound used for error rates, derived once (each test refers to it): if a wrong verdict has
probability ``q <= alpha`` per run, the number of wrong verdicts in ``R`` independent runs is
Binomial(R, q), with mean ``<= alpha R`` and standard deviation ``<= sqrt(R alpha (1 - alpha))``
(``q (1 - q)`` increases on [0, 1/2]). So the observed rate exceeds
``alpha + 3 sqrt(alpha (1 - alpha) / R)`` with probability about 0.0013 (normal approximation;
exactly 0.0011 for R = 2000, alpha = 0.05, where the bound is 0.0646, i.e. 129 of 2000 runs).
:func:`assert_rate_within_bound` applies it; :func:`test_simulation_detects_a_peeking_test`
shows it rejects a method that does exceed alpha.

Runs are simulated as the harness samples: batches of the sizes ``SplitTest.next_batch_size(16)``
suggests, with per-batch counts drawn from the binomial (multinomial for three versions) at the
true shares, and ``SplitTest.update`` called once per batch.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest

from pytest_canary.stats import (
    Decision,
    Interval,
    SplitTest,
    fixed_requests,
    normal_quantile,
    plan_requests,
)

RUNS = 2000
CONCURRENCY = 16
TWO = {"stable": 0.8, "canary": 0.2}
THREE = {"v1": 0.5, "v2": 0.25, "v3": 0.25}


def rate_bound(alpha: float, runs: int) -> float:
    """``alpha + 3 sqrt(alpha (1 - alpha) / runs)`` (derivation in the module docstring)."""
    return alpha + 3.0 * math.sqrt(alpha * (1.0 - alpha) / runs)


def assert_rate_within_bound(events: int, runs: int, alpha: float, what: str) -> None:
    """Fail with the numbers when ``events / runs`` exceeds :func:`rate_bound`."""
    __tracebackhide__ = True
    rate = events / runs
    bound = rate_bound(alpha, runs)
    if rate > bound:
        raise AssertionError(
            f"{what}: {events}/{runs} runs = {rate:.4f} > bound {bound:.4f} "
            f"(alpha={alpha} + 3 binomial standard errors)"
        )


def schedule(expected: dict[str, float], tolerance: float, alpha: float, budget: int) -> list[int]:
    """Batch sizes SplitTest suggests until ``budget``: they depend on n only, so they are the
    same in every run and the counts of all runs can be drawn at once."""
    probe = SplitTest(expected, tolerance, alpha, max_requests=budget)
    first = next(iter(expected))
    sizes = []
    while (size := probe.next_batch_size(CONCURRENCY)) > 0:
        sizes.append(size)
        probe.update({first: size})  # the schedule depends on n only, not on the counts
    return sizes


@dataclass
class Outcome:
    decisions: Counter[Decision]
    requests: np.ndarray  # requests at the decision (or the budget) of every run
    ever_missed: int  # runs in which some interval excluded its true share at some look

    def count(self, decision: Decision) -> int:
        return self.decisions[decision]


def simulate(
    expected: dict[str, float],
    true_shares: dict[str, float],
    tolerance: float,
    alpha: float,
    *,
    runs: int,
    seed: int,
    budget: int,
    run_to_budget: bool = False,
) -> Outcome:
    """``runs`` seeded SplitTest runs at ``true_shares``; see the module docstring.

    ``run_to_budget`` keeps feeding batches after the decision (the decision stays final) so
    that coverage can be checked over the whole budget.
    """
    versions = list(true_shares)
    sizes = schedule(expected, tolerance, alpha, budget)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(
        np.array(sizes)[None, :], [true_shares[v] for v in versions], size=(runs, len(sizes))
    )
    decisions: Counter[Decision] = Counter()
    requests = np.zeros(runs, dtype=np.int64)
    ever_missed = 0
    for run in range(runs):
        test = SplitTest(expected, tolerance, alpha, max_requests=budget)
        missed = False
        for step, size in enumerate(sizes):
            assert test.next_batch_size(CONCURRENCY) == size
            test.update(dict(zip(versions, draws[run, step].tolist(), strict=True)))
            missed = missed or any(true_shares[v] not in test.intervals[v] for v in expected)
            if test.decision is not Decision.CONTINUE and not run_to_budget:
                break
        decisions[test.decision] += 1
        requests[run] = test.decided_at if test.decided_at is not None else test.n
        ever_missed += missed
    return Outcome(decisions, requests, ever_missed)


def two_versions(canary_share: float) -> dict[str, float]:
    return {"stable": 1.0 - canary_share, "canary": canary_share}


# ------------------------------------------------------------------------------------------
# (a) true share inside the band: FAIL is the wrong answer
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canary_share", "seed"),
    [(0.20, 101), (0.175, 102), (0.225, 103), (0.25, 104)],
    ids=["expected", "expected-tol/2", "expected+tol/2", "band-edge"],
)
def test_false_fail_rate_inside_the_band_is_at_most_alpha(canary_share: float, seed: int) -> None:
    """Expected 0.20 +- 0.05, alpha = 0.05, 2000 runs, budget 4000 requests per run.

    A FAIL needs the confidence sequence to exclude the true share at some look, which has
    probability <= alpha (Ville). Bound: observed FAIL rate <= alpha + 3 sqrt(alpha(1-alpha)/R)
    = 0.0646 (module docstring). The band edge (0.25, still inside the closed band) is the
    hardest case: there a PASS is also right, and the test may stay undecided until the budget.

    Not vacuous (a test that never decides makes no wrong verdicts): away from the edge, at
    least half of the runs must PASS within the budget.
    """
    outcome = simulate(
        TWO, two_versions(canary_share), 0.05, 0.05, runs=RUNS, seed=seed, budget=4000
    )
    assert_rate_within_bound(outcome.count(Decision.FAIL), RUNS, 0.05, "false FAIL rate")
    if canary_share != 0.25:
        assert outcome.count(Decision.PASS) >= 0.5 * RUNS


# ------------------------------------------------------------------------------------------
# (b) true share outside the band: PASS is the wrong answer
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canary_share", "seed"),
    [(0.125, 201), (0.275, 202), (0.2525, 203)],
    ids=["expected-1.5tol", "expected+1.5tol", "just-outside"],
)
def test_false_pass_rate_outside_the_band_is_at_most_alpha(canary_share: float, seed: int) -> None:
    """Expected 0.20 +- 0.05, alpha = 0.05, 2000 runs, budget 8000 requests per run.

    A PASS needs the whole confidence sequence inside the band, hence excluding the true share
    outside it: probability <= alpha. Bound: observed PASS rate <= 0.0646 (module docstring).
    Just outside the band (0.2525) is the hardest case for this error.

    Not vacuous: at 1.5 tolerances off, at least half of the runs must FAIL within the budget
    (the distance to the band edge is half a tolerance, so this takes ~4x the requests of a
    PASS at the right share).
    """
    outcome = simulate(
        TWO, two_versions(canary_share), 0.05, 0.05, runs=RUNS, seed=seed, budget=8000
    )
    assert_rate_within_bound(outcome.count(Decision.PASS), RUNS, 0.05, "false PASS rate")
    if canary_share != 0.2525:
        assert outcome.count(Decision.FAIL) >= 0.5 * RUNS


@pytest.mark.parametrize(
    ("canary_share", "seed"), [(0.2, 301), (0.5, 302), (0.03, 303)], ids=["0.2", "0.5", "0.03"]
)
def test_confidence_sequence_covers_the_true_share_at_every_look(
    canary_share: float, seed: int
) -> None:
    """The property both error bounds rest on: P(exists n: p_true not in interval_n) <= alpha.

    Expected 0.20 +- 0.05 (the prior is centred there), true share 0.2, 0.5 or 0.03, alpha =
    0.05, 2000 runs, every run fed to the full budget of 3000 requests (after the decision
    too). A run counts as a miss if the interval of either version excluded its true share at
    any look. Bound: miss rate <= 0.0646 (module docstring).
    """
    outcome = simulate(
        TWO,
        two_versions(canary_share),
        0.05,
        0.05,
        runs=RUNS,
        seed=seed,
        budget=3000,
        run_to_budget=True,
    )
    assert_rate_within_bound(outcome.ever_missed, RUNS, 0.05, "non-coverage rate")


# ------------------------------------------------------------------------------------------
# (c), (d) requests to a verdict against the fixed design (alpha = 0.001, as in the issue)
# ------------------------------------------------------------------------------------------

FIXED_N = fixed_requests(0.2, 0.05, 0.001)


def mean_upper_bound(requests: np.ndarray) -> float:
    """Sample mean + 3 standard errors: if the true mean were above this, a sample mean this
    low would have probability ~0.0013 (normal approximation for a mean of 2000 runs)."""
    return float(requests.mean() + 3.0 * requests.std(ddof=1) / math.sqrt(requests.size))


def test_fixed_design_is_2606_requests() -> None:
    """(z_{1-alpha} + z_{1-alpha/2})^2 p (1 - p) / tol^2 at 0.20 +- 0.05, alpha = 0.001."""
    z = normal_quantile(0.999) + normal_quantile(0.9995)
    assert FIXED_N == math.ceil(z * z * 0.16 / 0.0025) == 2606


def test_gross_misconfiguration_fails_in_a_twentieth_of_the_fixed_design() -> None:
    """Expected 0.20 +- 0.05, true 0.50, alpha = 0.001, 2000 runs, budget 2606.

    Every run must FAIL (a PASS would need the CS to exclude 0.5: probability <= 0.001, bound
    0.001 + 3 sqrt(0.001 * 0.999 / 2000) = 0.0031), and the mean requests to the FAIL, plus 3
    standard errors (:func:`mean_upper_bound`), must be <= 0.05 x 2606 = 130.
    """
    outcome = simulate(TWO, two_versions(0.5), 0.05, 0.001, runs=RUNS, seed=401, budget=FIXED_N)
    assert_rate_within_bound(outcome.count(Decision.PASS), RUNS, 0.001, "false PASS rate")
    assert outcome.count(Decision.FAIL) == RUNS
    assert mean_upper_bound(outcome.requests) <= 0.05 * FIXED_N
    assert float(np.median(outcome.requests)) <= 0.05 * FIXED_N


def test_right_share_passes_with_fewer_requests_than_the_fixed_design() -> None:
    """Expected 0.20 +- 0.05, true 0.20, alpha = 0.001, 2000 runs, budget 5 x 2606.

    False FAIL rate <= 0.001 + 3 sqrt(0.001 * 0.999 / 2000) = 0.0031; mean requests to the
    PASS + 3 standard errors <= 0.8 x 2606 = 2085. plan_requests' expected_requests is an
    upper bound on that mean (it ignores the running intersection), so it must not be below
    the sample mean - 3 standard errors.
    """
    outcome = simulate(TWO, two_versions(0.2), 0.05, 0.001, runs=RUNS, seed=501, budget=5 * FIXED_N)
    assert_rate_within_bound(outcome.count(Decision.FAIL), RUNS, 0.001, "false FAIL rate")
    assert outcome.count(Decision.PASS) >= RUNS - rate_bound(0.001, RUNS) * RUNS
    assert mean_upper_bound(outcome.requests) <= 0.8 * FIXED_N
    standard_error = outcome.requests.std(ddof=1) / math.sqrt(RUNS)
    plan = plan_requests(0.2, 0.05, 0.001, concurrency=CONCURRENCY)
    assert plan.expected_requests >= outcome.requests.mean() - 3 * standard_error
    # worst_case_requests is a conservative p95: at least 95% of runs decided by then.
    assert np.mean(outcome.requests <= plan.worst_case_requests) >= 0.95 - 3 * math.sqrt(
        0.95 * 0.05 / RUNS
    )


# ------------------------------------------------------------------------------------------
# (e) three versions at once
# ------------------------------------------------------------------------------------------


def test_three_versions_are_covered_simultaneously() -> None:
    """Istio-style 50/25/25, true = expected, alpha = 0.05, 2000 runs to a budget of 3000.

    Each version's sequence has level alpha/3 (Bonferroni), so P(some interval ever misses its
    true share) <= 3 x alpha/3 = alpha. Bound: simultaneous miss rate <= 0.0646.
    """
    truth = dict(THREE)
    outcome = simulate(
        THREE, truth, 0.05, 0.05, runs=RUNS, seed=601, budget=3000, run_to_budget=True
    )
    assert_rate_within_bound(outcome.ever_missed, RUNS, 0.05, "simultaneous non-coverage rate")


def test_three_versions_false_fail_and_false_pass_rates() -> None:
    """50/25/25 +- 0.05 at alpha = 0.05, 2000 runs each, budget 6000.

    Inside: true 0.52/0.24/0.24 (all in their bands): FAIL needs some interval to miss its
    share, <= alpha. Outside: true 0.50/0.35/0.15 (v2 and v3 two tolerances off): PASS needs
    both their intervals to miss, <= alpha. Bound for both rates: 0.0646.
    """
    inside = simulate(
        THREE, {"v1": 0.52, "v2": 0.24, "v3": 0.24}, 0.05, 0.05, runs=RUNS, seed=701, budget=6000
    )
    assert_rate_within_bound(inside.count(Decision.FAIL), RUNS, 0.05, "false FAIL rate")
    assert inside.count(Decision.PASS) >= 0.5 * RUNS  # not vacuous
    outside = simulate(
        THREE, {"v1": 0.50, "v2": 0.35, "v3": 0.15}, 0.05, 0.05, runs=RUNS, seed=702, budget=6000
    )
    assert_rate_within_bound(outside.count(Decision.PASS), RUNS, 0.05, "false PASS rate")
    assert outside.count(Decision.FAIL) >= 0.5 * RUNS  # not vacuous


# ------------------------------------------------------------------------------------------
# The simulation can see a violation
# ------------------------------------------------------------------------------------------


def naive_peeking_fail_rate(canary_share: float, seed: int, budget: int) -> tuple[int, int]:
    """FAIL counts of (naive peeking test, SplitTest) on the *same* seeded batches.

    The naive test recomputes a fixed-sample 95% Wald interval ``p_hat +- 1.96 sqrt(p_hat (1 -
    p_hat) / n)`` after every batch and stops at the first batch where it lies inside (PASS) or
    outside (FAIL) the band: each look is a valid 95% test, but 30-odd looks are not.
    """
    sizes = schedule(TWO, 0.05, 0.05, budget)
    rng = np.random.default_rng(seed)
    hits = rng.binomial(np.array(sizes)[None, :], canary_share, size=(RUNS, len(sizes)))
    n = np.cumsum(sizes)[None, :]
    p_hat = np.cumsum(hits, axis=1) / n
    half = 1.959964 * np.sqrt(p_hat * (1 - p_hat) / n)
    band = Interval(0.15, 0.25)
    fail = (p_hat + half < band.low) | (p_hat - half > band.high)
    passed = (p_hat - half >= band.low) & (p_hat + half <= band.high)
    decided = fail | passed
    first = np.where(decided.any(axis=1), decided.argmax(axis=1), -1)
    naive_fails = int(sum(fail[run, first[run]] for run in range(RUNS) if first[run] >= 0))
    ours = 0
    for run in range(RUNS):
        test = SplitTest(TWO, 0.05, 0.05, max_requests=budget)
        for step, size in enumerate(sizes):
            test.update({"stable": size - int(hits[run, step]), "canary": int(hits[run, step])})
            if test.decision is not Decision.CONTINUE:
                break
        ours += test.decision is Decision.FAIL
    return naive_fails, ours


def test_simulation_detects_a_peeking_test() -> None:
    """The same bound, on the same draws, rejects a method that does exceed alpha.

    True share 0.25, on the edge of the band 0.20 +- 0.05 (inside it: FAIL is wrong), alpha =
    0.05, 2000 runs, budget 4000. Repeated 95% Wald intervals cross the edge in far more than
    5% of the runs; the bound 0.0646 must catch that, while SplitTest stays within it.
    """
    naive, ours = naive_peeking_fail_rate(0.25, seed=801, budget=4000)
    with pytest.raises(AssertionError, match="false FAIL rate"):
        assert_rate_within_bound(naive, RUNS, 0.05, "false FAIL rate")
    assert naive / RUNS > 2 * rate_bound(0.05, RUNS)  # not a near miss: a clear violation
    assert_rate_within_bound(ours, RUNS, 0.05, "false FAIL rate")
