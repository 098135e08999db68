"""Gateway API canary manifests (seed: HTTPRoute with weighted backendRefs, one Service each)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_canary.manifests import Phase, render
from pytest_canary.spec import build_spec

SEED = build_spec("gateway", "v1", "v2", weight=20, header="X-Canary", header_value="always")


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def rules(spec: Any, phase: Phase = Phase.CANARY) -> list[dict[str, Any]]:
    route = by_key(render(spec, phase))["HTTPRoute", "kubeapp"]
    found: list[dict[str, Any]] = route["spec"]["rules"]
    return found


def test_canary_phase_is_a_service_per_version_a_gateway_and_an_httproute() -> None:
    objects = by_key(render(SEED, Phase.CANARY))
    assert list(objects) == [
        ("Deployment", "kubeapp-v1"),
        ("Deployment", "kubeapp-v2"),
        ("Service", "kubeapp-v1"),
        ("Service", "kubeapp-v2"),
        ("Gateway", "kubeapp-gateway"),
        ("HTTPRoute", "kubeapp"),
    ]
    for version in ("v1", "v2"):
        selector = objects["Service", f"kubeapp-{version}"]["spec"]["selector"]
        assert selector == {"app": "kubeapp", "version": version}


def test_the_gateway_has_an_http_listener_for_the_host() -> None:
    gateway = by_key(render(SEED, Phase.CANARY))["Gateway", "kubeapp-gateway"]
    assert gateway["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert gateway["spec"]["gatewayClassName"] == "istio"
    assert gateway["spec"]["listeners"] == [
        {
            "name": "http",
            "hostname": "foo.bar",
            "port": 80,
            "protocol": "HTTP",
            "allowedRoutes": {"namespaces": {"from": "Same"}},
        }
    ]


def test_the_route_attaches_to_the_gateway_for_the_host() -> None:
    route = by_key(render(SEED, Phase.CANARY))["HTTPRoute", "kubeapp"]
    assert route["spec"]["parentRefs"] == [{"name": "kubeapp-gateway"}]
    assert route["spec"]["hostnames"] == ["foo.bar"]


def test_header_rule_sends_an_exact_header_to_the_canary_service() -> None:
    header, weighted = rules(SEED)
    assert header["matches"] == [
        {
            "path": {"type": "PathPrefix", "value": "/"},
            "headers": [{"type": "Exact", "name": "X-Canary", "value": "always"}],
        }
    ]
    assert header["backendRefs"] == [{"name": "kubeapp-v2", "port": 80}]
    assert weighted["backendRefs"] == [
        {"name": "kubeapp-v1", "port": 80, "weight": 80},
        {"name": "kubeapp-v2", "port": 80, "weight": 20},
    ]


def test_regex_header_rule_uses_regular_expression() -> None:
    spec = build_spec(
        "gateway", "v1", "v2", header="Cookie", header_value=".*canary=1.*", header_match="regex"
    )
    assert rules(spec)[0]["matches"][0]["headers"] == [
        {"type": "RegularExpression", "name": "Cookie", "value": ".*canary=1.*"}
    ]


def test_a_header_without_value_matches_any_value() -> None:
    spec = build_spec("gateway", "v1", "v2", header="X-Canary")
    assert rules(spec)[0]["matches"][0]["headers"] == [
        {"type": "RegularExpression", "name": "X-Canary", "value": ".*"}
    ]


def test_relative_weights_per_version_with_zero_listed() -> None:
    spec = build_spec("gateway", "v1", "v2", weights={"v1": 2, "v2": 0, "v3": 1})
    assert [(b["name"], b["weight"]) for b in rules(spec)[-1]["backendRefs"]] == [
        ("kubeapp-v1", 2),
        ("kubeapp-v2", 0),
        ("kubeapp-v3", 1),
    ]


def test_exact_path_type_becomes_an_exact_path_match() -> None:
    spec = build_spec("gateway", "v1", "v2", path="/shop", path_type="Exact")
    assert rules(spec)[0]["matches"] == [{"path": {"type": "Exact", "value": "/shop"}}]


@pytest.mark.parametrize("phase", list(Phase))
def test_every_backend_ref_names_a_rendered_service(phase: Phase) -> None:
    spec = build_spec("gateway", "v1", "v2", weights={"v1": 1, "v2": 1, "v3": 1}, header="x")
    services = {o["metadata"]["name"] for o in render(spec, phase) if o["kind"] == "Service"}
    for rule in rules(spec, phase):
        assert {b["name"] for b in rule["backendRefs"]} <= services


@pytest.mark.parametrize(
    ("phase", "kept", "gone"),
    [(Phase.PROMOTED, "kubeapp-v2", "kubeapp-v1"), (Phase.ROLLED_BACK, "kubeapp-v1", "kubeapp-v2")],
)
def test_after_the_release_one_backend_ref_and_one_version_remain(
    phase: Phase, kept: str, gone: str
) -> None:
    objects = by_key(render(SEED, phase))
    assert [r["backendRefs"] for r in rules(SEED, phase)] == [[{"name": kept, "port": 80}]]
    assert ("Deployment", kept) in objects and ("Service", kept) in objects
    assert ("Deployment", gone) not in objects and ("Service", gone) not in objects
