"""Canary analysis: is the new version as healthy as the old one, on the same traffic?

What Argo Rollouts, Flagger and Kayenta decide from metrics before they promote, decided here
from the requests the test sends: ``expect_healthy`` compares the canary's error rate and its
p95 latency with the stable version's, sequentially and anytime-valid (a healthy canary
fails with probability <= alpha, an unhealthy one passes with probability <= alpha / 2; see
``pytest_canary.analysis``). The faults come from the sample app: ``canary_error_rate`` makes
the canary answer 500 at that rate, ``canary_latency_ms`` delays its answers. Written
backend-agnostic: on a cluster the same tests compare the real pods.
"""

from __future__ import annotations

import pytest

from pytest_canary import Harness
from pytest_canary.manifests import Phase
from pytest_canary.report import CanaryAssertionError


def test_a_healthy_canary_passes(canary: Harness) -> None:
    """Two builds of the same app at weight 50: the canary's error rate is at most one point
    above the stable's and its p95 latency at most 1.5x the stable's.

    Not left to chance: a healthy canary FAILs with probability <= alpha = 0.001, and the
    test is INCONCLUSIVE only if 20,000 requests do not decide (a few thousand do). The local
    backend's latencies are a few milliseconds with scheduler noise on a shared machine, so
    the latency margin here is 50% (the default 20% decides too, with more requests).
    """
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
    verdict = rel.expect_healthy(max_latency_increase=0.5)
    assert verdict.checks == {"errors": "PASS", "latency": "PASS"}, verdict.explain()
    assert verdict.roles == {"2.0": "canary", "1.0": "stable"}
    assert verdict.version_errors == {"2.0": 0, "1.0": 0}


def test_a_canary_failing_5_percent_more_fails(canary: Harness) -> None:
    """The canary answers 500 on 5% of its requests, the stable never: 5 points more than the
    default max_error_increase of 1 point. The comparison FAILs on the errors (in a few
    hundred requests) and says by how much at least; an unhealthy canary PASSes with
    probability <= alpha / 2."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50, canary_error_rate=0.05)
    with pytest.raises(CanaryAssertionError) as failure:
        rel.expect_healthy()
    verdict = failure.value.verdict
    assert verdict.decision == "FAIL" and verdict.checks["errors"] == "FAIL", verdict.explain()
    assert verdict.intervals["error increase"].low > 0.01
    assert verdict.version_errors["1.0"] == 0 < verdict.version_errors["2.0"]
    assert "errors: the canary fails at least" in str(failure.value)
    assert "HTTP 500" in str(failure.value)


def test_a_canary_100ms_slower_fails_at_p95(canary: Harness) -> None:
    """Every canary answer waits 100 ms more: its p95 is far above 1.2x the stable's (a few
    ms on an idle machine, tens on a busy one: the delay comes on top of whatever the stable
    takes). The comparison FAILs on the latency, with both p95s and their intervals."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50, canary_latency_ms=100)
    with pytest.raises(CanaryAssertionError) as failure:
        rel.expect_healthy()
    verdict = failure.value.verdict
    assert verdict.checks["latency"] == "FAIL", verdict.explain()
    quantiles = verdict.latency_quantiles_ms
    assert quantiles["2.0"] >= 100 and quantiles["2.0"] > quantiles["1.0"]
    assert verdict.intervals["latency ratio"].low > 1.2
    assert "latency: canary/stable p95 at least" in str(failure.value)


def test_promote_with_check_health_refuses_an_unhealthy_canary(canary: Harness) -> None:
    """``promote(check_health=True)`` compares first and promotes nothing when the canary is
    not healthy: the failure carries the health table, the release is still a canary, and
    the stable version still answers its share."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50, canary_error_rate=0.05)
    with pytest.raises(CanaryAssertionError, match="canary health expectation FAIL") as failure:
        rel.promote(check_health=True)
    assert "check                    decision" in str(failure.value)
    assert rel.phase is Phase.CANARY
    rel.expect_routed("1.0", headers={"X-Canary": "never"})


def test_argo_rollout_step_is_analysed_before_promotion(canary: Harness) -> None:
    """The analysis Argo Rollouts runs between steps, done by the test: at the first pause
    (weight 50) a canary failing a fifth of its requests is compared with the stable
    ReplicaSet, and ``promote(check_health=True)`` refuses to move the Rollout on."""
    if not canary.environment.runs_argo_rollouts:
        pytest.skip("this backend does not run Argo Rollouts (the local backend models it)")
    rel = canary.deploy(
        "rollouts",
        stable="1.0",
        canary="2.0",
        steps=[{"setWeight": 50}, {"pause": {}}],
        traffic="nginx",
        canary_error_rate=0.2,
    )
    with pytest.raises(CanaryAssertionError, match="errors: the canary fails at least"):
        rel.promote(check_health=True)
    assert rel.status.step == 1 and rel.status.phase == "Paused"
