"""Proof by simulation: the error probabilities that pytest_canary.analysis claims.

Bounds as in tests/test_stats_simulation.py (module docstring there): with ``R`` independent
seeded runs, a wrong verdict of probability ``<= a`` per run shows up in more than
``a + 3 sqrt(a (1 - a) / R)`` of them with probability ~0.0013. Each aspect of HealthTest is
wrong with probability ``<= alpha / 2`` in either direction (analysis.py module docstring),
and that is the bound checked, on the hardest cases: a true difference exactly on the margin
(a FAIL is wrong there) and just beyond it (a PASS is wrong there).

The decision tests check each aspect and the verdict on the hardest cases, but their wrong
verdicts are rare whatever the split of alpha (at alpha = 0.05, 0.15 and 0.45 alike they stay
under their bound), so what proves the split are the coverage checks: the joint error region
and each side of the quantile sequence at the levels HealthTest gives them, against alpha/2
and alpha/4, each failing for a split wrong by x3 (numbers in their docstrings). The decision
tests therefore use 500 runs.

Runs are simulated as the harness samples: a look after every round of 16 requests; each
request goes to the canary with probability 1/2, fails with its version's error rate and takes
a latency from its version's distribution (a lognormal on 100 equally likely values). The
decisions are HealthTest's, evaluated for all runs at once (``tests/verdict_simulation.py``);
:func:`test_vectorised_simulation_matches_health_test` replays runs into ``HealthTest.update``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special
from test_stats_simulation import assert_rate_within_bound
from verdict_simulation import (
    HealthOutcome,
    Latencies,
    bounds,
    log_marginal,
    look_schedule,
    simulate_health,
)

from pytest_canary.analysis import HealthTest, Observations
from pytest_canary.stats import Decision

RUNS = 500
ALPHA = 0.05
STABLE = Latencies.lognormal(0.010, 0.3)
ERROR_MARGIN = 0.02
LATENCY_MARGIN = 0.2
CODES = {Decision.PASS: 1, Decision.FAIL: -1, Decision.INCONCLUSIVE: 0}
#: Heavy ties: latencies on a 1 ms grid, four atoms (80% at 10 ms, 12% at 11, 5% at 12, 3% at
#: 20). The p95 is the atom at 12 ms: P(X < 12 ms) = 0.92, P(X <= 12 ms) = 0.97.
TIES = Latencies(np.array([0.010, 0.011, 0.012, 0.020]), np.array([0.80, 0.12, 0.05, 0.03]))
TIMEOUT = 10.0


def run(
    *,
    error_rates: tuple[float, float] = (0.0, 0.0),
    slower: float = 1.0,
    runs: int = RUNS,
    seed: int,
    budget: int = 3000,
    only: str | None = None,
    record: list[dict[str, np.ndarray]] | None = None,
    unattributed: tuple[float, float] = (0.0, 0.0),
    stable: Latencies = STABLE,
) -> HealthOutcome:
    """Canary and stable at 50/50, the canary ``slower`` times the stable's latencies."""
    return simulate_health(
        canary_share=0.5,
        error_rates=error_rates,
        latencies=(stable.scaled(slower), stable),
        max_error_increase=ERROR_MARGIN,
        max_latency_increase=LATENCY_MARGIN,
        quantile=0.95,
        alpha=ALPHA,
        runs=runs,
        seed=seed,
        budget=budget,
        only=only,
        record=record,
        unattributed=unattributed,
        timeout=TIMEOUT,
    )


@pytest.mark.parametrize(
    ("error_rates", "slower", "unattributed", "budget", "outcomes", "seed", "stable"),
    [
        ((0.0, 0.0), 1.0, (0.0, 0.0), 1200, {Decision.PASS, Decision.INCONCLUSIVE}, 11, STABLE),
        ((0.06, 0.01), 1.3, (0.0, 0.0), 800, {Decision.FAIL, Decision.INCONCLUSIVE}, 15, STABLE),
        ((0.0, 0.0), 1.0, (0.0, 0.01), 1200, {Decision.PASS, Decision.INCONCLUSIVE}, 13, STABLE),
        ((0.06, 0.01), 1.3, (0.01, 0.02), 800, {Decision.FAIL, Decision.INCONCLUSIVE}, 14, STABLE),
        ((0.0, 0.0), 1.25, (0.0, 0.0), 2000, {Decision.FAIL, Decision.INCONCLUSIVE}, 16, TIES),
    ],
    ids=[
        "healthy",
        "unhealthy",
        "healthy-stable-times-out",
        "unhealthy-both-time-out",
        "heavy-ties",
    ],
)
def test_vectorised_simulation_matches_health_test(
    error_rates: tuple[float, float],
    slower: float,
    unattributed: tuple[float, float],
    budget: int,
    outcomes: set[Decision],
    seed: int,
    stable: Latencies,
) -> None:
    """20 runs replayed round by round into HealthTest.update give exactly the verdicts and
    request counts of the vectorised evaluation (scenarios where the budget cuts some runs
    short, so both a decision and INCONCLUSIVE occur), failed requests that name no version
    included, and latencies with heavy ties (:data:`TIES`)."""
    runs = 20
    record: list[dict[str, np.ndarray]] = []
    outcome = run(
        error_rates=error_rates,
        slower=slower,
        runs=runs,
        seed=seed,
        budget=budget,
        record=record,
        unattributed=unattributed,
        stable=stable,
    )
    canary_values, stable_values = stable.scaled(slower).values, stable.values
    seen = set()
    for r in range(runs):
        test = HealthTest(
            max_error_increase=ERROR_MARGIN,
            max_latency_increase=LATENCY_MARGIN,
            quantile=0.95,
            alpha=ALPHA,
            max_requests=budget,
        )
        for draws in record:
            canary = Observations(
                int(draws["canary"][r]),
                int(draws["canary_errors"][r]),
                canary_values[draws["canary_levels"][draws["canary_runs"] == r]].tolist(),
            )
            stable = Observations(
                int(draws["stable"][r]),
                int(draws["stable_errors"][r]),
                stable_values[draws["stable_levels"][draws["stable_runs"] == r]].tolist(),
            )
            lost = [TIMEOUT] * int(draws["unattributed"][r])
            if (
                test.update(canary=canary, stable=stable, unattributed=lost)
                is not Decision.CONTINUE
            ):
                break
        assert (CODES[test.decision], test.decided_at) == (
            outcome.decisions[r],
            outcome.requests[r],
        ), (r, test)
        seen.add(test.decision)
    assert seen == outcomes


# ------------------------------------------------------------------------------------------
# Coverage: each confidence sequence at the level HealthTest gives it
# ------------------------------------------------------------------------------------------
# The verdict tests below cannot tell the right split of alpha from a few times too much
# (their wrong verdicts are rare either way); these check the sequences themselves, at the
# levels HealthTest uses, against what the split promises (alpha/2 for the joint error
# region, alpha/4 for each side of each quantile sequence).


def test_joint_error_region_misses_the_true_pair_at_most_alpha_half() -> None:
    """The joint region of HealthTest (its error_alpha and prior) ever excluding the true
    pair (0.03, 0.01) over the looks of a 3000-request run at 50/50: <= alpha/2 = 0.025;
    bound 0.025 + 3 sqrt(0.025 * 0.975 / 4000) = 0.0324 over 4000 runs. Measured at seed 5:
    0.0133 at alpha/2, 0.0413 at the level 3 alpha/2 (a split wrong by x3 fails this)."""
    runs, budget, rates = 4000, 3000, (0.03, 0.01)
    probe = HealthTest(max_error_increase=ERROR_MARGIN, alpha=ALPHA)
    rng = np.random.default_rng(5)
    ns = look_schedule(budget, 16)
    sizes = np.diff(ns, prepend=0)
    n_c = np.cumsum(rng.binomial(sizes[None, :], 0.5, (runs, len(sizes))), axis=1)
    n_s = ns[None, :] - n_c
    e_c = np.cumsum(rng.binomial(np.diff(n_c, axis=1, prepend=0), rates[0]), axis=1)
    e_s = np.cumsum(rng.binomial(np.diff(n_s, axis=1, prepend=0), rates[1]), axis=1)
    log_likelihood = sum(
        special.xlogy(e, p) + special.xlog1py(n - e, -p)
        for e, n, p in ((e_c, n_c, rates[0]), (e_s, n_s, rates[1]))
    )
    statistic = (
        log_marginal(probe.error_prior, e_c, n_c)
        + log_marginal(probe.error_prior, e_s, n_s)
        - log_likelihood
    )
    missed = (statistic >= -math.log(probe.error_alpha)).any(axis=1)
    assert_rate_within_bound(int(missed.sum()), runs, ALPHA / 2, "joint region missed")


def test_each_side_of_the_quantile_sequence_misses_at_most_alpha_quarter() -> None:
    """The p95 sequence of HealthTest (its latency_alpha and prior) ever putting the true
    p95 outside, computed exactly, not simulated: the count of latencies <= p95 is a
    Bernoulli(0.95) walk and the sequence misses on one side iff the walk leaves that side
    of its acceptance counts at some n <= 3000 (every n, not only the looks), a dynamic
    programme over the walk's distribution. Each side <= alpha/4 = 0.0125. Computed: lower
    0.0030, upper 0.0043; at the level 3 alpha/4 (a split wrong by x3) 0.0115 and 0.0136,
    which fails this."""
    horizon, quantile = 3000, 0.95
    probe = HealthTest(max_latency_increase=LATENCY_MARGIN, quantile=quantile, alpha=ALPHA)
    accepted = bounds(np.arange(1, horizon + 1), quantile, probe.latency_alpha, probe.latency_prior)
    for side, name in ((0, "lower"), (1, "upper")):
        alive = np.zeros(horizon + 1)
        alive[0] = 1.0
        missed = 0.0
        for n in range(1, horizon + 1):
            alive[1:] = alive[1:] * (1.0 - quantile) + alive[:-1] * quantile
            alive[0] *= 1.0 - quantile
            lo, hi = accepted[n - 1]
            outside = slice(0, lo) if side == 0 else slice(hi + 1, None)
            missed += alive[outside].sum()
            alive[outside] = 0.0
        assert missed <= ALPHA / 4, f"{name} side missed with probability {missed:.5f}"


# ------------------------------------------------------------------------------------------
# Errors: anytime-valid CS for the difference of two Bernoulli rates
# ------------------------------------------------------------------------------------------


def test_error_test_false_fail_on_the_margin_is_at_most_alpha_half() -> None:
    """Stable fails 1%, canary 3%: exactly max_error_increase = 0.02 worse, still healthy. A
    FAIL needs the joint region to miss the true pair: <= alpha/2 = 0.025; bound 0.025 +
    3 sqrt(0.025 * 0.975 / 1000) = 0.0460. 500 runs, budget 3000 requests each.

    Not vacuous: a canary as good as the stable (1% both) must PASS in most of 200 runs."""
    outcome = run(error_rates=(0.03, 0.01), seed=21, only="errors")
    assert_rate_within_bound(int(np.sum(outcome.errors == -1)), RUNS, ALPHA / 2, "false FAIL")
    healthy = run(error_rates=(0.01, 0.01), runs=200, seed=22, only="errors")
    assert np.mean(healthy.errors == 1) >= 0.5


def test_error_test_false_pass_beyond_the_margin_is_at_most_alpha_half() -> None:
    """Stable 1%, canary 3.2%: 0.022 worse, just beyond the margin 0.02. A PASS needs the joint
    region to miss the true pair: <= alpha/2; bound 0.0460. 500 runs, budget 3000.

    Not vacuous: a canary failing 7% (0.06 worse) must FAIL in most of 200 runs."""
    outcome = run(error_rates=(0.032, 0.01), seed=31, only="errors")
    assert_rate_within_bound(int(np.sum(outcome.errors == 1)), RUNS, ALPHA / 2, "false PASS")
    broken = run(error_rates=(0.07, 0.01), runs=200, seed=32, only="errors")
    assert np.mean(broken.errors == -1) >= 0.5


# ------------------------------------------------------------------------------------------
# Latency: quantile confidence sequences (Howard & Ramdas 2022)
# ------------------------------------------------------------------------------------------


def test_latency_test_false_fail_on_the_margin_is_at_most_alpha_half() -> None:
    """The canary's latencies are the stable's times 1.2: its p95 is exactly 1 +
    max_latency_increase times the stable's, still healthy. A FAIL needs the canary's lower
    bound above its p95 or the stable's upper bound below its p95: <= 2 x alpha/4; bound
    0.0460. 500 runs, budget 3000.

    Not vacuous: a canary as fast as the stable must PASS in most of 200 runs."""
    outcome = run(slower=1.2, seed=41, only="latency")
    assert_rate_within_bound(int(np.sum(outcome.latency == -1)), RUNS, ALPHA / 2, "false FAIL")
    healthy = run(slower=1.0, runs=200, seed=42, only="latency")
    assert np.mean(healthy.latency == 1) >= 0.5


def test_latency_test_false_pass_beyond_the_margin_is_at_most_alpha_half() -> None:
    """The canary's latencies are the stable's times 1.23: 2.5% beyond the margin. A PASS
    needs the canary's upper bound below its p95 or the stable's lower bound above its p95:
    <= 2 x alpha/4; bound 0.0460. 500 runs, budget 3000.

    Not vacuous: a canary 1.6 times slower must FAIL in most of 200 runs."""
    outcome = run(slower=1.23, seed=51, only="latency")
    assert_rate_within_bound(int(np.sum(outcome.latency == 1)), RUNS, ALPHA / 2, "false PASS")
    slow = run(slower=1.6, runs=200, seed=52, only="latency")
    assert np.mean(slow.latency == -1) >= 0.5


def test_latency_error_bounds_hold_with_heavy_ties() -> None:
    """Latencies on a 1 ms grid with four atoms (:data:`TIES`): the stable's p95 is the atom
    at 12 ms, where the count of latencies <= p95 is Bernoulli(0.97), not 0.95, and most
    latencies tie. Both error bounds still hold (the sequence is conservative at an atom):

    * on the margin (canary x1.2: p95 14.4 ms = 1.2 x 12 ms, healthy) a FAIL is wrong:
      <= 2 x alpha/4 = 0.025; bound 0.025 + 3 sqrt(0.025 * 0.975 / 500) = 0.0460;
    * beyond it (canary x1.25: p95 15 ms) a PASS is wrong: same bound.

    500 runs each, budget 4000. Measured at these seeds: no false FAIL, no false PASS; PASS
    in 84% of the runs on the margin, FAIL in 84% at x1.25 (not vacuous: each must decide
    the right way in at least 70%)."""
    on_margin = run(slower=1.2, seed=81, budget=4000, only="latency", stable=TIES)
    assert_rate_within_bound(
        int(np.sum(on_margin.latency == -1)), RUNS, ALPHA / 2, "false FAIL with ties"
    )
    assert np.mean(on_margin.latency == 1) >= 0.7
    beyond = run(slower=1.25, seed=82, budget=4000, only="latency", stable=TIES)
    assert_rate_within_bound(
        int(np.sum(beyond.latency == 1)), RUNS, ALPHA / 2, "false PASS with ties"
    )
    assert np.mean(beyond.latency == -1) >= 0.7


# ------------------------------------------------------------------------------------------
# The verdict
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error_rates", "slower", "wrong", "bound", "seed"),
    [
        ((0.03, 0.01), 1.2, Decision.FAIL, ALPHA, 61),
        ((0.032, 0.01), 1.0, Decision.PASS, ALPHA / 2, 62),
    ],
    ids=["healthy-on-both-margins", "errors-just-beyond"],
)
def test_verdict_error_probabilities(
    error_rates: tuple[float, float], slower: float, wrong: Decision, bound: float, seed: int
) -> None:
    """The verdict (FAIL at the first aspect that FAILs, PASS once both PASSed): a canary
    healthy on both margins FAILs with probability <= alpha (either aspect may err, alpha/2
    each); one unhealthy in errors only PASSes with probability <= alpha/2 (its error test
    must PASS). 500 runs each, budget 3000."""
    outcome = run(error_rates=error_rates, slower=slower, seed=seed)
    assert_rate_within_bound(
        int(np.sum(outcome.decisions == CODES[wrong])), RUNS, bound, f"false {wrong.value}"
    )


def test_a_stable_that_times_out_does_not_fail_a_canary_healthy_on_both_margins() -> None:
    """The canary sits on both margins (errors 0.03 against 0.01, latencies x1.2) and 2% of
    the stable's requests fail naming no version (time out): those count against the canary
    for PASS only, so a FAIL is still wrong with probability <= alpha (measured: 1 of 1000
    runs at this seed; counted as canary errors for FAIL too, 2% stable timeouts failed a
    healthy canary in 20 of 20 HealthTest runs at alpha = 0.001). Bound alpha +
    3 sqrt(alpha (1 - alpha) / 1000) = 0.0707; 1000 runs, budget 3000. A PASS may not
    happen on the benefit of the doubt either: it needs the canary's pessimistic counts to
    pass, which (1% timeouts beside its 3% errors) they never do within the budget here."""
    runs = 1000
    outcome = run(
        error_rates=(0.03, 0.01), slower=1.2, unattributed=(0.0, 0.02), runs=runs, seed=71
    )
    assert_rate_within_bound(int(np.sum(outcome.decisions == -1)), runs, ALPHA, "false FAIL")
    assert np.sum(outcome.decisions == 1) == 0
