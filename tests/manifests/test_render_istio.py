"""Istio canary manifests (seed: DestinationRule subsets by ``version`` + VirtualService)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_canary.manifests import Phase, render
from pytest_canary.manifests.istio import version_slug, version_slugs
from pytest_canary.spec import build_spec

SEED = build_spec(
    "istio", "v1", "v2", weight=10, header="canary", header_value="canary-tester", source=True
)
THREE = build_spec("istio", "v1", "v2", weights={"v1": 50, "v2": 25, "v3": 25})


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


def http(spec: Any, phase: Phase = Phase.CANARY) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = one(render(spec, phase), "VirtualService")["spec"]["http"]
    return routes


def weights(route: dict[str, Any]) -> dict[str, int | None]:
    return {d["destination"]["subset"]: d.get("weight") for d in route["route"]}


def test_canary_phase_objects_in_apply_order() -> None:
    keys = list(by_key(render(SEED, Phase.CANARY)))
    assert keys == [
        ("Deployment", "kubeapp-v1"),
        ("Deployment", "kubeapp-v2"),
        ("Deployment", "kubeapp-frontend-v1"),
        ("Deployment", "kubeapp-frontend-v2"),
        ("Service", "kubeapp"),
        ("Service", "kubeapp-frontend"),
        ("DestinationRule", "kubeapp"),
        ("Gateway", "kubeapp-gateway"),
        ("VirtualService", "kubeapp"),
    ]


def test_pods_carry_their_version_and_the_service_selects_every_version() -> None:
    objects = by_key(render(THREE, Phase.CANARY))
    assert objects["Service", "kubeapp"]["spec"]["selector"] == {"app": "kubeapp"}
    for version, track in (("v1", "stable"), ("v2", "canary"), ("v3", "extra")):
        dep = objects["Deployment", f"kubeapp-{version}"]
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert labels == {"app": "kubeapp", "version": version, "track": track}
        assert dep["spec"]["selector"]["matchLabels"] == {"app": "kubeapp", "version": version}


def test_destination_rule_has_one_subset_per_version_selected_by_the_version_label() -> None:
    rule = one(render(build_spec("istio", "1.0", "2.0"), Phase.CANARY), "DestinationRule")
    assert rule["apiVersion"] == "networking.istio.io/v1"
    assert rule["spec"] == {
        "host": "kubeapp",
        "subsets": [
            {"name": "v1-0", "labels": {"version": "1.0"}},
            {"name": "v2-0", "labels": {"version": "2.0"}},
        ],
    }


@pytest.mark.parametrize(
    ("version", "slug"),
    [("v1", "v1"), ("2.0", "v2-0"), ("V1.0_rc1", "v1-0-rc1"), ("latest", "latest")],
)
def test_subset_names_are_dns_labels_derived_from_the_version(version: str, slug: str) -> None:
    assert version_slug(version) == slug


def test_versions_with_the_same_slug_get_distinct_subset_names() -> None:
    slugs = version_slugs(["1.0", "1-0", "v2"])
    assert len(set(slugs.values())) == 3
    assert slugs["v2"] == "v2"


def test_the_gateway_serves_the_host_on_port_80_at_the_ingress_gateway() -> None:
    gateway = one(render(SEED, Phase.CANARY), "Gateway")
    assert gateway["apiVersion"] == "networking.istio.io/v1"
    assert gateway["spec"] == {
        "selector": {"istio": "ingressgateway"},
        "servers": [
            {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["foo.bar"]}
        ],
    }


def test_virtual_service_serves_the_host_at_the_gateway_and_the_service_in_the_mesh() -> None:
    vs = one(render(SEED, Phase.CANARY), "VirtualService")
    assert vs["spec"]["hosts"] == ["foo.bar", "kubeapp"]
    assert vs["spec"]["gateways"] == ["kubeapp-gateway", "mesh"]


def test_routes_are_header_then_source_then_weighted() -> None:
    routes = http(SEED)
    assert [r["name"] for r in routes] == ["canary-by-header", "canary-by-source", "weighted"]
    header, source, weighted = routes
    assert header["match"] == [{"headers": {"canary": {"exact": "canary-tester"}}}]
    assert weights(header) == {"v2": None}
    assert source["match"] == [{"sourceLabels": {"app": "kubeapp-frontend", "version": "v2"}}]
    assert weights(source) == {"v2": None}
    assert "match" not in weighted
    assert weights(weighted) == {"v1": 90, "v2": 10}


@pytest.mark.parametrize("kind", ["exact", "prefix", "regex"])
def test_header_match_kind_and_lowercase_key(kind: str) -> None:
    spec = build_spec("istio", "v1", "v2", header="X-Canary", header_value="yes", header_match=kind)
    assert http(spec)[0]["match"] == [{"headers": {"x-canary": {kind: "yes"}}}]


def test_a_header_without_value_matches_its_presence() -> None:
    spec = build_spec("istio", "v1", "v2", header="X-Canary")
    assert http(spec)[0]["match"] == [{"headers": {"x-canary": {}}}]


def test_without_weight_everything_goes_to_stable_and_the_canary_stays_listed() -> None:
    spec = build_spec("istio", "v1", "v2", header="x-canary", header_value="1")
    assert weights(http(spec)[-1]) == {"v1": 100, "v2": 0}


def test_relative_weights_are_integers_per_version_zero_included() -> None:
    spec = build_spec("istio", "v1", "v2", weights={"v1": 3, "v2": 0, "v3": 1})
    assert weights(http(spec)[-1]) == {"v1": 3, "v2": 0, "v3": 1}
    assert weights(http(THREE)[-1]) == {"v1": 50, "v2": 25, "v3": 25}


def test_frontends_run_both_versions_of_the_app_behind_their_own_service() -> None:
    spec = build_spec(
        "istio", "v1", "v2", source=True, canary_error_rate=0.5, canary_latency_ms="10-20"
    )
    objects = by_key(render(spec, Phase.CANARY))
    assert objects["Service", "kubeapp-frontend"]["spec"]["selector"] == {"app": "kubeapp-frontend"}
    for version in ("v1", "v2"):
        dep = objects["Deployment", f"kubeapp-frontend-{version}"]
        assert dep["spec"]["template"]["metadata"]["labels"]["app"] == "kubeapp-frontend"
        assert dep["spec"]["template"]["metadata"]["labels"]["version"] == version
        container = dep["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["APP_NAME"] == "kubeapp-frontend" and "ERROR_RATE" not in env
        assert "LATENCY_MS" not in env
    # Fault injection stays on the canary backend.
    backend = objects["Deployment", "kubeapp-v2"]["spec"]["template"]["spec"]["containers"][0]
    assert any(e["name"] == "ERROR_RATE" for e in backend["env"])
    assert {"name": "LATENCY_MS", "value": "10-20"} in backend["env"]


def test_a_path_restricts_every_route_to_it() -> None:
    spec = build_spec("istio", "v1", "v2", path="/api", header="x-a", header_value="1")
    header, weighted = http(spec)
    assert header["match"] == [{"headers": {"x-a": {"exact": "1"}}, "uri": {"prefix": "/api"}}]
    assert weighted["match"] == [{"uri": {"prefix": "/api"}}]


@pytest.mark.parametrize("spec", [SEED, THREE], ids=["seed", "three"])
@pytest.mark.parametrize("phase", list(Phase))
def test_every_subset_a_route_names_is_declared(spec: Any, phase: Phase) -> None:
    objects = render(spec, phase)
    declared = {s["name"] for s in one(objects, "DestinationRule")["spec"]["subsets"]}
    named = {d["destination"]["subset"] for r in http(spec, phase) for d in r["route"]}
    assert named <= declared


def test_promoted_is_one_route_to_the_canary_and_no_stable_deployment() -> None:
    objects = render(SEED, Phase.PROMOTED)
    assert [r.get("match") for r in http(SEED, Phase.PROMOTED)] == [None]
    assert [weights(r) for r in http(SEED, Phase.PROMOTED)] == [{"v2": 100}]
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    assert "kubeapp-v1" not in names and "kubeapp-v2" in names


def test_rolled_back_is_one_route_to_stable_and_no_canary_deployment() -> None:
    objects = render(THREE, Phase.ROLLED_BACK)
    assert [weights(r) for r in http(THREE, Phase.ROLLED_BACK)] == [{"v1": 100}]
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "Deployment"}
    assert names == {"kubeapp-v1"}


def test_the_destination_rule_keeps_every_subset_in_every_phase() -> None:
    # Make-before-break: the VirtualService never names a subset the rule already dropped.
    for phase in Phase:
        rule = one(render(THREE, phase), "DestinationRule")
        assert [s["name"] for s in rule["spec"]["subsets"]] == ["v1", "v2", "v3"]
