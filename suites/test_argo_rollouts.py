"""Argo Rollouts canary of the seeds (``setWeight`` / ``pause`` steps, ``kubectl argo rollouts
promote``), with the traffic users get checked at every step.

The controller walks the steps and writes the split into the router: ingress-nginx's
canary Ingress (``traffic="nginx"``), Istio VirtualService weights (``traffic="istio"``), or,
without a router, replica counts. ``promote()`` is ``kubectl argo rollouts promote``
(returns at the next pause or the end), ``promote(full=True)`` is ``promote --full``,
``abort()``, ``retry()`` and ``rollback()`` (abort + undo) as the plugin does them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_canary import Harness

SHOP = Path(__file__).parent / "manifests" / "rollouts" / "shop"

STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {"duration": "5s"}},
    {"setWeight": 70},
    {"pause": {"duration": "5s"}},
]


@pytest.fixture(autouse=True)
def _needs_argo_rollouts(canary: Harness) -> None:
    """Skip where no Argo Rollouts controller runs, saying how to get one (the local
    backend models it; kind installs the pinned add-on when this fixture asks; on your
    cluster, install it yourself)."""
    if not canary.environment.runs_argo_rollouts:
        pytest.skip(f"Argo Rollouts: {canary.environment.argo_rollouts_missing()}")


def test_argo_canary_steps(canary: Harness) -> None:
    """The seed's steps with ingress-nginx, exactly as the issue writes them."""
    rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx")
    rel.expect_split(0.20)  # deploy() returns at the first pause (step 1)
    assert rel.status.step == 1 and rel.status.phase == "Paused"
    rel.promote()  # = kubectl argo rollouts promote; returns at the next pause
    rel.expect_split(0.50)
    rel.wait_for_pause()  # the timed pause ends by itself; wait for the next one
    rel.expect_split(0.70)
    rel.promote(full=True)  # = promote --full: skip the remaining steps
    rel.expect_routed("2.0")
    assert rel.status.phase == "Healthy" and rel.stable_version == "2.0"


def test_argo_canary_steps_istio(canary: Harness) -> None:
    """Steps with Istio: the controller writes the VirtualService route weights and labels
    the DestinationRule's stable / canary subsets with each ReplicaSet's hash. Sampling
    happens at indefinite pauses; the short timed pause is waited out, not sampled."""
    steps = [
        {"setWeight": 20},
        {"pause": {}},
        {"setWeight": 50},
        {"pause": {}},
        {"setWeight": 70},
        {"pause": {"duration": "1s"}},
        {"setWeight": 90},
        {"pause": {}},
    ]
    rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=steps, traffic="istio")
    rel.expect_split(0.20)
    assert rel.status.step == 1 and rel.status.phase == "Paused"
    rel.promote()
    assert rel.status.weight == 50
    rel.promote()
    assert rel.wait_for_pause().step == 7
    rel.expect_split(0.90)
    rel.promote()
    rel.expect_routed("2.0")
    assert rel.status.phase == "Healthy" and rel.stable_version == "2.0"


def test_basic_canary_by_replica_counts(canary: Harness) -> None:
    """No traffic router: setWeight 20 of 5 replicas is 1 canary and 4 stable pods behind one
    Service (utils/replicaset/canary.go approximateWeightedCanaryStableReplicaCounts)."""
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]
    rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=steps, replicas=5)
    assert rel.ready_pods() == {"1.0": 4, "2.0": 1}
    rel.expect_split(0.20)
    rel.promote()
    assert rel.ready_pods() == {"1.0": 2, "2.0": 3}  # 60% of 5 pods
    rel.promote()
    rel.expect_routed("2.0")
    assert rel.status.phase == "Healthy" and rel.ready_pods() == {"2.0": 5}


def test_header_routing_with_nginx_annotations(canary: Harness) -> None:
    """The seed's ``canary-by-header: X-Canary`` as an additionalIngressAnnotation on the
    canary Ingress the controller makes: always -> canary, never -> stable, at any weight."""
    rel = canary.deploy(
        "rollouts",
        stable="1.0",
        canary="2.0",
        steps=STEPS,
        traffic="nginx",
        additional_ingress_annotations={"canary-by-header": "X-Canary"},
    )
    rel.expect_routed("2.0", headers={"X-Canary": "always"})
    rel.expect_routed("1.0", headers={"X-Canary": "never"})


def test_istio_header_route_step(canary: Harness) -> None:
    """``setHeaderRoute`` (Istio, with ``managedRoutes``): after the canary has pods, a route
    matching the header sends everything to it, ahead of the weighted route."""
    steps = [
        {"setWeight": 10},
        {
            "setHeaderRoute": {
                "name": "beta",
                "match": [{"headerName": "x-beta-user", "headerValue": {"exact": "yes"}}],
            }
        },
        {"pause": {}},
    ]
    rel = canary.deploy(
        "rollouts",
        stable="1.0",
        canary="2.0",
        steps=steps,
        traffic="istio",
        managed_routes=["beta"],
    )
    rel.expect_routed("2.0", headers={"x-beta-user": "yes"})
    rel.expect_split(0.10)


def test_abort_mid_way(canary: Harness) -> None:
    """``abort`` at 50%: every request back on the stable version (even the ones the canary
    header forces to the canary Service, which points at the stable pods again), phase
    Degraded, step 0."""
    rel = canary.deploy(
        "rollouts",
        stable="1.0",
        canary="2.0",
        steps=STEPS,
        traffic="nginx",
        additional_ingress_annotations={"canary-by-header": "X-Canary"},
    )
    rel.promote()
    assert rel.status.weight == 50
    status = rel.abort()
    assert status.phase == "Degraded" and status.step == 0 and status.weight == 0
    rel.expect_routed("1.0")
    rel.expect_routed("1.0", headers={"X-Canary": "always"})


def test_rollback(canary: Harness) -> None:
    """``rollback()`` = abort + undo: back to the stable template, steps skipped, Healthy,
    and no request fails meanwhile."""
    rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="istio")
    rel.expect_split(0.20)
    rel.rollback(check_errors=True)
    assert rel.status.phase == "Healthy" and rel.stable_version == "1.0"
    rel.expect_routed("1.0")


def test_promote_full_without_downtime(canary: Harness) -> None:
    """``promote --full`` from the first pause: the new ReplicaSet scales up, becomes stable,
    traffic moves to it, and no request fails while it does."""
    rel = canary.deploy(
        "rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx", replicas=2
    )
    rel.promote(full=True, check_errors=True)
    assert rel.status.phase == "Healthy" and rel.stable_version == "2.0"
    rel.expect_routed("2.0")


def test_retry_after_abort(canary: Harness) -> None:
    """``retry rollout`` clears the abort: the steps start again, back at the first pause."""
    rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx")
    rel.abort()
    rel.expect_routed("1.0")
    status = rel.retry()
    assert status.phase == "Paused" and status.step == 1
    rel.expect_split(0.20)


def test_own_rollout_manifests(canary: Harness) -> None:
    """A platform team's Rollout (``suites/manifests/rollouts/shop``): v1 is applied first
    (the initial deploy is stable at once), then v2 over it starts the steps."""
    if not canary.environment.stands_in_for_workloads:
        pytest.skip("the example's images (registry.example.com/shop) exist nowhere")
    shop = canary.apply([SHOP / "routing.yaml", SHOP / "v1"], host="shop.example.com")
    assert shop.status.phase == "Healthy"
    shop = canary.apply([SHOP / "routing.yaml", SHOP / "v2"], host="shop.example.com")
    assert shop.status.step == 1 and (shop.canary_version, shop.stable_version) == ("v2", "v1")
    shop.expect_split(0.10)
    shop.expect_routed("v2", headers={"x-beta-user": "yes"})
    shop.promote()
    assert shop.status.weight == 50
    shop.abort()
    shop.expect_routed("v1")
