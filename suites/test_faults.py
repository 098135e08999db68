"""Fault injection: a bad canary that answers HTTP 500 at a set rate, written backend-agnostic.

``canary_error_rate=0.2`` sets ``ERROR_RATE=0.2`` on the canary's pods (the sample app's fault
injection, sample_app/README.md "Faults"): each request the canary receives fails with
probability 0.2, drawn per request. Run on the local backend with processes (default) or
containers (``--canary-runtime=docker``), or unchanged on a cluster. Each test's docstring
names the scenario it reproduces and why its outcome is not left to chance.
"""

from __future__ import annotations

import pytest

from pytest_canary import Harness

ERROR_RATE = 0.2
WEIGHT = 50
# Errors are never counted as a version, so among *answered* requests the canary's share is
# w(1-r) / (w(1-r) + (1-w)) = 0.5*0.8 / (0.5*0.8 + 0.5) = 4/9, not the weight.
ANSWERED_CANARY_SHARE = (WEIGHT / 100 * (1 - ERROR_RATE)) / (
    WEIGHT / 100 * (1 - ERROR_RATE) + (1 - WEIGHT / 100)
)
# Overall failed fraction: w * r = 0.1.
OVERALL_ERROR_RATE = WEIGHT / 100 * ERROR_RATE


def test_expect_split_reports_the_errors_and_fails_unless_allowed(canary: Harness) -> None:
    """Bad canary, weight 50, 20% of its answers are HTTP 500.

    ``expect_split`` keeps the failed requests out of the split and reports them: with the
    default ``max_error_rate=0`` any failed request fails the expectation, and the failure
    message shows the errors (``HTTP 500`` with their count). Allowing 20% of failed requests
    (twice the real 10%) lets the same expectation pass.

    Not left to chance: the split test sends hundreds of requests, each failing with
    probability 0.1, so P(no error at all) <= 0.9**100 < 3e-5; with ``max_error_rate=0.2``
    the exact binomial test wrongly flags a true 10% rate with probability <= alpha.
    """
    rel = canary.deploy(
        "nginx", stable="1.0", canary="2.0", weight=WEIGHT, canary_error_rate=ERROR_RATE
    )
    with pytest.raises(AssertionError) as failure:
        rel.expect_split(ANSWERED_CANARY_SHARE, tolerance=0.1)
    message = str(failure.value)
    assert "requests failed (max_error_rate=0)" in message, message
    assert "HTTP 500" in message, message

    verdict = rel.expect_split(ANSWERED_CANARY_SHARE, tolerance=0.1, max_error_rate=0.2)
    assert verdict.passed
    assert verdict.errors.get("HTTP 500", 0) > 0, verdict
    assert set(verdict.errors) == {"HTTP 500"}, verdict  # nothing but the injected faults


def test_promote_with_check_errors_refuses_a_faulty_canary(canary: Harness) -> None:
    """Zero-downtime promotion check on a bad canary: ``promote(check_errors=True)`` keeps
    traffic flowing through the switch and fails because requests failed during it.

    The promoted workload runs the canary version with its fault rate, so once the switch
    happens every request fails with probability 0.2 (before it, 0.1). Background traffic
    runs from before the switch until after it (at least one full batch first, then for
    the whole rollout of the new pods), typically hundreds of requests: P(no failure) is
    below 0.9**8 * 0.8**n, negligible for any real switch.
    """
    rel = canary.deploy(
        "nginx", stable="1.0", canary="2.0", weight=WEIGHT, canary_error_rate=ERROR_RATE
    )
    with pytest.raises(AssertionError) as failure:
        rel.promote(check_errors=True)
    message = str(failure.value)
    assert "failed during the promoted switch" in message, message
    assert "HTTP 500" in message, message
    # The switch happened; rollback() undoes it: 100% stable again.
    rel.rollback()
    rel.expect_routed("1.0")


def test_rollback_restores_100_percent_stable(canary: Harness) -> None:
    """Rollback of a bad canary: after ``rollback()`` the canary objects are gone and every
    request is answered by the stable version, without a single error.

    Before: 200 requests at an overall failure rate of 0.1 show errors
    (P(none) = 0.9**200 < 1e-9). After: ``expect_routed`` sends enough requests to catch a
    2% leak with probability 1 - alpha, and any failed request fails it
    (``max_error_rate=0``), also with the header that used to force the canary.
    """
    rel = canary.deploy(
        "nginx", stable="1.0", canary="2.0", weight=WEIGHT, canary_error_rate=ERROR_RATE
    )
    before = rel.sample(200)
    assert before.errors.get("HTTP 500", 0) > 0, before
    assert before.counts["2.0"] > 0, before

    rel.rollback()
    after = rel.expect_routed("1.0")
    assert after.errors == {}, after
    rel.expect_routed("1.0", headers={"X-Canary": "always"})
