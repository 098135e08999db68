"""Unit tests of pytest_canary.analysis: the comparisons' numbers, decisions and messages.

The error probabilities are proven by simulation in tests/test_analysis_simulation.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_canary.analysis import (
    HealthTest,
    Observations,
    difference_interval,
    difference_statistic,
    error_rate_prior,
    quantile_interval,
    quantile_prior,
)
from pytest_canary.stats import Decision, MixturePrior, acceptance_counts

PRIOR = error_rate_prior(0.01)


def brute_statistic(canary: tuple[int, int], stable: tuple[int, int], d: float) -> float:
    """min over a fine grid of the line p_c - p_s = d of ln M_c + ln M_s."""
    (e_c, n_c), (e_s, n_s) = canary, stable
    y = np.linspace(max(0.0, -d), min(1.0, 1.0 - d), 400_001)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_likelihood = (
            (e_c * np.log(y + d) if e_c else 0.0)
            + ((n_c - e_c) * np.log1p(-(y + d)) if n_c - e_c else 0.0)
            + (e_s * np.log(y) if e_s else 0.0)
            + ((n_s - e_s) * np.log1p(-y) if n_s - e_s else 0.0)
        )
    top = float(np.nanmax(log_likelihood))
    return PRIOR.log_marginal(e_c, n_c) + PRIOR.log_marginal(e_s, n_s) - top


@pytest.mark.parametrize(
    ("canary", "stable", "d"),
    [
        ((0, 900), (0, 900), 0.01),
        ((3, 1000), (1, 1000), 0.01),
        ((50, 1000), (0, 1000), 0.01),
        ((50, 1000), (20, 1000), 0.01),
        ((0, 506), (1, 1290), -0.011),
        ((7, 40), (7, 400), 0.3),
        ((40, 40), (0, 10), 0.9),
    ],
)
def test_difference_statistic_is_the_minimum_along_the_line(
    canary: tuple[int, int], stable: tuple[int, int], d: float
) -> None:
    found = difference_statistic(canary, stable, d, PRIOR)
    grid = brute_statistic(canary, stable, d)
    assert found <= grid + 1e-9  # the true minimum is at most the grid's
    assert found == pytest.approx(grid, abs=1e-4)


def test_difference_interval_holds_the_differences_the_region_keeps() -> None:
    """Its ends are where the statistic reaches ln(1/alpha), approached from outside; the
    observed difference is inside."""
    level = math.log(1 / 0.0005)
    for canary, stable in [((0, 900), (0, 900)), ((50, 1000), (0, 1000)), ((0, 506), (1, 1290))]:
        interval = difference_interval(canary, stable, 0.0005, PRIOR)
        observed = canary[0] / canary[1] - stable[0] / stable[1]
        assert interval.low < observed < interval.high
        for end in (interval.low, interval.high):
            assert difference_statistic(canary, stable, end, PRIOR) >= level
        inward = 1e-7
        assert difference_statistic(canary, stable, interval.low + inward, PRIOR) < level
        assert difference_statistic(canary, stable, interval.high - inward, PRIOR) < level
    assert difference_interval((0, 0), (0, 5), 0.01, PRIOR).width == 2.0


def test_error_rate_prior_puts_half_its_mass_on_no_errors() -> None:
    prior = error_rate_prior(0.02)
    assert prior.atoms == ((0.5, 0.0),)
    assert prior.components == ((0.3, 0.5, 25.0), (0.2, 0.5, 0.5))
    # No error in n requests costs at most ln 2 nats.
    assert prior.log_marginal(0, 10_000) >= math.log(0.5)
    with pytest.raises(ValueError, match=r"max_error_increase=0: must be in \(0, 1\)"):
        error_rate_prior(0)


def test_quantile_interval_is_bracketed_by_order_statistics() -> None:
    ordered = [i / 1000 for i in range(1, 1001)]
    prior = quantile_prior(0.95)
    low, high = quantile_interval(ordered, 0.95, 0.001, prior)
    lo, hi = acceptance_counts(1000, 0.95, 0.001, prior)
    assert (low, high) == (ordered[lo - 1], ordered[hi])
    assert low is not None and high is not None and low < 0.95 < high
    # Too few answers: the upper end is not bounded yet.
    assert quantile_interval(ordered[:20], 0.95, 0.001, prior)[1] is None
    assert quantile_interval([], 0.95, 0.001, prior) == (None, None)


def batch(requests: int, errors: int = 0, latency: float = 0.010) -> Observations:
    return Observations(requests, errors, [latency] * requests)


def test_a_healthy_canary_passes_and_reports_both_checks() -> None:
    test = HealthTest(max_error_increase=0.02, max_latency_increase=0.5, alpha=0.01)
    rng = np.random.default_rng(1)
    while (
        test.update(
            canary=Observations(8, 0, list(rng.lognormal(-4.6, 0.2, 8))),
            stable=Observations(8, 0, list(rng.lognormal(-4.6, 0.2, 8))),
        )
        is Decision.CONTINUE
    ):
        assert test.n < 5000
    assert test.decision is Decision.PASS
    assert test.errors.decision is test.latency.decision is Decision.PASS
    assert test.errors.interval is not None and test.errors.interval.high <= 0.02
    assert test.latency.interval is not None and test.latency.interval.high <= 1.5
    assert "errors: the canary fails at most" in test.reason
    assert "latency: canary/stable p95 at most" in test.reason
    assert [n for n, _ in test.history] == list(range(16, test.n + 1, 16))
    assert set(test.history[-1][1]) == {"error increase", "latency ratio"}


def test_errors_fail_as_soon_as_shown_and_the_decision_is_final() -> None:
    test = HealthTest(max_error_increase=0.01, alpha=0.001)
    while test.update(canary=batch(8, 2), stable=batch(8)) is Decision.CONTINUE:
        assert test.n < 2000
    assert test.decision is Decision.FAIL and test.errors.decision is Decision.FAIL
    assert test.latency.decision is Decision.CONTINUE
    assert "errors: the canary fails at least" in test.reason
    decided_at = test.decided_at
    assert test.update(canary=batch(8), stable=batch(8)) is Decision.FAIL
    assert test.decided_at == decided_at and test.n == decided_at + 16


def test_latency_fails_for_a_much_slower_canary() -> None:
    test = HealthTest(alpha=0.001)
    rng = np.random.default_rng(2)
    while (
        test.update(
            canary=Observations(8, 0, list(0.1 + rng.lognormal(-4.6, 0.2, 8))),
            stable=Observations(8, 0, list(rng.lognormal(-4.6, 0.2, 8))),
        )
        is Decision.CONTINUE
    ):
        assert test.n < 2000
    assert test.latency.decision is Decision.FAIL
    assert test.latency.interval is not None and test.latency.interval.low > 1.2
    assert "latency: canary/stable p95 at least" in test.reason


def test_budget_makes_it_inconclusive_and_says_what_would_decide() -> None:
    """At 300 requests the canary has 152 answers, too few for an upper bound of its p95
    (243 at alpha/4): no margin can PASS the latency check, so the advice names that need
    instead of offering an error margin as a PASS. At 600 both checks have a margin."""
    test = HealthTest(alpha=0.001, max_requests=300)
    while test.update(canary=batch(8), stable=batch(8)) is Decision.CONTINUE:
        pass
    assert test.decision is Decision.INCONCLUSIVE and test.n == 304
    assert test.next_batch_size(16) == 0
    needed = test.needed_requests()
    assert needed is not None and needed > 300
    assert "undecided after 304 requests (max_requests=300)" in test.reason
    assert f"about {needed} requests would PASS at the observed rates" in test.reason
    assert "would PASS with these requests" not in test.reason
    assert (
        "no margin makes the latency check PASS yet: an upper bound of the canary's p95 needs "
        "243 answers of that version at alpha/4=0.00025 (it has 152; about 486 requests at "
        "the observed canary share of 50.0%)"
    ) in test.reason

    test = HealthTest(alpha=0.001, max_requests=600)
    while test.update(canary=batch(8), stable=batch(8)) is Decision.CONTINUE:
        pass
    assert test.latency.decision is Decision.PASS
    assert "or max_error_increase>=0.028 would PASS with these requests" in test.reason


def test_budget_advice_says_which_way_more_requests_would_go() -> None:
    """A canary failing 1 in 16 against a clean stable, margin 0.01: more requests would
    FAIL it, and the advice says so rather than promising a decision either way."""
    test = HealthTest(alpha=0.001, max_requests=600)
    while test.update(canary=batch(16, 1), stable=batch(16)) is Decision.CONTINUE:
        pass
    assert test.decision is Decision.INCONCLUSIVE
    assert "requests would decide at the observed rates (errors FAIL" in test.reason


def test_budget_advice_on_a_margin_says_no_multiple_decides() -> None:
    """A canary exactly 1.2x the stable's latencies against max_latency_increase=0.2: more
    requests at these rates converge on the margin and never decide; the advice says how far
    it looked instead of naming a number of requests."""
    rng = np.random.default_rng(3)
    test = HealthTest(alpha=0.001, max_requests=800)
    while True:
        stable = list(rng.lognormal(-4.6, 0.3, 8))
        canary = [latency * 1.2 for latency in stable]
        if (
            test.update(canary=Observations(8, 0, canary), stable=Observations(8, 0, stable))
            is not Decision.CONTINUE
        ):
            break
    assert test.decision is Decision.INCONCLUSIVE
    assert "not even 819200 requests would decide at the observed rates" in test.reason
    assert "requests would PASS at the observed rates" not in test.reason


def test_a_version_without_traffic_stops_early() -> None:
    """All of the first routed_requests(0.01, alpha) requests on one version: the other gets
    less than 1% of this traffic; the comparison cannot happen, so it stops there."""
    test = HealthTest(alpha=0.001)
    while test.update(canary=batch(16), stable=batch(0)) is Decision.CONTINUE:
        assert test.n < 1000
    assert test.decision is Decision.INCONCLUSIVE
    assert test.n == 688  # routed_requests(0.01, 0.001): 43 rounds of 16
    assert "the stable answered none of" in test.reason
    assert "needs both versions on the same traffic" in test.reason


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_error_increase": 0.0}, r"max_error_increase=0\.0: must be in \(0, 1\)"),
        ({"max_error_increase": "1%"}, "max_error_increase='1%': must be a number"),
        ({"max_latency_increase": -0.1}, r"max_latency_increase=-0\.1: must be in \(0, inf\)"),
        ({"quantile": 1.0}, r"quantile=1\.0: must be in \(0, 1\)"),
        ({"alpha": 0.5}, r"alpha=0\.5: must be in \(0, 0\.5\)"),
        ({"max_requests": 0}, "max_requests=0: must be an integer >= 1"),
        ({"error_prior": "flat"}, "must be MixturePrior instances"),
    ],
)
def test_health_test_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HealthTest(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((3, 4, [0.1] * 3), "errors=4: must be <= requests=3"),
        ((2, 0, [0.1]), "latencies: 1 given for 2 requests"),
        ((1, 0, [math.inf]), "latency inf: must be a finite number of seconds"),
        ((-1, 0, []), "requests=-1: must be an integer >= 0"),
    ],
)
def test_observations_are_checked(args: tuple[object, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Observations(*args)  # type: ignore[arg-type]


def test_any_prior_can_be_given_for_experiments() -> None:
    flat = MixturePrior(((1.0, 1.0, 1.0),))
    test = HealthTest(error_prior=flat, latency_prior=flat)
    assert test.error_prior is flat and test.latency_prior is flat
    assert repr(test).startswith("<HealthTest CONTINUE n=0")


def test_latency_fails_before_the_canary_has_an_upper_bound() -> None:
    """A canary at 1 s against a stable at 10 ms, one request in 16 to the canary: the FAIL
    needs only the canary's lower bound and the stable's upper bound; the ratio's upper end
    is unbounded (the canary's p95 needs ~243 answers to be bounded above) and is reported
    so, with the lower end that decided."""
    test = HealthTest(alpha=0.001)
    while test.update(canary=batch(1, latency=1.0), stable=batch(15)) is Decision.CONTINUE:
        assert test.n < 2000
    assert test.latency.decision is Decision.FAIL and test.canary.requests < 243
    interval = test.latency.interval
    assert interval is not None and interval.high == math.inf and interval.low > 1.2
    assert "latency: canary/stable p95 at least x" in test.reason


def test_a_stable_that_times_out_does_not_fail_a_healthy_canary() -> None:
    """Every round one request fails naming no version (a timeout of the stable, say): a
    FAIL stands on the answers that named their version, so the canary is not failed; a PASS
    counts the timeouts against the canary, so it is not called healthy either: INCONCLUSIVE
    at the budget, naming the failures and why."""
    test = HealthTest(alpha=0.01, max_requests=1600)
    while (
        test.update(canary=batch(8), stable=batch(7), unattributed=[10.0], reasons={"timeout": 1})
        is Decision.CONTINUE
    ):
        pass
    assert test.decision is Decision.INCONCLUSIVE and test.n == 1600
    assert test.errors.decision is test.latency.decision is Decision.CONTINUE
    assert "100 requests failed without naming a version (timeout x100)" in test.reason
    assert "on the answers that named their version alone it would PASS" in test.reason
    assert test.canary.requests == 800 and test.worst.requests == 900


def test_a_failing_canary_fails_on_its_own_answers_despite_unattributed_failures() -> None:
    """A canary failing a quarter of its answers FAILs, worded on the answers that named
    their version; the report's canary error rate is its own (2/8), not the timeouts'."""
    test = HealthTest(alpha=0.001)
    while (
        test.update(canary=batch(8, 2), stable=batch(8), unattributed=[10.0]) is Decision.CONTINUE
    ):
        assert test.n < 2000
    assert test.decision is Decision.FAIL
    assert "canary 0.2500" in test.reason
    assert "from the answers that named their version" in test.reason
