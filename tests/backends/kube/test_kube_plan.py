"""The convergence plan is the models' answer, by construction.

For every scenario the suites run (strategy + knobs + phase), the plan the live wait checks
must be exactly what the data-plane models of ``pytest_canary.dataplane`` say -- the same
models the local router routes with: the versions each probe may see are those the model's
``route()`` sends that request to (sampled with the router's own code), the ingress-nginx
upstreams and policy are the model's location, alternative and policy, and the Envoy routes
are the model's route table with its weights. The mutation tests at the end show the plan
has no rule of its own: change a model's rule and the plan follows.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_canary import manifests
from pytest_canary.backends.kube.apply import adapt
from pytest_canary.backends.kube.environment import SERVICE_ENTRY_STRATEGIES
from pytest_canary.backends.kube.plan import (
    Dataplane,
    DataplanePlan,
    EnvoyHeader,
    NginxWant,
    Route,
    plan_for,
    routing_dataplane,
    service_plan,
)
from pytest_canary.dataplane import gateway as gateway_model
from pytest_canary.dataplane import istio as istio_model
from pytest_canary.dataplane import nginx as nginx_model
from pytest_canary.dataplane.request import Destination, Refusal, RoutedRequest
from pytest_canary.errors import BackendError
from pytest_canary.manifests import Phase
from pytest_canary.spec import ReleaseSpec, build_spec

NS = "canary-t-abcde"


@dataclass(frozen=True)
class Scenario:
    """One release state a suite puts the data plane in."""

    id: str
    strategy: str
    stable: str
    canary: str
    knobs: Mapping[str, Any] = field(default_factory=dict)
    phase: Phase = Phase.CANARY


# Every (strategy, knobs, phase) of suites/*.py, in the order the suites reach them.
SCENARIOS = [
    Scenario("nginx-weight-20", "nginx", "1.0", "2.0", {"weight": 20}),
    Scenario("nginx-weight-50", "nginx", "1.0", "2.0", {"weight": 50}),
    Scenario("nginx-promoted", "nginx", "1.0", "2.0", {"weight": 50}, Phase.PROMOTED),
    Scenario("nginx-rolled-back", "nginx", "1.0", "2.0", {"weight": 50}, Phase.ROLLED_BACK),
    Scenario("nginx-header-weight-30", "nginx", "1.0", "2.0", {"header": "X-Canary", "weight": 30}),
    Scenario(
        "nginx-header-pattern",
        "nginx",
        "1.0",
        "2.0",
        {"header": "Region", "header_pattern": "cd|sz"},
    ),
    Scenario(
        "nginx-header-value", "nginx", "1.0", "2.0", {"header": "X-Canary", "header_value": "beta"}
    ),
    Scenario("nginx-cookie", "nginx", "1.0", "2.0", {"cookie": "user_from_cd"}),
    Scenario("nginx-weight-10", "nginx", "1.0", "2.0", {"weight": 10}),
    Scenario("nginx-vhost", "nginx", "1.0", "2.0", {"canary_host": "canary.foo.bar"}),
    Scenario(
        "nginx-vhost-promoted",
        "nginx",
        "1.0",
        "2.0",
        {"canary_host": "canary.foo.bar"},
        Phase.PROMOTED,
    ),
    Scenario(
        "nginx-faulty-canary", "nginx", "1.0", "2.0", {"weight": 50, "canary_error_rate": 0.2}
    ),
    Scenario("istio-weight-10", "istio", "v1", "v2", {"weight": 10}),
    Scenario("istio-weight-50", "istio", "v1", "v2", {"weight": 50}),
    Scenario("istio-weight-100", "istio", "v1", "v2", {"weight": 100}),
    Scenario(
        "istio-header-exact",
        "istio",
        "v1",
        "v2",
        {"header": "canary", "header_value": "canary-tester", "weight": 0},
    ),
    Scenario(
        "istio-header-prefix",
        "istio",
        "v1",
        "v2",
        {"header": "x-user", "header_value": "beta-", "header_match": "prefix"},
    ),
    Scenario(
        "istio-header-regex",
        "istio",
        "v1",
        "v2",
        {"header": "x-user", "header_value": "(cd|sz)-.*", "header_match": "regex"},
    ),
    Scenario("istio-source", "istio", "v1", "v2", {"source": True, "weight": 0}),
    Scenario(
        "istio-three-versions", "istio", "v1", "v2", {"weights": {"v1": 50, "v2": 25, "v3": 25}}
    ),
    Scenario("istio-promoted", "istio", "v1", "v2", {"weight": 50}, Phase.PROMOTED),
    Scenario("gateway-weight-20", "gateway", "1.0", "2.0", {"weight": 20}),
    Scenario("gateway-weight-50", "gateway", "1.0", "2.0", {"weight": 50}),
    Scenario("gateway-promoted", "gateway", "1.0", "2.0", {"weight": 50}, Phase.PROMOTED),
    Scenario(
        "gateway-header-exact",
        "gateway",
        "1.0",
        "2.0",
        {"header": "X-Canary", "header_value": "always"},
    ),
    Scenario(
        "gateway-header-regex",
        "gateway",
        "1.0",
        "2.0",
        {"header": "Region", "header_value": "cd|sz", "header_match": "regex"},
    ),
    Scenario(
        "gateway-three-versions",
        "gateway",
        "1.0",
        "2.0",
        {"weights": {"1.0": 2, "2.0": 1, "3.0": 1}},
    ),
    Scenario("replicas", "replicas", "1.0", "2.0", {"stable_replicas": 3, "canary_replicas": 1}),
    Scenario("bluegreen", "bluegreen", "1.0", "2.0", {"replicas": 2}),
    Scenario("rolling", "rolling", "1.0", "2.0", {"replicas": 4, "surge": 1, "unavailable": 0}),
]


def objects_of(scenario: Scenario) -> tuple[ReleaseSpec, list[dict[str, Any]]]:
    """The scenario's objects as the kube backend applies them (in the test namespace)."""
    spec = build_spec(scenario.strategy, scenario.stable, scenario.canary, **scenario.knobs)
    return spec, [adapt(o, NS) for o in manifests.render(spec, scenario.phase)]


def dataplane_of(spec: ReleaseSpec, objects: Sequence[Mapping[str, Any]]) -> Dataplane:
    """As the environment chooses it."""
    if spec.strategy in SERVICE_ENTRY_STRATEGIES:
        return Dataplane("service", spec.name)
    found = routing_dataplane(objects, namespace=NS)
    assert found is not None
    return found


def the_plan(
    scenario: Scenario,
) -> tuple[ReleaseSpec, list[dict[str, Any]], Dataplane, DataplanePlan]:
    spec, objects = objects_of(scenario)
    dataplane = dataplane_of(spec, objects)
    plan = plan_for(objects, dataplane, namespace=NS, host=spec.host, path=spec.path)
    return spec, objects, dataplane, plan


def versions_behind(objects: Sequence[Mapping[str, Any]], destination: Destination) -> set[str]:
    """The pod ``version`` labels a destination reaches: the Service's selector (narrowed
    by a subset's labels) over the Deployments' templates, workloads at 0 replicas left out."""
    service = next(
        o
        for o in objects
        if o["kind"] == "Service" and o["metadata"]["name"] == destination.service
    )
    selector = dict(service["spec"]["selector"]) | dict(destination.labels or {})
    found = set()
    for workload in objects:
        if workload["kind"] != "Deployment" or workload["spec"].get("replicas", 1) == 0:
            continue
        labels = workload["spec"]["template"]["metadata"]["labels"]
        if all(labels.get(k) == v for k, v in selector.items()):
            found.add(labels["version"])
    return found


def routed_by_the_router(
    objects: Sequence[Mapping[str, Any]],
    dataplane: Dataplane,
    request: RoutedRequest,
    draws: int = 600,
) -> set[str]:
    """Versions the local router's model sends ``request`` to, over ``draws`` seeded draws
    (any share of 10% or more shows up: a miss has probability <= 0.9**600)."""
    rng = random.Random(1)
    if dataplane.kind == "nginx":
        config_n = nginx_model.load(objects, namespace=NS)

        def route() -> Destination | Refusal:
            return config_n.route(request, rng)
    elif dataplane.kind == "istio":
        config_i = istio_model.load(objects, namespace=NS)

        def route() -> Destination | Refusal:
            return config_i.route(request, rng, gateway=dataplane.name)
    else:
        config_g = gateway_model.load(objects, namespace=NS)

        def route() -> Destination | Refusal:
            return config_g.route(request, rng, gateway=dataplane.name)

    seen: set[str] = set()
    for _ in range(draws):
        outcome = route()
        assert isinstance(outcome, Destination), outcome
        seen |= versions_behind(objects, outcome)
    return seen


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_every_probe_of_the_plan_expects_what_the_router_model_routes(scenario: Scenario) -> None:
    spec, objects, dataplane, plan = the_plan(scenario)
    assert plan.routes and plan.routes[0].name == "default"
    if dataplane.kind == "service":
        # kube-proxy: any ready pod of the Service; versions come from the pods.
        assert plan == service_plan(objects, spec.name)
        return
    for route in plan.routes:
        headers = {k: v for k, v in route.headers.items() if k != "Host"}
        host = route.headers.get("Host", spec.host)
        request = RoutedRequest.build(host, spec.path, headers)
        assert set(route.versions) == routed_by_the_router(objects, dataplane, request), route


@pytest.mark.parametrize(
    "scenario", [s for s in SCENARIOS if s.strategy == "nginx"], ids=lambda s: s.id
)
def test_the_ingress_nginx_expectation_is_the_models_location_alternative_and_policy(
    scenario: Scenario,
) -> None:
    spec, objects, _, plan = the_plan(scenario)
    config = nginx_model.load(objects, namespace=NS)
    location = config.location(RoutedRequest.build(spec.host, spec.path))
    assert location is not None and location.upstream is not None
    assert plan.nginx is not None and plan.nginx.main == location.upstream.name
    shared = config.alternative(location.upstream)
    if shared is None:
        assert plan.nginx == NginxWant(main=location.upstream.name)
        return
    alternative, policy = shared
    assert plan.nginx.canary == alternative.name
    # Field names of ingress-nginx pkg/apis/ingress/types.go TrafficShapingPolicy.
    assert plan.nginx.policy == {
        "weight": policy.weight,
        "weightTotal": policy.weight_total,
        "header": policy.header,
        "headerValue": policy.header_value,
        "headerPattern": policy.header_pattern,
        "cookie": policy.cookie,
    }


@pytest.mark.parametrize(
    "scenario", [s for s in SCENARIOS if s.strategy in ("istio", "gateway")], ids=lambda s: s.id
)
def test_the_envoy_expectation_is_the_models_route_table_and_weights(scenario: Scenario) -> None:
    spec, objects, dataplane, plan = the_plan(scenario)
    assert plan.envoy is not None and plan.envoy.host == spec.host
    wanted: list[tuple[frozenset[EnvoyHeader], dict[str, float]]] = []
    if dataplane.kind == "istio":
        config_i = istio_model.load(objects, namespace=NS)
        table = config_i.gateway_table(dataplane.name, spec.host)
        assert not isinstance(table, Refusal)
        for entry in table:
            choices = config_i.weighted_destinations(entry.route)
            total = sum(w for _, w in choices)
            headers = frozenset(
                EnvoyHeader(n, m.kind, m.value)
                for n, m in (entry.block.headers if entry.block else ())
            )
            wanted.append(
                (
                    headers,
                    {config_i.cluster_name(d, entry.listener_port): w / total for d, w in choices},
                )
            )
    else:
        config_g = gateway_model.load(objects, namespace=NS)
        rules = config_g.route_table(dataplane.name, spec.host)
        assert not isinstance(rules, Refusal)
        for rule, index in rules:
            choices_g = config_g.weighted_backends(rule)
            total = sum(w for _, w in choices_g)
            headers = frozenset(
                EnvoyHeader(h.name, "regex" if h.kind == "RegularExpression" else "exact", h.value)
                for h in rule.matches[index].headers
            )
            wanted.append((headers, {config_g.cluster_name(b): w / total for b, w in choices_g}))
    assert [(r.headers, dict(r.clusters)) for r in plan.envoy.routes] == wanted


# -- what the plans say, in words a reviewer can check against upstream ------------------------


def routes_of(plan: DataplanePlan) -> dict[str, tuple[dict[str, str], set[str]]]:
    return {r.name: (dict(r.headers), set(r.versions)) for r in plan.routes}


def plan_of(strategy: str, phase: Phase = Phase.CANARY, **knobs: Any) -> DataplanePlan:
    stable, canary = ("v1", "v2") if strategy == "istio" else ("1.0", "2.0")
    return the_plan(Scenario("x", strategy, stable, canary, knobs, phase))[3]


def test_nginx_weighted_canary_plan() -> None:
    plan = plan_of("nginx", weight=20)
    assert routes_of(plan) == {
        "default": ({}, {"1.0", "2.0"}),
        "X-Canary: always": ({"X-Canary": "always"}, {"2.0"}),
        "X-Canary: never": ({"X-Canary": "never"}, {"1.0"}),
    }
    assert plan.nginx == NginxWant(
        main=f"{NS}-kubeapp-stable-80",
        canary=f"{NS}-kubeapp-canary-80",
        policy={
            "weight": 20,
            "weightTotal": 100,
            "header": "X-Canary",
            "headerValue": "",
            "headerPattern": "",
            "cookie": "",
        },
    )


def test_nginx_policy_is_what_the_controller_reports_for_hand_written_annotations() -> None:
    # ingress-nginx internal/ingress/annotations/canary/main.go: canary-weight-total is reported
    # as written (balancer.lua then ignores a total <= 100) and a header/cookie that fails
    # BasicCharsRegex (spaces removed first) becomes "": /dbg backends all shows the values as
    # parsed. "X Canary" passes but no request can carry it: no forced route.
    spec, objects = objects_of(Scenario("x", "nginx", "1.0", "2.0", {"weight": 20}))
    canary = next(
        o for o in objects if o["metadata"]["name"] == "kubeapp-canary" and o["kind"] == "Ingress"
    )
    notes = canary["metadata"]["annotations"]
    notes["nginx.ingress.kubernetes.io/canary-weight-total"] = "50"
    notes["nginx.ingress.kubernetes.io/canary-by-header"] = "X Canary"
    notes["nginx.ingress.kubernetes.io/canary-by-cookie"] = "bad;cookie"
    plan = plan_for(objects, Dataplane("nginx"), namespace=NS, host=spec.host)
    assert plan.nginx is not None
    assert plan.nginx.policy["weightTotal"] == 50
    assert (plan.nginx.policy["header"], plan.nginx.policy["cookie"]) == ("X Canary", "")
    assert routes_of(plan) == {"default": ({}, {"1.0", "2.0"})}  # 20 of 100, no forced route


def test_an_underscored_canary_header_is_probed_with_the_request_header_that_reaches_it() -> None:
    # balancer.lua reads ngx.var["http_x_canary"]: the request header X-Canary; nginx drops a
    # request header named X_Canary (ignore_invalid_headers on, underscores_in_headers off).
    plan = plan_of("nginx", weight=20, header="X_Canary")
    assert routes_of(plan) == {
        "default": ({}, {"1.0", "2.0"}),
        "X-Canary: always": ({"X-Canary": "always"}, {"2.0"}),
        "X-Canary: never": ({"X-Canary": "never"}, {"1.0"}),
    }


def test_nginx_header_value_cookie_and_virtual_host_routes() -> None:
    plan = plan_of("nginx", header="Region", header_value="cd", cookie="user_from_cd")
    assert routes_of(plan) == {
        "default": ({}, {"1.0"}),
        "Region: cd": ({"Region": "cd"}, {"2.0"}),
        "cookie user_from_cd=always": ({"Cookie": "user_from_cd=always"}, {"2.0"}),
        "cookie user_from_cd=never": ({"Cookie": "user_from_cd=never"}, {"1.0"}),
    }
    vhost = plan_of("nginx", canary_host="canary.foo.bar")
    assert routes_of(vhost)["Host: canary.foo.bar"] == ({"Host": "canary.foo.bar"}, {"2.0"})
    assert routes_of(vhost)["default"] == ({}, {"1.0"})


def test_nginx_promoted_plan_has_one_version_and_no_alternative() -> None:
    plan = plan_of("nginx", Phase.PROMOTED, weight=20)
    assert routes_of(plan) == {"default": ({}, {"2.0"})}
    assert plan.nginx == NginxWant(main=f"{NS}-kubeapp-stable-80")
    assert "without alternative backends" in plan.describe()


def test_a_release_the_model_answers_with_an_error_page_is_explained() -> None:
    _, objects = objects_of(Scenario("x", "nginx", "1.0", "2.0", {"weight": 20}))
    with pytest.raises(
        BackendError, match=r"answers a request for host 'other\.host' path '/' itself \(HTTP 404"
    ):
        plan_for(objects, Dataplane("nginx"), namespace=NS, host="other.host")


def test_an_ingress_of_another_class_is_planned_with_that_class() -> None:
    spec, objects = objects_of(Scenario("x", "nginx", "1.0", "2.0", {"weight": 20}))
    internal = [adapt(o, NS, ingress_class="internal") for o in objects]
    with pytest.raises(BackendError, match=r"ingress-nginx \(class nginx\) answers"):
        plan_for(internal, Dataplane("nginx"), namespace=NS, host=spec.host)
    plan = plan_for(
        internal, Dataplane("nginx"), namespace=NS, host=spec.host, ingress_class="internal"
    )
    assert plan.nginx is not None and plan.nginx.canary == f"{NS}-kubeapp-canary-80"


def test_istio_plan_default_route_header_route_and_envoy_routes() -> None:
    plan = plan_of("istio", weight=10, header="canary", header_value="tester")
    assert routes_of(plan) == {
        "default": ({}, {"v1", "v2"}),
        "canary: tester": ({"canary": "tester"}, {"v2"}),
    }
    fqdn = f"kubeapp.{NS}.svc.cluster.local"
    assert plan.envoy is not None
    assert [(r.headers, dict(r.clusters)) for r in plan.envoy.routes] == [
        (frozenset({EnvoyHeader("canary", "exact", "tester")}), {f"outbound|80|v2|{fqdn}": 1.0}),
        (frozenset(), {f"outbound|80|v1|{fqdn}": 0.9, f"outbound|80|v2|{fqdn}": 0.1}),
    ]


def test_istio_presence_match_and_promotion() -> None:
    assert routes_of(plan_of("istio", weight=0, header="x-beta")) == {
        "default": ({}, {"v1"}),  # weight 0 gets nothing
        "x-beta: always": ({"x-beta": "always"}, {"v2"}),
    }
    promoted = plan_of("istio", Phase.PROMOTED, weight=10)
    assert routes_of(promoted) == {"default": ({}, {"v2"})}
    assert promoted.envoy is not None
    assert promoted.envoy.clusters == {f"outbound|80|v2|kubeapp.{NS}.svc.cluster.local": 1.0}


def test_istio_source_label_routes_are_not_at_the_gateway() -> None:
    """sourceLabels match blocks never apply at the ingress gateway (route.go
    ``sourceMatchHTTP``): the gateway's Envoy has no route for them and no probe is sent."""
    plan = plan_of("istio", source=True, weight=0)
    assert set(routes_of(plan)) == {"default"}
    assert plan.envoy is not None and all(not r.headers for r in plan.envoy.routes)


def test_gateway_plan_weights_and_any_value_header() -> None:
    plan = plan_of("gateway", weight=25, header="X-Canary")
    assert routes_of(plan) == {
        "default": ({}, {"1.0", "2.0"}),
        "x-canary: always": ({"x-canary": "always"}, {"2.0"}),
    }
    assert plan.envoy is not None
    assert plan.envoy.clusters == {
        f"outbound|80||kubeapp-v1-0.{NS}.svc.cluster.local": 0.75,
        f"outbound|80||kubeapp-v2-0.{NS}.svc.cluster.local": 0.25,
    }


def test_service_plan_lets_any_selected_pod_answer() -> None:
    objects = manifests.render(build_spec("replicas", "1.0", "2.0"))
    plan = service_plan(objects, "kubeapp")
    assert plan.routes == (Route("default", {}, ({"app": "kubeapp"},)),)


# -- one code path: the plan follows the models ---------------------------------------------------


def test_a_changed_ingress_nginx_rule_changes_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plan's "who may answer" is balancer.lua's decision as the model makes it: with
    the model's decision replaced by "always the canary", the plan expects only the canary."""
    assert routes_of(plan_of("nginx", weight=20))["default"][1] == {"1.0", "2.0"}
    monkeypatch.setattr(
        nginx_model, "decide_canary", lambda policy, request, rng, **_: (True, "patched")
    )
    assert routes_of(plan_of("nginx", weight=20))["default"][1] == {"2.0"}


def test_a_changed_istio_rule_changes_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    original = istio_model.IstioConfig.weighted_destinations

    def first_only(route: istio_model.HttpRoute) -> list[tuple[istio_model.RouteDestination, int]]:
        return original(route)[:1]

    monkeypatch.setattr(istio_model.IstioConfig, "weighted_destinations", staticmethod(first_only))
    plan = plan_of("istio", weight=10)
    assert routes_of(plan)["default"][1] == {"v1"}
    assert plan.envoy is not None
    assert plan.envoy.clusters == {f"outbound|80|v1|kubeapp.{NS}.svc.cluster.local": 1.0}


def test_a_changed_gateway_api_rule_changes_the_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        gateway_model.GatewayConfig,
        "weighted_backends",
        staticmethod(lambda rule: [(b, 1) for b in rule.backends]),
    )
    plan = plan_of("gateway", weight=0)  # weight 0 would get nothing; the patched rule says 1
    assert routes_of(plan)["default"][1] == {"1.0", "2.0"}
