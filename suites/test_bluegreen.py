"""Blue/green of the seeds: two full Deployments, the Service selector points at one."""

from __future__ import annotations

from pytest_canary import Harness


def test_flip_to_green_and_back(canary: Harness) -> None:
    """Before: 100% blue. Promote flips the selector: 100% green with no failed request."""
    rel = canary.deploy("bluegreen", stable="1.0", canary="2.0", replicas=2)
    rel.expect_routed("1.0")
    rel.promote(check_errors=True)
    rel.expect_routed("2.0")


def test_rollback_keeps_blue(canary: Harness) -> None:
    """Rollback: the selector stays on blue and green is deleted."""
    rel = canary.deploy("bluegreen", stable="1.0", canary="2.0")
    rel.rollback()
    rel.expect_routed("1.0")
