"""ingress-nginx canary scenarios of the seeds, written backend-agnostic.

Run on the local backend (default) in seconds, or unchanged on a real cluster with
``--canary-backend=kind`` / ``--canary-backend=kube``. Each test's docstring names the
scenario it reproduces.
"""

from __future__ import annotations

from pytest_canary import Harness


def test_weight_steps_then_promote(canary: Harness) -> None:
    """Weighted canary by steps, Argo-style done by hand: weight 20, then 50, then promote.

    ingress-nginx ``canary-weight``: each request independently goes to the canary with
    probability weight/100; promotion moves the stable Deployment to the new version and
    deletes the canary Ingress.
    """
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
    rel.expect_split(0.20)
    rel.set_weight(50)
    rel.expect_split(0.50)
    rel.promote()
    assert rel.stable_version == "2.0"  # the stable track now runs the new version
    assert rel.previous_version == "1.0"
    rel.expect_routed("2.0")


def test_header_always_and_never_override_the_weight(canary: Harness) -> None:
    """``canary-by-header: X-Canary``: "always" forces the canary, "never" forces stable,
    whatever the weight; without the header the weight decides."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", header="X-Canary", weight=30)
    rel.expect_routed("2.0", headers={"X-Canary": "always"})
    rel.expect_routed("1.0", headers={"X-Canary": "never"})
    rel.expect_split(0.30)


def test_header_pattern_routes_regions(canary: Harness) -> None:
    """``canary-by-header: Region`` with ``canary-by-header-pattern: cd|sz``: requests from
    the cd and sz regions go to the canary, bj stays on stable."""
    rel = canary.deploy(
        "nginx", stable="1.0", canary="2.0", header="Region", header_pattern="cd|sz"
    )
    rel.expect_routed("2.0", headers={"Region": "cd"})
    rel.expect_routed("2.0", headers={"Region": "sz"})
    rel.expect_routed("1.0", headers={"Region": "bj"})


def test_header_value_routes_exact_value_only(canary: Harness) -> None:
    """``canary-by-header-value``: only the exact value routes to the canary; with a value
    set, "always" is not special any more."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", header="X-Canary", header_value="beta")
    rel.expect_routed("2.0", headers={"X-Canary": "beta"})
    rel.expect_routed("1.0", headers={"X-Canary": "always"})


def test_cookie_always(canary: Harness) -> None:
    """``canary-by-cookie: user_from_cd``: the cookie set to "always" reaches the canary,
    "never" and its absence stay on stable (weight 0)."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", cookie="user_from_cd")
    rel.expect_routed("2.0", cookies={"user_from_cd": "always"})
    rel.expect_routed("1.0", cookies={"user_from_cd": "never"})
    rel.expect_routed("1.0")


def test_weight_ten_percent(canary: Harness) -> None:
    """``canary-weight: 10``: about one request in ten reaches the canary."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=10)
    rel.expect_split(0.10)


def test_rollback_restores_stable(canary: Harness) -> None:
    """Rollback: the canary Ingress, Service and Deployment are deleted and 100% of
    traffic is back on the stable version."""
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
    rel.expect_split(0.50)
    rel.rollback()
    rel.expect_routed("1.0")
    rel.expect_routed("1.0", headers={"X-Canary": "always"})
