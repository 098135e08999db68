"""The Istio routing model, one test per upstream rule (see pytest_canary.dataplane.istio).

Objects come from the renderer where it produces the shape a rule needs, hand-written dicts
otherwise. Shares: 20,000 seeded draws, each within ±0.02 of the expected share (the
binomial standard deviation is at most 0.0036, so ±0.02 is more than 5 sigma).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

from pytest_canary.dataplane import istio
from pytest_canary.dataplane.request import Destination, Refusal, RoutedRequest
from pytest_canary.manifests import Phase, render
from pytest_canary.spec import build_spec

DRAWS = 20_000
GATEWAY = "kubeapp-gateway"


def service(name: str, port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": [{"port": port}]},
    }


def destination_rule(host: str = "kubeapp", *versions: str) -> dict[str, Any]:
    versions = versions or ("v1", "v2", "v3")
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": host},
        "spec": {
            "host": host,
            "subsets": [{"name": v, "labels": {"version": v}} for v in versions],
        },
    }


def virtual_service(
    http: list[dict[str, Any]],
    *,
    name: str = "kubeapp",
    hosts: tuple[str, ...] = ("kubeapp",),
    gateways: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {"hosts": list(hosts), "http": http}
    if gateways is not None:
        spec["gateways"] = list(gateways)
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name},
        "spec": spec,
    }


def ingress_gateway(name: str = GATEWAY, hosts: tuple[str, ...] = ("foo.bar",)) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": name},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": list(hosts)}
            ],
        },
    }


def to(subset: str, weight: int | None = None, host: str = "kubeapp") -> dict[str, Any]:
    dest: dict[str, Any] = {"destination": {"host": host, "subset": subset}}
    if weight is not None:
        dest["weight"] = weight
    return dest


def mesh(http: list[dict[str, Any]], *extra: dict[str, Any]) -> istio.IstioConfig:
    """A Service kubeapp, subsets v1..v3 and one mesh VirtualService with ``http``."""
    return istio.load([service("kubeapp"), destination_rule(), virtual_service(http), *extra])


def request(
    host: str | None = "kubeapp",
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    source: Mapping[str, str] | None = None,
) -> RoutedRequest:
    return RoutedRequest.build(host, path, headers, source)


def routed(
    config: istio.IstioConfig, req: RoutedRequest, *, gateway: str | None = None, seed: int = 7
) -> Destination:
    result = config.route(req, random.Random(seed), gateway=gateway)
    assert isinstance(result, Destination), result
    return result


def version_of(result: Destination | Refusal) -> str:
    if isinstance(result, Refusal):
        return f"refused {result.status}"
    return (result.labels or {}).get("version", f"all of {result.service}")


def shares(
    config: istio.IstioConfig, req: RoutedRequest, *, gateway: str | None = None, draws: int = DRAWS
) -> dict[str, float]:
    rng = random.Random(20_240_601)
    counts = Counter(version_of(config.route(req, rng, gateway=gateway)) for _ in range(draws))
    return {k: v / draws for k, v in counts.items()}


# -- weights -----------------------------------------------------------------------------


def test_weights_need_not_sum_to_100() -> None:
    config = mesh([{"route": [to("v1", 1), to("v2", 3)]}])
    observed = shares(config, request())
    assert observed["v1"] == pytest.approx(0.25, abs=0.02)
    assert observed["v2"] == pytest.approx(0.75, abs=0.02)


def test_weight_zero_gets_nothing() -> None:
    config = mesh([{"route": [to("v1", 100), to("v2", 0), to("v3", 0)]}])
    assert shares(config, request()) == {"v1": 1.0}


def test_a_single_destination_gets_all_traffic_whatever_its_weight() -> None:
    config = mesh([{"route": [to("v2", 10)]}])
    assert shares(config, request(), draws=500) == {"v2": 1.0}


def test_three_versions_50_25_25() -> None:
    spec = build_spec("istio", "v1", "v2", weights={"v1": 50, "v2": 25, "v3": 25})
    config = istio.load(render(spec, Phase.CANARY))
    observed = shares(config, request("foo.bar"), gateway=GATEWAY)
    for version, share in {"v1": 0.50, "v2": 0.25, "v3": 0.25}.items():
        assert observed[version] == pytest.approx(share, abs=0.02)


def test_the_rendered_weight_10_sends_a_tenth_to_the_canary() -> None:
    config = istio.load(render(build_spec("istio", "v1", "v2", weight=10), Phase.CANARY))
    assert shares(config, request("foo.bar"), gateway=GATEWAY)["v2"] == pytest.approx(
        0.10, abs=0.02
    )


def test_weights_are_drawn_per_request() -> None:
    # weighted_clusters pick per request: one caller's consecutive requests still split.
    config = mesh([{"route": [to("v1", 50), to("v2", 50)]}])
    assert set(shares(config, request(), draws=50)) == {"v1", "v2"}


# -- route order and matching -------------------------------------------------------------


def test_routes_are_evaluated_in_order_first_match_wins() -> None:
    header_first = [
        {"match": [{"headers": {"x-user": {"exact": "a"}}}], "route": [to("v2")]},
        {"match": [{"uri": {"prefix": "/"}}], "route": [to("v1")]},
    ]
    with_header = request(headers={"x-user": "a"})
    assert version_of(routed(mesh(header_first), with_header)) == "v2"
    assert version_of(routed(mesh(list(reversed(header_first))), with_header)) == "v1"


def test_conditions_in_one_match_block_must_all_hold() -> None:
    config = mesh(
        [
            {
                "match": [{"headers": {"x-user": {"exact": "a"}}, "uri": {"prefix": "/api"}}],
                "route": [to("v2")],
            },
            {"route": [to("v1")]},
        ]
    )
    assert version_of(routed(config, request(path="/api", headers={"x-user": "a"}))) == "v2"
    assert version_of(routed(config, request(path="/web", headers={"x-user": "a"}))) == "v1"
    assert version_of(routed(config, request(path="/api"))) == "v1"


def test_several_match_blocks_are_alternatives() -> None:
    config = mesh(
        [
            {
                "match": [{"headers": {"x-user": {"exact": "a"}}}, {"uri": {"prefix": "/beta"}}],
                "route": [to("v2")],
            },
            {"route": [to("v1")]},
        ]
    )
    assert version_of(routed(config, request(headers={"x-user": "a"}))) == "v2"
    assert version_of(routed(config, request(path="/beta/x"))) == "v2"
    assert version_of(routed(config, request(path="/x"))) == "v1"


def test_no_matching_route_is_404() -> None:
    config = mesh([{"match": [{"headers": {"x-user": {"exact": "a"}}}], "route": [to("v2")]}])
    result = config.route(request(), random.Random(1), gateway=None)
    assert isinstance(result, Refusal) and result.status == 404


@pytest.mark.parametrize(
    ("match", "value", "hit"),
    [
        ({"exact": "canary-tester"}, "canary-tester", True),
        ({"exact": "canary-tester"}, "canary-tester2", False),
        ({"prefix": "canary"}, "canary-tester", True),
        ({"prefix": "canary"}, "the-canary", False),
        ({"regex": "can.*"}, "canary", True),
    ],
)
def test_header_exact_and_prefix_matches(match: dict[str, str], value: str, hit: bool) -> None:
    config = mesh(
        [{"match": [{"headers": {"end-user": match}}], "route": [to("v2")]}, {"route": [to("v1")]}]
    )
    expected = "v2" if hit else "v1"
    assert version_of(routed(config, request(headers={"end-user": value}))) == expected


@pytest.mark.parametrize(("value", "hit"), [("canary", False), ("xcanary", False), ("can", True)])
def test_header_regex_is_a_full_match(value: str, hit: bool) -> None:
    # Envoy safe_regex matches the WHOLE value: "can" does not match inside "canary".
    config = mesh(
        [
            {"match": [{"headers": {"end-user": {"regex": "can"}}}], "route": [to("v2")]},
            {"route": [to("v1")]},
        ]
    )
    assert version_of(routed(config, request(headers={"end-user": value}))) == (
        "v2" if hit else "v1"
    )


def test_header_names_match_case_insensitively() -> None:
    # Envoy lowercases header names; keys written in upper case still match.
    config = mesh(
        [
            {"match": [{"headers": {"End-User": {"exact": "jason"}}}], "route": [to("v2")]},
            {"route": [to("v1")]},
        ]
    )
    assert version_of(routed(config, request(headers={"END-USER": "jason"}))) == "v2"


def test_an_empty_header_match_checks_presence() -> None:
    config = mesh(
        [{"match": [{"headers": {"x-canary": {}}}], "route": [to("v2")]}, {"route": [to("v1")]}]
    )
    assert version_of(routed(config, request(headers={"x-canary": ""}))) == "v2"
    assert version_of(routed(config, request())) == "v1"


def test_regex_star_checks_presence() -> None:
    config = mesh(
        [
            {"match": [{"headers": {"x-canary": {"regex": "*"}}}], "route": [to("v2")]},
            {"route": [to("v1")]},
        ]
    )
    assert version_of(routed(config, request(headers={"x-canary": "anything"}))) == "v2"


def test_without_headers_inverts_a_header_match() -> None:
    config = mesh(
        [
            {"match": [{"withoutHeaders": {"x-canary": {"exact": "no"}}}], "route": [to("v2")]},
            {"route": [to("v1")]},
        ]
    )
    assert version_of(routed(config, request(headers={"x-canary": "no"}))) == "v1"
    assert version_of(routed(config, request(headers={"x-canary": "yes"}))) == "v2"
    assert version_of(routed(config, request())) == "v2"  # missing counts as ""


def test_uri_prefix_is_a_plain_string_prefix() -> None:
    # VirtualService prefixes are Envoy `prefix`, not path-separated (unlike Gateway API).
    config = mesh(
        [{"match": [{"uri": {"prefix": "/api"}}], "route": [to("v2")]}, {"route": [to("v1")]}]
    )
    assert version_of(routed(config, request(path="/apiv2"))) == "v2"


def test_uri_exact_and_regex_matches() -> None:
    config = mesh(
        [
            {"match": [{"uri": {"exact": "/login"}}], "route": [to("v2")]},
            {"match": [{"uri": {"regex": "/items/[0-9]+"}}], "route": [to("v3")]},
            {"route": [to("v1")]},
        ]
    )
    assert version_of(routed(config, request(path="/login"))) == "v2"
    assert version_of(routed(config, request(path="/login/"))) == "v1"
    assert version_of(routed(config, request(path="/items/42"))) == "v3"
    assert version_of(routed(config, request(path="/items/42/x"))) == "v1"


def test_ignore_uri_case_applies_to_the_uri() -> None:
    config = mesh(
        [
            {"match": [{"uri": {"exact": "/Login"}, "ignoreUriCase": True}], "route": [to("v2")]},
            {"route": [to("v1")]},
        ]
    )
    assert version_of(routed(config, request(path="/LOGIN"))) == "v2"


def test_a_match_on_another_port_never_applies() -> None:
    config = mesh([{"match": [{"port": 8080}], "route": [to("v2")]}, {"route": [to("v1")]}])
    assert version_of(routed(config, request())) == "v1"


@pytest.mark.parametrize(
    ("pattern", "value", "hit"),
    [
        (r"\p{Greek}+", "αβγ", True),  # RE2 syntax Python's re refuses
        (r"\x{41}+", "AAA", True),
        (r"\Qa.b\E", "a.b", True),
        (r"\Qa.b\E", "axb", False),
        ("(a+)+$", "a" * 100_000 + "!", False),  # linear time: no catastrophic backtracking
    ],
)
def test_header_regex_runs_on_re2(pattern: str, value: str, hit: bool) -> None:
    config = mesh(
        [
            {"match": [{"headers": {"end-user": {"regex": pattern}}}], "route": [to("v2")]},
            {"route": [to("v1")]},
        ]
    )
    started = time.perf_counter()
    version = version_of(routed(config, request(headers={"end-user": value})))
    assert time.perf_counter() - started < 2.0
    assert version == ("v2" if hit else "v1")


@pytest.mark.parametrize("value", ["\udcff\udcfe", "\ud800", "x" * 8000])
def test_header_bytes_that_are_not_utf8_never_crash_the_match(value: str) -> None:
    # aiohttp hands non-UTF-8 header bytes over as surrogate escapes.
    config = mesh(
        [
            {"match": [{"headers": {"end-user": {"regex": ".*"}}}], "route": [to("v2")]},
            {"route": [to("v1")]},
        ]
    )
    assert version_of(routed(config, request(headers={"end-user": value}))) in ("v1", "v2")


@pytest.mark.parametrize("pattern", ["a{1001}", r"a\Z", "(?#c)a", "(?=a)a", "a" * 1025])
def test_a_regex_re2_or_istiod_refuses_rejects_the_virtual_service(pattern: str) -> None:
    config = mesh([{"match": [{"headers": {"x": {"regex": pattern}}}], "route": [to("v2")]}])
    assert config.virtual_services == [] and "invalid regex" in config.log[0]


def test_an_invalid_regex_rejects_the_virtual_service() -> None:
    config = mesh([{"match": [{"headers": {"x": {"regex": "("}}}], "route": [to("v2")]}])
    assert config.virtual_services == [] and "invalid regex" in config.log[0]


# -- sources and gateways -----------------------------------------------------------------

SOURCE = build_spec("istio", "v1", "v2", source=True)


def test_source_labels_select_the_calling_workload() -> None:
    config = istio.load(render(SOURCE, Phase.CANARY))
    from_v2 = request("kubeapp", source={"app": "kubeapp-frontend", "version": "v2"})
    from_v1 = request("kubeapp", source={"app": "kubeapp-frontend", "version": "v1"})
    assert shares(config, from_v2, draws=500) == {"v2": 1.0}
    assert shares(config, from_v1, draws=500) == {"v1": 1.0}


def test_source_labels_need_every_label_of_the_match() -> None:
    config = istio.load(render(SOURCE, Phase.CANARY))
    only_app = request("kubeapp", source={"app": "kubeapp-frontend"})
    assert shares(config, only_app, draws=500) == {"v1": 1.0}


def test_source_labels_do_not_match_at_the_ingress_gateway() -> None:
    # At a gateway the caller is the gateway proxy, labelled istio=ingressgateway.
    config = istio.load(render(SOURCE, Phase.CANARY))
    assert shares(config, request("foo.bar"), gateway=GATEWAY, draws=500) == {"v1": 1.0}


def test_match_gateways_restrict_a_match_block() -> None:
    config = istio.load(
        [
            service("kubeapp"),
            destination_rule(),
            ingress_gateway(),
            virtual_service(
                [{"match": [{"gateways": ["mesh"]}], "route": [to("v2")]}, {"route": [to("v1")]}],
                hosts=("foo.bar", "kubeapp"),
                gateways=(GATEWAY, "mesh"),
            ),
        ]
    )
    assert version_of(routed(config, request("kubeapp"))) == "v2"
    assert version_of(routed(config, request("foo.bar"), gateway=GATEWAY)) == "v1"


def test_the_header_route_sends_the_seed_header_to_the_canary() -> None:
    spec = build_spec("istio", "v1", "v2", weight=10, header="canary", header_value="canary-tester")
    config = istio.load(render(spec, Phase.CANARY))
    tester = request("foo.bar", headers={"Canary": "canary-tester"})
    assert shares(config, tester, gateway=GATEWAY, draws=500) == {"v2": 1.0}


def test_gateway_traffic_uses_only_virtual_services_bound_to_that_gateway() -> None:
    config = istio.load(
        [
            service("kubeapp"),
            destination_rule(),
            ingress_gateway(),
            virtual_service([{"route": [to("v2")]}], hosts=("foo.bar",)),
        ]
    )
    result = config.route(request("foo.bar"), random.Random(1), gateway=GATEWAY)
    assert isinstance(result, Refusal) and result.status == 404


def test_the_host_must_be_served_by_the_gateway() -> None:
    config = istio.load(render(SOURCE, Phase.CANARY))
    result = config.route(request("other.bar"), random.Random(1), gateway=GATEWAY)
    assert isinstance(result, Refusal) and result.status == 404


def test_virtual_services_bound_to_one_gateway_and_host_are_merged_in_creation_order() -> None:
    first = virtual_service(
        [{"match": [{"uri": {"prefix": "/a"}}], "route": [to("v2")]}],
        name="first",
        hosts=("foo.bar",),
        gateways=(GATEWAY,),
    )
    second = virtual_service(
        [{"route": [to("v1")]}], name="second", hosts=("foo.bar",), gateways=(GATEWAY,)
    )
    config = istio.load([service("kubeapp"), destination_rule(), ingress_gateway(), first, second])
    assert version_of(routed(config, request("foo.bar", "/a"), gateway=GATEWAY)) == "v2"
    assert version_of(routed(config, request("foo.bar", "/b"), gateway=GATEWAY)) == "v1"


def test_catch_all_routes_of_merged_virtual_services_go_last_at_the_gateway() -> None:
    """pilot/pkg/networking/core/gateway.go ``buildGatewayHTTPRouteConfig`` ->
    route.go ``SortVHostRoutes``: at a gateway the catch-all routes of every merged
    VirtualService move behind the others, so an older VirtualService's catch-all does not
    shadow a newer one's header route."""
    older = virtual_service(
        [{"route": [to("v1")]}], name="older", hosts=("foo.bar",), gateways=(GATEWAY,)
    )
    newer = virtual_service(
        [{"match": [{"headers": {"x-beta": {"exact": "yes"}}}], "route": [to("v2")]}],
        name="newer",
        hosts=("foo.bar",),
        gateways=(GATEWAY,),
    )
    config = istio.load([service("kubeapp"), destination_rule(), ingress_gateway(), older, newer])
    beta = request("foo.bar", "/", {"x-beta": "yes"})
    assert version_of(routed(config, beta, gateway=GATEWAY)) == "v2"
    assert version_of(routed(config, request("foo.bar", "/"), gateway=GATEWAY)) == "v1"
    table = config.gateway_table(GATEWAY, "foo.bar")
    assert not isinstance(table, Refusal)
    assert [(e.route.virtual_service, e.catch_all) for e in table] == [
        ("newer", False),
        ("older", True),
    ]


def test_nothing_after_a_catch_all_route_reaches_the_proxy() -> None:
    """route.go ``BuildHTTPRoutesForVirtualService``: routes after a catch-all are never
    sent (they could never match)."""
    vs = virtual_service(
        [
            {"route": [to("v1")]},
            {"match": [{"headers": {"x-beta": {"exact": "yes"}}}], "route": [to("v2")]},
        ],
        hosts=("foo.bar",),
        gateways=(GATEWAY,),
    )
    config = istio.load([service("kubeapp"), destination_rule(), ingress_gateway(), vs])
    table = config.gateway_table(GATEWAY, "foo.bar")
    assert not isinstance(table, Refusal) and len(table) == 1


def test_outcomes_are_the_shares_route_draws_from() -> None:
    vs = virtual_service(
        [{"route": [to("v1", 30), to("v2", 10), to("v3", 0)]}],
        hosts=("foo.bar",),
        gateways=(GATEWAY,),
    )
    config = istio.load([service("kubeapp"), destination_rule(), ingress_gateway(), vs])
    outcomes = config.outcomes(request("foo.bar", "/"), gateway=GATEWAY)
    assert [(version_of(d), share) for d, share in outcomes] == [("v1", 0.75), ("v2", 0.25)]


def test_in_the_mesh_the_oldest_of_conflicting_virtual_services_is_used() -> None:
    newer = virtual_service([{"route": [to("v3")]}], name="newer")
    config = mesh([{"route": [to("v2")]}], newer)
    assert version_of(routed(config, request())) == "v2"
    assert "IST0109" in config.log[0]


def test_mesh_traffic_ignores_virtual_services_bound_only_to_a_gateway() -> None:
    config = istio.load(
        [
            service("kubeapp"),
            destination_rule(),
            ingress_gateway(),
            virtual_service([{"route": [to("v2")]}], gateways=(GATEWAY,)),
        ]
    )
    result = routed(config, request("kubeapp"))
    assert result.service == "kubeapp" and result.labels is None


def test_without_a_virtual_service_a_service_routes_to_all_its_pods() -> None:
    config = istio.load([service("kubeapp-frontend")])
    result = routed(config, request("kubeapp-frontend"))
    assert (result.service, result.port, result.labels) == ("kubeapp-frontend", 80, None)


@pytest.mark.parametrize(
    "host",
    ["kubeapp", "kubeapp.default", "kubeapp.default.svc", "kubeapp.default.svc.cluster.local"],
)
def test_short_names_mean_the_service_in_the_rule_namespace(host: str) -> None:
    config = mesh([{"route": [to("v2")]}])
    assert version_of(routed(config, request(host))) == "v2"


def test_a_short_name_in_another_namespace_is_another_host() -> None:
    config = istio.load(
        [service("kubeapp"), destination_rule(), virtual_service([{"route": [to("v2")]}])],
        namespace="team-a",
    )
    assert version_of(routed(config, request("kubeapp.team-a"))) == "v2"
    result = config.route(request("kubeapp.team-b"), random.Random(1), gateway=None)
    assert isinstance(result, Refusal)


# -- destinations ---------------------------------------------------------------------------


def test_missing_subset_is_503() -> None:
    config = istio.load(
        [
            service("kubeapp"),
            destination_rule("kubeapp", "v1", "v2"),
            virtual_service([{"route": [to("v3")]}]),
        ]
    )
    result = config.route(request(), random.Random(1), gateway=None)
    assert isinstance(result, Refusal) and result.status == 503
    assert "'v3'" in result.reason and "outbound|80|v3|kubeapp.default.svc.cluster.local" in (
        result.reason
    )


def test_a_subset_of_another_host_does_not_count() -> None:
    config = istio.load(
        [
            service("kubeapp"),
            service("other"),
            destination_rule("other"),
            virtual_service([{"route": [to("v1")]}]),
        ]
    )
    result = config.route(request(), random.Random(1), gateway=None)
    assert isinstance(result, Refusal) and result.status == 503


def test_a_destination_host_without_a_service_is_503() -> None:
    config = mesh([{"route": [to("v1", host="nowhere")]}])
    result = config.route(request(), random.Random(1), gateway=None)
    assert isinstance(result, Refusal) and result.status == 503 and "nowhere" in result.reason


def test_a_subset_narrows_the_service_to_its_labels() -> None:
    result = routed(mesh([{"route": [to("v2")]}]), request())
    assert (result.service, result.labels) == ("kubeapp", {"version": "v2"})


def test_the_port_defaults_to_the_only_service_port() -> None:
    config = istio.load(
        [
            service("kubeapp", port=8080),
            destination_rule(),
            virtual_service([{"route": [to("v1")]}]),
        ]
    )
    assert routed(config, request()).port == 8080


def with_port(port: int) -> istio.IstioConfig:
    dest = {"destination": {"host": "kubeapp", "subset": "v1", "port": {"number": port}}}
    return istio.load(
        [service("kubeapp", port=8080), destination_rule(), virtual_service([{"route": [dest]}])]
    )


def test_a_destination_port_the_service_lacks_has_no_cluster_503_nc() -> None:
    """route.go GetDestinationCluster names outbound|9|v1|kubeapp..., but cluster.go
    buildOutboundClusters builds clusters only for the Service's ports: Envoy 503 NC."""
    assert routed(with_port(8080), request()).port == 8080
    refused = with_port(9).route(request(), random.Random(0), gateway=None)
    assert isinstance(refused, Refusal) and refused.status == 503
    assert "outbound|9|v1|kubeapp.default.svc.cluster.local not found (NC)" in refused.reason
    assert "Service kubeapp has no port 9 (ports: 8080)" in refused.reason


def two_port_service(name: str = "kubeapp") -> dict[str, Any]:
    svc = service(name)
    svc["spec"]["ports"] = [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9090}]
    return svc


def gateway_on_port(port: int, hosts: tuple[str, ...] = ("foo.bar",)) -> dict[str, Any]:
    gateway = ingress_gateway(hosts=hosts)
    gateway["spec"]["servers"][0]["port"] = {"number": port, "name": "http", "protocol": "HTTP"}
    return gateway


def test_without_a_port_the_mesh_calls_the_port_the_caller_called() -> None:
    """route.go GetDestinationCluster: no destination port and a Service of several ports:
    the listener port, in a sidecar the Service port the caller called, whose cluster
    exists (the caller is taken to call the first)."""
    config = istio.load(
        [two_port_service(), destination_rule(), virtual_service([{"route": [to("v2")]}])]
    )
    result = routed(config, request())
    assert (result.port, result.labels) == (8080, {"version": "v2"})
    dest = config.virtual_services[0].routes[0].destinations[0]
    assert config.missing_port(dest) is None


def test_without_a_port_a_gateway_sends_to_its_server_port() -> None:
    """gateway.go buildGatewayHTTPRouteConfig builds the routes with the server's port as
    listener port: on a server of port 8080 the cluster is outbound|8080|v2|..., which
    exists; on port 80 it is outbound|80|v2|..., which istiod never builds (503 NC)."""
    vs = virtual_service([{"route": [to("v2")]}], hosts=("foo.bar",), gateways=(GATEWAY,))
    on_8080 = istio.load([two_port_service(), destination_rule(), gateway_on_port(8080), vs])
    result = routed(on_8080, request("foo.bar"), gateway=GATEWAY)
    assert (result.port, result.labels) == (8080, {"version": "v2"})
    on_80 = istio.load([two_port_service(), destination_rule(), gateway_on_port(80), vs])
    refused = on_80.route(request("foo.bar"), random.Random(0), gateway=GATEWAY)
    assert isinstance(refused, Refusal) and refused.status == 503
    assert "outbound|80|v2|kubeapp.default.svc.cluster.local not found (NC)" in refused.reason
    assert on_80.listener_ports(on_80.virtual_services[0], f"default/{GATEWAY}") == (80,)


def test_a_match_port_compares_with_the_gateway_server_port() -> None:
    """route.go translateRoute: a match ``port`` applies on the listener of that port."""
    vs = virtual_service(
        [{"match": [{"port": 8080}], "route": [to("v2")]}, {"route": [to("v1")]}],
        hosts=("foo.bar",),
        gateways=(GATEWAY,),
    )
    config = istio.load([two_port_service(), destination_rule(), gateway_on_port(8080), vs])
    assert version_of(config.route(request("foo.bar"), random.Random(0), gateway=GATEWAY)) == "v2"


def test_a_gateway_covers_hosts_as_pairwise_name_matches() -> None:
    """analyzers/virtualservice/gateways.go vsHostInGateway, asked of the Gateway's index."""
    config = istio.load([ingress_gateway(hosts=("*.shop.example.com", "a.example.org"))])
    key = f"default/{GATEWAY}"
    assert config.gateway_covers(key, ["x.net", "*.example.com"])
    assert config.gateway_covers(key, ["a.example.org"])
    assert not config.gateway_covers(key, ["b.example.org", "shop.example.com"])


def test_a_subset_selects_the_services_pods_with_its_labels() -> None:
    """analyzers/destinationrule/subset.go: the Service's selector merged with the subset's
    labels is what a pod needs (IST0173 when none has it)."""
    config = mesh([{"route": [to("v1")]}])
    assert config.subset_selector("kubeapp.default.svc.cluster.local", "v2") == {
        "app": "kubeapp",
        "version": "v2",
    }
    assert config.subset_selector("kubeapp.default.svc.cluster.local", "v9") is None
    assert config.subset_owners[("kubeapp.default.svc.cluster.local", "v2")] == "kubeapp"


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("foo.com", "foo.com", True),
        ("foo.com", "bar.com", False),
        ("*.com", "foo.com", True),
        ("bar.com", "*.com", True),
        ("*.foo.com", "foo.com", False),
        ("*", "foo.com", True),
        ("*", "*.com", True),
        ("*.example.com", "*.shop.example.com", True),
        ("*.example.org", "*.example.com", False),
    ],
)
def test_hosts_overlap_as_istio_name_matches(a: str, b: str, overlap: bool) -> None:
    """pkg/config/host/name.go Name.Matches (its doc comment's examples and more)."""
    assert istio.hosts_overlap(a, b) is overlap
    assert istio.hosts_overlap(b, a) is overlap


# -- phases through the renderer ------------------------------------------------------------


@pytest.mark.parametrize(("phase", "version"), [(Phase.PROMOTED, "v2"), (Phase.ROLLED_BACK, "v1")])
def test_after_the_release_every_request_reaches_one_version(phase: Phase, version: str) -> None:
    spec = build_spec("istio", "v1", "v2", weight=50, header="canary", header_value="x")
    config = istio.load(render(spec, phase))
    with_header = request("foo.bar", headers={"canary": "x"})
    assert shares(config, request("foo.bar"), gateway=GATEWAY, draws=500) == {version: 1.0}
    assert shares(config, with_header, gateway=GATEWAY, draws=500) == {version: 1.0}
