"""The ingress-nginx model, one test per upstream rule (controller-v1.15.1).

Sources: rootfs/etc/nginx/lua/balancer.lua (route_to_alternative_balancer),
internal/ingress/controller/controller.go (createServers, mergeAlternativeBackends),
internal/ingress/annotations/canary/main.go.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from pytest_canary.dataplane import nginx
from pytest_canary.dataplane.request import Destination, Refusal, RoutedRequest

P = "nginx.ingress.kubernetes.io/"


def ingress(
    name: str,
    service: str,
    *,
    host: str | None = "foo.bar",
    path: str = "/",
    path_type: str = "Prefix",
    annotations: dict[str, str] | None = None,
    ingress_class: str | None = "nginx",
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "http": {
            "paths": [
                {
                    "path": path,
                    "pathType": path_type,
                    "backend": {"service": {"name": service, "port": {"number": 80}}},
                }
            ]
        }
    }
    if host is not None:
        rule["host"] = host
    spec: dict[str, Any] = {"rules": [rule]}
    if ingress_class:
        spec["ingressClassName"] = ingress_class
    meta: dict[str, Any] = {"name": name}
    if annotations:
        meta["annotations"] = annotations
    return {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": meta, "spec": spec}


def canary_ingress(
    name: str = "app-canary", service: str = "canary", **notes: str
) -> dict[str, Any]:
    annotations = {P + "canary": "true"} | {P + k.replace("_", "-"): v for k, v in notes.items()}
    return ingress(name, service, annotations=annotations)


def route(
    objects: list[dict[str, Any]],
    *,
    headers: dict[str, str] | None = None,
    host: str | None = "foo.bar",
    path: str = "/",
    seed: int = 0,
) -> Destination | Refusal:
    config = nginx.load(objects)
    return config.route(RoutedRequest.build(host, path, headers or {}), random.Random(seed))


def service_of(result: Destination | Refusal) -> str:
    assert isinstance(result, Destination), result
    return result.service


MAIN = ingress("app", "stable")


def test_header_always_routes_to_canary_and_never_to_main() -> None:
    objects = [MAIN, canary_ingress(canary_by_header="X-Canary", canary_weight="100")]
    assert service_of(route(objects, headers={"X-Canary": "always"})) == "canary"
    assert service_of(route(objects, headers={"X-Canary": "never"})) == "stable"


def test_header_never_wins_over_cookie_and_weight() -> None:
    objects = [
        MAIN,
        canary_ingress(canary_by_header="X-Canary", canary_by_cookie="c", canary_weight="100"),
    ]
    headers = {"X-Canary": "never", "Cookie": "c=always"}
    assert service_of(route(objects, headers=headers)) == "stable"


def test_header_other_values_fall_through_to_cookie_then_weight() -> None:
    objects = [MAIN, canary_ingress(canary_by_header="X-Canary", canary_by_cookie="c")]
    assert (
        service_of(route(objects, headers={"X-Canary": "maybe", "Cookie": "c=always"})) == "canary"
    )
    # weight 0 (absent): falls through to the main backend.
    assert service_of(route(objects, headers={"X-Canary": "maybe"})) == "stable"


def test_header_value_set_makes_always_and_never_ordinary_values() -> None:
    objects = [
        MAIN,
        canary_ingress(
            canary_by_header="X-Canary", canary_by_header_value="beta", canary_weight="100"
        ),
    ]
    assert service_of(route(objects, headers={"X-Canary": "beta"})) == "canary"
    # "never" is not special once a value is set: it falls through to the weight (100).
    assert service_of(route(objects, headers={"X-Canary": "never"})) == "canary"
    objects_w0 = [MAIN, canary_ingress(canary_by_header="X-Canary", canary_by_header_value="beta")]
    assert service_of(route(objects_w0, headers={"X-Canary": "always"})) == "stable"


def test_header_pattern_is_an_unanchored_regex_search() -> None:
    objects = [MAIN, canary_ingress(canary_by_header="Region", canary_by_header_pattern="cd|sz")]
    assert service_of(route(objects, headers={"Region": "cd"})) == "canary"
    assert service_of(route(objects, headers={"Region": "sz"})) == "canary"
    assert service_of(route(objects, headers={"Region": "xcdx"})) == "canary"  # ngx.re.match
    assert service_of(route(objects, headers={"Region": "bj"})) == "stable"


def test_header_pattern_that_does_not_compile_sends_to_main_and_stops() -> None:
    objects = [
        MAIN,
        canary_ingress(
            canary_by_header="Region", canary_by_header_pattern="cd(", canary_weight="100"
        ),
    ]
    assert service_of(route(objects, headers={"Region": "cd"})) == "stable"
    # Without the header the weight still applies.
    assert service_of(route(objects)) == "canary"


def test_header_pattern_at_pcres_backtracking_limit_sends_to_main_and_logs() -> None:
    """balancer.lua: ngx.re.match errors (pcre_exec -8, the match limit) -> ngx.log(ERR,
    "error when matching canary-by-header-pattern") and the main backend, weight unused."""
    objects = [
        MAIN,
        canary_ingress(
            canary_by_header="Region", canary_by_header_pattern="(a|aa)+$", canary_weight="100"
        ),
    ]
    config = nginx.load(objects)
    request = RoutedRequest.build("foo.bar", "/", {"Region": "a" * 5000 + "!"})
    started = time.perf_counter()
    result = config.route(request, random.Random(0))
    assert time.perf_counter() - started < 2.0  # bounded by the match limit, not 2**5000
    assert isinstance(result, Destination) and result.service == "stable"
    assert len(result.log) == 1
    assert result.log[0].startswith(
        "error when matching canary-by-header-pattern: '(a|aa)+$', error: pcre_exec() failed: -8"
    )
    # The same pattern on an ordinary value matches as PCRE does.
    matched = config.route(RoutedRequest.build("foo.bar", "/", {"Region": "aaa"}), random.Random(0))
    assert service_of(matched) == "canary"


def test_header_pattern_speaks_pcre() -> None:
    # Lookahead and backreferences: PCRE has them (RE2 and Go's regexp do not). Lookbehind
    # cannot be written: '<' fails parser/validators.go IsValidRegex, the pattern becomes "".
    objects = [
        MAIN,
        canary_ingress(canary_by_header="Region", canary_by_header_pattern=r"(cd)\1(?=x)"),
    ]
    assert service_of(route(objects, headers={"Region": "cdcdx"})) == "canary"
    assert service_of(route(objects, headers={"Region": "cdcd"})) == "stable"
    lookbehind = canary_ingress(canary_by_header="Region", canary_by_header_pattern=r"(?<=x)cd")
    assert nginx.parse_canary(lookbehind["metadata"]).header_pattern == ""


def test_header_name_matches_case_insensitively_with_dash_as_underscore() -> None:
    objects = [MAIN, canary_ingress(canary_by_header="X-Canary")]
    assert service_of(route(objects, headers={"x-canary": "always"})) == "canary"
    # balancer.lua reads ngx.var["http_" .. name with '-' as '_']: an annotation X_Canary is
    # the request header X-Canary.
    underscored = [MAIN, canary_ingress(canary_by_header="X_Canary")]
    assert service_of(route(underscored, headers={"X-CANARY": "always"})) == "canary"


def test_request_headers_with_underscores_never_reach_the_canary_rules() -> None:
    """nginx.tmpl: ignore_invalid_headers on, underscores_in_headers off (config.go
    defaults): nginx drops a request header named X_Canary before balancer.lua runs."""
    objects = [MAIN, canary_ingress(canary_by_header="X-Canary")]
    assert service_of(route(objects, headers={"X_CANARY": "always"})) == "stable"


def test_cookie_always_and_never() -> None:
    objects = [MAIN, canary_ingress(canary_by_cookie="user_from_cd", canary_weight="100")]
    assert service_of(route(objects, headers={"Cookie": "a=1; user_from_cd=always"})) == "canary"
    assert service_of(route(objects, headers={"Cookie": "user_from_cd=never"})) == "stable"
    assert service_of(route(objects, headers={"Cookie": "user_from_cd=yes"})) == "canary"  # weight


def test_weight_is_a_random_draw_per_request() -> None:
    config = nginx.load([MAIN, canary_ingress(canary_weight="20")])
    rng = random.Random(7)
    request = RoutedRequest.build("foo.bar", "/")
    counts = Counter(service_of(config.route(request, rng)) for _ in range(20_000))
    # Binomial(20000, 0.2): sd = 56.6; ±5 sd = ±283.
    assert abs(counts["canary"] - 4000) < 283


def test_weight_total_above_100_is_used_and_below_100_ignored() -> None:
    request = RoutedRequest.build("foo.bar", "/")

    def share(**notes: str) -> float:
        config = nginx.load([MAIN, canary_ingress(**notes)])
        rng = random.Random(3)
        hits = sum(service_of(config.route(request, rng)) == "canary" for _ in range(20_000))
        return hits / 20_000

    assert abs(share(canary_weight="150", canary_weight_total="1000") - 0.15) < 0.015
    # A total of 50 is ignored: the weight is read out of 100.
    assert abs(share(canary_weight="25", canary_weight_total="50") - 0.25) < 0.015


def test_weight_zero_and_hundred() -> None:
    assert service_of(route([MAIN, canary_ingress(canary_weight="0")])) == "stable"
    for seed in range(50):
        assert service_of(route([MAIN, canary_ingress(canary_weight="100")], seed=seed)) == "canary"


def test_canary_without_main_ingress_is_dropped_and_alone_gets_404() -> None:
    config = nginx.load([canary_ingress(canary_weight="100")])
    result = config.route(RoutedRequest.build("foo.bar", "/"), random.Random(0))
    assert isinstance(result, Refusal) and result.status == 404
    assert any("does not exist" in line for line in config.log)


def test_canary_with_different_path_or_path_type_is_dropped() -> None:
    other_path = ingress(
        "app-canary",
        "canary",
        path="/shop",
        annotations={P + "canary": "true", P + "canary-weight": "100"},
    )
    other_type = ingress(
        "app-canary",
        "canary",
        path_type="ImplementationSpecific",
        annotations={P + "canary": "true", P + "canary-weight": "100"},
    )
    for canary in (other_path, other_type):
        config = nginx.load([MAIN, canary])
        assert (
            service_of(config.route(RoutedRequest.build("foo.bar", "/"), random.Random(0)))
            == "stable"
        )
        assert any("unable to find real backend" in line for line in config.log)


def test_canary_service_equal_to_main_service_is_ignored() -> None:
    same = canary_ingress(service="stable", canary_weight="100")
    config = nginx.load([MAIN, same])
    assert (
        service_of(config.route(RoutedRequest.build("foo.bar", "/"), random.Random(0))) == "stable"
    )
    assert any("primary upstream" in line for line in config.log)


def test_only_the_first_canary_backend_is_used() -> None:
    first = canary_ingress("c1", "canary-a", canary_weight="100")
    second = canary_ingress("c2", "canary-b", canary_weight="100")
    assert service_of(route([MAIN, first, second])) == "canary-a"


def test_canary_applies_to_every_host_using_the_same_main_service() -> None:
    other_host = ingress("other", "stable", host="other.bar")
    objects = [MAIN, other_host, canary_ingress(canary_weight="100")]
    assert service_of(route(objects, host="other.bar")) == "canary"


def test_canary_values_without_canary_true_make_a_main_ingress() -> None:
    """canary/main.go Parse + annotations.go Extract: the canary config is rejected, the
    Ingress loads as a main one; the older Ingress keeps a shared location."""
    broken = ingress("app-canary", "canary", annotations={P + "canary-weight": "100"})
    config = nginx.load([MAIN, broken])
    assert (
        service_of(config.route(RoutedRequest.build("foo.bar", "/"), random.Random(0))) == "stable"
    )
    assert any("configured but not enabled" in line for line in config.log)
    older = nginx.load([broken, MAIN])  # the misconfigured one is older: it takes everything
    assert (
        service_of(older.route(RoutedRequest.build("foo.bar", "/"), random.Random(0))) == "canary"
    )


def test_canary_weight_zero_without_canary_true_is_no_error() -> None:
    """canary/main.go: the error needs a parsed value (weight above 0, a header, a cookie)."""
    harmless = ingress("other", "other", host="other.bar", annotations={P + "canary-weight": "0"})
    config = nginx.load([MAIN, harmless])
    assert not config.log
    assert (
        service_of(config.route(RoutedRequest.build("other.bar", "/"), random.Random(0))) == "other"
    )


def test_invalid_header_name_silently_disables_header_routing() -> None:
    """parser/validators.go BasicCharsRegex: 'X!Canary' is reset to '' (no header rule);
    'X Canary' passes (spaces are removed before the check) but no request header can have
    that name, so nothing matches it either."""
    for name in ("X!Canary", "X Canary"):
        objects = [MAIN, canary_ingress(canary_by_header=name)]
        assert service_of(route(objects, headers={name: "always"})) == "stable"
    assert nginx.parse_canary(canary_ingress(canary_by_header="X!Canary")["metadata"]).header == ""


def test_canary_annotation_values_are_read_by_go_parsers() -> None:
    """canary/main.go Parse via parser/main.go: canary is strconv.ParseBool, the weights
    strconv.Atoi (a rejected value is the default), text fields are trimmed, and an empty
    value is the default. Each rejected value is an issue the linter reports."""
    # (annotations, field, value read, whether the linter gets an issue)
    cases: list[tuple[dict[str, str], str, object, bool]] = [
        ({"canary_weight": "30"}, "weight", 30, False),
        ({"canary_weight": "+30"}, "weight", 30, False),
        ({"canary_weight": "007"}, "weight", 7, False),
        ({"canary_weight": "abc"}, "weight", 0, True),
        ({"canary_weight": "1e3"}, "weight", 0, True),
        ({"canary_weight": "10.5"}, "weight", 0, True),
        ({"canary_weight": " 10"}, "weight", 0, True),
        ({"canary_weight": "1_0"}, "weight", 0, True),
        ({"canary_weight": ""}, "weight", 0, True),
        ({"canary_weight": "-5"}, "weight", -5, True),
        ({"canary_weight": "99999999999999999999"}, "weight", 0, True),
        ({"canary_weight_total": "x"}, "weight_total", 100, True),
        ({"canary_weight_total": "50"}, "weight_total", 50, True),
        ({"canary_weight_total": "1000"}, "weight_total", 1000, False),
        ({"canary_by_header": " X-Canary "}, "header", "X-Canary", False),
        ({"canary_by_header_value": "yes please"}, "header_value", "yes please", False),
        ({"canary_by_header_value": "yes!"}, "header_value", "", True),
        ({"canary_by_header_pattern": "a b"}, "header_pattern", "", True),
        ({"canary_by_header_pattern": "^(cd|sz)$"}, "header_pattern", "^(cd|sz)$", False),
    ]
    for notes, field, expected, flagged in cases:
        parsed = nginx.parse_canary(canary_ingress(**notes)["metadata"])
        assert getattr(parsed, field) == expected, (notes, parsed)
        assert bool(parsed.issues) is flagged, (notes, parsed.issues)
    for spelling, enabled in (("true", True), ("T", True), ("1", True), ("tRUE", False)):
        meta = canary_ingress()["metadata"] | {"annotations": {P + "canary": spelling}}
        assert nginx.parse_canary(meta).enabled is enabled, spelling


def test_a_negative_weight_never_draws_the_canary() -> None:
    """balancer.lua: math.random(total) <= weight never holds for a weight below 1."""
    config = nginx.load([MAIN, canary_ingress(canary_weight="-5")])
    draws = [
        config.route(RoutedRequest.build("foo.bar", "/"), random.Random(s)) for s in range(200)
    ]
    assert {service_of(d) for d in draws} == {"stable"}


def test_an_unknown_canary_annotation_is_read_by_nobody() -> None:
    """canary/main.go CanaryAnnotations lists the seven names the parser reads; annotations.go
    Extract runs only registered parsers: canary-wieght has no effect (weight 0)."""
    objects = [MAIN, canary_ingress(canary_wieght="100")]
    assert {service_of(route(objects, seed=s)) for s in range(20)} == {"stable"}
    (issue,) = nginx.annotation_issues(objects[1])
    assert (issue.annotation, issue.kind, issue.suggestion) == (
        P + "canary-wieght",
        "unknown",
        P + "canary-weight",
    )


def test_unknown_host_goes_to_the_default_backend() -> None:
    result = route([MAIN], host="elsewhere.bar")
    assert isinstance(result, Refusal) and result.status == 404


def test_host_less_rule_catches_every_other_host() -> None:
    catch_all = ingress("all", "stable", host=None)
    assert service_of(route([catch_all], host="elsewhere.bar")) == "stable"
    assert service_of(route([catch_all], host=None)) == "stable"


def test_prefix_path_matches_whole_elements_only() -> None:
    shop = ingress("shop", "shop", path="/shop")
    assert service_of(route([shop], path="/shop")) == "shop"
    assert service_of(route([shop], path="/shop/cart")) == "shop"
    assert isinstance(route([shop], path="/shopping"), Refusal)


def test_exact_path_beats_prefix_and_longest_prefix_wins() -> None:
    objects = [
        ingress("root", "root"),
        ingress("api", "api", path="/api"),
        ingress("exact", "exact", path="/api/v1", path_type="Exact"),
    ]
    assert service_of(route(objects, path="/api/v1")) == "exact"
    assert service_of(route(objects, path="/api/v2")) == "api"
    assert service_of(route(objects, path="/web")) == "root"


def test_wildcard_host_matches_one_label() -> None:
    wildcard = ingress("w", "wild", host="*.foo.bar")
    assert service_of(route([wildcard], host="a.foo.bar")) == "wild"
    assert isinstance(route([wildcard], host="a.b.foo.bar"), Refusal)


def test_other_ingress_class_is_not_watched() -> None:
    other = ingress("app", "stable", ingress_class="traefik")
    assert isinstance(route([other]), Refusal)


def test_ingress_without_class_is_watched() -> None:
    # The kind manifest runs the controller with --watch-ingress-without-class=true.
    assert service_of(route([ingress("app", "stable", ingress_class=None)])) == "stable"


def test_first_ingress_wins_a_duplicate_location() -> None:
    objects = [ingress("old", "first"), ingress("new", "second")]
    assert service_of(route(objects)) == "first"


def test_reachable_covers_both_sides_of_the_weight_draw() -> None:
    """balancer.lua ``math.random(total) <= weight`` is monotone in the draw: its lowest and
    highest draws reach every side a request can go to, and no more."""
    from pytest_canary.dataplane import nginx as model
    from pytest_canary.dataplane.request import Destination, RoutedRequest
    from pytest_canary.manifests import Phase, render
    from pytest_canary.spec import build_spec

    def sides(**knobs: object) -> set[str]:
        objects = render(build_spec("nginx", "1.0", "2.0", **knobs), Phase.CANARY)
        reached = model.load(objects).reachable(RoutedRequest.build("foo.bar", "/"))
        return {d.service for d in reached if isinstance(d, Destination)}

    assert sides(weight=0) == {"kubeapp-stable"}
    assert sides(weight=1) == {"kubeapp-stable", "kubeapp-canary"}
    assert sides(weight=99) == {"kubeapp-stable", "kubeapp-canary"}
    assert sides(weight=100) == {"kubeapp-canary"}
    assert sides(weight=100, weight_total=1000) == {"kubeapp-stable", "kubeapp-canary"}


def test_header_pattern_too_large_for_pcre_sends_to_main_and_logs() -> None:
    """A user's Ingress may hold a pattern whose repetitions PCRE refuses to compile
    ("regular expression is too large"): ngx.re.match errors, balancer.lua logs it and the
    request goes to the main backend -- at once, without compiling gigabytes."""
    objects = [
        MAIN,
        canary_ingress(
            canary_by_header="Region",
            canary_by_header_pattern="((a{1000}){1000}){1000}",
            canary_weight="100",
        ),
    ]
    result = nginx.load(objects).route(
        RoutedRequest.build("foo.bar", "/", {"Region": "a"}), random.Random(0)
    )
    assert isinstance(result, Destination) and result.service == "stable"
    assert "regular expression is too large" in result.log[0]


# -- endpoints: controller.go serviceEndpoints, balancer.lua sync_backend / get_balancer ------


def service(name: str, *ports: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": list(ports)},
    }


def with_port(obj: dict[str, Any], port: dict[str, Any]) -> dict[str, Any]:
    path = obj["spec"]["rules"][0]["http"]["paths"][0]
    path["backend"]["service"]["port"] = port
    return obj


def test_a_backend_port_resolves_by_service_port_number_target_port_or_name() -> None:
    """controller.go serviceEndpoints: a Service port matches when its number, its
    targetPort (defaulted to the port) or its name equals the backend's port."""
    ports = nginx.service_ports(service("s", {"name": "web", "port": 80, "targetPort": 8080}))
    for wanted in (80, 8080, "web"):
        assert nginx.matching_service_port(ports, wanted) == ports[0]
    for wanted in (9090, "http", 81):
        assert nginx.matching_service_port(ports, wanted) is None
    (defaulted,) = nginx.service_ports(service("s", {"port": 80}))
    assert defaulted.target_port == "80"


def test_a_main_upstream_without_endpoints_answers_503_before_any_canary_rule() -> None:
    """balancer.lua get_balancer: no balancer for the main upstream (its Service has no port
    9090), rewrite() answers 503 -- even for a request the canary header would take."""
    objects = [
        with_port(ingress("app", "stable"), {"number": 9090}),
        canary_ingress(canary_by_header="x-canary"),
        service("stable", {"port": 80}),
        service("canary", {"port": 80}),
    ]
    for headers in ({}, {"x-canary": "always"}):
        outcome = route(objects, headers=headers)
        assert isinstance(outcome, Refusal) and outcome.status == 503, outcome
        assert "has no port 9090" in outcome.reason


def test_an_alternative_upstream_without_endpoints_is_skipped_header_and_weight_alike() -> None:
    """balancer.lua route_to_alternative_balancer: "no alternative balancer for backend",
    return false: the canary (port "http" its Service lacks) gets nothing, not even the
    requests its header or a 100% weight would send there."""
    objects = [
        MAIN,
        with_port(
            canary_ingress(canary_weight="100", canary_by_header="x-canary"), {"name": "http"}
        ),
        service("stable", {"port": 80}),
        service("canary", {"port": 80, "name": "web"}),
    ]
    for seed, headers in enumerate(({}, {"x-canary": "always"}, {}, {})):
        outcome = route(objects, headers=headers, seed=seed)
        assert service_of(outcome) == "stable"
        assert isinstance(outcome, Destination)
        assert outcome.log == ("no alternative balancer for backend: default-canary-http",)


def test_live_endpoints_decide_the_balancers_too() -> None:
    """The same rule at run time: a canary Service without ready pods is skipped, a main one
    answers 503 (the local backend passes its live endpoints)."""
    config = nginx.load([MAIN, canary_ingress(canary_weight="100")])
    request = RoutedRequest.build("foo.bar", "/")
    rng = random.Random(0)
    skipped = config.route(request, rng, has_endpoints=lambda up: up.service != "canary")
    assert service_of(skipped) == "stable"
    refused = config.route(request, rng, has_endpoints=lambda up: up.service != "stable")
    assert isinstance(refused, Refusal) and refused.status == 503
    assert service_of(config.route(request, rng)) == "canary"  # no Services given: all resolve
