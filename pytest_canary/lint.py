"""Findings: routing mistakes that upstream data planes accept silently, found before traffic.

One job: look across a set of Kubernetes objects and report every configuration the real
data plane would drop, reject or answer with an error page, each as a :class:`Finding` that
names the rule and the upstream behaviour behind it. Where a data-plane model of
``pytest_canary.dataplane`` already decides the behaviour, the finding is read from the
model (its configuration and its ``log``) instead of being re-derived here, so the local
backend and the linter cannot disagree.

Example:
    >>> from pytest_canary.byo import load               # doctest: +SKIP
    >>> for finding in lint(load("deploy/shop").objects):  # doctest: +SKIP
    ...     print(finding)
    Ingress/shop-canary: canary path /shop/ (Prefix) on host shop.example.com matches no main
    Ingress location (main: /shop Prefix); ingress-nginx drops the canary
    [nginx-canary-path-mismatch; upstream: kubernetes/ingress-nginx ...]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from pytest_canary.byo import (
    WORKLOAD_KINDS,
    ManifestWarning,
    PathsArg,
    load,
    pod_template_labels,
    rewrite_namespace,
    schema_problems,
)
from pytest_canary.dataplane import argo_rollouts as rollout_model
from pytest_canary.dataplane import gateway as gateway_model
from pytest_canary.dataplane import istio as istio_model
from pytest_canary.dataplane import nginx as nginx_model
from pytest_canary.dataplane.argo_rollouts.routers.nginx import copied_annotations
from pytest_canary.dataplane.listing import listed
from pytest_canary.errors import CanaryConfigError

__all__ = ["RULES", "Finding", "FindingWarning", "Rule", "format_findings", "lint", "lint_paths"]

# The namespace objects are moved into for linting (the models need one namespace).
LINT_NAMESPACE = "default"


@dataclass(frozen=True)
class Rule:
    """One kind of finding: its id, what goes wrong and the upstream behaviour behind it."""

    id: str
    summary: str
    upstream: str


INGRESS_NGINX = "kubernetes/ingress-nginx controller-v1.15.1"
ISTIO = "istio 1.30"
GATEWAY_API = "kubernetes-sigs/gateway-api v1.6.1"

RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        Rule(
            "nginx-canary-path-mismatch",
            "a canary Ingress path whose host, path and pathType match no main Ingress "
            "location is dropped",
            f"{INGRESS_NGINX} internal/ingress/controller/controller.go "
            "mergeAlternativeBackends: a canary merges only into a main location with the same "
            "host, path and pathType, else 'unable to find real backend for alternative "
            "backend ... Deleting.'",
        ),
        Rule(
            "nginx-canary-without-main",
            "a canary Ingress on a host that no main Ingress serves is dropped (alone it "
            "answers 404)",
            f"{INGRESS_NGINX} internal/ingress/controller/controller.go "
            "mergeAlternativeBackends: 'cannot merge alternative backend ... into hostname ... "
            "that does not exist'",
        ),
        Rule(
            "nginx-second-canary",
            "a second canary Ingress on the same host and path",
            f"{INGRESS_NGINX} internal/ingress/controller/controller.go checkOverlap (the "
            "admission webhook): 'host ... and path ... is already defined in ingress ...'; "
            "rootfs/etc/nginx/lua/balancer.lua route_to_alternative_balancer uses only the "
            "first alternative backend",
        ),
        Rule(
            "nginx-canary-service-is-main",
            "the canary Ingress sends to a Service that a main Ingress also uses",
            f"{INGRESS_NGINX} internal/ingress/controller/controller.go: upstreams are keyed "
            "by namespace-service-port (createUpstreams), and mergeAlternativeBackends ignores "
            "a canary whose upstream 'is primary upstream in Other Ingress'",
        ),
        Rule(
            "nginx-canary-not-enabled",
            'canary-* annotations without nginx.ingress.kubernetes.io/canary: "true"',
            f"{INGRESS_NGINX} internal/ingress/annotations/canary/main.go Parse: canary "
            "values configured but canary not enabled is an invalid configuration, which "
            "annotations.go Extract skips: the Ingress serves as a main Ingress",
        ),
        Rule(
            "nginx-canary-invalid-value",
            "a canary header name, header value, header pattern or cookie name that "
            "ingress-nginx resets to '' (or that no request can match) because of its "
            "characters",
            f"{INGRESS_NGINX} internal/ingress/annotations/canary/main.go: canary-by-header, "
            "canary-by-header-value and canary-by-cookie are validated by "
            "parser/validators.go ValidateRegex(BasicCharsRegex, true) (spaces removed, then "
            r"^[/\-._~a-zA-Z0-9:]*$), canary-by-header-pattern by ValidateRegex(IsValidRegex, "
            "false); a value that fails is silently reset to ''; a header pattern PCRE cannot "
            "compile makes rootfs/etc/nginx/lua/balancer.lua route_to_alternative_balancer "
            "log the ngx.re.match error and return false (the main backend)",
        ),
        Rule(
            "nginx-canary-unknown-annotation",
            "a canary* annotation that ingress-nginx does not know (a typo): it has no effect",
            f"{INGRESS_NGINX} internal/ingress/annotations/canary/main.go CanaryAnnotations "
            "(the seven annotations the canary parser reads) and "
            "internal/ingress/annotations/annotations.go Extract (each registered parser reads "
            "only its own annotations)",
        ),
        Rule(
            "nginx-canary-value-ignored",
            "a canary value ingress-nginx parses to nothing (read as the default) or ignores",
            f"{INGRESS_NGINX} internal/ingress/annotations/parser/main.go GetBoolAnnotation / "
            "GetIntAnnotation -> checkAnnotation with validators.go ValidateBool "
            "(strconv.ParseBool) and ValidateInt (strconv.Atoi); canary/main.go Parse reads a "
            "rejected or empty value as the default (canary false, weight 0, weight-total 100); "
            "rootfs/etc/nginx/lua/balancer.lua route_to_alternative_balancer: "
            "math.random(total) <= weight, a total used only above 100",
        ),
        Rule(
            "nginx-dropped",
            "anything else the ingress-nginx model logs as dropped or ignored",
            f"{INGRESS_NGINX} (see pytest_canary/dataplane/nginx.py for the rule cited)",
        ),
        Rule(
            "istio-no-default-route",
            "the last http route of a VirtualService has a match, so unmatched requests 404",
            f"{ISTIO} istio/api networking/v1/virtual_service.proto HTTPRoute (routes in "
            "order, first match wins) and pilot/pkg/networking/core/route/route.go "
            "BuildHTTPRoutesForVirtualService: no route matches -> 404 (Envoy NR); always end "
            "with a default route",
        ),
        Rule(
            "istio-all-weights-zero",
            "every destination of a weighted route has weight 0",
            f"{ISTIO} pilot/pkg/networking/core/route/route.go applyHTTPRouteDestination: "
            "weight-0 destinations are dropped from Envoy weighted_clusters; with all at 0 "
            "nothing is left to route to (503)",
        ),
        Rule(
            "istio-undefined-subset",
            "a route names a subset that no DestinationRule for that host defines",
            f"{ISTIO} pilot/pkg/networking/core/route/route.go GetDestinationCluster: the "
            "cluster outbound|port|subset|host exists only for subsets a DestinationRule "
            "declares; otherwise Envoy answers 503 NC (cluster not found)",
        ),
        Rule(
            "istio-subset-selects-nothing",
            "a DestinationRule subset whose labels, with its Service's selector, match the pods "
            "of no workload: requests routed to it get 503 UH",
            f"{ISTIO} istioctl analyze IST0173 DestinationRuleSubsetNotSelectPods "
            "(pkg/config/analysis/analyzers/destinationrule/subset.go "
            "destinationrule.SubsetSelectPodAnalyzer: 'does not select any pods. Which may "
            "lead to 503 UH (NoHealthyUpstream)')",
        ),
        Rule(
            "istio-host-not-in-gateway",
            "a VirtualService bound to a Gateway none of whose server hosts overlaps its "
            "hosts: the gateway serves it for no request (404)",
            f"{ISTIO} istioctl analyze IST0132 VirtualServiceHostNotFoundInGateway "
            "(pkg/config/analysis/analyzers/virtualservice/gateways.go "
            "virtualservice.GatewayAnalyzer vsHostInGateway, hosts compared by "
            "pkg/config/host/name.go Name.Matches)",
        ),
        Rule(
            "istio-source-labels-without-mesh",
            "a match uses sourceLabels while the VirtualService's gateways lack 'mesh'",
            f"{ISTIO} istio/api networking/v1/virtual_service.proto HTTPMatchRequest."
            "sourceLabels: 'If the VirtualService has a list of gateways specified in the "
            "top-level gateways field, it must include the reserved gateway mesh for this "
            "field to be applicable'",
        ),
        Rule(
            "istio-gateway-not-found",
            "a VirtualService is bound to an Istio Gateway that is not in the set",
            f"{ISTIO} istioctl analyze IST0101 ReferencedResourceNotFound "
            "(virtualservice gateways): the VirtualService configures no gateway proxy",
        ),
        Rule(
            "gateway-all-weights-zero",
            "every backendRef of an HTTPRoute rule has weight 0",
            f"{GATEWAY_API} apis/v1/httproute_types.go BackendRef.weight ('If weight is set to "
            "0, no traffic should be forwarded for this entry') and HTTPRouteRule.backendRefs: "
            "a rule with no usable backend answers 500",
        ),
        Rule(
            "gateway-parent-not-found",
            "an HTTPRoute parentRef names a Gateway that is not in the set",
            f"{GATEWAY_API} apis/v1/shared_types.go ParentReference: a route attaches only to "
            "the Gateway it names (status.parents Accepted=False otherwise); it serves nothing",
        ),
        Rule(
            "gateway-route-not-accepted",
            "an HTTPRoute its Gateway does not accept: no listener it selects admits it, or "
            "its hostnames intersect no listener hostname (every request 404)",
            f"{GATEWAY_API} apis/v1/httproute_types.go HTTPRouteSpec.hostnames ('If both the "
            "Listener and HTTPRoute have specified hostnames, and none match ... the "
            "HTTPRoute is not accepted'), apis/v1/shared_types.go RouteConditionAccepted "
            "reasons NoMatchingListenerHostname, NotAllowedByListeners, NoMatchingParent",
        ),
        Rule(
            "gateway-invalid-regex",
            "an HTTPRoute RegularExpression path or header match that RE2 refuses",
            f"{GATEWAY_API} apis/v1/httproute_types.go PathMatchRegularExpression / "
            "HeaderMatchRegularExpression (the regex dialect is the implementation's); Istio "
            "renders it as an Envoy safe_regex, which is Google RE2 (envoy "
            "source/common/common/regex.cc CompiledGoogleReMatcher refuses a pattern RE2 "
            "does not compile): the route is rejected and serves no request",
        ),
        Rule(
            "argo-rollout-invalid-spec",
            "a Rollout the Argo Rollouts controller refuses (condition InvalidSpec, phase "
            "Degraded): it never starts",
            "argoproj/argo-rollouts v1.9.1 pkg/apis/rollouts/validation/validation.go "
            "ValidateRolloutStrategyCanary (see pytest_canary/rollout_spec.py for each rule)",
        ),
        Rule(
            "argo-rollout-routing",
            "a Rollout whose routing objects make every controller sync fail: it never "
            "shifts traffic",
            "argoproj/argo-rollouts v1.9.1 rollout/trafficrouting/nginx/nginx.go "
            "buildCanaryIngress, rollout/trafficrouting/istio/istio.go ValidateHTTPRoutes, "
            "rollout/service.go ensureSVCTargets (the controller's error messages)",
        ),
        Rule(
            "schema-invalid",
            "a field the API server (or the CRD's schema / admission rules) refuses: "
            "canary.apply raises on it, kubectl apply fails",
            "the schema of the object's kind (pytest_canary/validate.py: Kubernetes "
            "OpenAPI schemas of kubernetes-validate; Istio networking v1 from istio/api "
            "virtual_service.proto / destination_rule.proto and istio/istio "
            "pkg/config/validation; Gateway API v1.6 standard channel apis/v1/*_types.go with "
            "its CEL rules; Argo Rollouts v1.9.1 CRD)",
        ),
        Rule(
            "service-not-found",
            "an Ingress, HTTPRoute or VirtualService sends to a Service that is not in the set",
            "ingress-nginx controller.go serviceEndpoints ('Error obtaining Service "
            "endpoints' -> 503); gateway-api httproute_types.go BackendRef (ResolvedRefs=False "
            "BackendNotFound -> 500); istio route.go (no Service for the host -> 503 NC)",
        ),
        Rule(
            "service-port-not-found",
            "an Ingress, HTTPRoute or VirtualService sends to a port its Service does not have",
            f"{INGRESS_NGINX} internal/ingress/controller/controller.go serviceEndpoints (no "
            "Service port number, targetPort or name equals the backend port: no endpoints) "
            "with rootfs/etc/nginx/lua/balancer.lua sync_backend, get_balancer (503) and "
            "route_to_alternative_balancer ('no alternative balancer': main backend); "
            f"{ISTIO} pilot/pkg/networking/core/route/route.go GetDestinationCluster and "
            "cluster.go buildOutboundClusters (a cluster per Service port only: 503 NC), "
            "istioctl analyze IST0101 'host:port'",
        ),
        Rule(
            "service-selects-nothing",
            "a Service whose selector matches the pods of no workload in the set",
            "kubernetes pkg/controller/endpointslice: a Service's endpoints are the ready pods "
            "its selector matches; with none, requests to it fail (ingress-nginx 503, Envoy "
            "503 UH, kube-proxy rejects the connection)",
        ),
    )
}


@dataclass(frozen=True)
class Finding:
    """One routing mistake in a set of manifests.

    Attributes:
        rule: the rule id (a key of :data:`RULES`), e.g. ``nginx-canary-path-mismatch``.
        object: the object at fault, ``Kind/name``.
        message: what is wrong in this object and what upstream does with it.
        upstream: the upstream source of the behaviour (repository, file, function).
        origin: the file and document of the object (set by :func:`lint_paths`; "" for
            objects given as data).
    """

    rule: str
    object: str
    message: str
    upstream: str
    origin: str = ""

    def __str__(self) -> str:
        where = f" ({self.origin})" if self.origin else ""
        return f"{self.object}{where}: {self.message} [{self.rule}; upstream: {self.upstream}]"


class FindingWarning(ManifestWarning):
    """A finding reported as a warning (``canary.apply(..., findings="warn")``)."""


def _finding(rule: str, obj: str, message: str, upstream: str | None = None) -> Finding:
    return Finding(rule, obj, message, upstream or RULES[rule].upstream)


# service-not-found: what each referrer's data plane does with a missing Service.
SERVICE_NOT_FOUND_UPSTREAM = {
    "Ingress": f"{INGRESS_NGINX} internal/ingress/controller/controller.go serviceEndpoints: "
    "'Error obtaining Service endpoints', the upstream has no endpoints (503; a canary "
    "upstream is skipped by rootfs/etc/nginx/lua/balancer.lua route_to_alternative_balancer)",
    "HTTPRoute": f"{GATEWAY_API} apis/v1/httproute_types.go BackendRef: an unresolvable "
    "reference sets ResolvedRefs=False (BackendNotFound) and its requests get 500",
    "VirtualService": f"{ISTIO} pilot/pkg/networking/core/route/route.go "
    "GetDestinationCluster: no Service for the host, no cluster: Envoy 503 NC",
}


# service-port-not-found: what each referrer's data plane does with a port the Service lacks.
SERVICE_PORT_NOT_FOUND_UPSTREAM = {
    "Ingress": f"{INGRESS_NGINX} internal/ingress/controller/controller.go createUpstreams -> "
    "serviceEndpoints (a Service port matches by number, targetPort or name; none: the "
    "upstream has no endpoints); rootfs/etc/nginx/lua/balancer.lua sync_backend (no "
    "endpoints, no balancer), get_balancer/rewrite (a main upstream without one: 503) and "
    "route_to_alternative_balancer ('no alternative balancer for backend': the main backend)",
    "HTTPRoute": f"{ISTIO} pilot/pkg/config/kube/gateway/conversion.go buildDestination (the "
    "backendRef port becomes the destination port unchecked; ResolvedRefs stays True) -> "
    "pilot/pkg/networking/core/route/route.go GetDestinationCluster; cluster.go "
    "buildOutboundClusters builds clusters only for the Service's ports: Envoy 503 NC",
    "VirtualService": f"{ISTIO} pilot/pkg/networking/core/route/route.go GetDestinationCluster "
    "(outbound|<port>||<host>; without a destination port on a Service of several ports, the "
    "listener port: gateway.go buildGatewayHTTPRouteConfig passes the Gateway server's) and "
    "cluster.go buildOutboundClusters (one cluster per Service "
    "port): no such cluster, Envoy 503 NC; istioctl analyze IST0101 ReferencedResourceNotFound "
    "'host:port' (virtualservice/destinationhosts.go checkServiceEntryPorts)",
}


def format_findings(findings: Iterable[Finding], origins: Mapping[str, str] | None = None) -> str:
    """Findings one per block: object (and its file), message, rule and upstream source."""
    lines = []
    for finding in findings:
        origin = finding.origin or (origins or {}).get(finding.object, "")
        where = f" ({origin})" if origin else ""
        lines.append(
            f"- {finding.object}{where}: {finding.message}\n"
            f"  rule {finding.rule}; upstream: {finding.upstream}"
        )
    return "\n".join(lines)


def lint(objects: Iterable[Mapping[str, Any]]) -> list[Finding]:
    """Every finding of a set of objects, in a stable order (rule family, then object).

    The objects are looked at as one namespace (their own namespaces are rewritten, as the
    harness does when it applies them).
    """
    items = rewrite_namespace(objects, LINT_NAMESPACE)
    found: list[Finding] = []
    found += _nginx(items)
    found += _istio(items)
    found += _gateway_api(items)
    found += _argo_rollouts(items)
    found += _services(items)
    unique: dict[tuple[str, str, str], Finding] = {}
    for finding in found:
        unique.setdefault((finding.rule, finding.object, finding.message), finding)
    return list(unique.values())


# Routing rules that istiod's validation (istio/istio pkg/config/validation
# validateHTTPRouteDestinations, and the sourceLabels/gateways check) enforces at admission
# too: the schema problem at such a path is the same mistake, reported once, by its rule.
ADMISSION_TWINS = {
    "istio-all-weights-zero": re.compile(r"^spec\.http\[\d+\]\.route$"),
    "istio-source-labels-without-mesh": re.compile(r"\.sourceLabels$"),
}


def lint_paths(paths: PathsArg) -> list[Finding]:
    """:func:`lint` of the manifests in ``paths`` (files, folders, kustomize folders), each
    finding with its file and document (``Finding.origin``).

    Schema problems come first, as ``schema-invalid`` findings worded as ``canary.apply``
    words them (``byo.schema_problems``: the same validator): a CI lint step sees what apply
    would refuse. Then the routing findings; if the objects are too malformed for those to
    be looked at, the schema findings alone are returned. Some findings are also admission
    rules (Istio rejects a route whose weights are all 0): here they are reported with their
    upstream rule either way.

    Raises:
        CanaryConfigError: for paths or YAML that cannot be read, and for objects too
            malformed to look at that no schema refuses.
    """
    loaded = load(paths)
    origins: dict[str, str] = {}
    for obj, origin in zip(loaded.objects, loaded.origins, strict=True):
        origins.setdefault(f"{obj.get('kind')}/{_name(obj)}", origin)
    schema = [
        Finding(
            "schema-invalid",
            f"{problem.kind}/{problem.name}",
            f"{problem.path}: {problem.message}",
            RULES["schema-invalid"].upstream,
            origin,
        )
        for origin, problem in schema_problems(loaded)
    ]
    try:
        found = lint(loaded.objects)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        if schema:
            return schema
        raise CanaryConfigError(
            f"cannot lint {loaded.describe()}: {type(exc).__name__}: {exc}"
        ) from exc
    twins = [(f.object, ADMISSION_TWINS[f.rule]) for f in found if f.rule in ADMISSION_TWINS]
    schema = [
        f
        for f in schema
        if not any(
            obj == f.object and path.search(f.message.split(": ", 1)[0]) for obj, path in twins
        )
    ]
    return schema + [replace(f, origin=f.origin or origins.get(f.object, "")) for f in found]


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _ref(kind: str, name: str) -> str:
    return f"{kind}/{name}"


# -- ingress-nginx ----------------------------------------------------------------------

# The lines the ingress-nginx model logs (dataplane/nginx.py), read back as findings.
_NOT_ENABLED = re.compile(r"^Ingress (?P<ingress>\S+): canary annotations configured but not")
_NO_HOST = re.compile(
    r"^Ingress (?P<ingress>\S+): cannot merge alternative backend (?P<alt>\S+) into hostname "
    r"(?P<host>\S+) that does not exist"
)
_NO_LOCATION = re.compile(
    r"^Ingress (?P<ingress>\S+): unable to find real backend for alternative backend "
    r"(?P<alt>\S+) \(no main Ingress with host (?P<host>\S+), path (?P<path>\S+), pathType "
    r"(?P<ptype>\S+)\)"
)
_ALT_IS_PRIMARY = re.compile(
    r"^Ingress (?P<ingress>\S+): alternative upstream (?P<alt>\S+) is the primary upstream"
)


def _nginx(objects: list[dict[str, Any]]) -> list[Finding]:
    ingresses = [o for o in objects if nginx_model.is_nginx_ingress(o)]
    if not ingresses:
        return []
    config = nginx_model.load(objects, namespace=LINT_NAMESPACE)
    by_name = {_name(o): o for o in ingresses}
    mains = [o for o in ingresses if not nginx_model.canary_enabled(o)]
    canaries = [o for o in ingresses if nginx_model.canary_enabled(o)]
    out: list[Finding] = []
    not_enabled = {_ingress_of_line(line) for line in config.log if _NOT_ENABLED.match(line)}
    for line in config.log:
        if m := _NOT_ENABLED.match(line):
            ing = by_name.get(m["ingress"], {})
            knobs = sorted(
                k.removeprefix(nginx_model.PREFIX)
                for k in ((ing.get("metadata") or {}).get("annotations") or {})
                if k.startswith(nginx_model.PREFIX + "canary-")
            )
            out.append(
                _finding(
                    "nginx-canary-not-enabled",
                    _ref("Ingress", m["ingress"]),
                    f"has {listed(knobs)} but not nginx.ingress.kubernetes.io/canary: "
                    '"true"; ingress-nginx rejects its canary annotations and serves it as a '
                    "main Ingress: if it is the older of two on one location it takes all the "
                    'traffic (add canary: "true", or remove the canary-* annotations)',
                )
            )
        elif m := _NO_HOST.match(line):
            out.append(
                _finding(
                    "nginx-canary-without-main",
                    _ref("Ingress", m["ingress"]),
                    f"canary for host {m['host']} but no main (non-canary) Ingress serves that "
                    "host; ingress-nginx drops the canary and the host answers 404 (add the "
                    "main Ingress with the same host, path and pathType)",
                )
            )
        elif m := _NO_LOCATION.match(line):
            out.append(_path_mismatch(m, mains))
        elif m := _ALT_IS_PRIMARY.match(line):
            continue  # reported by _canary_service_is_main with the main Ingress named
        elif _ingress_of_line(line) in not_enabled:
            continue  # a consequence of serving as a main Ingress, already reported
        else:
            out.append(
                Finding(
                    "nginx-dropped",
                    _ingress_of_line(line),
                    f"the ingress-nginx model logs: {line}",
                    RULES["nginx-dropped"].upstream,
                )
            )
    out += _second_canary(canaries)
    out += _canary_service_is_main(canaries, mains)
    out += _annotation_issues(ingresses)
    out += _ports_without_endpoints(config, ingresses)
    return out


def _ingress_backends(ing: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The backends of an Ingress: each path's, then ``defaultBackend``."""
    backends = [b for *_, b in _rule_paths(ing)]
    default = (ing.get("spec") or {}).get("defaultBackend")
    return backends + ([default] if default else [])


def _ports_without_endpoints(
    config: nginx_model.NginxConfig, ingresses: list[dict[str, Any]]
) -> list[Finding]:
    """Backends whose Service exists but has no port matching theirs: the model's upstream
    has no endpoints (``NginxConfig.without_endpoints``), so the main location answers 503,
    or a canary is skipped."""
    out: list[Finding] = []
    for ing in ingresses:
        canary = nginx_model.canary_enabled(ing)
        seen: set[nginx_model.Upstream] = set()
        for backend in _ingress_backends(ing):
            upstream = nginx_model.backend_upstream(LINT_NAMESPACE, backend)
            if upstream is None or upstream in seen:
                continue
            seen.add(upstream)
            why = config.without_endpoints(upstream)
            if why is None or why.endswith(" not found"):
                continue  # resolves, or service-not-found says it
            effect = (
                "ingress-nginx builds the canary upstream without endpoints and balancer.lua "
                "skips it ('no alternative balancer for backend'): every request, header and "
                "cookie included, goes to the main backend"
                if canary
                else "ingress-nginx builds the upstream without endpoints and answers every "
                "request of that location with 503, a canary's share included"
            )
            out.append(
                _finding(
                    "service-port-not-found",
                    _ref("Ingress", _name(ing)),
                    f"backend {why}; {effect} (use one of the Service's ports)",
                    SERVICE_PORT_NOT_FOUND_UPSTREAM["Ingress"],
                )
            )
    return out


def _ingress_of_line(line: str) -> str:
    m = re.match(r"^Ingress (\S+):", line)
    return _ref("Ingress", m[1]) if m else "Ingress/?"


def _rule_paths(ing: Mapping[str, Any]) -> list[tuple[str, str, str, Mapping[str, Any]]]:
    """(host or "_", path, pathType, backend) of every path of an Ingress."""
    out = []
    for rule in (ing.get("spec") or {}).get("rules") or []:
        host = rule.get("host") or nginx_model.DEFAULT_SERVER
        for p in (rule.get("http") or {}).get("paths") or []:
            out.append(
                (
                    str(host),
                    str(p.get("path") or "/"),
                    str(p.get("pathType", "ImplementationSpecific")),
                    p.get("backend") or {},
                )
            )
    return out


def _path_mismatch(m: re.Match[str], mains: list[dict[str, Any]]) -> Finding:
    host = m["host"]
    served = [
        f"{path} ({ptype}, Ingress {_name(ing)})"
        for ing in mains
        for h, path, ptype, _ in _rule_paths(ing)
        if h == host
    ]
    obj = _ref("Ingress", m["ingress"])
    if not served:
        return _finding(
            "nginx-canary-without-main",
            obj,
            f"canary path {m['path']} ({m['ptype']}) on host {host} but no main (non-canary) "
            "Ingress serves that host; ingress-nginx drops the canary and requests answer 404 "
            "(add the main Ingress with the same host, path and pathType)",
        )
    return _finding(
        "nginx-canary-path-mismatch",
        obj,
        f"canary path {m['path']} ({m['ptype']}) on host {host} matches no main Ingress "
        f"location (main: {listed(served, separator='; ')}); ingress-nginx drops the canary "
        "and every request goes to the main backend (use exactly the main path and pathType)",
    )


def _second_canary(canaries: list[dict[str, Any]]) -> list[Finding]:
    first: dict[tuple[str, str], str] = {}
    out: list[Finding] = []
    for ing in canaries:
        name = _name(ing)
        for host, path, _, _ in _rule_paths(ing):
            owner = first.setdefault((host, path), name)
            if owner != name:
                out.append(
                    _finding(
                        "nginx-second-canary",
                        _ref("Ingress", name),
                        f"host {host} path {path} already has the canary Ingress {owner}; the "
                        "admission webhook rejects this one, and if it got in only the first "
                        "canary would ever be used (keep one canary Ingress per host and path)",
                    )
                )
    return out


def _service_port(backend: Mapping[str, Any]) -> tuple[str, str]:
    svc = backend.get("service") or {}
    port = svc.get("port") or {}
    return str(svc.get("name", "")), str(port.get("number", port.get("name", "")))


def _canary_service_is_main(
    canaries: list[dict[str, Any]], mains: list[dict[str, Any]]
) -> list[Finding]:
    main_services: dict[tuple[str, str], str] = {}
    for ing in mains:
        for _, _, _, backend in _rule_paths(ing):
            main_services.setdefault(_service_port(backend), _name(ing))
        default = (ing.get("spec") or {}).get("defaultBackend")
        if default:
            main_services.setdefault(_service_port(default), _name(ing))
    out: list[Finding] = []
    for ing in canaries:
        for _, _, _, backend in _rule_paths(ing):
            key = _service_port(backend)
            if key in main_services:
                out.append(
                    _finding(
                        "nginx-canary-service-is-main",
                        _ref("Ingress", _name(ing)),
                        f"canary backend Service {key[0]} port {key[1]} is also the backend of "
                        f"main Ingress {main_services[key]}; ingress-nginx has one upstream per "
                        "Service port, so the canary is ignored (give the canary its own "
                        "Service selecting only the canary pods)",
                    )
                )
                break
    return out


# What the ingress-nginx model's annotation parser reports, by its kind of issue.
_ISSUE_RULES = {
    "unknown": "nginx-canary-unknown-annotation",
    "ignored": "nginx-canary-value-ignored",
    "invalid": "nginx-canary-invalid-value",
}


def _annotation_issues(ingresses: list[dict[str, Any]]) -> list[Finding]:
    """Canary annotations ingress-nginx ignores or reads otherwise, as the model's parser
    (``dataplane.nginx.parse_canary``) says -- the local router reads them the same way."""
    out: list[Finding] = []
    for ing in ingresses:
        for issue in nginx_model.annotation_issues(ing):
            # Short names under the usual prefix; the full key where the prefix is the problem.
            same_prefix = issue.annotation.startswith(nginx_model.PREFIX)
            name = issue.annotation.removeprefix(nginx_model.PREFIX)
            message = f"{name}={issue.value!r}: {issue.effect}"
            if issue.suggestion:
                meant = issue.suggestion.removeprefix(nginx_model.PREFIX if same_prefix else "")
                message += f" (did you mean {meant}?)"
            out.append(_finding(_ISSUE_RULES[issue.kind], _ref("Ingress", _name(ing)), message))
    return out


# -- Istio --------------------------------------------------------------------------------

_CATCH_ALL_URIS = ({"prefix": "/"}, {"regex": ".*"}, {"regex": "/.*"})


def _is_catch_all(block: Mapping[str, Any]) -> bool:
    """A match block every request satisfies: nothing but a ``/`` prefix (or no) URI match."""
    rest = {k for k in block if k not in ("name", "uri", "ignoreUriCase")}
    return not rest and (block.get("uri") in (None, *_CATCH_ALL_URIS))


def _istio(objects: list[dict[str, Any]]) -> list[Finding]:
    vs_objects = [o for o in objects if o.get("kind") == "VirtualService"]
    if not vs_objects:
        return []
    config = istio_model.load(objects, namespace=LINT_NAMESPACE)
    out: list[Finding] = []
    for raw in vs_objects:
        http = (raw.get("spec") or {}).get("http") or []
        if http:
            last = http[-1]
            blocks = last.get("match") or []
            if blocks and not any(_is_catch_all(b) for b in blocks):
                label = last.get("name") or f"http[{len(http) - 1}]"
                out.append(
                    _finding(
                        "istio-no-default-route",
                        _ref("VirtualService", _name(raw)),
                        f"its last route ({label}) has a match, so a request that matches no "
                        "route gets 404 (Envoy NR); end the http list with a route without "
                        "match (the default)",
                    )
                )
    for vs in config.virtual_services:
        obj = _ref("VirtualService", vs.name)
        for gateway in vs.gateways:
            if gateway != istio_model.MESH and gateway not in config.gateways:
                out.append(
                    _finding(
                        "istio-gateway-not-found",
                        obj,
                        f"bound to Gateway {gateway.split('/', 1)[-1]}, which is not in the "
                        "manifests; no gateway proxy serves this VirtualService (add the "
                        "Gateway, or lint it together with the manifests that define it)",
                    )
                )
            elif gateway != istio_model.MESH and not config.gateway_covers(gateway, vs.hosts):
                served = config.gateways[gateway].server_hosts
                out.append(
                    _finding(
                        "istio-host-not-in-gateway",
                        obj,
                        f"hosts [{listed(vs.hosts)}] overlap none of Gateway "
                        f"{gateway.split('/', 1)[-1]}'s server hosts [{listed(served)}]; the "
                        "gateway serves this VirtualService for no request and answers 404 "
                        "(make a host of one cover the other's)",
                    )
                )
        for route in vs.routes:
            out += _istio_route(config, vs, route)
    out += _subsets_selecting_nothing(config, objects)
    return out


def _subsets_selecting_nothing(
    config: istio_model.IstioConfig, objects: list[dict[str, Any]]
) -> list[Finding]:
    """IST0173: a subset whose pod selector (the model's ``subset_selector``) matches no
    workload's pods, where the Service itself selects some (else service-selects-nothing
    says it)."""
    pods = [pod_template_labels(o) for o in objects if o.get("kind") in WORKLOAD_KINDS]

    def selects(selector: Mapping[str, str]) -> bool:
        return any(all(p.get(k) == v for k, v in selector.items()) for p in pods)

    local_suffix = f".{LINT_NAMESPACE}.{istio_model.CLUSTER_DOMAIN}"
    # (host, subset) -> the VirtualServices routing to it, gathered once.
    routed_by: dict[tuple[str, str], set[str]] = {}
    for vs in config.virtual_services:
        for route in vs.routes:
            for dest in route.destinations:
                routed_by.setdefault((dest.host, dest.subset), set()).add(vs.name)
    out: list[Finding] = []
    for (host, subset), rule_name in config.subset_owners.items():
        svc = config.services.get(host)
        selector = config.subset_selector(host, subset)
        if svc is None or selector is None or not svc.selector or not selects(svc.selector):
            continue
        if selects(selector):
            continue
        routed = sorted(routed_by.get((host, subset), ()))
        to = f" (routed to by VirtualService {listed(routed)})" if routed else ""
        out.append(
            _finding(
                "istio-subset-selects-nothing",
                _ref("DestinationRule", rule_name),
                f"subset {subset!r} of {host.removesuffix(local_suffix)} selects pods with "
                f"{selector}, which no workload in the manifests has{to}; its cluster has no "
                "endpoints and Envoy answers 503 UH (no healthy upstream) (pod labels: "
                f"{listed(pods, separator='; ', empty='no workloads')})",
            )
        )
    return out


def _istio_route(
    config: istio_model.IstioConfig,
    vs: istio_model.VirtualServiceRules,
    route: istio_model.HttpRoute,
) -> list[Finding]:
    obj = _ref("VirtualService", vs.name)
    label = route.name
    out: list[Finding] = []
    if len(route.destinations) > 1 and not any(d.weight > 0 for d in route.destinations):
        out.append(
            _finding(
                "istio-all-weights-zero",
                obj,
                f"route {label}: every destination has weight 0, so the route has nowhere to "
                "send requests (503); give at least one destination a weight above 0",
            )
        )
    for block in route.matches:
        if block.source_labels:
            gateways = block.gateways or vs.gateways
            if istio_model.MESH not in gateways:
                out.append(
                    _finding(
                        "istio-source-labels-without-mesh",
                        obj,
                        f"route {label} matches sourceLabels {dict(block.source_labels)} but "
                        "the VirtualService's gateways "
                        f"[{listed(g.rpartition('/')[2] for g in gateways)}] "
                        "lack 'mesh', so the "
                        "match never applies to calls between workloads (add 'mesh' to "
                        "gateways)",
                    )
                )
    local_suffix = f".{LINT_NAMESPACE}.{istio_model.CLUSTER_DOMAIN}"
    for dest in route.destinations:
        if dest.host not in config.services:
            if dest.host.endswith(local_suffix):
                service = dest.host.removesuffix(local_suffix)
                out.append(
                    _finding(
                        "service-not-found",
                        obj,
                        f"route {label} sends to host {service}, but no Service {service} is "
                        "in the manifests; Envoy answers 503 NC (cluster not found)",
                        SERVICE_NOT_FOUND_UPSTREAM["VirtualService"],
                    )
                )
            continue
        out += _istio_missing_port(config, vs, label, dest)
        if dest.subset and dest.subset not in config.subsets.get(dest.host, {}):
            defined = sorted(config.subsets.get(dest.host, {}))
            short = dest.host.removesuffix(local_suffix)
            out.append(
                _finding(
                    "istio-undefined-subset",
                    obj,
                    f"route {label} sends to subset {dest.subset!r} of {short}, but no "
                    f"DestinationRule for {short} defines it (defined: "
                    f"{listed(defined)}); those requests get 503 NC",
                )
            )
    return out


def _istio_missing_port(
    config: istio_model.IstioConfig,
    vs: istio_model.VirtualServiceRules,
    label: str,
    dest: istio_model.RouteDestination,
) -> list[Finding]:
    """service-port-not-found for a VirtualService destination: an explicit ``port`` its
    Service lacks; or, without ``port`` on a Service of several ports, the port of a bound
    Gateway's HTTP server whose hosts overlap the VirtualService's (route.go
    ``GetDestinationCluster`` takes the listener port). In the mesh the listener is the
    Service port the caller called, which the Service has: no finding. (IST0101 checks
    written ports only; istioctl analyze IST0112 VirtualServiceDestinationPortSelectorRequired,
    analyzers/virtualservice/destinationhosts.go ``checkServiceEntryPorts``, asks for a port
    on every multi-port destination, a style rule: the data plane routes these.)"""
    short = dest.host.removesuffix(f".{LINT_NAMESPACE}.{istio_model.CLUSTER_DOMAIN}")
    ports = listed(config.services[dest.host].ports)
    if dest.port is not None:
        missing = config.missing_port(dest)
        if missing is None:
            return []
        return [
            _finding(
                "service-port-not-found",
                _ref("VirtualService", vs.name),
                f"route {label} sends to port {missing} of {short}, which has no such port "
                f"(ports: {ports}); istiod builds no cluster {config.cluster_name(dest)} and "
                "Envoy answers those requests 503 NC (use one of the Service's ports)",
                SERVICE_PORT_NOT_FOUND_UPSTREAM["VirtualService"],
            )
        ]
    out: list[Finding] = []
    for gateway in vs.gateways:
        if gateway == istio_model.MESH:
            continue
        listeners = config.listener_ports(vs, gateway)
        missing_ports = [p for p in listeners if config.missing_port(dest, p) is not None]
        if not missing_ports:
            continue
        name = gateway.split("/", 1)[-1]
        out.append(
            _finding(
                "service-port-not-found",
                _ref("VirtualService", vs.name),
                f"route {label} names no destination port, so on Gateway {name}'s HTTP server "
                f"port {listed(missing_ports)} it sends to that port of {short}, which has no "
                f"such port (ports: {ports}); istiod builds no cluster "
                f"{config.cluster_name(dest, missing_ports[0])} and Envoy answers those "
                "requests 503 NC (name one of the Service's ports in the destination)",
                SERVICE_PORT_NOT_FOUND_UPSTREAM["VirtualService"],
            )
        )
    return out


# -- Gateway API --------------------------------------------------------------------------


# dataplane/gateway.py load(): the line it logs for a route whose regex RE2 refuses.
_INVALID_ROUTE_REGEX = re.compile(
    r"^HTTPRoute (?P<route>\S+): invalid regex \((?P<reason>.*)\); rejected$"
)


def _gateway_api(objects: list[dict[str, Any]]) -> list[Finding]:
    if not any(o.get("kind") == "HTTPRoute" for o in objects):
        return []
    config = gateway_model.load(objects, namespace=LINT_NAMESPACE)
    out: list[Finding] = []
    for line in config.log:
        refused = _INVALID_ROUTE_REGEX.match(line)
        if refused:
            out.append(
                _finding(
                    "gateway-invalid-regex",
                    _ref("HTTPRoute", refused["route"]),
                    f"a RegularExpression match RE2 refuses ({refused['reason']}); the route "
                    "is rejected and every request it should serve gets 404 (write the "
                    "pattern in RE2 syntax: no lookaround, backreferences or possessive "
                    "quantifiers, repetitions up to 1000)",
                )
            )
    for route in config.routes:
        obj = _ref("HTTPRoute", route.name)
        for parent in route.parents:
            if f"{parent.namespace}/{parent.name}" not in config.gateways:
                out.append(
                    _finding(
                        "gateway-parent-not-found",
                        obj,
                        f"parentRef names Gateway {parent.name}, which is not in the "
                        "manifests; the route attaches to nothing and serves no request (add "
                        "the Gateway, or lint it together with the manifests that define it)",
                    )
                )
            elif reason := config.not_accepted(route, parent):
                out.append(_not_accepted(config, obj, route, parent, reason))
        for rule in route.rules:
            label = rule.name or f"rules[{rule.index}]"
            if rule.backends and not any(b.weight > 0 for b in rule.backends):
                out.append(
                    _finding(
                        "gateway-all-weights-zero",
                        obj,
                        f"{label}: every backendRef has weight 0, so matching requests get "
                        "500; give at least one backendRef a weight above 0",
                    )
                )
            for backend in rule.backends:
                if backend.missing_port:
                    ports = listed(config.services[backend.service])
                    out.append(
                        _finding(
                            "service-port-not-found",
                            obj,
                            f"{label}: backendRef {backend.service} port {backend.port}, but "
                            f"Service {backend.service} has no such port (ports: {ports}); "
                            "Istio builds no cluster "
                            f"{config.cluster_name(backend)} and its share of the requests "
                            "gets 503 NC (use one of the Service's ports)",
                            SERVICE_PORT_NOT_FOUND_UPSTREAM["HTTPRoute"],
                        )
                    )
                if backend.invalid_reason.endswith(" not found"):
                    out.append(
                        _finding(
                            "service-not-found",
                            obj,
                            f"{label}: backendRef {backend.invalid_reason} in the manifests; "
                            "its share of the requests gets 500",
                            SERVICE_NOT_FOUND_UPSTREAM["HTTPRoute"],
                        )
                    )
    return out


def _not_accepted(
    config: gateway_model.GatewayConfig,
    obj: str,
    route: gateway_model.HttpRouteRules,
    parent: gateway_model.ParentRef,
    reason: str,
) -> Finding:
    gw = config.gateways[f"{parent.namespace}/{parent.name}"]
    listeners = listed(
        (
            f"{lst.name} ({lst.protocol} {lst.port}, hostname {lst.hostname or 'any'})"
            for lst in gw.listeners
        ),
        separator="; ",
    )
    what = {
        "NoMatchingListenerHostname": f"its hostnames [{listed(route.hostnames)}] intersect no "
        "listener hostname",
        "NotAllowedByListeners": "no listener it selects admits it (protocol HTTP or HTTPS, "
        "allowedRoutes namespaces)",
        "NoMatchingParent": "its sectionName/port selects no listener",
    }[reason]
    return _finding(
        "gateway-route-not-accepted",
        obj,
        f"Gateway {parent.name} does not accept it (Accepted=False, reason {reason}): {what} "
        f"(listeners: {listeners}); every request for it gets 404",
    )


# -- Argo Rollouts ------------------------------------------------------------------------


def _argo_rollouts(objects: list[dict[str, Any]]) -> list[Finding]:
    rollouts = [
        o for o in objects if o.get("kind") == "Rollout" and _group(o) == rollout_model.GROUP
    ]
    if not rollouts:
        return []
    by_key = {(str(o.get("kind")), _name(o)): o for o in objects}
    out: list[Finding] = []
    for obj in rollouts:
        config = rollout_model.read_rollout(obj)
        for problem in config.problems:
            consequence = (
                "the API server refuses the Rollout (its CRD's schema)"
                if problem.refused_by == "api-server"
                else "the controller marks the Rollout InvalidSpec (phase Degraded) and never "
                "starts it"
            )
            out.append(
                _finding(
                    "argo-rollout-invalid-spec",
                    _ref("Rollout", _name(obj)),
                    f"{problem.path}={problem.value!r}: {problem.message}; {consequence}",
                    f"{problem.rule}",
                )
            )
        out += _copied_annotation_issues(config, _name(obj))
        for message in rollout_model.routing_problems(config, by_key):
            out.append(
                _finding(
                    "argo-rollout-routing",
                    _ref("Rollout", _name(obj)),
                    f"the controller's syncs fail with {message!r}: the Rollout never shifts "
                    "traffic",
                )
            )
    return out


# argo-rollouts copies these Rollout fields onto the canary Ingress it writes.
COPIED_BY_ARGO = (
    "argoproj/argo-rollouts v1.9.1 rollout/trafficrouting/nginx/nginx.go buildCanaryIngress "
    "(additionalIngressAnnotations, prefixed, and canaryIngressAnnotations are copied onto "
    "the canary Ingress; canary and canary-weight always overwritten)"
)


def _copied_annotation_issues(config: rollout_model.RolloutConfig, rollout: str) -> list[Finding]:
    """The canary annotations a Rollout has the controller copy onto its canary Ingress
    (``routers.nginx.copied_annotations``), read by the ingress-nginx model's parser as the
    canary Ingress's own would be."""
    copied = copied_annotations(config)
    if (
        not copied
        or config.nginx is None
        or f"{config.nginx.annotation_prefix}/" != (nginx_model.PREFIX)
    ):
        return []  # another controller's prefix: not ingress-nginx's annotations
    origin = {written: (fld, key) for fld, key, written, _ in copied}
    written = {key: value for _, _, key, value in copied}
    out: list[Finding] = []
    for issue in nginx_model.parse_canary({"annotations": written}).issues:
        fld, key = origin.get(issue.annotation, ("", issue.annotation))
        name = issue.annotation.removeprefix(nginx_model.PREFIX)
        message = (
            f"spec.strategy.canary.trafficRouting.nginx.{fld}[{key!r}]={issue.value!r}, copied "
            f"by the controller onto its canary Ingress as {name}: {issue.effect}"
        )
        if issue.suggestion:
            same_prefix = issue.annotation.startswith(nginx_model.PREFIX)
            meant = issue.suggestion.removeprefix(nginx_model.PREFIX if same_prefix else "")
            message += f" (did you mean {meant}?)"
        rule = _ISSUE_RULES[issue.kind]
        out.append(
            _finding(
                rule,
                _ref("Rollout", rollout),
                message,
                f"{RULES[rule].upstream}; {COPIED_BY_ARGO}",
            )
        )
    return out


def _group(obj: Mapping[str, Any]) -> str:
    return str(obj.get("apiVersion", "")).rpartition("/")[0]


# -- Services -----------------------------------------------------------------------------


def _services(objects: list[dict[str, Any]]) -> list[Finding]:
    services = {_name(o): o for o in objects if o.get("kind") == "Service"}
    pods = [pod_template_labels(o) for o in objects if o.get("kind") in WORKLOAD_KINDS]
    out: list[Finding] = []
    for ing in (o for o in objects if nginx_model.is_nginx_ingress(o)):
        effect = (
            "skips the canary ('no alternative balancer for backend'): every request goes to "
            "the main backend"
            if nginx_model.canary_enabled(ing)
            else "answers 503"
        )
        for backend in _ingress_backends(ing):
            name, _ = _service_port(backend)
            if name and name not in services:
                out.append(
                    _finding(
                        "service-not-found",
                        _ref("Ingress", _name(ing)),
                        f"backend Service {name} is not in the manifests; ingress-nginx has no "
                        f"endpoints for it and {effect}",
                        SERVICE_NOT_FOUND_UPSTREAM["Ingress"],
                    )
                )
    for name, svc in services.items():
        spec = svc.get("spec") or {}
        selector = spec.get("selector") or {}
        if not selector or spec.get("type") == "ExternalName":
            continue  # endpoints managed by hand, or a DNS alias
        if not any(all(labels.get(k) == v for k, v in selector.items()) for labels in pods):
            out.append(
                _finding(
                    "service-selects-nothing",
                    _ref("Service", name),
                    f"selector {dict(selector)} matches the pods of no workload in the "
                    "manifests, so it has no endpoints and requests to it fail (pod labels: "
                    f"{listed(pods, separator='; ', empty='no workloads')})",
                )
            )
    return out
