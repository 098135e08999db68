"""Replica-ratio canary of the seeds: two Deployments behind one Service.

The Service selects the shared label ``app: kubeapp``; kube-proxy picks a ready pod at random
per new connection, so the canary's share is its share of ready pods. The harness opens a new
connection per request for this strategy (keep-alive would pin one pod).
"""

from __future__ import annotations

from pytest_canary import Harness


def test_replica_ratio_3_to_1_then_scale(canary: Harness) -> None:
    """Replica ratio 3:1 → 25%; canary scaled to 3 → 50%; stable scaled to 0 → 100% canary."""
    rel = canary.deploy(
        "replicas", stable="1.0", canary="2.0", stable_replicas=3, canary_replicas=1
    )
    rel.expect_split(0.25)
    rel.reconfigure(canary_replicas=3)
    rel.expect_split(0.50)
    rel.reconfigure(stable_replicas=0)
    rel.expect_routed("2.0")


def test_promote_moves_the_stable_workload_to_the_new_version(canary: Harness) -> None:
    """Promotion: the stable Deployment runs the canary version, the canary Deployment goes;
    traffic keeps flowing with no failed request."""
    rel = canary.deploy("replicas", stable="1.0", canary="2.0")
    rel.promote(check_errors=True)
    rel.expect_routed("2.0")


def test_rollback_deletes_the_canary(canary: Harness) -> None:
    """Rollback: the canary Deployment is deleted, 100% back on the stable version."""
    rel = canary.deploy("replicas", stable="1.0", canary="2.0")
    rel.rollback(check_errors=True)
    rel.expect_routed("1.0")
