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
:func:`assert_rate_within_bound` applies it; :func:`test_simulation_detects_a_peeking_test` and
:func:`test_false_pass_just_outside_the_band_tells_alpha_apart` show it rejects methods that
exceed alpha.

Runs are simulated as the harness samples: a look after every round of 16 requests, per-round
counts drawn from the binomial (multinomial for three versions) at the true shares. The
decisions are SplitTest's own decision rule evaluated for all runs at once
(``tests/verdict_simulation.py``); :func:`test_vectorised_simulation_matches_split_test` checks
it against ``SplitTest.update`` run by run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from verdict_simulation import Outcome, decide_split, draw_counts, look_schedule, simulate_split

from pytest_canary.stats import (
    Decision,
    Interval,
    MixturePrior,
    SplitTest,
    fixed_requests,
    normal_quantile,
    plan_requests,
)

RUNS = 2000
CONCURRENCY = 16
TWO = {"stable": 0.8, "canary": 0.2}
THREE = {"v1": 0.5, "v2": 0.25, "v3": 0.25}
#: The exact fixed design with the guarantees of SplitTest for 0.20 +- 0.05 at alpha = 0.001:
#: the smallest n whose Clopper-Pearson interval (alpha per side: false PASS <= alpha) lies in
#: the band with probability >= 1 - alpha at the right share (benchmarks/requests_to_verdict.py
#: computes it with scipy; test_exact_fixed_design_is_2689 checks the number).
EXACT_FIXED_N = 2689


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


def two_versions(canary_share: float) -> dict[str, float]:
    return {"stable": 1.0 - canary_share, "canary": canary_share}


def wrong_fails(outcome: Outcome) -> int:
    """Runs that FAILed, or whose confidence sequence excluded the true share before the
    decision (the only way the running intersection can become empty, which SplitTest also
    reports as a FAIL): an upper bound on SplitTest's false FAILs."""
    return int(np.sum((outcome.decisions == -1) | outcome.ever_missed))


# ------------------------------------------------------------------------------------------
# The simulation is SplitTest
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expected", "truth", "alpha", "seed"),
    [
        (TWO, two_versions(0.235), 0.05, 11),
        (THREE, {"v1": 0.52, "v2": 0.26, "v3": 0.22}, 0.05, 12),
        ({"stable": 0.0, "canary": 1.0}, {"stable": 0.03, "canary": 0.97}, 0.01, 13),
    ],
    ids=["two", "three", "full-promotion"],
)
def test_vectorised_simulation_matches_split_test(
    expected: dict[str, float], truth: dict[str, float], alpha: float, seed: int
) -> None:
    """150 runs fed round by round to SplitTest.update give exactly the decisions and the
    requests of the vectorised evaluation, on the same draws (scenarios where PASS, FAIL and
    INCONCLUSIVE all occur)."""
    runs, budget = 150, 1600
    ns = look_schedule(budget, CONCURRENCY)
    counts = draw_counts(truth, ns, runs, seed)
    outcome = decide_split(expected, truth, 0.05, alpha, ns, counts)
    seen = set()
    for run in range(runs):
        test = SplitTest(expected, 0.05, alpha, max_requests=budget)
        previous = dict.fromkeys(counts, 0)
        for look in range(len(ns)):
            assert test.next_batch_size(CONCURRENCY) == ns[look] - test.n
            now = {v: int(counts[v][run, look]) for v in counts}
            test.update({v: now[v] - previous[v] for v in now})
            previous = now
            if test.decision is not Decision.CONTINUE:
                break
        code = {Decision.PASS: 1, Decision.FAIL: -1, Decision.INCONCLUSIVE: 0}[test.decision]
        assert (code, test.decided_at) == (outcome.decisions[run], outcome.requests[run]), run
        seen.add(test.decision)
    assert len(seen) >= 2  # not a scenario where every run ends alike


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
    probability <= alpha (Ville). Counted as wrong: every FAIL and every run whose sequence
    excluded the true share before deciding (see :func:`wrong_fails`). Bound: <= alpha +
    3 sqrt(alpha(1-alpha)/R) = 0.0646 (module docstring). The band edge (0.25, still inside the
    closed band) is the hardest case: there a PASS is also right, and the test may stay
    undecided until the budget.

    Not vacuous (a test that never decides makes no wrong verdicts): away from the edge, at
    least half of the runs must PASS within the budget.
    """
    outcome = simulate_split(
        TWO, two_versions(canary_share), 0.05, 0.05, runs=RUNS, seed=seed, budget=4000
    )
    assert_rate_within_bound(wrong_fails(outcome), RUNS, 0.05, "false FAIL rate")
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
    outcome = simulate_split(
        TWO, two_versions(canary_share), 0.05, 0.05, runs=RUNS, seed=seed, budget=8000
    )
    assert_rate_within_bound(outcome.count(Decision.PASS), RUNS, 0.05, "false PASS rate")
    if canary_share != 0.2525:
        assert outcome.count(Decision.FAIL) >= 0.5 * RUNS


def test_false_pass_just_outside_the_band_tells_alpha_apart() -> None:
    """The check has power: at alpha = 0.001 it must see the difference from a larger alpha.

    Expected 0.20 +- 0.05, true share 0.251 (just outside the band), 2000 runs to the default
    budget of 20,000 requests. At alpha = 0.001 the false PASS rate must stay below
    0.001 + 3 sqrt(0.001 * 0.999 / 2000) = 0.0031 (6 runs). The same draws decided at
    alpha = 0.05 — what a test that ignored its alpha would do — PASS in ~2.3% of the runs,
    which the same bound must reject: the check can tell alpha = 0.001 from alpha = 0.05,
    which the alpha = 0.05 checks above cannot tell from 0.15.
    """
    truth, budget = two_versions(0.251), 20_000
    ns = look_schedule(budget, CONCURRENCY)
    counts = draw_counts(truth, ns, RUNS, 301)
    strict = decide_split(TWO, truth, 0.05, 0.001, ns, counts)
    assert_rate_within_bound(strict.count(Decision.PASS), RUNS, 0.001, "false PASS rate")
    ignored = decide_split(TWO, truth, 0.05, 0.05, ns, counts)
    with pytest.raises(AssertionError, match="false PASS rate"):
        assert_rate_within_bound(ignored.count(Decision.PASS), RUNS, 0.001, "false PASS rate")


@pytest.mark.parametrize(
    ("canary_share", "seed"), [(0.2, 301), (0.5, 302), (0.03, 303)], ids=["0.2", "0.5", "0.03"]
)
def test_confidence_sequence_covers_the_true_share_at_every_look(
    canary_share: float, seed: int
) -> None:
    """The property both error bounds rest on: P(exists n: p_true not in C_n) <= alpha.

    Expected 0.20 +- 0.05 (the prior is centred there), true share 0.2, 0.5 or 0.03, alpha =
    0.05, 2000 runs, every run followed to the full budget of 3000 requests (after the
    decision too). A run counts as a miss if the confidence set excluded the true share at any
    look (exactly: the count left the true share's acceptance counts). Bound: miss rate <=
    0.0646 (module docstring).
    """
    outcome = simulate_split(
        TWO,
        two_versions(canary_share),
        0.05,
        0.05,
        runs=RUNS,
        seed=seed,
        budget=3000,
        run_to_budget=True,
    )
    assert_rate_within_bound(int(outcome.ever_missed.sum()), RUNS, 0.05, "non-coverage rate")


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


def test_exact_fixed_design_is_2689() -> None:
    """The exact design's n, from scipy: Clopper-Pearson at level 2 alpha (false PASS <=
    alpha), the smallest n with P(interval inside [0.15, 0.25] | p = 0.2) >= 1 - alpha."""
    from scipy import stats as sps

    def pass_probability(n: int) -> float:
        s = np.arange(n + 1)
        low = np.where(s == 0, 0.0, sps.beta.ppf(0.001, s, n - s + 1))
        high = np.where(s == n, 1.0, sps.beta.ppf(0.999, s + 1, n - s))
        inside = (low >= 0.15) & (high <= 0.25)
        return float(sps.binom.pmf(s, n, 0.2)[inside].sum())

    assert pass_probability(EXACT_FIXED_N) >= 0.999 > pass_probability(EXACT_FIXED_N - 1)


def test_gross_misconfiguration_fails_in_a_twentieth_of_the_fixed_design() -> None:
    """Expected 0.20 +- 0.05, true 0.50, alpha = 0.001, 2000 runs, budget 2606.

    Every run must FAIL (a PASS would need the CS to exclude 0.5: probability <= 0.001, bound
    0.001 + 3 sqrt(0.001 * 0.999 / 2000) = 0.0031), and the mean requests to the FAIL, plus 3
    standard errors (:func:`mean_upper_bound`), must be <= 0.05 x 2689 (the exact fixed
    design) = 134.
    """
    outcome = simulate_split(
        TWO, two_versions(0.5), 0.05, 0.001, runs=RUNS, seed=401, budget=FIXED_N
    )
    assert_rate_within_bound(outcome.count(Decision.PASS), RUNS, 0.001, "false PASS rate")
    assert outcome.count(Decision.FAIL) == RUNS
    assert mean_upper_bound(outcome.requests) <= 0.05 * EXACT_FIXED_N
    assert float(np.median(outcome.requests)) <= 0.05 * EXACT_FIXED_N


def test_right_share_passes_in_half_the_requests_of_the_exact_fixed_design() -> None:
    """Expected 0.20 +- 0.05, true 0.20, alpha = 0.001, 4000 runs, budget 5 x 2606.

    False FAIL rate <= 0.001 + 3 sqrt(0.001 * 0.999 / 4000) = 0.0025; mean requests to the
    PASS <= 0.5 x 2689 (the exact fixed design) = 1344.5, measured on 4,000 runs (standard
    error ~8 requests; the measured mean is ~1,330). plan_requests' expected_requests is an
    upper bound on that mean (it ignores the running intersection), so it must not be below
    the sample mean - 3 standard errors.
    """
    runs = 4000
    outcome = simulate_split(
        TWO, two_versions(0.2), 0.05, 0.001, runs=runs, seed=501, budget=5 * FIXED_N
    )
    assert_rate_within_bound(wrong_fails(outcome), runs, 0.001, "false FAIL rate")
    assert outcome.count(Decision.PASS) >= runs - rate_bound(0.001, runs) * runs
    assert outcome.requests.mean() <= 0.5 * EXACT_FIXED_N
    standard_error = outcome.requests.std(ddof=1) / math.sqrt(runs)
    plan = plan_requests(0.2, 0.05, 0.001, concurrency=CONCURRENCY)
    assert plan.expected_requests >= outcome.requests.mean() - 3 * standard_error
    # worst_case_requests is a conservative p95: at least 95% of runs decided by then.
    assert np.mean(outcome.requests <= plan.worst_case_requests) >= 0.95 - 3 * math.sqrt(
        0.95 * 0.05 / runs
    )


def test_full_promotion_passes_in_144_requests() -> None:
    """expect_split(1.0) after a promotion: every response from the canary. The point mass at
    1 of the prior decides at the 9th round of 16 (n ln(1/0.95) >= ln(1000) + ln(1/0.8) needs
    n >= 139), below the 150 requests of the goal; without it (Jeffreys only) ~240."""
    expected, truth = {"stable": 0.0, "canary": 1.0}, {"stable": 0.0, "canary": 1.0}
    outcome = simulate_split(expected, truth, 0.05, 0.001, runs=10, seed=1, budget=2000)
    assert set(outcome.requests.tolist()) == {144}
    assert outcome.count(Decision.PASS) == 10
    jeffreys = MixturePrior(((1.0, 0.5, 0.5),))
    without = simulate_split(
        expected,
        truth,
        0.05,
        0.001,
        runs=10,
        seed=1,
        budget=2000,
        priors={"canary": jeffreys, "stable": jeffreys},
    )
    assert without.requests.min() > 200
    # A wrong full promotion (a fifth of the traffic still on stable) FAILs at once.
    wrong = simulate_split(
        expected, {"stable": 0.2, "canary": 0.8}, 0.05, 0.001, runs=RUNS, seed=2, budget=2000
    )
    assert wrong.count(Decision.FAIL) == RUNS and wrong.requests.mean() < 100


# ------------------------------------------------------------------------------------------
# (e) three versions at once
# ------------------------------------------------------------------------------------------


def test_three_versions_are_covered_simultaneously() -> None:
    """Istio-style 50/25/25, true = expected, alpha = 0.05, 2000 runs to a budget of 3000.

    Each version's sequence has level alpha/3 (Bonferroni), so P(some interval ever misses its
    true share) <= 3 x alpha/3 = alpha. Bound: simultaneous miss rate <= 0.0646.
    """
    outcome = simulate_split(
        THREE, THREE, 0.05, 0.05, runs=RUNS, seed=601, budget=3000, run_to_budget=True
    )
    assert_rate_within_bound(
        int(outcome.ever_missed.sum()), RUNS, 0.05, "simultaneous non-coverage rate"
    )


def test_three_versions_false_fail_and_false_pass_rates() -> None:
    """50/25/25 +- 0.05 at alpha = 0.05, 2000 runs each, budget 6000.

    Inside: true 0.52/0.24/0.24 (all in their bands): FAIL needs some interval to miss its
    share, <= alpha. Outside: true 0.50/0.35/0.15 (v2 and v3 two tolerances off): PASS needs
    both their intervals to miss, <= alpha. Bound for both rates: 0.0646.
    """
    inside = simulate_split(
        THREE, {"v1": 0.52, "v2": 0.24, "v3": 0.24}, 0.05, 0.05, runs=RUNS, seed=701, budget=6000
    )
    assert_rate_within_bound(wrong_fails(inside), RUNS, 0.05, "false FAIL rate")
    assert inside.count(Decision.PASS) >= 0.5 * RUNS  # not vacuous
    outside = simulate_split(
        THREE, {"v1": 0.50, "v2": 0.35, "v3": 0.15}, 0.05, 0.05, runs=RUNS, seed=702, budget=6000
    )
    assert_rate_within_bound(outside.count(Decision.PASS), RUNS, 0.05, "false PASS rate")
    assert outside.count(Decision.FAIL) >= 0.5 * RUNS  # not vacuous


# ------------------------------------------------------------------------------------------
# The simulation can see a violation
# ------------------------------------------------------------------------------------------


def test_simulation_detects_a_peeking_test() -> None:
    """The same bound, on the same draws, rejects a method that does exceed alpha.

    True share 0.25, on the edge of the band 0.20 +- 0.05 (inside it: FAIL is wrong), alpha =
    0.05, 2000 runs, budget 4000. The naive test recomputes a fixed-sample 95% Wald interval
    ``p_hat +- 1.96 sqrt(p_hat (1 - p_hat) / n)`` after every round and stops at the first look
    where it lies inside (PASS) or outside (FAIL) the band: each look is a valid 95% test,
    but 250 looks are not. Its false FAIL rate must break the bound 0.0646 clearly, while
    SplitTest's stays within it.
    """
    truth = two_versions(0.25)
    ns = look_schedule(4000, CONCURRENCY)
    counts = draw_counts(truth, ns, RUNS, 801)
    p_hat = counts["canary"] / ns[None, :]
    half = 1.959964 * np.sqrt(p_hat * (1 - p_hat) / ns[None, :])
    band = Interval(0.15, 0.25)
    fail = (p_hat + half < band.low) | (p_hat - half > band.high)
    passed = (p_hat - half >= band.low) & (p_hat + half <= band.high)
    decided = fail | passed
    first = decided.argmax(axis=1)
    naive = int(np.sum(decided.any(axis=1) & fail[np.arange(RUNS), first]))
    with pytest.raises(AssertionError, match="false FAIL rate"):
        assert_rate_within_bound(naive, RUNS, 0.05, "false FAIL rate")
    assert naive / RUNS > 2 * rate_bound(0.05, RUNS)  # not a near miss: a clear violation
    ours = decide_split(TWO, truth, 0.05, 0.05, ns, counts)
    assert_rate_within_bound(wrong_fails(ours), RUNS, 0.05, "false FAIL rate")
