"""Istio canary scenarios of the seeds: DestinationRule subsets and a VirtualService.

Weights are relative (they need not sum to 100; 0 gets nothing), routes are evaluated in
order and the first match wins, ``sourceLabels`` select the calling workload (traffic enters
through the frontend app, as in the seed).
"""

from __future__ import annotations

from pytest_canary import Harness


def test_weights_10_50_100(canary: Harness) -> None:
    """Istio traffic shifting: 10% → 50% → 100% to v2 by VirtualService weights."""
    rel = canary.deploy("istio", stable="v1", canary="v2", weight=10)
    rel.expect_split(0.10)
    rel.set_weight(50)
    rel.expect_split(0.50)
    rel.set_weight(100)
    rel.expect_routed("v2")


def test_header_match_goes_first(canary: Harness) -> None:
    """Header route ``canary: canary-tester`` (exact) to v2 before the weighted default."""
    rel = canary.deploy(
        "istio", stable="v1", canary="v2", header="canary", header_value="canary-tester", weight=0
    )
    rel.expect_routed("v2", headers={"canary": "canary-tester"})
    rel.expect_routed("v1", headers={"canary": "someone-else"})
    rel.expect_routed("v1")


def test_header_prefix_and_regex(canary: Harness) -> None:
    """Header match by prefix and by regex (RE2, whole value)."""
    rel = canary.deploy(
        "istio",
        stable="v1",
        canary="v2",
        header="x-user",
        header_value="beta-",
        header_match="prefix",
    )
    rel.expect_routed("v2", headers={"x-user": "beta-42"})
    rel.expect_routed("v1", headers={"x-user": "alpha-1"})
    rel.reconfigure(header_value="(cd|sz)-.*", header_match="regex")
    rel.expect_routed("v2", headers={"x-user": "cd-7"})
    rel.expect_routed("v1", headers={"x-user": "xcd-7"})


def test_source_labels_only_frontend_v2_reaches_v2(canary: Harness) -> None:
    """sourceLabels: only the frontend v2 reaches backend v2; frontend v1 stays on v1."""
    rel = canary.deploy("istio", stable="v1", canary="v2", source=True, weight=0)
    rel.expect_routed("v2", source="v2")
    rel.expect_routed("v1", source="v1")


def test_three_versions_50_25_25(canary: Harness) -> None:
    """Three subsets at once: 50/25/25 with one simultaneous verdict."""
    rel = canary.deploy("istio", stable="v1", canary="v2", weights={"v1": 50, "v2": 25, "v3": 25})
    rel.expect_split({"v1": 0.50, "v2": 0.25, "v3": 0.25})


def test_promote_with_zero_downtime(canary: Harness) -> None:
    """Promotion: the VirtualService sends 100% to v2 and v1 goes; no request fails."""
    rel = canary.deploy("istio", stable="v1", canary="v2", weight=50)
    rel.promote(check_errors=True)
    rel.expect_routed("v2")
