"""Paused rolling update of the seeds: ``kubectl set image`` + ``kubectl rollout pause``.

While paused, old and new pods serve side by side behind one Service, so the new version's
share is its share of ready pods; ``resume`` completes the rollout (promote) and
``rollout undo`` goes back (rollback).
"""

from __future__ import annotations

from pytest_canary import Harness


def _new_share(counts: dict[str, int], version: str) -> float:
    return counts.get(version, 0) / sum(counts.values())


def test_paused_rollout_share_matches_new_pods(canary: Harness) -> None:
    """Paused after the first new pod (4 replicas, maxSurge 1, maxUnavailable 0): the observed
    share equals new pods / ready pods; resume completes the rollout without errors."""
    rel = canary.deploy("rolling", stable="1.0", canary="2.0", replicas=4, surge=1, unavailable=0)
    pods = rel.ready_pods()
    assert pods == {"1.0": 4, "2.0": 1}, pods
    rel.expect_split(_new_share(pods, "2.0"))
    rel.promote(check_errors=True)
    rel.expect_routed("2.0")


def test_rollout_undo(canary: Harness) -> None:
    """``kubectl rollout undo``: back to 100% of the old version, no failed request."""
    rel = canary.deploy("rolling", stable="1.0", canary="2.0", replicas=4, surge=1, unavailable=1)
    pods = rel.ready_pods()
    rel.expect_split(_new_share(pods, "2.0"))
    rel.rollback(check_errors=True)
    rel.expect_routed("1.0")
