"""What the data plane must show before traffic is sampled -- asked of the models.

Nothing here restates a routing rule. The models of :mod:`pytest_canary.dataplane` (the ones
the local router routes with and the linter reads) decide, for the applied objects:

- where each probe request may go -- ``NginxConfig.reachable``, ``IstioConfig.outcomes``,
  ``GatewayConfig.outcomes`` -- which becomes the pods and versions allowed to answer it;
- what ingress-nginx's dynamic configuration must hold -- the main upstream of the location,
  its first alternative upstream and that one's traffic-shaping policy
  (``NginxConfig.location`` / ``NginxConfig.alternative``), as ``/dbg backends get`` reports
  them (ingress-nginx pkg/apis/ingress/types.go ``Backend``, ``TrafficShapingPolicy``);
- which Envoy routes the gateway must hold for the host, in order, and the clusters and
  weights of each (``IstioConfig.gateway_table`` / ``weighted_destinations`` /
  ``cluster_name``; ``GatewayConfig.route_table`` / ``weighted_backends`` /
  ``cluster_name``), as the gateway's config_dump reports them.

This module only chooses the probe requests (the default request, and one request per
header, cookie or virtual-host route the model holds) and translates the models' answers into
what can be observed. A rule fixed in a model is fixed here too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_canary.backends.waits import VERSION_LABEL, labels_match, service_selector
from pytest_canary.dataplane import gateway as gateway_model
from pytest_canary.dataplane import istio as istio_model
from pytest_canary.dataplane import nginx as nginx_model
from pytest_canary.dataplane.request import Destination, Refusal, RoutedRequest
from pytest_canary.errors import BackendError
from pytest_canary.re2 import fullmatch as re2_fullmatch
from pytest_canary.re2 import re2_problem

Manifest = Mapping[str, Any]
Behind = tuple[tuple[Mapping[str, str], ...], frozenset[str]]
"""Pod label sets that may answer, and the versions they carry."""

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "ReplicaSet", "Rollout")


# -- what must be observed ----------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One kind of probe request and who may answer it once the routing has converged.

    Attributes:
        name: how the route is shown, e.g. ``default`` or ``X-Canary: always``.
        headers: headers that select the route (the entry's Host is added by the prober).
        selectors: label sets; a pod matching one of them may answer.
        versions: versions that may answer; empty means "whatever version the selected pods
            carry" (plain Service entries).
    """

    name: str
    headers: Mapping[str, str]
    selectors: tuple[Mapping[str, str], ...]
    versions: frozenset[str] = frozenset()

    def describe(self) -> str:
        """``name -> versions``."""
        versions = "|".join(sorted(self.versions)) or "the selected pods"
        return f"{self.name} -> {versions}"


@dataclass(frozen=True)
class NginxWant:
    """What ingress-nginx's dynamic configuration (``/dbg backends get``) must hold.

    Attributes:
        main: the upstream of the release's location, ``<namespace>-<service>-<port>``
            (controller.go ``upstreamName``).
        canary: its first alternative upstream, or None when it must have none.
        policy: the alternative's ``trafficShapingPolicy`` fields (types.go json names).
    """

    main: str
    canary: str | None = None
    policy: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EnvoyHeader:
    """One Envoy ``HeaderMatcher``: ``kind`` is exact, prefix, regex or present."""

    name: str
    kind: str
    value: str = ""
    invert: bool = False

    def describe(self) -> str:
        """``canary exact 'tester'``."""
        text = f"{self.name} {self.kind}" + (f" {self.value!r}" if self.kind != "present" else "")
        return ("not " if self.invert else "") + text


@dataclass(frozen=True)
class EnvoyRouteWant:
    """One Envoy route: its header matchers and the share of each cluster it sends to."""

    headers: frozenset[EnvoyHeader]
    clusters: Mapping[str, float]

    def describe(self) -> str:
        """``[canary exact 'tester'] -> {cluster: share}``."""
        matchers = ", ".join(sorted(h.describe() for h in self.headers)) or "no header match"
        shares = ", ".join(f"{k}: {v:.3g}" for k, v in sorted(self.clusters.items()))
        return f"[{matchers}] -> {{{shares}}}"


@dataclass(frozen=True)
class EnvoyWant:
    """The routes an Envoy (Istio gateway) must hold for ``host``, in order.

    Attributes:
        host: the virtual host's domain.
        namespace: routes configured by objects of this namespace are ours (Istio writes the
            source object into each route's ``metadata.filter_metadata.istio.config``).
        routes: our routes as the model builds them, in Envoy's order.
        partial: the model leaves some of our routes out (redirects, delegates): the live
            routes must contain these in this order, possibly among others.
    """

    host: str
    namespace: str
    routes: tuple[EnvoyRouteWant, ...]
    partial: bool = False

    @property
    def clusters(self) -> Mapping[str, float]:
        """The shares of the last route (the catch-all, where it exists)."""
        return self.routes[-1].clusters if self.routes else {}


@dataclass(frozen=True)
class DataplanePlan:
    """Everything that must be observed before traffic is sampled."""

    routes: tuple[Route, ...]
    nginx: NginxWant | None = None
    envoy: EnvoyWant | None = None

    def describe(self) -> str:
        """The condition in words, for timeout messages."""
        text = "serving " + ", ".join(route.describe() for route in self.routes)
        if self.nginx is not None:
            alt = (
                f" with alternative {self.nginx.canary} {dict(self.nginx.policy)}"
                if self.nginx.canary
                else " without alternative backends"
            )
            text += f"; ingress-nginx backend {self.nginx.main}{alt}"
        if self.envoy is not None:
            routes = "; ".join(r.describe() for r in self.envoy.routes)
            text += f"; Envoy routes for {self.envoy.host}: {routes}"
        return text


# -- which data plane serves the objects ---------------------------------------------------


@dataclass(frozen=True)
class Dataplane:
    """The data plane traffic goes through.

    Attributes:
        kind: ``nginx`` (ingress-nginx), ``istio`` (an Istio Gateway), ``gateway`` (a Gateway
            API Gateway, implemented by Istio) or ``service`` (kube-proxy).
        name: the Gateway (``namespace/name``) for istio and gateway, the Service for service.
    """

    kind: str
    name: str = ""

    @property
    def entry_key(self) -> str:
        """The key of its entry URL (``--canary-entry-url=KEY=URL``)."""
        return "nginx" if self.kind == "nginx" else self.kind


def _key(obj: Manifest) -> tuple[str, str, str]:
    group = str(obj.get("apiVersion", "")).rpartition("/")[0]
    return group, str(obj.get("kind", "")), str((obj.get("metadata") or {}).get("name", ""))


def _namespace_of(obj: Manifest, default: str) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or default)


def routing_dataplane(
    objects: Sequence[Manifest], *, namespace: str, ingress_class: str | None = None
) -> Dataplane | None:
    """The data plane the routing objects configure, as the local backend chooses it: an
    Ingress the controller serves -> ingress-nginx; an Istio Gateway a VirtualService binds
    -> that gateway; a Gateway API Gateway an HTTPRoute names -> that Gateway; None when they
    configure none (traffic enters through a Service).

    Raises:
        BackendError: VirtualServices or HTTPRoutes bound to no Gateway of the set: they
            route calls made inside the mesh only, which traffic from this machine never is.
    """
    if any(_is_served_ingress(o, ingress_class) for o in objects):
        return Dataplane("nginx")
    istio_gateways = {
        _key(o)[2]: _namespace_of(o, namespace)
        for o in objects
        if _key(o)[:2] == (istio_model.ISTIO_GROUP, "Gateway")
    }
    virtual_services = [
        o for o in objects if _key(o)[:2] == (istio_model.ISTIO_GROUP, "VirtualService")
    ]
    for vs in virtual_services:
        for ref in (vs.get("spec") or {}).get("gateways") or []:
            name = str(ref).rpartition("/")[2]
            if name in istio_gateways:
                return Dataplane("istio", f"{istio_gateways[name]}/{name}")
    api_gateways = {
        _key(o)[2]: _namespace_of(o, namespace)
        for o in objects
        if _key(o)[:2] == (gateway_model.GATEWAY_GROUP, "Gateway")
    }
    routes = [o for o in objects if _key(o)[:2] == (gateway_model.GATEWAY_GROUP, "HTTPRoute")]
    for route in routes:
        for parent in (route.get("spec") or {}).get("parentRefs") or []:
            name = str(parent.get("name"))
            if parent.get("kind", "Gateway") == "Gateway" and name in api_gateways:
                return Dataplane("gateway", f"{api_gateways[name]}/{name}")
    unbound = [f"{_key(o)[1]}/{_key(o)[2]}" for o in virtual_services + routes]
    if unbound:
        # Sidecars apply these to calls made inside the mesh; a request from this machine
        # through a NodePort never passes a client sidecar, so it would not be routed by
        # them (Istio: VirtualService "gateways", reserved name "mesh").
        raise BackendError(
            f"{', '.join(unbound)}: bound to no Gateway of your manifests, so they route "
            "calls made inside the mesh only and traffic from this machine cannot pass "
            "through them. Bind them to an Istio Gateway (or HTTPRoute parentRefs to a "
            "Gateway) in the same paths, or check this routing on the local backend, "
            "which models a sidecar."
        )
    return None


def _is_served_ingress(obj: Manifest, ingress_class: str | None) -> bool:
    """An Ingress of the class the entry's controller serves (``--canary-ingress-class``
    rewrites every Ingress to it; otherwise class ``nginx`` or none)."""
    if _key(obj)[:2] != ("networking.k8s.io", "Ingress"):
        return False
    return bool(ingress_class) or nginx_model.is_nginx_ingress(obj)


# -- the plan -----------------------------------------------------------------------------


def plan_for(
    objects: Sequence[Manifest],
    dataplane: Dataplane,
    *,
    namespace: str,
    host: str | None,
    path: str = "/",
    ingress_class: str | None = None,
) -> DataplanePlan:
    """What must be observed once ``objects`` are served through ``dataplane``.

    Raises:
        BackendError: when the model routes the default request nowhere (a 404 or 503 the
            data plane would answer itself), naming the model's reason.
    """
    if dataplane.kind == "nginx":
        return _nginx_plan(objects, namespace, host, path, ingress_class or "nginx")
    if dataplane.kind == "istio":
        return _istio_plan(objects, namespace, host, path, dataplane.name)
    if dataplane.kind == "gateway":
        return _gateway_plan(objects, namespace, host, path, dataplane.name)
    return service_plan(objects, dataplane.name)


def service_plan(objects: Sequence[Manifest], service: str) -> DataplanePlan:
    """Plan for traffic entering through a plain Service (kube-proxy): any ready pod the
    Service selects may answer, with whatever version it runs."""
    selector = service_selector(_service(objects, service))
    return DataplanePlan(routes=(Route("default", {}, (selector,)),))


def _route(
    name: str,
    headers: Mapping[str, str],
    outcomes: Iterable[Destination | Refusal],
    objects: Sequence[Manifest],
) -> Route | Refusal:
    """The probe route of a request the model sends to ``outcomes`` (the first refusal when
    the model answers the request itself)."""
    parts: list[Behind] = []
    for outcome in outcomes:
        if isinstance(outcome, Refusal):
            return outcome
        parts.append(_behind(objects, outcome))
    selectors, versions = _merge(*parts)
    return Route(name, dict(headers), selectors, versions)


def _default_or_fail(route: Route | Refusal, what: str, host: str | None, path: str) -> Route:
    if isinstance(route, Refusal):
        raise BackendError(
            f"{what} answers a request for host {host!r} path {path!r} itself (HTTP "
            f"{route.status}: {route.reason}): nothing to wait for; check the routing objects"
        )
    return route


# ingress-nginx ----------------------------------------------------------------------------


def _nginx_plan(
    objects: Sequence[Manifest], namespace: str, host: str | None, path: str, ingress_class: str
) -> DataplanePlan:
    config = nginx_model.load(objects, namespace=namespace, ingress_class=ingress_class)

    def route(name: str, headers: Mapping[str, str], req_host: str | None) -> Route | Refusal:
        request = RoutedRequest.build(req_host, path, headers)
        return _route(name, headers, config.reachable(request), objects)

    default = _default_or_fail(
        route("default", {}, host), f"ingress-nginx (class {ingress_class})", host, path
    )
    location = config.location(RoutedRequest.build(host, path))
    assert location is not None and location.upstream is not None  # the default was routed
    shared = config.alternative(location.upstream)
    probes: list[tuple[str, dict[str, str]]] = []
    if shared is None:
        want = NginxWant(main=location.upstream.name)
    else:
        alternative, policy = shared
        want = NginxWant(
            main=location.upstream.name, canary=alternative.name, policy=_policy(policy)
        )
        # The request header that reaches the rule: X_Canary is read from X-Canary; a name
        # no request can carry (a space) gets no probe.
        sent = nginx_model.request_header_for(policy.header) if policy.header else None
        if sent:
            if policy.header_value:
                probes.append((f"{sent}: {policy.header_value}", {sent: policy.header_value}))
            elif not policy.header_pattern:
                probes.append((f"{sent}: always", {sent: "always"}))
                probes.append((f"{sent}: never", {sent: "never"}))
        if policy.cookie:
            for value in ("always", "never"):
                probes.append(
                    (f"cookie {policy.cookie}={value}", {"Cookie": f"{policy.cookie}={value}"})
                )
    routes = [default]
    for name, headers in probes:
        forced = route(name, headers, host)
        if isinstance(forced, Route):
            routes.append(forced)
    # Other virtual hosts of the same objects (a canary on its own host).
    for other in config.servers:
        if other in (nginx_model.DEFAULT_SERVER, host) or other.startswith("*"):
            continue  # a wildcard server has no one Host to send
        forced = route(f"Host: {other}", {"Host": other}, other)
        if isinstance(forced, Route):
            routes.append(forced)
    return DataplanePlan(routes=tuple(routes), nginx=want)


def _policy(policy: nginx_model.CanaryPolicy) -> dict[str, Any]:
    """The model's policy under the names ``/dbg backends get`` prints (ingress-nginx
    pkg/apis/ingress/types.go ``TrafficShapingPolicy`` json tags)."""
    return {
        "weight": policy.weight,
        "weightTotal": policy.weight_total,
        "header": policy.header,
        "headerValue": policy.header_value,
        "headerPattern": policy.header_pattern,
        "cookie": policy.cookie,
    }


# Istio ------------------------------------------------------------------------------------


def _istio_plan(
    objects: Sequence[Manifest], namespace: str, host: str | None, path: str, gateway: str
) -> DataplanePlan:
    config = istio_model.load(objects, namespace=namespace)
    table = config.gateway_table(gateway, host or "")
    if isinstance(table, Refusal):
        raise BackendError(
            f"the Istio gateway {gateway} answers host {host!r} itself (HTTP {table.status}: "
            f"{table.reason}): nothing to wait for"
        )

    def route(name: str, headers: Mapping[str, str]) -> Route | Refusal:
        request = RoutedRequest.build(host, path, headers)
        outcomes = config.outcomes(request, gateway=gateway)
        return _route(name, headers, [o for o, share in outcomes if share > 0], objects)

    routes = [_default_or_fail(route("default", {}), f"the Istio gateway {gateway}", host, path)]
    seen: list[Mapping[str, str]] = [{}]
    wanted: list[EnvoyRouteWant] = []
    for entry in table:
        block = entry.block
        if entry.namespace == namespace:
            choices = config.weighted_destinations(entry.route)
            wanted.append(
                EnvoyRouteWant(
                    _istio_headers(block),
                    _shares({config.cluster_name(d, entry.listener_port): w for d, w in choices}),
                )
            )
        if block is None or not block.headers or block.without_headers:
            continue
        headers = _witness(block)
        if headers is None or headers in seen:
            continue
        seen.append(headers)
        forced = route(", ".join(f"{k}: {v}" for k, v in headers.items()), headers)
        if isinstance(forced, Route):
            routes.append(forced)
    skipped = any("route skipped" in line for line in config.log)
    envoy = EnvoyWant(host or "*", namespace, tuple(wanted), partial=skipped)
    return DataplanePlan(routes=tuple(routes), envoy=envoy)


def _istio_headers(block: istio_model.MatchBlock | None) -> frozenset[EnvoyHeader]:
    """A match block's Envoy header matchers (route.go ``translateHeaderMatch``; method,
    scheme and authority become the pseudo-headers ``:method``, ``:scheme``,
    ``:authority``)."""
    if block is None:
        return frozenset()
    found: set[EnvoyHeader] = set()
    for name, match in block.headers:
        found.add(EnvoyHeader(name, match.kind, match.value))
    for name, match in block.without_headers:
        found.add(EnvoyHeader(name, match.kind, match.value, invert=True))
    for name, pseudo in (
        (":method", block.method),
        (":scheme", block.scheme),
        (":authority", block.authority),
    ):
        if pseudo is not None:
            found.add(EnvoyHeader(name, pseudo.kind, pseudo.value))
    return frozenset(found)


def _witness(block: istio_model.MatchBlock) -> dict[str, str] | None:
    """Header values a request sends to be matched by ``block`` (None when we cannot tell)."""
    headers: dict[str, str] = {}
    for name, match in block.headers:
        if match.kind == "present":
            headers[name] = "always"
        elif match.kind in ("exact", "prefix"):
            headers[name] = match.value
        else:
            sample = regex_sample(match.value)
            if sample is None:
                return None
            headers[name] = sample
    return headers


# Gateway API ------------------------------------------------------------------------------


def _gateway_plan(
    objects: Sequence[Manifest], namespace: str, host: str | None, path: str, gateway: str
) -> DataplanePlan:
    config = gateway_model.load(objects, namespace=namespace)
    table = config.route_table(gateway, host or "")
    if isinstance(table, Refusal):
        raise BackendError(
            f"the Gateway {gateway} answers host {host!r} itself (HTTP {table.status}: "
            f"{table.reason}): nothing to wait for"
        )

    def route(name: str, headers: Mapping[str, str]) -> Route | Refusal:
        request = RoutedRequest.build(host, path, headers)
        outcomes = config.outcomes(request, gateway=gateway)
        return _route(name, headers, [o for o, share in outcomes if share > 0], objects)

    routes = [_default_or_fail(route("default", {}), f"the Gateway {gateway}", host, path)]
    seen: list[Mapping[str, str]] = [{}]
    wanted: list[EnvoyRouteWant] = []
    for rule, m_index in table:
        match = rule.matches[m_index]
        choices = config.weighted_backends(rule)
        wanted.append(
            EnvoyRouteWant(
                frozenset(
                    EnvoyHeader(
                        h.name, "regex" if h.kind == "RegularExpression" else "exact", h.value
                    )
                    for h in match.headers
                ),
                _shares({config.cluster_name(b): w for b, w in choices if not b.invalid_reason}),
            )
        )
        if not match.headers:
            continue
        headers: dict[str, str] | None = {}
        for condition in match.headers:
            sample = (
                condition.value
                if condition.kind != "RegularExpression"
                else regex_sample(condition.value)
            )
            if sample is None or headers is None:
                headers = None
                break
            headers[condition.name] = sample
        if not headers or headers in seen:
            continue
        seen.append(headers)
        forced = route(", ".join(f"{k}: {v}" for k, v in headers.items()), headers)
        if isinstance(forced, Route):
            routes.append(forced)
    envoy = EnvoyWant(host or "*", namespace, tuple(wanted))
    return DataplanePlan(routes=tuple(routes), envoy=envoy)


# -- shared -------------------------------------------------------------------------------


def _shares(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights as shares of their sum (weight 0 gets nothing)."""
    total = sum(w for w in weights.values() if w > 0)
    return {k: w / total for k, w in weights.items() if w > 0} if total else {}


_REGEX_CANDIDATES = ("always", "canary", "true", "1")


def regex_sample(pattern: str) -> str | None:
    """A header value that ``pattern`` matches whole (Envoy ``safe_regex``): the first
    literal of a simple alternation, or a common value the pattern accepts (``.*`` ->
    ``always``); None when we cannot tell. Only chooses a probe: where the probe goes is the
    model's answer."""
    # RE2, as Envoy matches it: linear time, whatever the pattern.
    if re2_problem(pattern) is not None:
        return None
    body = pattern.removeprefix("^").removesuffix("$")
    first = body.strip("()").split("|")[0]
    if first and re.escape(first) == first and re2_fullmatch(pattern, first):
        return first
    return next((c for c in _REGEX_CANDIDATES if re2_fullmatch(pattern, c)), None)


def _service(objects: Iterable[Manifest], name: str) -> Manifest:
    for svc in objects:
        if svc.get("kind") == "Service" and (svc.get("metadata") or {}).get("name") == name:
            return svc
    raise BackendError(f"no Service named {name!r} among the applied objects")


def _template_labels(workload: Manifest) -> dict[str, str]:
    template = (workload.get("spec") or {}).get("template") or {}
    return dict((template.get("metadata") or {}).get("labels") or {})


def workloads_behind(selector: Mapping[str, str], objects: Iterable[Manifest]) -> Behind:
    """Pod label sets and versions of the workloads a selector sends traffic to.

    Workloads scaled to 0 serve nothing and are left out. Without any matching workload (user
    manifests with other kinds) the selector itself is the only label set and the version is
    whatever the selected pods carry.
    """
    selectors: list[Mapping[str, str]] = []
    versions: set[str] = set()
    for workload in objects:
        if workload.get("kind") not in WORKLOAD_KINDS:
            continue
        labels = _template_labels(workload)
        if not labels_match(selector, labels):
            continue
        if int((workload.get("spec") or {}).get("replicas", 1)) == 0:
            continue
        selectors.append(labels)
        if VERSION_LABEL in labels:
            versions.add(labels[VERSION_LABEL])
    if not selectors:
        return (dict(selector),), frozenset()
    return tuple(selectors), frozenset(versions)


def _behind(objects: Sequence[Manifest], destination: Destination) -> Behind:
    selector = service_selector(_service(objects, destination.service))
    return workloads_behind(selector | dict(destination.labels or {}), objects)


def _merge(*parts: Behind) -> Behind:
    selectors: list[Mapping[str, str]] = []
    versions: set[str] = set()
    for sel, ver in parts:
        selectors.extend(sel)
        versions |= ver
    return tuple(selectors), frozenset(versions)
