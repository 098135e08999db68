"""Findings: every broken variant in ``fixtures/broken`` produces exactly its finding, each
finding cites its upstream rule, and the mistakes are real (traffic through the local
models shows what upstream does with them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_canary import CanaryConfigError, Harness, lint
from pytest_canary.backends.local import LocalBackend

ROOT = Path(__file__).resolve().parents[1]
BROKEN = ROOT / "fixtures" / "broken"
SHOP = ROOT / "suites" / "manifests" / "shop"
VARIANTS = sorted(p.name for p in BROKEN.iterdir() if p.is_dir())

# The upstream source each rule must cite: the function or file that makes the behaviour.
UPSTREAM_OF = {
    "nginx-canary-path-mismatch": "mergeAlternativeBackends",
    "nginx-canary-without-main": "mergeAlternativeBackends",
    "nginx-second-canary": "checkOverlap",
    "nginx-canary-service-is-main": "createUpstreams",
    "nginx-canary-not-enabled": "canary/main.go",
    "nginx-canary-invalid-value": "canary/main.go",
    "nginx-canary-unknown-annotation": "CanaryAnnotations",
    "nginx-canary-value-ignored": "strconv.Atoi",
    "nginx-dropped": "dataplane/nginx.py",
    "istio-no-default-route": "BuildHTTPRoutesForVirtualService",
    "istio-all-weights-zero": "applyHTTPRouteDestination",
    "istio-undefined-subset": "GetDestinationCluster",
    "istio-source-labels-without-mesh": "HTTPMatchRequest.sourceLabels",
    "istio-subset-selects-nothing": "IST0173",
    "istio-host-not-in-gateway": "IST0132",
    "istio-gateway-not-found": "IST0101",
    "gateway-all-weights-zero": "BackendRef.weight",
    "gateway-parent-not-found": "ParentReference",
    "gateway-invalid-regex": "CompiledGoogleReMatcher",
    "gateway-route-not-accepted": "NoMatchingListenerHostname",
    "service-not-found": "BackendRef",
    "schema-invalid": "validate.py",
    "service-port-not-found": "serviceEndpoints",
    "service-selects-nothing": "endpointslice",
    "argo-rollout-invalid-spec": "validation.go",
    "argo-rollout-routing": "buildCanaryIngress",
}


def expected_rule(variant: str) -> str:
    return (BROKEN / variant / "expected.txt").read_text().strip()


@pytest.fixture
def canary() -> Iterator[Harness]:
    backend = LocalBackend(seed=21)
    try:
        with Harness(backend.environment("lint")) as harness:
            yield harness
    finally:
        backend.close()


def variant_id(variant: str) -> str:
    """``<variant>-<upstream symbol>``: the test id names the upstream rule."""
    return f"{variant}-{UPSTREAM_OF[expected_rule(variant)]}"


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_broken_variant_produces_exactly_its_finding(variant: str) -> None:
    """Each ``fixtures/broken/<variant>`` yields one finding, of the rule in expected.txt,
    citing that rule's upstream source."""
    findings = lint.lint_paths(BROKEN / variant)
    rule = expected_rule(variant)
    assert [f.rule for f in findings] == [rule], "\n".join(map(str, findings))
    assert UPSTREAM_OF[rule] in findings[0].upstream
    # These two cite the exact upstream source of each case (a Service's referrer, a
    # validation.go constant) rather than the rule's summary.
    assert findings[0].upstream == lint.RULES[rule].upstream or rule in (
        "service-not-found",
        "service-port-not-found",
        "argo-rollout-invalid-spec",
    )


def test_every_rule_has_a_broken_variant_and_an_upstream() -> None:
    covered = {expected_rule(v) for v in VARIANTS}
    assert set(lint.RULES) - covered == {"nginx-dropped"}  # the fallback: see its own test
    assert set(UPSTREAM_OF) == set(lint.RULES)


@pytest.mark.parametrize("folder", ["nginx", "istio", "gateway-api"])
def test_realistic_sets_have_no_findings(folder: str) -> None:
    assert lint.lint_paths(SHOP / folder) == []


def test_model_log_lines_without_a_rule_still_surface() -> None:
    """Anything the ingress-nginx model logs is a finding (here controller.go checkOverlap's
    'already defined' for two main Ingresses on one host and path): the linter reads the
    model's log instead of re-implementing its rules."""
    main = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "shop"},
        "spec": {
            "rules": [
                {
                    "host": "shop.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/shop",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": "shop", "port": {"number": 80}}},
                            }
                        ]
                    },
                }
            ]
        },
    }
    twin = {**main, "metadata": {"name": "shop-again"}}
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "shop"},
        "spec": {"ports": [{"port": 80}]},
    }
    findings = lint.lint([main, twin, service])
    assert [f.rule for f in findings] == ["nginx-dropped"]
    assert findings[0].object == "Ingress/shop-again"
    assert "already defined by Ingress shop" in findings[0].message


# -- apply: findings before any traffic ------------------------------------------------------


def test_apply_raises_on_findings_naming_rule_upstream_and_file(canary: Harness) -> None:
    with pytest.raises(CanaryConfigError) as info:
        canary.apply(BROKEN / "nginx-canary-path-mismatch")
    message = str(info.value)
    assert message.startswith("1 finding in ")
    assert "before any traffic was sent" in message
    assert "Ingress/shop-canary (" in message and "manifests.yaml, document 6)" in message
    assert "rule nginx-canary-path-mismatch; upstream: kubernetes/ingress-nginx" in message
    assert "mergeAlternativeBackends" in message
    assert canary.environment.understood_kinds is not None
    assert canary.applied == []  # nothing applied


def test_path_mismatch_really_drops_the_canary(canary: Harness) -> None:
    """controller.go mergeAlternativeBackends: the canary path /shop/ matches no main
    location, so ingress-nginx never sends a request to v2; applied anyway, the local model
    shows it."""
    with pytest.warns(lint.FindingWarning, match="nginx-canary-path-mismatch"):
        shop = canary.apply(BROKEN / "nginx-canary-path-mismatch", findings="warn")
    assert [f.rule for f in shop.findings] == ["nginx-canary-path-mismatch"]
    shop.expect_routed("v1", leak=0.1)
    with pytest.raises(AssertionError, match="split"):
        shop.expect_split({"v2": 0.10})


def test_header_value_reset_really_disables_header_routing(canary: Harness) -> None:
    """canary/main.go: 'yes!' is outside the character set, reset to '' upstream, so
    x-beta-user: yes! does not select the canary (only the 10% weight does)."""
    shop = canary.apply(BROKEN / "nginx-canary-invalid-value", findings="ignore")
    with pytest.raises(AssertionError, match="routed"):
        shop.expect_routed("v2", headers={"x-beta-user": "yes!"})


def test_a_misspelt_weight_really_sends_nothing_to_the_canary(canary: Harness) -> None:
    """canary-wieght: "30" is read by nobody: every request stays on v1."""
    shop = canary.apply(BROKEN / "nginx-canary-unknown-annotation", findings="ignore")
    shop.expect_routed("v1", leak=0.1)


@pytest.mark.parametrize(
    ("weight", "finding"),
    [
        ("abc", "not an integer for strconv.Atoi, so it is read as 0"),
        ("-5", "a negative weight never wins math.random(total) <= weight"),
        ("1e3", "not an integer for strconv.Atoi, so it is read as 0"),
        ("10.5", "not an integer for strconv.Atoi, so it is read as 0"),
        ("", "empty, so it is read as 0"),
        (" 10", "not an integer for strconv.Atoi, so it is read as 0"),
        ("+10", None),
        ("10", None),
    ],
)
def test_canary_weights_ingress_nginx_parses_to_nothing_are_findings(
    weight: str, finding: str | None, tmp_path: Path
) -> None:
    text = (BROKEN / "nginx-canary-value-ignored" / "manifests.yaml").read_text()
    (tmp_path / "shop.yaml").write_text(text.replace('"10.5"', f'"{weight}"'))
    found = [f for f in lint.lint_paths(tmp_path) if f.rule == "nginx-canary-value-ignored"]
    if finding is None:
        assert found == []
    else:
        (only,) = found
        assert only.message.startswith(f"canary-weight={weight!r}: {finding}"), only.message
        assert "strconv.Atoi" in only.upstream


@pytest.mark.parametrize("pattern", ["(", "[z-a]", "((a{1000}){1000}){1000}"])
def test_a_header_pattern_pcre_cannot_compile_is_a_finding(pattern: str, tmp_path: Path) -> None:
    """IsValidRegex only checks characters; the pattern fails in ngx.re.match per request."""
    text = (BROKEN / "nginx-canary-invalid-value" / "manifests.yaml").read_text()
    text = text.replace(
        'canary-by-header-value: "yes!"', f"canary-by-header-pattern: {json.dumps(pattern)}"
    )
    (tmp_path / "shop.yaml").write_text(text)
    (only,) = lint.lint_paths(tmp_path)
    assert only.rule == "nginx-canary-invalid-value"
    assert only.message.startswith(f"canary-by-header-pattern={pattern!r}: PCRE cannot compile")
    assert "sends it to the main backend" in only.message


def test_a_typo_gets_a_did_you_mean() -> None:
    (finding,) = lint.lint_paths(BROKEN / "nginx-canary-unknown-annotation")
    assert finding.object == "Ingress/shop-canary"
    assert finding.message == (
        "canary-wieght='30': no ingress-nginx parser reads it, so it has no effect "
        "(did you mean canary-weight?)"
    )


def test_undefined_subset_really_fails_requests(canary: Harness) -> None:
    """route.go GetDestinationCluster: subset 'canary' has no cluster, Envoy answers 503 NC
    for the 10% sent there."""
    shop = canary.apply(BROKEN / "istio-undefined-subset", findings="ignore")
    sample = shop.sample(200)
    assert sample.errors["HTTP 503"] > 0
    assert set(sample.counts) == {"v1"}


def test_own_rollout_example_has_no_findings() -> None:
    """The Rollout example (suites/manifests/rollouts/shop): Services, stable Ingress and the
    Rollout at either version lint clean."""
    rollouts = ROOT / "suites" / "manifests" / "rollouts" / "shop"
    for version in ("v1", "v2"):
        assert lint.lint_paths([rollouts / "routing.yaml", rollouts / version]) == []


@pytest.mark.parametrize(
    ("change", "finding"),
    [
        ({"replicas": -1}, "spec.replicas=-1: must be greater than or equal to 0"),
        (
            {"selector": {"matchLabels": {"app": "other"}}},
            "spec.template.metadata.labels={'app': 'shop', 'version': 'v1'}: `selector` does "
            "not match template `labels`",
        ),
        (
            {
                "selector": {
                    "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["shop"]}]
                }
            },
            "`selector` does not match template `labels`",
        ),
    ],
)
def test_what_only_the_rollout_controller_refuses_is_its_invalid_spec(
    change: dict[str, object], finding: str
) -> None:
    """The CRD has no minimum on replicas and no selector check (only CEL "is immutable"):
    the API server stores such a Rollout and the controller marks it InvalidSpec
    (validation.go ValidateRolloutSpec), so it is a finding citing that, not a schema error."""
    import yaml

    from pytest_canary.validate import validate_objects

    rollouts = ROOT / "suites" / "manifests" / "rollouts" / "shop"
    objects = [
        *yaml.safe_load_all((rollouts / "routing.yaml").read_text()),
        yaml.safe_load((rollouts / "v1" / "rollout.yaml").read_text()),
    ]
    objects[-1]["spec"].update(change)
    assert validate_objects(objects) == []
    (found,) = lint.lint(objects)
    assert found.rule == "argo-rollout-invalid-spec" and finding in found.message
    assert "validation.go ValidateRolloutSpec" in found.upstream


# -- ports a Service does not have --------------------------------------------------------


def test_a_canary_port_the_service_lacks_really_sends_everything_to_main(canary: Harness) -> None:
    """controller.go serviceEndpoints finds no port 9090 on shop-v2: the canary upstream has
    no endpoints and balancer.lua skips it, so neither the 10% weight nor the header reaches
    v2 (the local model does as ingress-nginx does, it does not answer 503)."""
    shop = canary.apply(BROKEN / "service-port-not-found", findings="ignore")
    assert [f.rule for f in shop.findings] == ["service-port-not-found"]
    shop.expect_routed("v1", leak=0.1)
    shop.expect_routed("v1", headers={"x-beta-user": "always"}, leak=0.1)


def test_a_main_port_the_service_lacks_really_answers_503(canary: Harness, tmp_path: Path) -> None:
    """The main backend without endpoints: balancer.lua get_balancer has no balancer and
    rewrite() answers 503, for every request."""
    text = (BROKEN / "service-port-not-found" / "manifests.yaml").read_text()
    text = text.replace("shop-v1, port: {number: 80}", "shop-v1, port: {name: http}")
    text = text.replace("shop-v2, port: {number: 9090}", "shop-v2, port: {number: 80}")
    (tmp_path / "shop.yaml").write_text(text)
    (finding,) = lint.lint_paths(tmp_path)
    assert finding.object == "Ingress/shop"
    assert "has no port http" in finding.message and "with 503" in finding.message
    shop = canary.apply(tmp_path, findings="ignore")
    sample = shop.sample(20, headers={"x-beta-user": "always"})
    assert sample.errors == {"HTTP 503": 20} and not sample.counts


def test_a_backend_port_equal_to_the_target_port_is_no_finding(tmp_path: Path) -> None:
    """serviceEndpoints also matches the Service port's targetPort: port 8080 on a Service
    80 -> 8080 has endpoints in ingress-nginx (not in Istio or Gateway API)."""
    text = (BROKEN / "service-port-not-found" / "manifests.yaml").read_text()
    (tmp_path / "shop.yaml").write_text(text.replace("number: 9090", "number: 8080"))
    assert lint.lint_paths(tmp_path) == []


def test_a_subset_selecting_no_pod_really_fails_its_share(canary: Harness) -> None:
    """IST0173: subset v2 (version: v3) has no endpoints; the 10% routed there get 503 UH."""
    shop = canary.apply(BROKEN / "istio-subset-selects-nothing", findings="ignore")
    sample = shop.sample(200)
    assert sample.errors["HTTP 503"] > 0
    assert set(sample.counts) == {"v1"}


def test_a_virtual_service_host_no_gateway_server_has_really_gets_404(canary: Harness) -> None:
    """IST0132: the gateway's Envoy has no virtual host for shop.example.com."""
    shop = canary.apply(BROKEN / "istio-host-not-in-gateway", findings="ignore")
    assert shop.host == "shop.example.com"
    sample = shop.sample(20)
    assert [k.split()[:2] for k in sample.errors] == [["HTTP", "404"]]
    assert sum(sample.errors.values()) == 20 and not sample.counts


@pytest.mark.parametrize(
    ("broken", "replace", "message", "cited"),
    [
        pytest.param(
            "istio-undefined-subset",
            ("subset: canary}", "subset: v2, port: {number: 8080}}"),
            "route weighted sends to port 8080 of shop, which has no",
            "IST0101",
            id="virtual-service",
        ),
        pytest.param(
            "service-not-found",
            ("name: shop-canary, port: 80", "name: shop-v2, port: 8080"),
            "rules[0]: backendRef shop-v2 port 8080, but Service",
            "buildDestination",
            id="http-route",
        ),
    ],
)
def test_a_destination_port_the_service_lacks_is_a_finding_and_503_nc(
    canary: Harness,
    tmp_path: Path,
    broken: str,
    replace: tuple[str, str],
    message: str,
    cited: str,
) -> None:
    """A VirtualService destination (route.go GetDestinationCluster names outbound|8080|...)
    or an HTTPRoute backendRef (Istio's conversion keeps the port, ResolvedRefs True) on
    port 8080 of a Service that has only 80: istiod builds no such cluster, so Envoy answers
    503 NC for the 10% sent there; the rest reaches v1."""
    text = (BROKEN / broken / "manifests.yaml").read_text().replace(*replace)
    (tmp_path / "shop.yaml").write_text(text)
    (finding,) = lint.lint_paths(tmp_path)
    assert finding.rule == "service-port-not-found"
    assert finding.message.startswith(message)
    assert cited in finding.upstream
    shop = canary.apply(tmp_path, findings="ignore")
    sample = shop.sample(200)
    assert sample.errors["HTTP 503"] > 0
    assert set(sample.counts) == {"v1"}


def shop_on_two_ports(folder: Path, gateway_port: int | None) -> Path:
    """The weighted shop (v1 90, v2 10) on a Service of ports 8080 and 9090, destinations
    without port: through a Gateway server on ``gateway_port``, or (None) in the mesh."""
    text = (BROKEN / "istio-undefined-subset" / "manifests.yaml").read_text()
    text = text.replace("subset: canary}", "subset: v2}").replace(
        "ports: [{name: http, port: 80, targetPort: 8080}]",
        "ports: [{name: http, port: 8080, targetPort: 8080}, "
        "{name: grpc, port: 9090, targetPort: 8080}]",
    )
    if gateway_port is None:
        documents = [d for d in text.split("\n---\n") if "kind: Gateway" not in d]
        text = "\n---\n".join(documents).replace(
            "hosts: [shop.example.com]\n  gateways: [shop-gateway]", "hosts: [shop]"
        )
        assert "gateways" not in text
    else:
        text = text.replace("number: 80, name: http", f"number: {gateway_port}, name: http")
    folder.mkdir(exist_ok=True)
    (folder / "shop.yaml").write_text(text)
    return folder


def test_a_mesh_route_without_port_to_a_service_of_several_ports_is_no_finding(
    canary: Harness, tmp_path: Path
) -> None:
    """route.go GetDestinationCluster: no destination port, several Service ports: the
    listener port, in a sidecar the Service port the caller called, whose cluster exists
    (IST0101 checks written ports only). canary.apply accepts it and traffic splits."""
    folder = shop_on_two_ports(tmp_path, gateway_port=None)
    assert lint.lint_paths(folder) == []
    shop = canary.apply(folder)  # findings="error" by default
    sample = shop.sample(100)
    assert not sample.errors and set(sample.counts) == {"v1", "v2"}


def test_a_gateway_route_without_port_takes_the_gateway_server_port(
    canary: Harness, tmp_path: Path
) -> None:
    """gateway.go buildGatewayHTTPRouteConfig: the routes are built with the server's port
    as listener port. On port 80 the cluster outbound|80|v1|shop... is never built (a
    finding, and 503 NC); on port 8080 it is, and the gateway routes."""
    on_80 = shop_on_two_ports(tmp_path / "80", gateway_port=80)
    finding, for_v2 = lint.lint_paths(on_80)
    assert finding.rule == for_v2.rule == "service-port-not-found"
    assert "outbound|80|v2|shop.default.svc.cluster.local" in for_v2.message
    assert finding.message.startswith(
        "route weighted names no destination port, so on Gateway shop-gateway's HTTP server "
        "port 80 it sends to that port of shop, which has no such port (ports: 8080, 9090)"
    )
    assert "outbound|80|v1|shop.default.svc.cluster.local" in finding.message
    refused = canary.apply(on_80, findings="ignore").sample(20)
    assert refused.errors == {"HTTP 503": 20}
    on_8080 = shop_on_two_ports(tmp_path / "8080", gateway_port=8080)
    assert lint.lint_paths(on_8080) == []
    sample = canary.apply(on_8080).sample(100)
    assert not sample.errors and set(sample.counts) == {"v1", "v2"}


def test_a_route_whose_hostnames_miss_the_listener_really_gets_404(canary: Harness) -> None:
    """httproute_types.go hostnames: not accepted by the shop.example.org listener."""
    shop = canary.apply(BROKEN / "gateway-route-not-accepted", findings="ignore")
    sample = shop.sample(20)
    assert [k.split()[:2] for k in sample.errors] == [["HTTP", "404"]]
    assert sum(sample.errors.values()) == 20 and not sample.counts


# -- schema problems: what canary.apply refuses, a CI lint step sees -------------------------


def test_schema_problems_are_findings_worded_as_apply_words_them(canary: Harness) -> None:
    """lint_paths and canary.lint report what canary.apply refuses, with file and path, from
    the same validator (byo.schema_problems)."""
    (finding,) = canary.lint(BROKEN / "schema-invalid")
    assert finding.rule == "schema-invalid" and finding.object == "HTTPRoute/shop"
    assert finding.origin.endswith("manifests.yaml, document 6")
    assert finding.message.startswith(
        "spec.rules[0].backendRefs[1].weigth: unknown field 'weigth' (did you mean 'weight'?)"
    )
    with pytest.raises(CanaryConfigError) as refused:
        canary.apply(BROKEN / "schema-invalid")
    assert f"{finding.origin}: {finding.object}: {finding.message}" in str(refused.value)


def test_objects_too_malformed_for_the_routing_rules_still_get_their_schema_findings(
    tmp_path: Path,
) -> None:
    text = (BROKEN / "service-not-found" / "manifests.yaml").read_text()
    text = text.replace("hostnames: [shop.example.com]", "hostnames: shop.example.com")
    text = text.replace("  rules:\n", "  rules: oops\n").split("rules: oops")[0] + "rules: 7\n"
    (tmp_path / "shop.yaml").write_text(text)
    found = lint.lint_paths(tmp_path)
    assert found and {f.rule for f in found} == {"schema-invalid"}
    assert {f.message.split(":")[0] for f in found} >= {"spec.hostnames", "spec.rules"}


def test_routing_findings_carry_their_file_too() -> None:
    (finding,) = lint.lint_paths(BROKEN / "nginx-canary-path-mismatch")
    assert finding.origin.endswith("manifests.yaml, document 6")
    assert str(finding).startswith(f"Ingress/shop-canary ({finding.origin}): canary path")


# -- a Rollout's annotations for its canary Ingress ----------------------------------------


@pytest.mark.parametrize(
    ("field", "key", "finding"),
    [
        (
            "additionalIngressAnnotations",
            "canary-by-heade",
            "spec.strategy.canary.trafficRouting.nginx.additionalIngressAnnotations"
            "['canary-by-heade']='x-beta-user', copied by the controller onto its canary "
            "Ingress as canary-by-heade: no ingress-nginx parser reads it, so it has no effect "
            "(did you mean canary-by-header?)",
        ),
        (
            "canaryIngressAnnotations",
            "nginx.ingress.kubernetes.io/canary-by-heade",
            "spec.strategy.canary.trafficRouting.nginx.canaryIngressAnnotations"
            "['nginx.ingress.kubernetes.io/canary-by-heade']='x-beta-user', copied by the "
            "controller onto its canary Ingress as canary-by-heade: no ingress-nginx parser "
            "reads it, so it has no effect (did you mean canary-by-header?)",
        ),
        (
            "canaryIngressAnnotations",
            "canary-by-header",
            "spec.strategy.canary.trafficRouting.nginx.canaryIngressAnnotations"
            "['canary-by-header']='x-beta-user', copied by the controller onto its canary "
            "Ingress as canary-by-header: no ingress-nginx parser reads it, so it has no effect "
            "(did you mean nginx.ingress.kubernetes.io/canary-by-header?)",
        ),
    ],
)
def test_a_typo_in_a_rollouts_canary_ingress_annotations_is_a_finding(
    field: str, key: str, finding: str, tmp_path: Path
) -> None:
    """nginx.go buildCanaryIngress copies additionalIngressAnnotations (prefixed) and
    canaryIngressAnnotations (as written) onto the canary Ingress, where ingress-nginx reads
    only the canary annotations it knows."""
    rollouts = ROOT / "suites" / "manifests" / "rollouts" / "shop"
    text = (rollouts / "v1" / "rollout.yaml").read_text()
    old = "            canary-by-header: x-beta-user\n"
    assert old in text
    if field == "additionalIngressAnnotations":
        text = text.replace(old, f"            {key}: x-beta-user\n")
    else:
        text = text.replace(old, "").replace(
            "      steps:\n", f"          {field}:\n            {key}: x-beta-user\n      steps:\n"
        )
    (tmp_path / "rollout.yaml").write_text(text)
    (found,) = lint.lint_paths([rollouts / "routing.yaml", tmp_path])
    assert found.rule == "nginx-canary-unknown-annotation" and found.object == "Rollout/shop"
    assert found.message == finding
    assert "buildCanaryIngress" in found.upstream and "CanaryAnnotations" in found.upstream


def test_what_the_controller_overwrites_is_not_judged(tmp_path: Path) -> None:
    """canary and canary-weight are always written by the controller last."""
    rollouts = ROOT / "suites" / "manifests" / "rollouts" / "shop"
    text = (rollouts / "v1" / "rollout.yaml").read_text()
    text = text.replace('canary-by-header-value: "yes"\n', 'canary-weight: "abc"\n')
    (tmp_path / "rollout.yaml").write_text(text)
    assert "abc" in text
    assert lint.lint_paths([rollouts / "routing.yaml", tmp_path]) == []


# -- messages stay short whatever the size of the manifests ---------------------------------


def test_findings_name_the_first_ten_of_each_collection_and_count_the_rest() -> None:
    """A Service of 2,000 ports, a Gateway and a VirtualService of 300 hosts, a Gateway API
    Gateway of 64 listeners, 300 workloads: each finding names ten of each and "+k more"
    (without the cap, one finding per backend listed all 2,000 ports)."""
    deployments = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"w{i}"},
            "spec": {
                "selector": {"matchLabels": {"app": f"w{i}"}},
                "template": {
                    "metadata": {"labels": {"app": f"w{i}"}},
                    "spec": {"containers": [{"name": "c", "image": "app:1"}]},
                },
            },
        }
        for i in range(300)
    ]
    many_ports = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "app"},
        "spec": {"selector": {"app": "w0"}, "ports": [{"port": 10_000 + i} for i in range(2_000)]},
    }
    lonely = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "lonely"},
        "spec": {"selector": {"app": "nobody"}, "ports": [{"port": 80}]},
    }
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "app"},
        "spec": {
            "ingressClassName": "nginx",
            "defaultBackend": {"service": {"name": "app", "port": {"number": 1}}},
        },
    }
    istio_gateway = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                    "hosts": [f"g{i}.example.org" for i in range(300)],
                }
            ],
        },
    }
    virtual_service = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "app"},
        "spec": {
            "hosts": [f"v{i}.example.com" for i in range(300)],
            "gateways": ["gw"],
            "http": [{"route": [{"destination": {"host": "app", "port": {"number": 10_000}}}]}],
        },
    }
    api_gateway = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "api"},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [
                {"name": f"l{i}", "port": 80, "protocol": "HTTP", "hostname": f"l{i}.example.org"}
                for i in range(64)
            ],
        },
    }
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "app"},
        "spec": {
            "parentRefs": [{"name": "api"}],
            "hostnames": [f"r{i}.example.com" for i in range(16)],
            "rules": [{"backendRefs": [{"name": "app", "port": 1}]}],
        },
    }
    objects = [*deployments, many_ports, lonely, ingress, istio_gateway, virtual_service]
    findings = lint.lint([*objects, api_gateway, route])
    by_rule = {f.rule: f.message for f in findings}
    assert set(by_rule) == {
        "service-port-not-found",
        "istio-host-not-in-gateway",
        "gateway-route-not-accepted",
        "service-selects-nothing",
    }
    assert "10009, +1990 more" in by_rule["service-port-not-found"]
    assert "v9.example.com, +290 more" in by_rule["istio-host-not-in-gateway"]
    assert "g9.example.org, +290 more" in by_rule["istio-host-not-in-gateway"]
    assert "+54 more" in by_rule["gateway-route-not-accepted"]
    assert "r9.example.com, +6 more" in by_rule["gateway-route-not-accepted"]
    assert "{'app': 'w9'}; +290 more" in by_rule["service-selects-nothing"]
    assert max(len(f.message) for f in findings) < 1_500
