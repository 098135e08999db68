"""Local models of the other data planes, each test naming the upstream rule it reproduces."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from pytest_canary import Harness, build_spec
from pytest_canary.backends.local import LocalBackend
from pytest_canary.manifests import Phase, render, rolling
from pytest_canary.traffic import Entry, Sampler


@pytest.fixture
def canary() -> Iterator[Harness]:
    backend = LocalBackend(seed=77)
    try:
        with Harness(backend.environment("strategies")) as harness:
            yield harness
    finally:
        backend.close()


def test_kube_proxy_keep_alive_pins_one_pod(canary: Harness) -> None:
    """kube-proxy balances per connection: one keep-alive connection reaches one pod only,
    which is why the sampler opens a new connection per request for Service entries."""
    rel = canary.deploy(
        "replicas", stable="1.0", canary="2.0", stable_replicas=1, canary_replicas=1
    )
    pinned = Entry(rel.url, per_connection=False)
    with Sampler(pinned, concurrency=1) as sampler:
        sample = sampler.sample(60)
    assert len(sample.counts) == 1 and sample.classified == 60
    fresh = rel.sample(200)  # the harness: a new connection per request
    assert set(fresh.counts) == {"1.0", "2.0"}


def test_kube_proxy_picks_uniformly_among_ready_endpoints(canary: Harness) -> None:
    """iptables ``statistic --mode random --probability 1/n``: 3 stable : 1 canary pods → 25%."""
    rel = canary.deploy(
        "replicas", stable="1.0", canary="2.0", stable_replicas=3, canary_replicas=1
    )
    sample = rel.sample(2000)
    # Binomial(2000, 0.25): sd 19.4; ±5 sd.
    assert abs(sample.counts["2.0"] - 500) < 97, sample


def test_service_selector_flip_switches_all_new_connections(canary: Harness) -> None:
    """A Service routes to the pods its selector matches: blue/green flips the selector."""
    rel = canary.deploy("bluegreen", stable="1.0", canary="2.0")
    assert rel.sample(50).counts == {"1.0": 50}
    rel.promote()
    assert rel.sample(50).counts == {"2.0": 50}


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable"),
    [(4, 1, 0), (4, 1, 1), (4, 0, 1), (5, "25%", "25%")],
)
def test_paused_rollout_settles_like_the_deployment_controller(
    canary: Harness, replicas: int, surge: int | str, unavailable: int | str
) -> None:
    """kubernetes pkg/controller/deployment rolling.go + sync.go ``scale``: the pods a paused
    rollout settles at are the ones the controller model predicts."""
    rel = canary.deploy(
        "rolling",
        stable="1.0",
        canary="2.0",
        replicas=replicas,
        surge=surge,
        unavailable=unavailable,
    )
    settled = rolling.expected_paused_rollout(rel.spec).settled
    assert rel.ready_pods() == {
        k: v for k, v in {"1.0": settled.old, "2.0": settled.new}.items() if v
    }


def test_rollout_never_drops_below_min_available(canary: Harness) -> None:
    """rolling.go reconcileOldReplicaSets: old pods go only while ready pods stay at least
    replicas - maxUnavailable, so a promotion with maxUnavailable 0 never loses capacity."""
    rel = canary.deploy("rolling", stable="1.0", canary="2.0", replicas=3, surge=1, unavailable=0)
    verdict = rel.promote(check_errors=True)
    assert verdict is not None and verdict.passed
    events: list[str] = canary.environment.events  # type: ignore[attr-defined]
    left = [int(e.split("(")[1].split()[0]) for e in events if "ready left)" in e]
    assert len(left) == 3  # every old pod went...
    assert min(left) >= 3  # ...while 3 (replicas - maxUnavailable) pods stayed ready
    assert rel.ready_pods() == {"2.0": 3}


def test_istio_header_route_first_then_weights_through_the_gateway(canary: Harness) -> None:
    """VirtualService http routes are evaluated in order, first match wins: the header route
    sits before the weighted default."""
    rel = canary.deploy("istio", stable="v1", canary="v2", header="end-user", header_value="jason")
    assert rel.sample(30, headers={"end-user": "jason"}).counts == {"v2": 30}
    assert rel.sample(30).counts == {"v1": 30}


def test_istio_sidecar_routes_by_the_callers_labels(canary: Harness) -> None:
    """sourceLabels match the calling workload's labels: the local sidecar of each frontend
    pod knows its pod's labels."""
    rel = canary.deploy("istio", stable="v1", canary="v2", source=True, weight=0)
    v2 = rel.sample(20, source="v2")
    v1 = rel.sample(20, source="v1")
    assert v2.counts == {"v2": 20} and v1.counts == {"v1": 20}


def test_relay_answer_names_the_frontend_and_backend(canary: Harness) -> None:
    """The frontend's /relay reports which backend version answered each in-mesh call."""
    rel = canary.deploy("istio", stable="v1", canary="v2", source=True, weight=0)
    import http.client

    entry = canary.environment.relay_entry(rel.spec, "v2")
    host, port = entry.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/relay?to=http://kubeapp/&n=5")
    answer = json.loads(conn.getresponse().read())
    conn.close()
    assert answer["from"] == "v2" and answer["seen"] == {"v2": 5} and answer["errors"] == 0


def test_gateway_api_weights_are_relative(canary: Harness) -> None:
    """HTTPRoute backendRefs: share = weight / sum(weights), weight 0 gets nothing."""
    rel = canary.deploy("gateway", stable="1.0", canary="2.0", weights={"1.0": 0, "2.0": 7})
    assert rel.sample(40).counts == {"2.0": 40}


def test_istio_manifests_render_for_every_phase() -> None:
    spec = build_spec("istio", stable="v1", canary="v2", weight=10)
    kinds = {o["kind"] for o in render(spec, Phase.CANARY)}
    assert {"VirtualService", "DestinationRule", "Gateway"} <= kinds
