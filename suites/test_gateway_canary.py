"""Gateway API canary: an HTTPRoute with weighted backendRefs, one Service per version.

The same scenarios as ingress-nginx where Gateway API can express them (weights, header
Exact/RegularExpression); it has no cookie match.
"""

from __future__ import annotations

import pytest

from pytest_canary import CanaryConfigError, Harness


def test_weighted_backend_refs(canary: Harness) -> None:
    """HTTPRoute weights 80/20, then 50/50, then promote."""
    rel = canary.deploy("gateway", stable="1.0", canary="2.0", weight=20)
    rel.expect_split(0.20)
    rel.set_weight(50)
    rel.expect_split(0.50)
    rel.promote(check_errors=True)
    rel.expect_routed("2.0")


def test_header_exact_and_regex(canary: Harness) -> None:
    """Header match: Exact ``X-Canary: always``, then RegularExpression ``cd|sz``."""
    rel = canary.deploy(
        "gateway", stable="1.0", canary="2.0", header="X-Canary", header_value="always"
    )
    rel.expect_routed("2.0", headers={"X-Canary": "always"})
    rel.expect_routed("1.0", headers={"X-Canary": "never"})
    rel.reconfigure(header="Region", header_value="cd|sz", header_match="regex")
    rel.expect_routed("2.0", headers={"Region": "sz"})
    rel.expect_routed("1.0", headers={"Region": "bj"})


def test_relative_weights_for_three_versions(canary: Harness) -> None:
    """backendRef weights are relative: 2/1/1 is 50/25/25."""
    rel = canary.deploy(
        "gateway", stable="1.0", canary="2.0", weights={"1.0": 2, "2.0": 1, "3.0": 1}
    )
    rel.expect_split({"1.0": 0.50, "2.0": 0.25, "3.0": 0.25})


def test_cookie_routing_is_refused_with_the_reason(canary: Harness) -> None:
    """Gateway API has no cookie match: the harness says so instead of silently ignoring it."""
    with pytest.raises(CanaryConfigError, match="Gateway API HTTPRoute has no cookie match"):
        canary.deploy("gateway", stable="1.0", canary="2.0", cookie="user_from_cd")
