"""The Gateway API routing model, one test per upstream rule (see
pytest_canary.dataplane.gateway; the rules quote apis/v1/httproute_types.go).

Shares: 20,000 seeded draws, each within ±0.02 (more than 5 binomial sigma).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from pytest_canary.dataplane import gateway
from pytest_canary.dataplane.request import Destination, Refusal, RoutedRequest
from pytest_canary.manifests import Phase, render
from pytest_canary.spec import build_spec

DRAWS = 20_000
GW = "kubeapp-gateway"


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80}]},
    }


def gateway_object(
    name: str = GW, hostname: str | None = None, listeners: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    listener: dict[str, Any] = {"name": "http", "port": 80, "protocol": "HTTP"}
    if hostname is not None:
        listener["hostname"] = hostname
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {"gatewayClassName": "istio", "listeners": listeners or [listener]},
    }


def http_route(
    rules: list[dict[str, Any]],
    *,
    name: str = "kubeapp",
    hostnames: tuple[str, ...] = (),
    parent: dict[str, Any] | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if created:
        meta["creationTimestamp"] = created
    spec: dict[str, Any] = {"parentRefs": [parent or {"name": GW}], "rules": rules}
    if hostnames:
        spec["hostnames"] = list(hostnames)
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": meta,
        "spec": spec,
    }


def ref(name: str, weight: int | None = None) -> dict[str, Any]:
    backend: dict[str, Any] = {"name": name, "port": 80}
    if weight is not None:
        backend["weight"] = weight
    return backend


def prefix(value: str) -> dict[str, Any]:
    return {"path": {"type": "PathPrefix", "value": value}}


def exact(value: str) -> dict[str, Any]:
    return {"path": {"type": "Exact", "value": value}}


def header(name: str, value: str, kind: str = "Exact") -> dict[str, Any]:
    return {"type": kind, "name": name, "value": value}


def config_of(
    *objects: dict[str, Any], services: tuple[str, ...] = ("v1", "v2", "v3")
) -> gateway.GatewayConfig:
    return gateway.load([*(service(s) for s in services), gateway_object(), *objects])


def request(
    path: str = "/", headers: Mapping[str, str] | None = None, host: str | None = "foo.bar"
) -> RoutedRequest:
    return RoutedRequest.build(host, path, headers)


def outcome(result: Destination | Refusal) -> str:
    return result.service if isinstance(result, Destination) else f"refused {result.status}"


def routed(config: gateway.GatewayConfig, req: RoutedRequest) -> str:
    return outcome(config.route(req, random.Random(3), gateway=GW))


def shares(
    config: gateway.GatewayConfig, req: RoutedRequest, draws: int = DRAWS
) -> dict[str, float]:
    rng = random.Random(20_240_602)
    counts = Counter(outcome(config.route(req, rng, gateway=GW)) for _ in range(draws))
    return {k: v / draws for k, v in counts.items()}


# -- backendRefs weights ------------------------------------------------------------------


def test_weights_are_relative_not_percentages() -> None:
    config = config_of(http_route([{"backendRefs": [ref("v1", 1), ref("v2", 3)]}]))
    observed = shares(config, request())
    assert observed["v1"] == pytest.approx(0.25, abs=0.02)
    assert observed["v2"] == pytest.approx(0.75, abs=0.02)


def test_the_default_weight_is_1() -> None:
    config = config_of(http_route([{"backendRefs": [ref("v1"), ref("v2")]}]))
    assert shares(config, request())["v1"] == pytest.approx(0.5, abs=0.02)


def test_weight_zero_gets_nothing() -> None:
    config = config_of(http_route([{"backendRefs": [ref("v1", 5), ref("v2", 0)]}]))
    assert shares(config, request(), draws=2000) == {"v1": 1.0}


def test_all_weights_zero_is_500() -> None:
    config = config_of(http_route([{"backendRefs": [ref("v1", 0), ref("v2", 0)]}]))
    assert routed(config, request()) == "refused 500"


def test_a_rule_without_backend_refs_is_500() -> None:
    config = config_of(http_route([{"matches": [prefix("/")]}]))
    assert routed(config, request()) == "refused 500"


def test_a_missing_backend_service_gets_500_for_its_share() -> None:
    config = config_of(http_route([{"backendRefs": [ref("v1"), ref("gone")]}]))
    observed = shares(config, request())
    assert observed["refused 500"] == pytest.approx(0.5, abs=0.02)
    assert observed["v1"] == pytest.approx(0.5, abs=0.02)


def test_a_backend_in_another_namespace_without_reference_grant_is_500() -> None:
    other = {"name": "v1", "namespace": "elsewhere", "port": 80}
    config = config_of(http_route([{"backendRefs": [other]}]))
    assert routed(config, request()) == "refused 500"


def test_three_versions_50_25_25() -> None:
    spec = build_spec("gateway", "v1", "v2", weights={"v1": 2, "v2": 1, "v3": 1})
    config = gateway.load(render(spec, Phase.CANARY))
    observed = shares(config, request())
    for name, share in {"kubeapp-v1": 0.5, "kubeapp-v2": 0.25, "kubeapp-v3": 0.25}.items():
        assert observed[name] == pytest.approx(share, abs=0.02)


# -- match precedence ---------------------------------------------------------------------


def test_exact_path_beats_prefix() -> None:
    config = config_of(
        http_route(
            [
                {"matches": [prefix("/login")], "backendRefs": [ref("v1")]},
                {"matches": [exact("/login")], "backendRefs": [ref("v2")]},
            ]
        )
    )
    assert routed(config, request("/login")) == "v2"
    assert routed(config, request("/login/x")) == "v1"


def test_the_longest_prefix_wins() -> None:
    config = config_of(
        http_route(
            [
                {"matches": [prefix("/")], "backendRefs": [ref("v1")]},
                {"matches": [prefix("/api/v2")], "backendRefs": [ref("v3")]},
                {"matches": [prefix("/api")], "backendRefs": [ref("v2")]},
            ]
        )
    )
    assert routed(config, request("/api/v2/items")) == "v3"
    assert routed(config, request("/api/v1")) == "v2"
    assert routed(config, request("/web")) == "v1"


@pytest.mark.parametrize(
    ("path", "hit"), [("/abc", True), ("/abc/", True), ("/abc/def", True), ("/abcd", False)]
)
def test_path_prefix_matches_whole_path_elements(path: str, hit: bool) -> None:
    config = config_of(http_route([{"matches": [prefix("/abc/")], "backendRefs": [ref("v2")]}]))
    assert routed(config, request(path)) == ("v2" if hit else "refused 404")


def test_a_method_match_beats_more_header_matches() -> None:
    config = config_of(
        http_route(
            [
                {
                    "matches": [{**prefix("/"), "headers": [header("a", "1"), header("b", "1")]}],
                    "backendRefs": [ref("v1")],
                },
                {"matches": [{**prefix("/"), "method": "GET"}], "backendRefs": [ref("v2")]},
            ]
        )
    )
    assert routed(config, request(headers={"a": "1", "b": "1"})) == "v2"


def test_more_header_matches_win() -> None:
    config = config_of(
        http_route(
            [
                {
                    "matches": [{**prefix("/"), "headers": [header("a", "1")]}],
                    "backendRefs": [ref("v1")],
                },
                {
                    "matches": [{**prefix("/"), "headers": [header("a", "1"), header("b", "1")]}],
                    "backendRefs": [ref("v2")],
                },
            ]
        )
    )
    assert routed(config, request(headers={"a": "1", "b": "1"})) == "v2"
    assert routed(config, request(headers={"a": "1"})) == "v1"


def test_path_length_beats_header_matches() -> None:
    config = config_of(
        http_route(
            [
                {
                    "matches": [{**prefix("/"), "headers": [header("a", "1")]}],
                    "backendRefs": [ref("v1")],
                },
                {"matches": [prefix("/api")], "backendRefs": [ref("v2")]},
            ]
        )
    )
    assert routed(config, request("/api", headers={"a": "1"})) == "v2"


def test_the_oldest_route_wins_a_tie() -> None:
    older = http_route([{"backendRefs": [ref("v2")]}], name="zeta", created="2026-01-01T00:00:00Z")
    newer = http_route([{"backendRefs": [ref("v1")]}], name="alpha", created="2026-01-02T00:00:00Z")
    assert routed(config_of(newer, older), request()) == "v2"


def test_alphabetical_namespace_name_breaks_a_tie_of_age() -> None:
    stamp = "2026-01-01T00:00:00Z"
    beta = http_route([{"backendRefs": [ref("v1")]}], name="beta", created=stamp)
    alpha = http_route([{"backendRefs": [ref("v2")]}], name="alpha", created=stamp)
    assert routed(config_of(beta, alpha), request()) == "v2"


def test_within_a_route_the_first_rule_wins_a_tie() -> None:
    config = config_of(
        http_route(
            [
                {"matches": [prefix("/a")], "backendRefs": [ref("v2")]},
                {"matches": [prefix("/a")], "backendRefs": [ref("v1")]},
            ]
        )
    )
    assert routed(config, request("/a")) == "v2"


def test_no_match_is_404() -> None:
    config = config_of(http_route([{"matches": [prefix("/api")], "backendRefs": [ref("v1")]}]))
    assert routed(config, request("/web")) == "refused 404"


def test_a_rule_without_matches_matches_every_path() -> None:
    config = config_of(http_route([{"backendRefs": [ref("v1")]}]))
    assert routed(config, request("/any/path")) == "v1"


# -- header matches -------------------------------------------------------------------------


def test_header_names_match_case_insensitively() -> None:
    config = config_of(
        http_route(
            [
                {
                    "matches": [{"headers": [header("X-Canary", "always")]}],
                    "backendRefs": [ref("v2")],
                },
                {"backendRefs": [ref("v1")]},
            ]
        )
    )
    assert routed(config, request(headers={"x-canary": "always"})) == "v2"
    assert routed(config, request(headers={"X-CANARY": "Always"})) == "v1"  # values are exact


def test_only_the_first_entry_for_a_header_name_counts() -> None:
    config = config_of(
        http_route(
            [
                {
                    "matches": [{"headers": [header("x-a", "1"), header("X-A", "2")]}],
                    "backendRefs": [ref("v2")],
                },
                {"backendRefs": [ref("v1")]},
            ]
        )
    )
    assert routed(config, request(headers={"x-a": "1"})) == "v2"


@pytest.mark.parametrize(("value", "hit"), [("canary", False), ("can", True), ("a-can", False)])
def test_header_regex_is_a_full_match(value: str, hit: bool) -> None:
    config = config_of(
        http_route(
            [
                {
                    "matches": [{"headers": [header("x-a", "can", "RegularExpression")]}],
                    "backendRefs": [ref("v2")],
                },
                {"backendRefs": [ref("v1")]},
            ]
        )
    )
    assert routed(config, request(headers={"x-a": value})) == ("v2" if hit else "v1")


@pytest.mark.parametrize(
    ("pattern", "value", "hit"),
    [(r"\p{Greek}+", "αβγ", True), ("(a+)+$", "a" * 100_000 + "!", False)],
)
def test_header_regex_runs_on_re2(pattern: str, value: str, hit: bool) -> None:
    config = config_of(
        http_route(
            [
                {
                    "matches": [{"headers": [header("x-a", pattern, "RegularExpression")]}],
                    "backendRefs": [ref("v2")],
                },
                {"backendRefs": [ref("v1")]},
            ]
        )
    )
    assert routed(config, request(headers={"x-a": value})) == ("v2" if hit else "v1")


def test_a_regex_re2_refuses_leaves_the_route_out() -> None:
    config = config_of(
        http_route(
            [
                {
                    "matches": [{"headers": [header("x-a", "a{1001}", "RegularExpression")]}],
                    "backendRefs": [ref("v2")],
                }
            ]
        )
    )
    assert config.routes == [] and "invalid regex" in config.log[0]


def test_a_missing_header_never_matches() -> None:
    config = config_of(
        http_route(
            [
                {
                    "matches": [{"headers": [header("x-a", ".*", "RegularExpression")]}],
                    "backendRefs": [ref("v2")],
                },
                {"backendRefs": [ref("v1")]},
            ]
        )
    )
    assert routed(config, request()) == "v1"
    assert routed(config, request(headers={"x-a": ""})) == "v2"


def test_the_rendered_header_rule_wins_by_precedence_not_by_order() -> None:
    spec = build_spec("gateway", "v1", "v2", weight=0, header="X-Canary", header_value="always")
    objects = render(spec, Phase.CANARY)
    route = next(o for o in objects if o["kind"] == "HTTPRoute")
    route["spec"]["rules"].reverse()  # the weighted rule first: precedence still decides
    config = gateway.load(objects)
    assert routed(config, request(headers={"X-Canary": "always"})) == "kubeapp-v2"
    assert routed(config, request(headers={"X-Canary": "never"})) == "kubeapp-v1"


# -- attachment and hostnames -------------------------------------------------------------


def test_a_route_attached_to_another_gateway_does_not_apply() -> None:
    config = config_of(http_route([{"backendRefs": [ref("v1")]}], parent={"name": "other"}))
    assert routed(config, request()) == "refused 404"


def test_the_listener_hostname_must_match_the_request() -> None:
    config = gateway.load(
        [
            service("v1"),
            gateway_object(hostname="foo.bar"),
            http_route([{"backendRefs": [ref("v1")]}]),
        ]
    )
    assert routed(config, request(host="foo.bar:8080")) == "v1"  # the port is ignored
    assert routed(config, request(host="bar.foo")) == "refused 404"


@pytest.mark.parametrize(
    ("host", "hit"), [("a.example.com", True), ("a.b.example.com", True), ("example.com", False)]
)
def test_a_wildcard_hostname_matches_subdomains_only(host: str, hit: bool) -> None:
    config = config_of(http_route([{"backendRefs": [ref("v1")]}], hostnames=("*.example.com",)))
    assert routed(config, request(host=host)) == ("v1" if hit else "refused 404")


def test_a_route_without_hostnames_serves_every_host_of_the_listener() -> None:
    config = config_of(http_route([{"backendRefs": [ref("v1")]}]))
    assert routed(config, request(host="anything.example")) == "v1"


def test_an_exact_hostname_beats_a_wildcard_hostname() -> None:
    wildcard = http_route(
        [{"matches": [exact("/")], "backendRefs": [ref("v1")]}],
        name="a-wild",
        hostnames=("*.example.com",),
    )
    precise = http_route(
        [{"matches": [prefix("/")], "backendRefs": [ref("v2")]}],
        name="b-precise",
        hostnames=("shop.example.com",),
    )
    config = config_of(wildcard, precise)
    assert routed(config, request(host="shop.example.com")) == "v2"
    assert routed(config, request(host="blog.example.com")) == "v1"


def test_a_non_wildcard_hostname_beats_a_wildcard_of_the_same_length() -> None:
    # "Characters in a matching non-wildcard hostname" comes before "in a matching hostname".
    wildcard = http_route(
        [{"matches": [exact("/")], "backendRefs": [ref("v1")]}],
        name="a-wild",
        hostnames=("*.example.com",),
    )
    precise = http_route(
        [{"matches": [prefix("/")], "backendRefs": [ref("v2")]}],
        name="b-precise",
        hostnames=("a.example.com",),
    )
    assert routed(config_of(wildcard, precise), request(host="a.example.com")) == "v2"


def test_section_name_selects_the_listener() -> None:
    listeners = [
        {"name": "shop", "port": 80, "protocol": "HTTP", "hostname": "shop.bar"},
        {"name": "blog", "port": 80, "protocol": "HTTP", "hostname": "blog.bar"},
    ]
    config = gateway.load(
        [
            service("v1"),
            gateway_object(listeners=listeners),
            http_route([{"backendRefs": [ref("v1")]}], parent={"name": GW, "sectionName": "shop"}),
        ]
    )
    assert routed(config, request(host="shop.bar")) == "v1"
    assert routed(config, request(host="blog.bar")) == "refused 404"


def test_a_listener_admits_only_routes_of_its_namespace_by_default() -> None:
    foreign = http_route([{"backendRefs": [ref("v1")]}])
    foreign["metadata"]["namespace"] = "elsewhere"
    foreign["spec"]["parentRefs"] = [{"name": GW, "namespace": "default"}]
    assert routed(config_of(foreign), request()) == "refused 404"


# -- phases through the renderer ------------------------------------------------------------


@pytest.mark.parametrize(
    ("phase", "service_name"),
    [(Phase.PROMOTED, "kubeapp-v2"), (Phase.ROLLED_BACK, "kubeapp-v1")],
)
def test_after_the_release_every_request_reaches_one_service(
    phase: Phase, service_name: str
) -> None:
    spec = build_spec("gateway", "v1", "v2", weight=50, header="X-Canary", header_value="always")
    config = gateway.load(render(spec, phase))
    assert shares(config, request(), draws=500) == {service_name: 1.0}
    assert shares(config, request(headers={"X-Canary": "always"}), draws=500) == {service_name: 1.0}


# -- acceptance and ports ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listener", "route", "intersect"),
    [
        ("test.example.com", "test.example.com", True),
        ("test.example.com", "*.example.com", True),
        ("*.example.com", "*.example.com", True),
        ("*.example.com", "test.example.com", True),
        ("*.example.com", "foo.test.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "test.example.net", False),
        ("shop.example.org", "shop.example.com", False),
    ],
)
def test_listener_and_route_hostnames_intersect_as_the_spec_says(
    listener: str, route: str, intersect: bool
) -> None:
    """httproute_types.go HTTPRouteSpec.hostnames: its examples, one by one."""
    assert gateway.hostnames_intersect(listener, route) is intersect


def _gateway_objects(listener: dict[str, Any], parent: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "gw"},
            "spec": {"gatewayClassName": "istio", "listeners": [listener]},
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "r"},
            "spec": {
                "parentRefs": [parent],
                "hostnames": ["shop.example.com"],
                "rules": [{"backendRefs": [{"name": "s", "port": 80}]}],
            },
        },
    ]


@pytest.mark.parametrize(
    ("listener", "parent", "reason"),
    [
        ({"name": "http", "protocol": "HTTP", "port": 80}, {"name": "gw"}, None),
        (
            {"name": "http", "protocol": "HTTP", "port": 80, "hostname": "*.example.com"},
            {"name": "gw"},
            None,
        ),
        (
            {"name": "http", "protocol": "HTTP", "port": 80, "hostname": "shop.example.org"},
            {"name": "gw"},
            "NoMatchingListenerHostname",
        ),
        (
            {"name": "http", "protocol": "HTTP", "port": 80},
            {"name": "gw", "sectionName": "https"},
            "NoMatchingParent",
        ),
        ({"name": "tcp", "protocol": "TCP", "port": 9000}, {"name": "gw"}, "NotAllowedByListeners"),
    ],
)
def test_a_route_is_accepted_only_by_a_listener_that_admits_it(
    listener: dict[str, Any], parent: dict[str, Any], reason: str | None
) -> None:
    """shared_types.go RouteConditionAccepted reasons; a route not accepted serves nothing."""
    config = gateway.load(_gateway_objects(listener, parent))
    (route,) = config.routes
    assert config.not_accepted(route, route.parents[0]) == reason
    if reason is not None:
        outcome = config.route(
            RoutedRequest.build("shop.example.com", "/"), random.Random(0), gateway="gw"
        )
        assert isinstance(outcome, Refusal) and outcome.status == 404


def test_a_backend_port_the_service_lacks_gets_503_nc_for_its_share() -> None:
    """Istio conversion.go buildDestination keeps port 8080 unchecked (ResolvedRefs True);
    cluster.go builds clusters only for the Service's ports: Envoy 503 NC."""
    objects = _gateway_objects({"name": "http", "protocol": "HTTP", "port": 80}, {"name": "gw"})
    objects[1]["spec"]["rules"][0]["backendRefs"][0]["port"] = 8080
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "s"},
        "spec": {"ports": [{"port": 80, "targetPort": 8080}]},
    }
    config = gateway.load([service, *objects])
    (backend,) = config.routes[0].rules[0].backends
    assert backend.missing_port and not backend.invalid_reason
    outcome = config.route(
        RoutedRequest.build("shop.example.com", "/"), random.Random(0), gateway="gw"
    )
    assert isinstance(outcome, Refusal) and outcome.status == 503
    assert "outbound|8080||s.default.svc.cluster.local not found (NC)" in outcome.reason
