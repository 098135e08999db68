"""Schema checks of rendered manifests (pytest_canary.validate).

Table-driven: every kind has realistic valid examples that must pass, and broken variants
(missing required field, wrong type, bad enum, out-of-range value, unknown field, bad name,
and the in-object rules of each API) that must each produce exactly the expected Problem.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest

from pytest_canary import validate
from pytest_canary.errors import CanaryConfigError
from pytest_canary.validate import (
    Problem,
    check_objects,
    schema_version,
    shipped_kubernetes_versions,
    supported_custom_kinds,
    validate_objects,
)

Manifest = dict[str, Any]
Edit = Callable[[Manifest], None]

NGINX = "nginx.ingress.kubernetes.io/"


# --------------------------------------------------------------------------------------------
# Realistic valid manifests of a canary release of the "web" app
# --------------------------------------------------------------------------------------------


def namespace() -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": "canary-test-1", "labels": {"istio-injection": "enabled"}},
    }


def config_map() -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "web-config", "namespace": "canary-test-1"},
        "data": {"ERROR_RATE": "0.0"},
    }


def deployment(track: str = "stable", version: str = "1.0") -> Manifest:
    labels = {"app": "web", "version": version, "track": track}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": f"web-{track}",
            "labels": {**labels, "app.kubernetes.io/managed-by": "pytest-canary"},
        },
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web", "track": track}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": f"pytest-canary/sample-app:{version}",
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "env": [
                                {"name": "APP_VERSION", "value": version},
                                {
                                    "name": "POD_NAME",
                                    "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
                                },
                            ],
                            "readinessProbe": {
                                "httpGet": {"path": "/health", "port": "http"},
                                "periodSeconds": 1,
                            },
                        }
                    ],
                    "terminationGracePeriodSeconds": 10,
                },
            },
        },
    }


def service(track: str = "stable") -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"web-{track}", "labels": {"app": "web"}},
        "spec": {
            "selector": {"app": "web", "track": track},
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def ingress(track: str = "stable", annotations: dict[str, str] | None = None) -> Manifest:
    metadata: Manifest = {"name": f"web-{track}"}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "web.canary.test",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": f"web-{track}", "port": {"number": 80}}
                                },
                            }
                        ]
                    },
                }
            ],
        },
    }


def canary_ingress() -> Manifest:
    return ingress(
        "canary",
        {
            NGINX + "canary": "true",
            NGINX + "canary-weight": "20",
            NGINX + "canary-weight-total": "100",
            NGINX + "canary-by-header": "X-Canary",
            NGINX + "canary-by-header-value": "yes",
            NGINX + "canary-by-cookie": "canary",
        },
    )


def virtual_service(api_version: str = "networking.istio.io/v1") -> Manifest:
    host = "web.canary-test-1.svc.cluster.local"
    return {
        "apiVersion": api_version,
        "kind": "VirtualService",
        "metadata": {"name": "web"},
        "spec": {
            "hosts": [host],
            "gateways": ["mesh", "istio-system/web-gateway"],
            "http": [
                {
                    "name": "canary-by-header",
                    "match": [
                        {"headers": {"x-canary": {"exact": "always"}}, "uri": {"prefix": "/"}}
                    ],
                    "route": [{"destination": {"host": host, "subset": "v2"}}],
                },
                {
                    "name": "canary-by-source",
                    "match": [{"sourceLabels": {"app": "frontend", "version": "v2"}}],
                    "route": [{"destination": {"host": host, "subset": "v2"}}],
                },
                {
                    "name": "weighted",
                    "route": [
                        {"destination": {"host": host, "subset": "v1"}, "weight": 80},
                        {
                            "destination": {"host": host, "subset": "v2", "port": {"number": 80}},
                            "weight": 20,
                        },
                    ],
                    "timeout": "5s",
                    "retries": {"attempts": 2, "perTryTimeout": "2s", "retryOn": "5xx"},
                },
            ],
        },
    }


def destination_rule(api_version: str = "networking.istio.io/v1") -> Manifest:
    return {
        "apiVersion": api_version,
        "kind": "DestinationRule",
        "metadata": {"name": "web"},
        "spec": {
            "host": "web.canary-test-1.svc.cluster.local",
            "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}},
            "subsets": [
                {"name": "v1", "labels": {"app": "web", "version": "1.0"}},
                {
                    "name": "v2",
                    "labels": {"app": "web", "version": "2.0"},
                    "trafficPolicy": {"tls": {"mode": "ISTIO_MUTUAL"}},
                },
            ],
        },
    }


def http_route() -> Manifest:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {
            "parentRefs": [{"name": "web-gateway", "sectionName": "http"}],
            "hostnames": ["web.canary.test"],
            "rules": [
                {
                    "name": "canary-by-header",
                    "matches": [
                        {
                            "path": {"type": "PathPrefix", "value": "/"},
                            "headers": [
                                {
                                    "type": "RegularExpression",
                                    "name": "X-Canary",
                                    "value": "^(always|yes)$",
                                }
                            ],
                        }
                    ],
                    "backendRefs": [{"name": "web-canary", "port": 80}],
                },
                {
                    "name": "weighted",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"name": "web-stable", "port": 80, "weight": 80},
                        {"name": "web-canary", "port": 80, "weight": 20},
                    ],
                    "timeouts": {"request": "10s", "backendRequest": "5s"},
                },
            ],
        },
    }


def gateway() -> Manifest:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": {"name": "web-gateway"},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [
                {
                    "name": "http",
                    "port": 80,
                    "protocol": "HTTP",
                    "hostname": "*.canary.test",
                    "allowedRoutes": {"namespaces": {"from": "Same"}},
                },
                {
                    "name": "https",
                    "port": 443,
                    "protocol": "HTTPS",
                    "tls": {"mode": "Terminate", "certificateRefs": [{"name": "web-tls"}]},
                    "allowedRoutes": {
                        "namespaces": {
                            "from": "Selector",
                            "selector": {"matchLabels": {"canary": "yes"}},
                        },
                        "kinds": [{"kind": "HTTPRoute"}],
                    },
                },
            ],
        },
    }


def gateway_class() -> Manifest:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": "istio"},
        "spec": {"controllerName": "istio.io/gateway-controller", "description": "Istio"},
    }


VALID: dict[str, Callable[[], Manifest]] = {
    "namespace": namespace,
    "configmap": config_map,
    "deployment-stable": deployment,
    "deployment-canary": lambda: deployment("canary", "2.0"),
    "service": service,
    "ingress-main": ingress,
    "ingress-nginx-canary": canary_ingress,
    "virtualservice-v1": virtual_service,
    "virtualservice-v1beta1": lambda: virtual_service("networking.istio.io/v1beta1"),
    "virtualservice-v1alpha3": lambda: virtual_service("networking.istio.io/v1alpha3"),
    "destinationrule-v1": destination_rule,
    "destinationrule-v1beta1": lambda: destination_rule("networking.istio.io/v1beta1"),
    "httproute": http_route,
    "gateway": gateway,
    "gatewayclass": gateway_class,
}


@pytest.mark.parametrize("make", VALID.values(), ids=VALID.keys())
def test_valid_manifest_has_no_problems(make: Callable[[], Manifest]) -> None:
    assert validate_objects([make()]) == []


def test_a_whole_release_validates_together() -> None:
    objects = [make() for make in VALID.values()]
    assert validate_objects(objects) == []
    check_objects(objects)


# --------------------------------------------------------------------------------------------
# Broken variants
# --------------------------------------------------------------------------------------------

DELETE = object()


def change(*path: str | int, to: object) -> Edit:
    """An edit setting (or, with ``to=DELETE``, removing) the field at ``path``."""

    def edit(obj: Manifest) -> None:
        parent: Any = obj
        for part in path[:-1]:
            parent = parent[part]
        if to is DELETE:
            del parent[path[-1]]
        else:
            parent[path[-1]] = copy.deepcopy(to)

    return edit


def append(*path: str | int, item: object, times: int = 1) -> Edit:
    def edit(obj: Manifest) -> None:
        target: Any = obj
        for part in path:
            target = target[part]
        target.extend(copy.deepcopy(item) for _ in range(times))

    return edit


def replace_prefix_with_exact_match(route: Manifest) -> None:
    rule = route["spec"]["rules"][1]
    rule["matches"][0]["path"]["type"] = "Exact"
    rule["filters"] = [
        {
            "type": "URLRewrite",
            "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}},
        }
    ]


def redirect_with_status(status: int) -> Edit:
    def edit(route: Manifest) -> None:
        rule = route["spec"]["rules"][1]
        del rule["backendRefs"]
        rule["filters"] = [{"type": "RequestRedirect", "requestRedirect": {"statusCode": status}}]

    return edit


@dataclass(frozen=True)
class Broken:
    """One broken variant: ``edit`` applied to ``make()`` gives exactly ``paths``."""

    id: str
    make: Callable[[], Manifest]
    edit: Edit
    paths: tuple[str, ...]
    says: str  # a fragment of the (first) problem's message


ROUTE = ("spec", "rules")
VS_HTTP = ("spec", "http")

BROKEN: list[Broken] = [
    # --- Deployment (kubernetes-validate strict schema) ----------------------------------
    Broken(
        "deployment-missing-containers",
        deployment,
        change("spec", "template", "spec", "containers", to=DELETE),
        ("spec.template.spec.containers",),
        "required field is missing",
    ),
    Broken(
        "deployment-replicas-wrong-type",
        deployment,
        change("spec", "replicas", to="3"),
        ("spec.replicas",),
        'got string "3"; must be an integer',
    ),
    Broken(
        "deployment-unknown-field",
        deployment,
        change("spec", "replcas", to=3),
        ("spec.replcas",),
        "unknown field 'replcas' (did you mean 'replicas'?)",
    ),
    Broken(
        "deployment-container-port-wrong-type",
        deployment,
        change("spec", "template", "spec", "containers", 0, "ports", 0, "containerPort", to="8080"),
        ("spec.template.spec.containers[0].ports[0].containerPort",),
        "must be an integer",
    ),
    Broken(
        "deployment-bad-name",
        deployment,
        change("metadata", "name", to="Web_Stable"),
        ("metadata.name",),
        '"Web_Stable" is not a valid name; must be a DNS-1123 subdomain',
    ),
    Broken(
        "deployment-missing-name",
        deployment,
        change("metadata", "name", to=DELETE),
        ("metadata.name",),
        "required field is missing",
    ),
    Broken(
        "deployment-bad-pod-label-value",
        deployment,
        change("spec", "template", "metadata", "labels", "version", to="2.0+build.7"),
        ("spec.template.metadata.labels.version",),
        'got "2.0+build.7"; must be a label value',
    ),
    Broken(
        "deployment-bad-label-key",
        deployment,
        change("metadata", "labels", "-app", to="web"),
        ('metadata.labels["-app"]',),
        "key",
    ),
    Broken(
        "deployment-bad-namespace",
        deployment,
        change("metadata", "namespace", to="Canary.Test"),
        ("metadata.namespace",),
        "DNS-1123 label",
    ),
    # --- Service ---------------------------------------------------------------------------
    Broken(
        "service-name-not-dns-1035",
        service,
        change("metadata", "name", to="1web"),
        ("metadata.name",),
        "DNS-1035 label",
    ),
    Broken(
        "service-missing-port",
        service,
        change("spec", "ports", 0, "port", to=DELETE),
        ("spec.ports[0].port",),
        "required field is missing; must be an integer",
    ),
    Broken(
        "service-unknown-field",
        service,
        change("spec", "selectors", to={"app": "web"}),
        ("spec.selectors",),
        "did you mean 'selector'?",
    ),
    Broken(
        "service-bad-selector-value",
        service,
        change("spec", "selector", "track", to="canary!"),
        ("spec.selector.track",),
        "label value",
    ),
    # --- Ingress (ingress-nginx canary) -------------------------------------------------------
    Broken(
        "ingress-annotation-not-a-string",
        canary_ingress,
        change("metadata", "annotations", NGINX + "canary-weight", to=20),
        (f'metadata.annotations["{NGINX}canary-weight"]',),
        "got integer 20; must be a string",
    ),
    Broken(
        "ingress-bad-annotation-key",
        canary_ingress,
        change("metadata", "annotations", NGINX + "canary weight", to="20"),
        (f'metadata.annotations["{NGINX}canary weight"]',),
        "is not valid; must be a qualified name",
    ),
    Broken(
        "ingress-missing-path-type",
        canary_ingress,
        change("spec", "rules", 0, "http", "paths", 0, "pathType", to=DELETE),
        ("spec.rules[0].http.paths[0].pathType",),
        "required field is missing; must be a string",
    ),
    Broken(
        "ingress-backend-missing-service-name",
        ingress,
        change("spec", "rules", 0, "http", "paths", 0, "backend", "service", "name", to=DELETE),
        ("spec.rules[0].http.paths[0].backend.service.name",),
        "required field is missing",
    ),
    Broken(
        "ingress-unknown-field",
        ingress,
        change("spec", "ingressClass", to="nginx"),
        ("spec.ingressClass",),
        "did you mean 'ingressClassName'?",
    ),
    # --- Istio VirtualService --------------------------------------------------------------
    Broken(
        "virtualservice-missing-hosts",
        virtual_service,
        change("spec", "hosts", to=DELETE),
        ("spec.hosts",),
        "required field is missing; must be a list",
    ),
    Broken(
        "virtualservice-uri-two-match-types",
        virtual_service,
        change(*VS_HTTP, 0, "match", 0, "uri", to={"exact": "/", "prefix": "/"}),
        ("spec.http[0].match[0].uri",),
        "sets exact, prefix; must set exactly one of exact, prefix, regex",
    ),
    Broken(
        "virtualservice-uri-no-match-type",
        virtual_service,
        change(*VS_HTTP, 0, "match", 0, "uri", to={}),
        ("spec.http[0].match[0].uri",),
        "sets none; must set exactly one of exact, prefix, regex",
    ),
    Broken(
        "virtualservice-header-bad-match-type",
        virtual_service,
        change(*VS_HTTP, 0, "match", 0, "headers", "x-canary", to={"glob": "al*"}),
        ("spec.http[0].match[0].headers.x-canary.glob",),
        "unknown field 'glob'; allowed fields: exact, prefix, regex",
    ),
    Broken(
        "virtualservice-header-empty-regex",
        virtual_service,
        change(*VS_HTTP, 0, "match", 0, "headers", "x-canary", to={"regex": ""}),
        ("spec.http[0].match[0].headers.x-canary.regex",),
        "a regex match must not be empty",
    ),
    Broken(
        "virtualservice-header-name-uppercase",
        virtual_service,
        change(*VS_HTTP, 0, "match", 0, "headers", to={"X-Canary": {"exact": "always"}}),
        ("spec.http[0].match[0].headers.X-Canary",),
        "must be lowercase",
    ),
    Broken(
        "virtualservice-negative-weight",
        virtual_service,
        change(*VS_HTTP, 2, "route", 0, "weight", to=-5),
        ("spec.http[2].route[0].weight",),
        "got -5; must be an integer from 0 to 2147483647",
    ),
    Broken(
        "virtualservice-weight-wrong-type",
        virtual_service,
        change(*VS_HTTP, 2, "route", 1, "weight", to="20"),
        ("spec.http[2].route[1].weight",),
        'got string "20"; must be an integer',
    ),
    Broken(
        "virtualservice-all-weights-zero",
        virtual_service,
        lambda vs: [route.update(weight=0) for route in vs["spec"]["http"][2]["route"]].clear(),
        ("spec.http[2].route",),
        "must not sum to 0",
    ),
    Broken(
        "virtualservice-destination-missing-host",
        virtual_service,
        change(*VS_HTTP, 2, "route", 0, "destination", "host", to=DELETE),
        ("spec.http[2].route[0].destination.host",),
        "required field is missing",
    ),
    Broken(
        "virtualservice-subset-not-dns-label",
        virtual_service,
        change(*VS_HTTP, 2, "route", 1, "destination", "subset", to="V2"),
        ("spec.http[2].route[1].destination.subset",),
        'got "V2"; must be a DNS-1123 label',
    ),
    Broken(
        "virtualservice-unknown-field",
        virtual_service,
        change(*VS_HTTP, 1, "matches", to=[]),
        ("spec.http[1].matches",),
        "did you mean 'match'?",
    ),
    Broken(
        "virtualservice-route-without-action",
        virtual_service,
        change(*VS_HTTP, 1, "route", to=DELETE),
        ("spec.http[1]",),
        "has no action; must set one of route, redirect, directResponse, delegate",
    ),
    Broken(
        "virtualservice-route-and-redirect",
        virtual_service,
        change(*VS_HTTP, 1, "redirect", to={"uri": "/v2"}),
        ("spec.http[1]",),
        "sets route, redirect; must set only one of them",
    ),
    Broken(
        "virtualservice-source-labels-without-mesh",
        virtual_service,
        change("spec", "gateways", to=["istio-system/web-gateway"]),
        ("spec.http[1].match[0].sourceLabels",),
        "does not include 'mesh'",
    ),
    Broken(
        "virtualservice-source-labels-bad-value",
        virtual_service,
        change(*VS_HTTP, 1, "match", 0, "sourceLabels", "version", to="v2 beta"),
        ("spec.http[1].match[0].sourceLabels.version",),
        "label value",
    ),
    Broken(
        "virtualservice-bad-gateway-name",
        virtual_service,
        change("spec", "gateways", 1, to="istio-system/Web_Gateway"),
        ("spec.gateways[1]",),
        "must be 'mesh', '<gateway name>' or '<namespace>/<gateway name>'",
    ),
    Broken(
        "virtualservice-wildcard-host-in-mesh",
        virtual_service,
        change("spec", "hosts", 0, to="*"),
        ("spec.hosts[0]",),
        "wildcard host is not allowed",
    ),
    Broken(
        "virtualservice-bad-timeout",
        virtual_service,
        change(*VS_HTTP, 2, "timeout", to="5 seconds"),
        ("spec.http[2].timeout",),
        "a duration like 5s",
    ),
    Broken(
        "virtualservice-unserved-api-version",
        virtual_service,
        change("apiVersion", to="networking.istio.io/v2"),
        ("apiVersion",),
        "does not serve VirtualService; must be one of networking.istio.io/v1",
    ),
    Broken(
        "virtualservice-bad-name",
        virtual_service,
        change(
            "metadata",
            "name",
            to="web.canary.",
        ),
        ("metadata.name",),
        "DNS-1123 subdomain",
    ),
    # --- Istio DestinationRule -------------------------------------------------------------
    Broken(
        "destinationrule-missing-host",
        destination_rule,
        change("spec", "host", to=DELETE),
        ("spec.host",),
        "required field is missing",
    ),
    Broken(
        "destinationrule-subset-missing-name",
        destination_rule,
        change("spec", "subsets", 1, "name", to=DELETE),
        ("spec.subsets[1].name",),
        "required field is missing; must be a DNS-1123 label",
    ),
    Broken(
        "destinationrule-subset-name-not-dns-label",
        destination_rule,
        change("spec", "subsets", 1, "name", to="v2.0"),
        ("spec.subsets[1].name",),
        'got "v2.0"; must be a DNS-1123 label',
    ),
    Broken(
        "destinationrule-duplicate-subset",
        destination_rule,
        change("spec", "subsets", 1, "name", to="v1"),
        ("spec.subsets[1].name",),
        'duplicate subset name "v1"',
    ),
    Broken(
        "destinationrule-labels-wrong-type",
        destination_rule,
        change("spec", "subsets", 0, "labels", to=["version=v1"]),
        ("spec.subsets[0].labels",),
        "got list",
    ),
    Broken(
        "destinationrule-label-value-not-string",
        destination_rule,
        change("spec", "subsets", 0, "labels", "version", to=1.0),
        ("spec.subsets[0].labels.version",),
        "got number 1.0; must be a string",
    ),
    Broken(
        "destinationrule-bad-label-value",
        destination_rule,
        change("spec", "subsets", 0, "labels", "version", to="1.0+b"),
        ("spec.subsets[0].labels.version",),
        "label value",
    ),
    Broken(
        "destinationrule-bad-load-balancer",
        destination_rule,
        change("spec", "trafficPolicy", "loadBalancer", "simple", to="FASTEST"),
        ("spec.trafficPolicy.loadBalancer.simple",),
        'got "FASTEST"; must be one of UNSPECIFIED, LEAST_CONN',
    ),
    Broken(
        "destinationrule-unknown-field",
        destination_rule,
        change("spec", "subset", to=[]),
        ("spec.subset",),
        "did you mean 'subsets'?",
    ),
    # --- Gateway API HTTPRoute -------------------------------------------------------------
    Broken(
        "httproute-weight-above-max",
        http_route,
        change(*ROUTE, 1, "backendRefs", 0, "weight", to=1_000_001),
        ("spec.rules[1].backendRefs[0].weight",),
        "got 1000001; must be an integer from 0 to 1000000",
    ),
    Broken(
        "httproute-negative-weight",
        http_route,
        change(*ROUTE, 1, "backendRefs", 1, "weight", to=-1),
        ("spec.rules[1].backendRefs[1].weight",),
        "got -1; must be an integer from 0 to 1000000",
    ),
    Broken(
        "httproute-weight-wrong-type",
        http_route,
        change(*ROUTE, 1, "backendRefs", 1, "weight", to="20%"),
        ("spec.rules[1].backendRefs[1].weight",),
        'got string "20%"; must be an integer',
    ),
    Broken(
        "httproute-bad-path-match-type",
        http_route,
        change(*ROUTE, 1, "matches", 0, "path", "type", to="Prefix"),
        ("spec.rules[1].matches[0].path.type",),
        'got "Prefix"; must be one of Exact, PathPrefix, RegularExpression',
    ),
    Broken(
        "httproute-bad-header-match-type",
        http_route,
        change(*ROUTE, 0, "matches", 0, "headers", 0, "type", to="PathPrefix"),
        ("spec.rules[0].matches[0].headers[0].type",),
        'got "PathPrefix"; must be one of Exact, RegularExpression',
    ),
    Broken(
        "httproute-header-missing-value",
        http_route,
        change(*ROUTE, 0, "matches", 0, "headers", 0, "value", to=DELETE),
        ("spec.rules[0].matches[0].headers[0].value",),
        "required field is missing",
    ),
    Broken(
        "httproute-bad-header-name",
        http_route,
        change(*ROUTE, 0, "matches", 0, "headers", 0, "name", to="x canary"),
        ("spec.rules[0].matches[0].headers[0].name",),
        "an HTTP header name",
    ),
    Broken(
        "httproute-relative-path",
        http_route,
        change(*ROUTE, 1, "matches", 0, "path", "value", to="api"),
        ("spec.rules[1].matches[0].path.value",),
        "must be absolute: start with '/'",
    ),
    Broken(
        "httproute-missing-parent-refs",
        http_route,
        change("spec", "parentRefs", to=DELETE),
        ("spec.parentRefs",),
        "attaches nowhere",
    ),
    Broken(
        "httproute-too-many-backend-refs",
        http_route,
        append(*ROUTE, 1, "backendRefs", item={"name": "web-extra", "port": 80}, times=15),
        ("spec.rules[1].backendRefs",),
        "got 17 items; must have at most 16",
    ),
    Broken(
        "httproute-too-many-rules",
        http_route,
        append(*ROUTE, item={"backendRefs": [{"name": "web-stable", "port": 80}]}, times=15),
        ("spec.rules",),
        "got 17 items; must have at most 16",
    ),
    Broken(
        "httproute-bad-hostname",
        http_route,
        change("spec", "hostnames", 0, to="Web.Canary.Test"),
        ("spec.hostnames[0]",),
        "must be a lowercase RFC 1123 hostname",
    ),
    Broken(
        "httproute-hostname-with-port",
        http_route,
        change("spec", "hostnames", 0, to="10.0.0.1:80"),
        ("spec.hostnames[0]",),
        "no IP addresses",
    ),
    Broken(
        "httproute-ip-address-hostname",
        http_route,
        change("spec", "hostnames", 0, to="10.0.0.1"),
        ("spec.hostnames[0]",),
        'got "10.0.0.1"; must be a hostname: IP addresses are not allowed',
    ),
    Broken(
        "httproute-unknown-field",
        http_route,
        change(*ROUTE, 1, "backendRefs", 0, "weigth", to=80),
        ("spec.rules[1].backendRefs[0].weigth",),
        "did you mean 'weight'?",
    ),
    Broken(
        "httproute-service-backend-without-port",
        http_route,
        change(*ROUTE, 0, "backendRefs", 0, "port", to=DELETE),
        ("spec.rules[0].backendRefs[0].port",),
        "must set the Service port",
    ),
    Broken(
        "httproute-backend-missing-name",
        http_route,
        change(*ROUTE, 0, "backendRefs", 0, "name", to=DELETE),
        ("spec.rules[0].backendRefs[0].name",),
        "required field is missing",
    ),
    Broken(
        "httproute-filter-field-without-type",
        http_route,
        change(
            *ROUTE,
            0,
            "filters",
            to=[{"type": "RequestHeaderModifier", "urlRewrite": {"hostname": "web"}}],
        ),
        (
            "spec.rules[0].filters[0].requestHeaderModifier",
            "spec.rules[0].filters[0].urlRewrite",
        ),
        "required field is missing; must be set when type is 'RequestHeaderModifier'",
    ),
    Broken(
        "httproute-duplicate-rule-name",
        http_route,
        change(*ROUTE, 1, "name", to="canary-by-header"),
        ("spec.rules[1].name",),
        "rule names must be unique",
    ),
    Broken(
        "httproute-backend-timeout-longer-than-request",
        http_route,
        change(*ROUTE, 1, "timeouts", "backendRequest", to="1m"),
        ("spec.rules[1].timeouts.backendRequest",),
        'must not be longer than the request timeout "10s"',
    ),
    Broken(
        "httproute-experimental-field",
        http_route,
        change(*ROUTE, 1, "sessionPersistence", to={"sessionName": "canary"}),
        ("spec.rules[1].sessionPersistence",),
        "unknown field 'sessionPersistence'",
    ),
    Broken(
        "httproute-missing-spec",
        http_route,
        change("spec", to=DELETE),
        ("spec",),
        "required field is missing; must be a mapping",
    ),
    Broken(
        "httproute-replace-prefix-needs-one-prefix-match",
        http_route,
        replace_prefix_with_exact_match,
        ("spec.rules[1].matches",),
        "must be exactly one PathPrefix match",
    ),
    Broken(
        "httproute-redirect-with-backend-refs",
        http_route,
        change(*ROUTE, 1, "filters", to=[{"type": "RequestRedirect", "requestRedirect": {}}]),
        ("spec.rules[1].filters",),
        "has a RequestRedirect filter and backendRefs",
    ),
    Broken(
        "httproute-bad-redirect-status",
        http_route,
        redirect_with_status(300),
        ("spec.rules[1].filters[0].requestRedirect.statusCode",),
        "got 300; must be one of 301, 302, 303, 307, 308",
    ),
    Broken(
        "gateway-missing-listeners",
        gateway,
        change("spec", "listeners", to=DELETE),
        ("spec.listeners",),
        "required field is missing; must be a list",
    ),
    Broken(
        "gateway-empty-listeners",
        gateway,
        change("spec", "listeners", to=[]),
        ("spec.listeners",),
        "got 0 items; must have at least 1",
    ),
    Broken(
        "gateway-missing-class",
        gateway,
        change("spec", "gatewayClassName", to=DELETE),
        ("spec.gatewayClassName",),
        "required field is missing",
    ),
    Broken(
        "gateway-port-out-of-range",
        gateway,
        change("spec", "listeners", 0, "port", to=70000),
        ("spec.listeners[0].port",),
        "got 70000; must be an integer from 1 to 65535",
    ),
    Broken(
        "gateway-bad-from",
        gateway,
        change("spec", "listeners", 0, "allowedRoutes", "namespaces", "from", to="None"),
        ("spec.listeners[0].allowedRoutes.namespaces.from",),
        'got "None"; must be one of All, Selector, Same',
    ),
    Broken(
        "gateway-duplicate-listener-name",
        gateway,
        change("spec", "listeners", 1, "name", to="http"),
        ("spec.listeners[1].name",),
        "listener names must be unique",
    ),
    Broken(
        "gateway-tls-on-http",
        gateway,
        change("spec", "listeners", 0, "tls", to={"certificateRefs": [{"name": "web-tls"}]}),
        ("spec.listeners[0].tls",),
        "must not be set for protocol HTTP",
    ),
    Broken(
        "gateway-bad-selector",
        gateway,
        change("spec", "listeners", 1, "allowedRoutes", "namespaces", "selector", to={"app": "x"}),
        ("spec.listeners[1].allowedRoutes.namespaces.selector.app",),
        "unknown field 'app'; allowed fields: matchExpressions, matchLabels",
    ),
    Broken(
        "gateway-unknown-field",
        gateway,
        change("spec", "listener", to=[]),
        ("spec.listener",),
        "did you mean 'listeners'?",
    ),
    Broken(
        "gateway-https-passthrough",
        gateway,
        change("spec", "listeners", 1, "tls", "mode", to="Passthrough"),
        ("spec.listeners[1].tls.mode",),
        "must be 'Terminate' for HTTPS",
    ),
    Broken(
        "gateway-terminate-without-certificates",
        gateway,
        change("spec", "listeners", 1, "tls", "certificateRefs", to=[]),
        ("spec.listeners[1].tls",),
        "mode Terminate needs certificateRefs",
    ),
    # --- Gateway API GatewayClass ----------------------------------------------------------
    Broken(
        "gatewayclass-controller-without-path",
        gateway_class,
        change("spec", "controllerName", to="istio.io"),
        ("spec.controllerName",),
        "a domain-prefixed path like 'example.net/gateway-controller'",
    ),
    Broken(
        "gatewayclass-description-too-long",
        gateway_class,
        change("spec", "description", to="x" * 65),
        ("spec.description",),
        "got 65 characters; must be a string of at most 64 characters",
    ),
    Broken(
        "gatewayclass-missing-controller",
        gateway_class,
        change("spec", "controllerName", to=DELETE),
        ("spec.controllerName",),
        "required field is missing",
    ),
]


@pytest.mark.parametrize("case", BROKEN, ids=[case.id for case in BROKEN])
def test_broken_manifest_reports_the_field(case: Broken) -> None:
    obj = case.make()
    case.edit(obj)

    problems = validate_objects([obj])

    assert [problem.path for problem in problems] == list(case.paths), problems
    assert case.says in problems[0].message, problems[0]
    assert {problem.kind for problem in problems} == {obj["kind"]}


def test_problem_names_object_field_value_and_allowed_range() -> None:
    route = http_route()
    route["spec"]["rules"][1]["backendRefs"][0]["weight"] = 2_000_000

    [problem] = validate_objects([route])

    assert problem == Problem(
        "HTTPRoute",
        "web",
        "spec.rules[1].backendRefs[0].weight",
        "got 2000000; must be an integer from 0 to 1000000",
    )
    assert str(problem) == (
        "HTTPRoute/web: spec.rules[1].backendRefs[0].weight: "
        "got 2000000; must be an integer from 0 to 1000000"
    )


@pytest.mark.parametrize("count", [1, 10_000])
def test_annotations_over_256_kib_are_refused_as_the_api_server_does(count: int) -> None:
    """objectmeta.go ValidateAnnotationsSize: one 3 MB annotation or 10,000 of 30 bytes."""
    dep = deployment()
    value = "x" * (3_000_000 // count)
    dep["metadata"]["annotations"] = {f"example.com/a{i}": value for i in range(count)}

    [problem] = validate_objects([dep])

    assert problem.path == "metadata.annotations"
    assert problem.message.startswith("Too long: may not be more than 262144 bytes")
    dep["metadata"]["annotations"] = {"example.com/a": "x" * 200_000}
    assert validate_objects([dep]) == []


def test_every_problem_of_an_object_is_reported() -> None:
    dep = deployment()
    dep["spec"]["replicas"] = "3"
    dep["spec"]["paused"] = "no"
    dep["spec"]["bogus"] = 1
    del dep["spec"]["selector"]

    paths = [problem.path for problem in validate_objects([dep])]

    assert paths == ["spec.bogus", "spec.paused", "spec.replicas", "spec.selector"]


def test_list_indices_sort_numerically() -> None:
    route = http_route()
    for _ in range(10):
        route["spec"]["rules"].append({"backendRefs": [{"name": "web-stable", "port": 80}]})
    route["spec"]["rules"][2]["backendRefs"][0]["weight"] = -1
    route["spec"]["rules"][10]["backendRefs"][0]["weight"] = -1

    paths = [problem.path for problem in validate_objects([route])]

    assert paths == ["spec.rules[2].backendRefs[0].weight", "spec.rules[10].backendRefs[0].weight"]


def test_istio_header_presence_match_is_valid() -> None:
    # virtual_service.proto HTTPMatchRequest.headers: `{}` checks that the header is present;
    # withoutHeaders regex "*" means "present" too (istio validateHTTPRouteMatchRequest).
    vs = virtual_service()
    vs["spec"]["http"][0]["match"][0]["headers"] = {"x-canary": {}}
    vs["spec"]["http"][0]["match"][0]["withoutHeaders"] = {"x-debug": {"regex": "*"}}

    assert validate_objects([vs]) == []


def test_httproute_to_a_mesh_service_parent_is_valid() -> None:
    route = http_route()
    route["spec"]["parentRefs"] = [{"group": "", "kind": "Service", "name": "web", "port": 80}]
    del route["spec"]["hostnames"]

    assert validate_objects([route]) == []


# --------------------------------------------------------------------------------------------
# Objects that are not usable at all
# --------------------------------------------------------------------------------------------


def test_unknown_kind_is_a_missing_schema_problem() -> None:
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}

    [problem] = validate_objects([widget])

    assert (problem.kind, problem.name, problem.path) == ("Widget", "w", "kind")
    assert problem.message.startswith("no schema for example.com/v1/Widget")
    assert problem.missing_schema


def test_core_kind_name_under_another_group_has_no_schema() -> None:
    # kubernetes-validate files are named by the group's first label only: the group must
    # still match exactly.
    fake = {"apiVersion": "networking.istio.io/v1", "kind": "Ingress", "metadata": {"name": "w"}}

    [problem] = validate_objects([fake])

    assert problem.missing_schema


def test_missing_api_version_and_kind() -> None:
    problems = validate_objects([{"metadata": {"name": "web"}}])

    assert [(p.kind, p.name, p.path) for p in problems] == [
        ("<no kind>", "web", "apiVersion"),
        ("<no kind>", "web", "kind"),
    ]
    assert "required field is missing" in problems[0].message


def test_object_that_is_not_a_mapping() -> None:
    [problem] = validate_objects([["apiVersion", "v1"]])  # type: ignore[list-item]

    assert problem.path == "(object)"
    assert "must be a mapping" in problem.message


def test_unnamed_object_is_named_by_its_position() -> None:
    cm = config_map()
    del cm["metadata"]

    [problem] = validate_objects([namespace(), cm])

    assert (problem.name, problem.path) == ("<unnamed, item 1>", "metadata.name")


# --------------------------------------------------------------------------------------------
# check_objects
# --------------------------------------------------------------------------------------------


def test_check_objects_lists_every_problem_one_per_line() -> None:
    dep = deployment()
    dep["spec"]["replicas"] = "3"
    route = http_route()
    route["spec"]["rules"][1]["backendRefs"][1]["weight"] = 1_000_001

    with pytest.raises(CanaryConfigError) as raised:
        check_objects([dep, service(), route])

    lines = str(raised.value).splitlines()
    assert lines[0].startswith("2 problems in the manifests (Kubernetes 1.34 schemas")
    assert lines[1:] == [
        'Deployment/web-stable: spec.replicas: got string "3"; must be an integer',
        "HTTPRoute/web: spec.rules[1].backendRefs[1].weight: "
        "got 1000001; must be an integer from 0 to 1000000",
    ]


def test_check_objects_passes_valid_objects() -> None:
    check_objects([deployment(), service(), canary_ingress()])


def test_check_objects_can_ignore_kinds_without_schema() -> None:
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}

    with pytest.raises(CanaryConfigError, match=r"no schema for example\.com/v1/Widget"):
        check_objects([widget])
    check_objects([widget], ignore_missing_schemas=True)


# --------------------------------------------------------------------------------------------
# Kubernetes versions and schemas
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "used"),
    [("1.34", "1.34"), ("v1.34", "1.34"), ("1.34.7", "1.34"), ("1.31", "1.31")],
)
def test_schema_version_uses_the_asked_minor_when_shipped(asked: str, used: str) -> None:
    assert schema_version(asked) == used


def test_schema_version_falls_back_to_the_closest_shipped() -> None:
    shipped = shipped_kubernetes_versions()

    assert schema_version("1.999") == shipped[-1]
    assert schema_version("1.0") == shipped[0]


def test_bad_kubernetes_version_is_a_config_error() -> None:
    with pytest.raises(CanaryConfigError, match="kubernetes_version='latest'"):
        validate_objects([], kubernetes_version="latest")


def test_core_kinds_follow_the_kubernetes_version() -> None:
    # Service.spec.trafficDistribution appeared in Kubernetes 1.30.
    svc = service()
    svc["spec"]["trafficDistribution"] = "PreferClose"

    assert validate_objects([svc], kubernetes_version="1.34") == []
    [problem] = validate_objects([svc], kubernetes_version="1.29")
    assert problem.path == "spec.trafficDistribution"


def test_custom_schemas_are_valid_json_schemas() -> None:
    for schema in (
        validate.VIRTUAL_SERVICE_SCHEMA,
        validate.DESTINATION_RULE_SCHEMA,
        validate.HTTP_ROUTE_SCHEMA,
        validate.GATEWAY_SCHEMA,
        validate.GATEWAY_CLASS_SCHEMA,
    ):
        jsonschema.Draft202012Validator.check_schema(schema)


def test_supported_custom_kinds() -> None:
    kinds = supported_custom_kinds()

    assert kinds["VirtualService"] == (
        "networking.istio.io/v1",
        "networking.istio.io/v1beta1",
        "networking.istio.io/v1alpha3",
    )
    assert kinds["HTTPRoute"] == ("gateway.networking.k8s.io/v1",)


def test_fifty_objects_validate_in_well_under_a_second() -> None:
    objects = [make() for make in VALID.values()] * 4  # 60 objects, every kind
    # From cold: the 1.5 MB Kubernetes definitions and every validator built once, then cached.
    for cached in (validate._registry, validate._core_validator, validate._custom_validator):
        cached.cache_clear()

    started = time.perf_counter()
    problems = validate_objects(objects)
    elapsed = time.perf_counter() - started

    assert problems == []
    assert elapsed < 1.0


# -- Argo Rollouts -----------------------------------------------------------------------------


def _rollout(**canary: object) -> dict[str, object]:
    from pytest_canary import build_spec
    from pytest_canary.manifests import render

    obj = render(build_spec("rollouts", "1.0", "2.0", steps=[{"setWeight": 20}]))[0]
    obj["spec"]["strategy"]["canary"].update(canary)
    return obj


def test_rollout_schema_accepts_the_canary_fields_and_checks_the_pod_template() -> None:
    """argoproj/argo-rollouts v1.9.1 rollout-crd.yaml; the template is a Kubernetes
    PodTemplateSpec."""
    assert validate_objects([_rollout(maxSurge="25%", maxUnavailable=0)]) == []
    broken = _rollout(steps=[{"pause": {"duration": [5]}}, {"setWieght": 1}])
    broken["spec"]["template"]["spec"]["containers"][0]["image"] = 5
    assert {(p.path, p.message.split(";")[0]) for p in validate_objects([broken])} == {
        ("spec.strategy.canary.steps[0].pause.duration", "got list [5]"),
        (
            "spec.strategy.canary.steps[1].setWieght",
            "unknown field 'setWieght' (did you mean 'setWeight'?)",
        ),
        ("spec.template.spec.containers[0].image", "got integer 5"),
    }
