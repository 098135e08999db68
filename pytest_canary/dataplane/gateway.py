"""A model of Gateway API (v1.6.1) HTTPRoute routing at one Gateway.

What it reproduces, each rule with its upstream source (kubernetes-sigs/gateway-api
``apis/v1/httproute_types.go``, ``shared_types.go``, ``gateway_types.go``; Istio's
implementation in istio/istio ``pilot/pkg/config/kube/gateway/conversion.go``):

- Attachment: an HTTPRoute applies to a Gateway when one of its ``parentRefs`` names it
  (group ``gateway.networking.k8s.io`` and kind ``Gateway`` by default, namespace the
  route's, ``sectionName``/``port`` narrowing to a listener) and the listener admits the
  route's namespace (``allowedRoutes.namespaces.from``, default ``Same``).
- Hostnames (``HTTPRouteSpec.hostnames``): a route without hostnames takes the listener's;
  ``*.example.com`` matches any name ending in ``.example.com`` but not ``example.com``; the
  port of the Host header is ignored; a listener hostname must match the request too.
  Between routes, precedence goes to the largest matching non-wildcard hostname, then the
  largest matching hostname.
- Matches (``HTTPRouteRule.matches``): every condition of one match ANDs, several matches
  OR; a rule without matches is ``PathPrefix /``. Precedence across all rules of all
  applicable routes: an ``Exact`` path, then ``PathPrefix`` with the most characters
  (``RegularExpression`` paths after prefixes, as Istio's ``getURIRank`` orders them), then
  a method match, then the most header matches, then the most query param matches; ties:
  the oldest route, then ``{namespace}/{name}`` alphabetically, then the first rule and
  match in list order. No match → 404 ("When no rules matching a request have been
  successfully attached to the parent ... a HTTP 404 status code MUST be returned").
- ``PathPrefix`` matches element by element, a trailing ``/`` ignored (``/abc`` matches
  ``/abc``, ``/abc/`` and ``/abc/def`` but not ``/abcd``); ``Exact`` is case-sensitive.
- Header matches (``HTTPHeaderMatch``): names case-insensitive; when several entries name
  the same header only the first counts; ``Exact`` compares the value, ``RegularExpression``
  is implementation-specific: Istio turns it into an Envoy ``safe_regex`` (RE2), which must
  match the whole value.
- ``backendRefs``: share = weight / sum of weights, default weight 1, weight 0 gets nothing
  (``BackendRef.weight``); a rule whose refs are all invalid or all weight 0 answers 500
  ("If *all* entries in BackendRefs are invalid ... MUST receive a 500 status code"); a ref
  to a missing Service is invalid and its share of requests gets 500.
- A ``port`` the Service does not have is not checked by Istio (conversion.go
  ``buildDestination`` turns it into the destination port, ResolvedRefs stays True): the
  cluster ``outbound|<port>||<Service FQDN>`` is never built (cluster.go
  ``buildOutboundClusters`` builds one per Service port), so that ref's share gets Envoy's
  503 ``NC``. The spec names no status for it.
- A route attaches to a listener only if a parentRef selects it (``sectionName``, ``port``),
  the listener admits it (HTTP or HTTPS protocol, ``allowedRoutes``) and, when both name
  hostnames, one of the route's intersects the listener's (``HTTPRouteSpec.hostnames``: "If
  both the Listener and HTTPRoute have specified hostnames, and none match ... the HTTPRoute
  is not accepted"); :meth:`GatewayConfig.not_accepted` gives the ``Accepted=False`` reason
  of shared_types.go (``NoMatchingParent``, ``NotAllowedByListeners``,
  ``NoMatchingListenerHostname``). Only HTTP listeners serve the model's requests.

Simplifications, stated: the request method is taken as ``GET``; query parameter matches
never match (the router sees the path without its query); filters are not applied.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_canary.dataplane.hostnames import GATEWAY_API_WILDCARDS, HostIndex
from pytest_canary.dataplane.listing import listed
from pytest_canary.dataplane.request import Destination, Refusal, RoutedRequest, weighted_pick
from pytest_canary.re2 import Re2Error, fullmatch, re2_problem

GATEWAY_GROUP = "gateway.networking.k8s.io"
ASSUMED_METHOD = "GET"


@dataclass(frozen=True)
class HeaderMatch:
    """One ``HTTPHeaderMatch`` (name lowercased)."""

    name: str
    kind: str  # Exact | RegularExpression
    value: str

    def matches(self, headers: Mapping[str, str]) -> bool:
        """Whether the request's header satisfies the match (absent: never)."""
        actual = headers.get(self.name)
        if actual is None:
            return False
        if self.kind == "RegularExpression":
            # Envoy safe_regex: the whole value must match (RE2, linear time).
            return fullmatch(self.value, actual)
        return actual == self.value


@dataclass(frozen=True)
class RouteMatch:
    """One ``HTTPRouteMatch``."""

    path_type: str = "PathPrefix"
    path: str = "/"
    method: str | None = None
    headers: tuple[HeaderMatch, ...] = ()
    query_params: int = 0

    def matches(self, request: RoutedRequest) -> bool:
        """Every condition holds (AND)."""
        if not path_matches(self.path_type, self.path, request.path):
            return False
        if self.method is not None and self.method != ASSUMED_METHOD:
            return False
        if self.query_params:
            return False  # the routed path carries no query: see module docstring
        return all(h.matches(request.headers) for h in self.headers)

    def precedence(self) -> tuple[int, int, int, int, int]:
        """Sort key, smaller first: Exact, longest PathPrefix, (RegularExpression), method,
        most headers, most query params (``HTTPRouteRule.matches``)."""
        rank = {"Exact": 0, "PathPrefix": 1, "RegularExpression": 2}.get(self.path_type, 3)
        length = (
            len(self.path.rstrip("/") or "/") if self.path_type == "PathPrefix" else len(self.path)
        )
        return (rank, -length, 0 if self.method else 1, -len(self.headers), -self.query_params)


def path_matches(path_type: str, value: str, path: str) -> bool:
    """``PathMatchType`` semantics: Exact, element-wise PathPrefix, full-match regex."""
    if path_type == "Exact":
        return path == value
    if path_type == "RegularExpression":
        return fullmatch(value, path)
    prefix = value.rstrip("/")
    if not prefix:
        return True
    return path == prefix or path.startswith(prefix + "/")


@dataclass(frozen=True)
class BackendRef:
    """One ``HTTPBackendRef`` to a Service (``service`` empty when the ref is invalid)."""

    service: str
    port: int | None
    weight: int
    invalid_reason: str = ""
    # The Service exists but has no such port: no Envoy cluster (503 NC), not invalid.
    missing_port: bool = False


@dataclass(frozen=True)
class Rule:
    """One ``HTTPRouteRule`` with its place for tie-breaking."""

    route: str
    index: int
    name: str
    matches: tuple[RouteMatch, ...]
    backends: tuple[BackendRef, ...]

    def describe(self) -> str:
        """``HTTPRoute kubeapp rule weighted`` for reasons."""
        return f"HTTPRoute {self.route} rule {self.name or self.index}"


@dataclass(frozen=True)
class ParentRef:
    """A ``parentRefs`` entry, defaults applied."""

    namespace: str
    name: str
    section: str | None
    port: int | None


@dataclass(frozen=True)
class HttpRouteRules:
    """The parts of an HTTPRoute routing needs."""

    name: str
    namespace: str
    age: tuple[str, int]  # (metadata.creationTimestamp or "", position): smaller is older
    hostnames: tuple[str, ...]
    parents: tuple[ParentRef, ...]
    rules: tuple[Rule, ...]


@dataclass(frozen=True)
class Listener:
    """An HTTP listener of a Gateway."""

    name: str
    port: int
    hostname: str | None
    allowed_from: str  # Same | All | Selector
    protocol: str = "HTTP"


@dataclass(frozen=True)
class GatewayEntry:
    """A Gateway and its HTTP listeners."""

    name: str
    namespace: str
    listeners: tuple[Listener, ...]


def hostname_matches(pattern: str, host: str) -> bool:
    """``*.example.com`` is a suffix match that needs at least one more label."""
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return pattern == host


def hostnames_intersect(a: str, b: str) -> bool:
    """Whether a listener hostname and a route hostname intersect (``HTTPRouteSpec.hostnames``:
    ``test.example.com`` and ``*.example.com`` do, ``*.example.com`` and
    ``foo.test.example.com`` do, ``example.com`` and ``*.example.com`` do not)."""
    if a.startswith("*.") and b.startswith("*."):
        return a.endswith(b[1:]) or b.endswith(a[1:])
    return hostname_matches(a, b) or hostname_matches(b, a)


@dataclass
class GatewayConfig:
    """The routing configuration of Gateways and HTTPRoutes in one namespace."""

    namespace: str = "default"
    gateways: dict[str, GatewayEntry] = field(default_factory=dict)
    routes: list[HttpRouteRules] = field(default_factory=list)
    services: dict[str, tuple[int, ...]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def route(
        self, request: RoutedRequest, rng: random.Random, *, gateway: str
    ) -> Destination | Refusal:
        """Where one request entering through Gateway ``gateway`` (name or namespace/name) goes."""
        chosen = self._matched(request, gateway)
        if isinstance(chosen, Refusal):
            return chosen
        return self._pick(*chosen, rng)

    def outcomes(
        self, request: RoutedRequest, *, gateway: str
    ) -> list[tuple[Destination | Refusal, float]]:
        """Where one request may go, with the probability of each place: the distribution
        :meth:`route` draws from (weight / sum of the weights above 0)."""
        chosen = self._matched(request, gateway)
        if isinstance(chosen, Refusal):
            return [(chosen, 1.0)]
        rule, m_index = chosen
        choices = self.weighted_backends(rule)
        total = sum(weight for _, weight in choices)
        if not total:
            return [(self._refusal(rule, m_index), 1.0)]
        return [(self._resolve(rule, m_index, b, total), w / total) for b, w in choices]

    def route_table(self, gateway: str, host: str) -> list[tuple[Rule, int]] | Refusal:
        """Every (rule, match index) attached to ``gateway`` for ``host``, highest precedence
        first: the order in which a request is matched (``HTTPRouteRule.matches``
        precedence; Istio's conversion.go ``sortHTTPRoutes`` orders the Envoy routes so)."""
        key = gateway if "/" in gateway else f"{self.namespace}/{gateway}"
        gw = self.gateways.get(key)
        if gw is None:
            return Refusal(404, f"no Gateway {key}")
        host = host.lower()
        listeners = [
            lst
            for lst in gw.listeners
            if lst.protocol == "HTTP"
            and (lst.hostname is None or hostname_matches(lst.hostname, host))
        ]
        if not listeners:
            return Refusal(404, f"Host {host!r} matches no listener of Gateway {key}")
        candidates: list[tuple[tuple[Any, ...], Rule, int]] = []
        for route in self.routes:
            matched_host = self._attached_host(route, gw, listeners, host)
            if matched_host is None:
                continue
            exact_len = 0 if matched_host.startswith("*") else len(matched_host)
            for rule in route.rules:
                for m_index, match in enumerate(rule.matches):
                    key_ = (
                        -exact_len,
                        -len(matched_host),
                        *match.precedence(),
                        route.age,
                        f"{route.namespace}/{route.name}",
                        rule.index,
                        m_index,
                    )
                    candidates.append((key_, rule, m_index))
        return [(rule, m_index) for _, rule, m_index in sorted(candidates, key=lambda c: c[0])]

    def not_accepted(self, route: HttpRouteRules, parent: ParentRef) -> str | None:
        """The ``Accepted=False`` reason of ``route`` for ``parent`` (shared_types.go
        ``RouteConditionReason``), or None when it attaches to a listener (or the Gateway
        is not in the configuration: nothing to say)."""
        gw = self.gateways.get(f"{parent.namespace}/{parent.name}")
        if gw is None:
            return None
        selected = [
            lst
            for lst in gw.listeners
            if (parent.section is None or parent.section == lst.name)
            and (parent.port is None or parent.port == lst.port)
        ]
        if not selected:
            return "NoMatchingParent"
        allowed = [
            lst
            for lst in selected
            if lst.protocol in ("HTTP", "HTTPS")
            and not (lst.allowed_from == "Same" and route.namespace != gw.namespace)
        ]
        if not allowed:
            return "NotAllowedByListeners"
        if not route.hostnames or any(lst.hostname is None for lst in allowed):
            return None
        # hostnames_intersect for every (listener, route hostname) pair, from an index of
        # the route's hostnames.
        hostnames = HostIndex(route.hostnames, GATEWAY_API_WILDCARDS)
        if any(hostnames.overlaps(lst.hostname) for lst in allowed if lst.hostname is not None):
            return None
        return "NoMatchingListenerHostname"

    def _matched(self, request: RoutedRequest, gateway: str) -> tuple[Rule, int] | Refusal:
        table = self.route_table(gateway, request.host or "")
        if isinstance(table, Refusal):
            return table
        for rule, m_index in table:
            if rule.matches[m_index].matches(request):
                return rule, m_index
        key = gateway if "/" in gateway else f"{self.namespace}/{gateway}"
        return Refusal(404, f"no HTTPRoute rule attached to Gateway {key} matches")

    @staticmethod
    def weighted_backends(rule: Rule) -> list[tuple[BackendRef, int]]:
        """The backendRefs a request of ``rule`` is shared among, with their weights: weight
        0 gets nothing (``BackendRef.weight``; Istio conversion.go ``buildHTTPDestination``
        drops them)."""
        return [(b, b.weight) for b in rule.backends if b.weight > 0]

    def cluster_name(self, backend: BackendRef) -> str:
        """The Envoy cluster Istio routes a backendRef to: ``outbound|<port>||<Service FQDN>``
        (conversion.go ``buildDestination`` -> route.go ``GetDestinationCluster``)."""
        port = backend.port if backend.port is not None else 80
        return f"outbound|{port}||{backend.service}.{self.namespace}.svc.cluster.local"

    def _attached_host(
        self, route: HttpRouteRules, gw: GatewayEntry, listeners: list[Listener], host: str
    ) -> str | None:
        """The hostname by which ``route`` serves ``host`` at ``gw`` (``""`` when neither
        route nor listener names one), or ``None`` when the route does not apply."""
        for parent in route.parents:
            if (parent.namespace, parent.name) != (gw.namespace, gw.name):
                continue
            for lst in listeners:
                if parent.section is not None and parent.section != lst.name:
                    continue
                if parent.port is not None and parent.port != lst.port:
                    continue
                if lst.allowed_from == "Same" and route.namespace != gw.namespace:
                    continue
                if not route.hostnames:
                    return lst.hostname or ""
                for name in route.hostnames:
                    if hostname_matches(name, host):
                        return name
        return None

    def _pick(self, rule: Rule, m_index: int, rng: random.Random) -> Destination | Refusal:
        choices = self.weighted_backends(rule)
        total = sum(weight for _, weight in choices)
        if total == 0:
            return self._refusal(rule, m_index)
        chosen = weighted_pick([b for b, _ in choices], [w for _, w in choices], rng)
        return self._resolve(rule, m_index, chosen, total)

    @staticmethod
    def _refusal(rule: Rule, m_index: int) -> Refusal:
        why = f"{rule.describe()} match[{m_index}]"
        return Refusal(500, f"{why}: no backendRef with a weight above 0 (all invalid)")

    def _resolve(
        self, rule: Rule, m_index: int, chosen: BackendRef, total: int
    ) -> Destination | Refusal:
        why = f"{rule.describe()} match[{m_index}]"
        if chosen.invalid_reason:
            return Refusal(500, f"{why}: backendRef invalid: {chosen.invalid_reason}")
        if chosen.missing_port:
            ports = listed(self.services.get(chosen.service, ()))
            return Refusal(
                503,
                f"{why}: cluster {self.cluster_name(chosen)} not found (NC): Service "
                f"{chosen.service} has no port {chosen.port} (ports: {ports})",
            )
        port: int | str = chosen.port if chosen.port is not None else 80
        share = f"weight {chosen.weight}/{total}"
        return Destination(chosen.service, port, reason=f"{why} ({share})")


# -- loading ----------------------------------------------------------------------------


def _is_gateway_api(obj: Mapping[str, Any], kind: str) -> bool:
    return (
        obj.get("kind") == kind and str(obj.get("apiVersion", "")).split("/", 1)[0] == GATEWAY_GROUP
    )


def _parse_match(raw: Mapping[str, Any]) -> RouteMatch:
    path = raw.get("path") or {}
    headers: list[HeaderMatch] = []
    seen: set[str] = set()
    for header in raw.get("headers") or []:
        name = str(header.get("name", "")).lower()
        if name in seen:
            continue  # "only the first entry with an equivalent name MUST be considered"
        seen.add(name)
        kind = str(header.get("type") or "Exact")
        value = str(header.get("value", ""))
        if kind == "RegularExpression":
            _check_regex(value)
        headers.append(HeaderMatch(name, kind, value))
    path_type = str(path.get("type") or "PathPrefix")
    path_value = str(path.get("value") or "/")
    if path_type == "RegularExpression":
        _check_regex(path_value)
    return RouteMatch(
        path_type=path_type,
        path=path_value,
        method=raw.get("method"),
        headers=tuple(headers),
        query_params=len(raw.get("queryParams") or []),
    )


def _check_regex(pattern: str) -> None:
    # Istio turns RegularExpression into an Envoy safe_regex: a pattern RE2 refuses makes
    # Envoy reject the route configuration.
    problem = re2_problem(pattern)
    if problem:
        raise Re2Error(problem)


def _backend(
    raw: Mapping[str, Any], namespace: str, services: Mapping[str, tuple[int, ...]]
) -> BackendRef:
    weight = int(raw.get("weight", 1))
    name = str(raw.get("name", ""))
    port = raw.get("port")
    group, kind = str(raw.get("group") or ""), str(raw.get("kind") or "Service")
    ref_ns = str(raw.get("namespace") or namespace)
    if (group, kind) != ("", "Service"):
        return BackendRef("", port, weight, f"{group}/{kind} {name} is not a Service")
    if ref_ns != namespace:
        return BackendRef("", port, weight, f"Service {ref_ns}/{name} needs a ReferenceGrant")
    if name not in services:
        return BackendRef("", port, weight, f"Service {name} not found")
    if port is None:
        return BackendRef("", port, weight, f"Service {name} referenced without a port")
    return BackendRef(name, int(port), weight, missing_port=int(port) not in services[name])


def load(objects: Iterable[Mapping[str, Any]], namespace: str = "default") -> GatewayConfig:
    """Build the routing configuration from objects in creation order (oldest first).

    Reads Services, Gateway API ``Gateway`` and ``HTTPRoute`` objects and ignores the rest.
    Routes are loaded after all Services so that a route applied before its Service still
    resolves (the controller reconciles continuously). A route the API server would reject
    (an invalid regex) is left out with a log line.
    """
    items = list(objects)
    config = GatewayConfig(namespace=namespace)
    for obj in items:
        meta = obj.get("metadata") or {}
        ns = str(meta.get("namespace") or namespace)
        if obj.get("kind") == "Service" and obj.get("apiVersion") == "v1" and ns == namespace:
            ports = tuple(int(p.get("port", 0)) for p in (obj.get("spec") or {}).get("ports") or [])
            config.services[str(meta.get("name", ""))] = ports
    for age, obj in enumerate(items):
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        ns = str(meta.get("namespace") or namespace)
        spec = obj.get("spec") or {}
        if _is_gateway_api(obj, "Gateway"):
            listeners = tuple(
                Listener(
                    name=str(lst.get("name", "")),
                    port=int(lst.get("port", 0)),
                    hostname=lst.get("hostname"),
                    allowed_from=str(
                        ((lst.get("allowedRoutes") or {}).get("namespaces") or {}).get("from")
                        or "Same"
                    ),
                    protocol=str(lst.get("protocol", "")).upper(),
                )
                for lst in spec.get("listeners") or []
            )
            config.gateways[f"{ns}/{name}"] = GatewayEntry(name, ns, listeners)
        elif _is_gateway_api(obj, "HTTPRoute"):
            try:
                # RFC 3339 UTC timestamps sort as strings; without one, apply order decides.
                stamp = str(meta.get("creationTimestamp") or "")
                age_key = (stamp, 0 if stamp else age)
                config.routes.append(_http_route(spec, name, ns, age_key, config.services))
            except Re2Error as exc:
                config.log.append(f"HTTPRoute {name}: invalid regex ({exc}); rejected")
    return config


def _http_route(
    spec: Mapping[str, Any],
    name: str,
    ns: str,
    age: tuple[str, int],
    services: Mapping[str, tuple[int, ...]],
) -> HttpRouteRules:
    parents = tuple(
        ParentRef(
            namespace=str(p.get("namespace") or ns),
            name=str(p.get("name", "")),
            section=p.get("sectionName"),
            port=p.get("port"),
        )
        for p in spec.get("parentRefs") or []
        if (p.get("group") or GATEWAY_GROUP) == GATEWAY_GROUP
        and (p.get("kind") or "Gateway") == "Gateway"
    )
    rules = tuple(
        Rule(
            route=name,
            index=index,
            name=str(raw.get("name") or ""),
            matches=tuple(_parse_match(m) for m in raw.get("matches") or [{}]),
            backends=tuple(_backend(b, ns, services) for b in raw.get("backendRefs") or []),
        )
        for index, raw in enumerate(spec.get("rules") or [])
    )
    hostnames = tuple(str(h).lower() for h in spec.get("hostnames") or ())
    return HttpRouteRules(name, ns, age, hostnames, parents, rules)
