"""A model of Istio (1.30) HTTP routing: VirtualServices, DestinationRule subsets, Gateways.

What it reproduces, each rule with its upstream source (repositories istio/istio, istio/api,
envoyproxy/envoy):

- Which VirtualServices apply. At an ingress gateway: those whose ``gateways`` name that
  Gateway and whose ``hosts`` match the Host header, the Host also matching one of the
  Gateway's server ``hosts``; VirtualServices bound to the same gateway and host are merged,
  routes in creation order (istio.io analysis IST0109: "Istio supports merging of virtual
  services that are attached to the ingress gateways"). In the mesh (a sidecar): those whose
  ``gateways`` are empty or include ``mesh`` (virtual_service.proto ``gateways``), matched
  against the destination host; several for one host conflict (IST0109) and the oldest is
  used here. Short names mean ``<name>.<namespace of the rule>.svc.cluster.local``
  (virtual_service.proto ``hosts``). No VirtualService for a Service: plain routing to all
  its pods (pilot/pkg/networking/core/route/route.go ``buildSidecarVirtualHostForService``).
- Routes in order, first match wins; within one match block all conditions AND, several
  blocks OR (virtual_service.proto ``HTTPRoute.match``, route.go
  ``BuildHTTPRoutesForVirtualService``). No route matches → 404 (Envoy ``NR``).
- A match block applies to a caller only if ``gateways`` (when set) names where the request
  is, else ``sourceLabels`` ⊆ the caller's labels and ``sourceNamespace`` is the caller's
  (route.go ``sourceMatchHTTP``); ``port`` must be the listener port (``translateRoute``).
- String matches (route.go ``TranslateRouteMatch`` / ``translateHeaderMatch``): ``exact``,
  ``prefix`` and ``regex``; regex is Envoy ``safe_regex`` (RE2), which must match the WHOLE
  value; ``{}`` or ``regex: "*"`` checks presence only. Header names are lowercase (Envoy
  lowercases header names; virtual_service.proto: "The header keys must be lowercase").
  A URI ``prefix`` is a plain string prefix for VirtualServices; ``ignoreUriCase`` applies to
  the URI only. ``withoutHeaders`` inverts a header match, a missing header counting as "".
- Destinations (route.go ``applyHTTPRouteDestination``): a single destination gets all
  traffic whatever its weight; several become Envoy ``weighted_clusters`` with weight-0 ones
  dropped, one draw per request, share = weight / sum (envoy source/common/router
  ``WeightedClusterEntry`` selection: random value modulo the total weight).
- Cluster names: ``outbound|<port>|<subset>|<host FQDN>`` (route.go ``GetDestinationCluster``):
  the port is ``destination.port.number``, else the Service's only port, else the listener
  port -- at an ingress gateway the port of the Gateway server the request came in on
  (pilot/pkg/networking/core/gateway.go ``buildGatewayHTTPRouteConfig`` builds the routes
  of each server with ``server.Port.Number``); in a sidecar the Service port the caller
  called. istiod builds outbound clusters only for the Service's own ports (cluster.go
  ``buildOutboundClusters``), so a port the Service does not have, a subset not declared by
  a DestinationRule for that host, or a host without a Service has no cluster: Envoy answers
  503 with flag ``NC`` (cluster not found). istioctl analyze IST0101 checks only written
  ports (analyzers/virtualservice/destinationhosts.go ``checkServiceEntryPorts``).
- A subset's endpoints are the Service's pods that also carry the subset's labels; a subset
  that selects no pod answers 503 ``UH`` (no healthy upstream) -- istioctl analyze IST0173
  ``DestinationRuleSubsetNotSelectPods`` (analyzers/destinationrule/subset.go, which merges
  the Service's selector with the subset's labels as :meth:`IstioConfig.subset_selector`).
- Gateway and VirtualService hosts overlap as pkg/config/host/name.go ``Name.Matches``
  (:func:`hosts_overlap`); a VirtualService bound to a Gateway none of whose server hosts
  overlaps its own is served for no request (istioctl analyze IST0132
  ``VirtualServiceHostNotFoundInGateway``, analyzers/virtualservice/gateways.go
  ``vsHostInGateway``).

Simplifications, stated: the request method is taken as ``GET`` (the harness sends GETs),
the scheme as ``http``. The gateway entry serves a Gateway's HTTP servers: a request takes
the first server whose hosts match its Host, servers on port 80 first, and that server's
port is the listener port. A sidecar's caller is taken to call the destination Service's
first port (a match ``port`` compares with 80 there); upstream, a VirtualService that
sends its host's callers to another Service without naming a port uses the called port,
which that Service may lack -- not modelled. Query parameter matches never match (the
router sees the path without its query); delegate VirtualServices, redirects and direct
responses are not modelled (routes using them are skipped with a log line). Regexes run on
the real RE2 engine (``pytest_canary.re2``), linear in the header's length.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pytest_canary.dataplane.hostnames import ISTIO_WILDCARDS, HostIndex
from pytest_canary.dataplane.listing import listed
from pytest_canary.dataplane.request import Destination, Refusal, RoutedRequest, weighted_pick
from pytest_canary.re2 import Re2Error, fullmatch, re2_problem

MESH = "mesh"
CLUSTER_DOMAIN = "svc.cluster.local"
LISTENER_PORT = 80
ASSUMED_METHOD = "GET"
ASSUMED_SCHEME = "http"
ISTIO_GROUP = "networking.istio.io"
# istio/istio pkg/config/validation validateStringRegexp: "max length allowed is 1024".
ISTIO_MAX_REGEX_LENGTH = 1024


# -- string matching --------------------------------------------------------------------


@dataclass(frozen=True)
class StringMatch:
    """An Istio ``StringMatch``: kind is exact, prefix, regex or present."""

    kind: str
    value: str = ""

    def matches(self, candidate: str | None, *, ignore_case: bool = False) -> bool:
        """Whether ``candidate`` (``None``: absent) satisfies this match."""
        if candidate is None:
            return False
        if self.kind == "present":
            return True
        value, wanted = candidate, self.value
        if ignore_case:
            value, wanted = value.lower(), wanted.lower()
        if self.kind == "exact":
            return value == wanted
        if self.kind == "prefix":
            return value.startswith(wanted)
        # Envoy safe_regex: the regex must match the entire value (RegexMatcher docs), with
        # RE2, in time linear in the value.
        return fullmatch(self.value, candidate, ignore_case=ignore_case)


def parse_string_match(raw: Mapping[str, Any] | None) -> StringMatch:
    """``{exact|prefix|regex: value}``; ``{}`` and ``regex: "*"`` mean presence
    (route.go ``canBeConvertedToPresentMatch``)."""
    raw = raw or {}
    for kind in ("exact", "prefix", "regex"):
        if kind in raw:
            value = str(raw[kind])
            if kind == "regex" and value == "*":
                return StringMatch("present")
            if kind == "regex":
                # pkg/config/validation validateStringRegexp: an invalid regex (or one over
                # 1024 characters) makes the whole object invalid.
                if len(value) > ISTIO_MAX_REGEX_LENGTH:
                    raise Re2Error(f"longer than {ISTIO_MAX_REGEX_LENGTH} characters")
                problem = re2_problem(value)
                if problem:
                    raise Re2Error(problem)
            return StringMatch(kind, value)
    return StringMatch("present")


# -- configuration ----------------------------------------------------------------------


@dataclass(frozen=True)
class MatchBlock:
    """One ``HTTPMatchRequest``: every condition must hold."""

    uri: StringMatch | None = None
    ignore_uri_case: bool = False
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: tuple[tuple[str, StringMatch], ...] = ()
    without_headers: tuple[tuple[str, StringMatch], ...] = ()
    query_params: int = 0
    port: int | None = None
    source_labels: Mapping[str, str] = field(default_factory=dict)
    source_namespace: str = ""
    gateways: tuple[str, ...] = ()

    def applies_to(
        self,
        caller_labels: Mapping[str, str],
        caller_namespace: str,
        gateway_names: frozenset[str],
        listener_port: int = LISTENER_PORT,
    ) -> bool:
        """route.go ``sourceMatchHTTP``: gateways (if any) else sourceLabels ⊆ caller; a
        ``port`` must be the listener's (``translateRoute``)."""
        if self.port is not None and self.port != listener_port:
            return False
        if self.gateways:
            return any(g in gateway_names for g in self.gateways)
        if not all(caller_labels.get(k) == v for k, v in self.source_labels.items()):
            return False
        return not self.source_namespace or self.source_namespace == caller_namespace

    def matches(self, request: RoutedRequest) -> bool:
        """All request conditions of the block (AND)."""
        if self.query_params:
            return False  # the routed path carries no query: see module docstring
        if self.uri is not None and not self.uri.matches(
            request.path, ignore_case=self.ignore_uri_case
        ):
            return False
        if self.scheme is not None and not self.scheme.matches(ASSUMED_SCHEME):
            return False
        if self.method is not None and not self.method.matches(ASSUMED_METHOD):
            return False
        if self.authority is not None and not self.authority.matches(request.host):
            return False
        for name, match in self.headers:
            if not match.matches(request.headers.get(name)):
                return False
        for name, match in self.without_headers:
            # translateRouteMatch: inverted, a missing header treated as empty unless the
            # match is a presence check.
            value = request.headers.get(name)
            if match.kind != "present" and value is None:
                value = ""
            if match.matches(value):
                return False
        return True


@dataclass(frozen=True)
class RouteDestination:
    """One ``HTTPRouteDestination``."""

    host: str  # FQDN
    subset: str
    port: int | None
    weight: int


@dataclass(frozen=True)
class HttpRoute:
    """One ``HTTPRoute`` of a VirtualService."""

    virtual_service: str
    name: str
    matches: tuple[MatchBlock, ...]
    destinations: tuple[RouteDestination, ...]

    def describe(self) -> str:
        """``VirtualService kubeapp route weighted`` for reasons and logs."""
        if not self.virtual_service:
            return self.name  # the plain route of a Service without VirtualService
        label = self.name or "(unnamed)"
        return f"VirtualService {self.virtual_service} route {label}"


@dataclass(frozen=True)
class RouteEntry:
    """One Envoy route as istiod builds it for a proxy: an HTTP route of a VirtualService
    with one of its match blocks (``index``), or with none (a route without ``match``)."""

    route: HttpRoute
    block: MatchBlock | None
    index: int | None
    namespace: str = ""  # of the VirtualService
    # The port of the listener the route is built for (a Gateway server's); None in the mesh.
    listener_port: int | None = None

    @property
    def catch_all(self) -> bool:
        """route.go ``IsCatchAllRoute``: the path matches everything (no URI match, prefix
        ``/`` or regex ``.*``) and there is no header or query parameter matcher (method,
        scheme and authority matches are header matchers in Envoy)."""
        block = self.block
        if block is None:
            return True
        uri = block.uri
        everything = uri is None or (uri.kind, uri.value) in (("prefix", "/"), ("regex", ".*"))
        return (
            everything
            and not block.headers
            and not block.without_headers
            and not block.query_params
            and block.method is None
            and block.scheme is None
            and block.authority is None
        )


def _translate(
    vs: VirtualServiceRules,
    caller_labels: Mapping[str, str],
    caller_namespace: str,
    gateway_names: frozenset[str],
    listener_port: int | None = None,
) -> list[RouteEntry]:
    """The Envoy routes of one VirtualService for one proxy and listener (route.go
    ``BuildHTTPRoutesForVirtualService``, called with the listener port): a route without
    ``match`` is one catch-all entry; otherwise one entry per match block that applies to
    the proxy (``sourceMatchHTTP``); nothing after the first catch-all entry (it would never
    be reached). ``listener_port`` None: a sidecar (match ports compare with 80)."""
    entries: list[RouteEntry] = []
    port = LISTENER_PORT if listener_port is None else listener_port
    for route in vs.routes:
        if not route.matches:
            entries.append(RouteEntry(route, None, None, vs.namespace, listener_port))
            break
        for index, block in enumerate(route.matches):
            if not block.applies_to(caller_labels, caller_namespace, gateway_names, port):
                continue  # istiod does not even send this match to that proxy
            entries.append(RouteEntry(route, block, index, vs.namespace, listener_port))
            if entries[-1].catch_all:
                break
        if entries and entries[-1].catch_all:
            break
    return entries


@dataclass(frozen=True)
class VirtualServiceRules:
    """The parts of a VirtualService routing needs, hosts and gateways normalised."""

    name: str
    namespace: str
    hosts: tuple[str, ...]  # FQDNs or wildcards
    gateways: tuple[str, ...]  # "mesh" or "<namespace>/<name>"
    routes: tuple[HttpRoute, ...]


@dataclass(frozen=True)
class ServiceEntry:
    """A Kubernetes Service as a registry entry."""

    name: str
    namespace: str
    ports: tuple[int, ...]
    selector: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class HttpServer:
    """One HTTP (or HTTP2) server of an Istio ``Gateway``: its port and hosts."""

    port: int
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class IngressGateway:
    """An Istio ``Gateway``: its HTTP servers, the hosts of all its servers and the labels
    of its proxy pods."""

    name: str
    namespace: str
    http_servers: tuple[HttpServer, ...]
    selector: Mapping[str, str]
    server_hosts: tuple[str, ...] = ()  # of every server, any port or protocol

    @cached_property
    def server_index(self) -> HostIndex:
        """``server_hosts`` indexed for :func:`hosts_overlap` questions."""
        return HostIndex(self.server_hosts, ISTIO_WILDCARDS)

    @property
    def hosts(self) -> tuple[str, ...]:
        """The hosts of its HTTP servers, in order."""
        return tuple(h for server in self.http_servers for h in server.hosts)

    def listener_for(self, host: str) -> HttpServer | None:
        """The HTTP server a request for ``host`` reaches through the gateway entry: the
        first whose hosts match it, servers on port 80 before the others (one entry stands
        for the gateway's HTTP ports)."""
        servers = sorted(self.http_servers, key=lambda s: s.port != LISTENER_PORT)
        for server in servers:
            if any(host_matches(pattern, host) for pattern in server.hosts):
                return server
        return None


def fqdn(host: str, namespace: str) -> str:
    """Istio's short-name rule: a host without dots is ``<host>.<namespace>.svc.cluster.local``
    (virtual_service.proto ``hosts``); anything else is taken as written, lowercased."""
    host = host.lower()
    if host == "*" or "." in host:
        return host
    return f"{host}.{namespace}.{CLUSTER_DOMAIN}"


def host_matches(pattern: str, host: str) -> bool:
    """Istio host matching: exact, ``*`` for all, ``*.suffix`` for any name ending so."""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def hosts_overlap(a: str, b: str) -> bool:
    """pkg/config/host/name.go ``Name.Matches``: equal names, or a wildcard (``*`` or
    ``*.suffix``) on either side covering the other (two wildcards: the shorter suffix
    ends the longer one)."""
    a_wild, b_wild = a.startswith("*"), b.startswith("*")
    if a_wild and b_wild:
        shorter, longer = sorted((a, b), key=len)
        return longer[1:].endswith(shorter[1:])
    if a_wild:
        return b.endswith(a[1:])
    if b_wild:
        return a.endswith(b[1:])
    return a == b


def _gateway_key(ref: str, namespace: str) -> str:
    if ref == MESH:
        return MESH
    return ref if "/" in ref else f"{namespace}/{ref}"


@dataclass
class IstioConfig:
    """The routing configuration istiod would push, from one namespace's objects."""

    namespace: str = "default"
    virtual_services: list[VirtualServiceRules] = field(default_factory=list)
    subsets: dict[str, dict[str, Mapping[str, str]]] = field(default_factory=dict)
    services: dict[str, ServiceEntry] = field(default_factory=dict)
    gateways: dict[str, IngressGateway] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    # (host FQDN, subset) -> the DestinationRule that declares it (the first one).
    subset_owners: dict[tuple[str, str], str] = field(default_factory=dict)

    def subset_selector(self, host: str, subset: str) -> dict[str, str] | None:
        """The labels a pod needs to be an endpoint of ``subset`` of ``host``: the Service's
        selector merged with the subset's labels (analyzers/destinationrule/subset.go
        ``labels.Merge``); None when the Service or the subset is unknown."""
        svc = self.services.get(host)
        labels = self.subsets.get(host, {}).get(subset)
        if svc is None or labels is None:
            return None
        return {**svc.selector, **labels}

    def gateway_covers(self, gateway: str, hosts: Iterable[str]) -> bool:
        """Whether a server host of ``gateway`` overlaps one of ``hosts`` (analyzers/
        virtualservice/gateways.go ``vsHostInGateway``, :func:`hosts_overlap` for each pair,
        answered from the Gateway's index); True for an unknown Gateway."""
        gw = self.gateways.get(gateway)
        if gw is None:
            return True
        return gw.server_index.overlaps_any(hosts)

    def listener_ports(self, vs: VirtualServiceRules, gateway: str) -> tuple[int, ...]:
        """The ports of the HTTP servers of ``gateway`` whose hosts overlap the
        VirtualService's: the listeners istiod builds its routes for (gateway.go
        ``buildGatewayHTTPRouteConfig``: ``serverHosts.Intersection(virtualServiceHosts)``,
        then ``BuildHTTPRoutesForVirtualService`` with the server's port)."""
        gw = self.gateways.get(gateway)
        if gw is None:
            return ()
        ports: list[int] = []
        for server in gw.http_servers:
            if server.port not in ports and HostIndex(server.hosts, ISTIO_WILDCARDS).overlaps_any(
                vs.hosts
            ):
                ports.append(server.port)
        return tuple(ports)

    def route(
        self, request: RoutedRequest, rng: random.Random, *, gateway: str | None
    ) -> Destination | Refusal:
        """Where one request goes.

        Args:
            request: the request; for mesh traffic ``source_labels`` are the caller's labels
                and the host names the destination service.
            rng: the source of the per-request weighted draw.
            gateway: the Istio Gateway the request entered through (``name`` or
                ``namespace/name``), or ``None`` for traffic from a sidecar in the mesh.
        """
        chosen = self._matched(request, gateway)
        if isinstance(chosen, Refusal):
            return chosen
        entry, why = chosen
        return self._pick(entry, rng, why)

    def outcomes(
        self, request: RoutedRequest, *, gateway: str | None
    ) -> list[tuple[Destination | Refusal, float]]:
        """Where one request may go, with the probability of each place: the distribution
        :meth:`route` draws from (weight / sum of the weights above 0)."""
        chosen = self._matched(request, gateway)
        if isinstance(chosen, Refusal):
            return [(chosen, 1.0)]
        entry, why = chosen
        choices = self.weighted_destinations(entry.route)
        total = sum(weight for _, weight in choices)
        if not total:
            return [(self._no_weight(entry.route), 1.0)]
        return [(self._resolve(entry, d, why), weight / total) for d, weight in choices]

    def _matched(
        self, request: RoutedRequest, gateway: str | None
    ) -> tuple[RouteEntry, str] | Refusal:
        """The route entry a request matches first, and why; or the refusal."""
        if gateway is not None:
            table = self.gateway_table(gateway, request.host or "")
        else:
            table = self._mesh_table(request)
        if isinstance(table, Refusal):
            return table
        for entry in table:
            if entry.block is None:
                return entry, "catch-all"
            if entry.block.matches(request):
                return entry, f"match[{entry.index}]"
        return Refusal(404, "no VirtualService route matches the request (Envoy NR)")

    # -- route tables: the Envoy routes istiod builds for one proxy ------------------------

    def gateway_table(self, gateway: str, host: str) -> list[RouteEntry] | Refusal:
        """The routes the ingress gateway's Envoy holds for ``host``, in order.

        VirtualServices bound to the Gateway whose hosts match are merged in creation order
        (istio.io IST0109), each translated on its own (route.go
        ``BuildHTTPRoutesForVirtualService``), then the catch-all routes of all of them moved
        to the end, keeping their order (pilot/pkg/networking/core/gateway.go
        ``buildGatewayHTTPRouteConfig`` -> route.go ``SortVHostRoutes``).
        """
        key = _gateway_key(gateway, self.namespace)
        gw = self.gateways.get(key)
        if gw is None:
            return Refusal(404, f"no Istio Gateway {key}: the ingress gateway serves no route")
        host = host.lower()
        server = gw.listener_for(host)
        if server is None:
            return Refusal(
                404, f"Host {host!r} is not among Gateway {key} hosts {listed(gw.hosts)}"
            )
        applicable = [
            vs
            for vs in self.virtual_services
            if key in vs.gateways and any(host_matches(h, host) for h in vs.hosts)
        ]
        if not applicable:
            return Refusal(404, f"no VirtualService bound to Gateway {key} for host {host!r}")
        # The gateway proxy's own labels are what sourceLabels compare with.
        entries = [
            entry
            for vs in applicable
            for entry in _translate(
                vs, dict(gw.selector), gw.namespace, frozenset({key}), server.port
            )
        ]
        ordinary = [e for e in entries if not e.catch_all]
        return ordinary + [e for e in entries if e.catch_all]

    def _mesh_table(self, request: RoutedRequest) -> list[RouteEntry] | Refusal:
        """The routes a caller's sidecar holds for the request's destination host."""
        host = self._request_fqdn(request.host)
        if host is None:
            return Refusal(404, "no Host header: a sidecar cannot tell the destination")
        applicable = [
            vs
            for vs in self.virtual_services
            if MESH in vs.gateways and any(host_matches(h, host) for h in vs.hosts)
        ]
        if applicable:
            if len(applicable) > 1:
                self._note(
                    f"VirtualServices {listed(v.name for v in applicable)} all bind host "
                    f"{host} to the mesh (IST0109); using the oldest, {applicable[0].name}"
                )
            caller = dict(request.source_labels or {})
            return _translate(applicable[0], caller, self.namespace, frozenset({MESH}))
        svc = self.services.get(host)
        if svc is None:
            return Refusal(503, f"no Service and no VirtualService for host {host}")
        # No VirtualService: the default route to the whole Service.
        plain = HttpRoute(
            "",
            f"Service {svc.name} (no VirtualService)",
            (),
            (RouteDestination(host, "", None, 0),),
        )
        return [RouteEntry(plain, None, None)]

    def _request_fqdn(self, host: str | None) -> str | None:
        """The sidecar's virtual host domains for a Service in this namespace: ``svc``,
        ``svc.ns``, ``svc.ns.svc``, ``svc.ns.svc.cluster.local``."""
        if not host:
            return None
        host = host.lower()
        parts = host.split(".")
        if len(parts) == 1:
            return f"{host}.{self.namespace}.{CLUSTER_DOMAIN}"
        candidate = None
        if len(parts) == 2:
            candidate = f"{host}.{CLUSTER_DOMAIN}"
        elif len(parts) == 3 and parts[2] == "svc":
            candidate = f"{host}.cluster.local"
        if candidate is not None and candidate in self.services:
            return candidate
        return host

    # -- destinations --------------------------------------------------------------------

    @staticmethod
    def weighted_destinations(route: HttpRoute) -> list[tuple[RouteDestination, int]]:
        """The destinations Envoy chooses from, with their weights (route.go
        ``applyHTTPRouteDestination``): a single destination is a plain cluster, whatever
        its weight; several become ``weighted_clusters`` without the weight-0 ones."""
        if len(route.destinations) == 1:
            return [(route.destinations[0], 1)]
        return [(d, d.weight) for d in route.destinations if d.weight > 0]

    def cluster_name(self, dest: RouteDestination, listener_port: int | None = None) -> str:
        """The Envoy cluster of a destination on a listener (``None``: a sidecar's):
        ``outbound|<port>|<subset>|<host FQDN>`` (route.go ``GetDestinationCluster``)."""
        port = self.cluster_port(dest, listener_port)
        return f"outbound|{port}|{dest.subset}|{dest.host}"

    def _pick(self, entry: RouteEntry, rng: random.Random, why: str) -> Destination | Refusal:
        route = entry.route
        if not route.destinations:
            return Refusal(500, f"{route.describe()} has no destination")
        choices = self.weighted_destinations(route)
        if len(route.destinations) == 1:
            chosen = choices[0][0]
            detail = "the only destination"
        else:
            # weighted_clusters: one draw per request, share = weight / sum.
            total = sum(weight for _, weight in choices)
            if total == 0:
                return self._no_weight(route)
            chosen = weighted_pick([d for d, _ in choices], [w for _, w in choices], rng)
            detail = f"weight {chosen.weight}/{total}"
        return self._resolve(entry, chosen, f"{why}, {detail}")

    @staticmethod
    def _no_weight(route: HttpRoute) -> Refusal:
        if not route.destinations:
            return Refusal(500, f"{route.describe()} has no destination")
        return Refusal(503, f"{route.describe()}: every destination has weight 0")

    def _resolve(
        self, entry: RouteEntry, dest: RouteDestination, why: str
    ) -> Destination | Refusal:
        route = entry.route
        svc = self.services.get(dest.host)
        port = self.cluster_port(dest, entry.listener_port)
        cluster = self.cluster_name(dest, entry.listener_port)
        if svc is None:
            return Refusal(
                503, f"{route.describe()}: cluster {cluster} not found (NC): no Service {dest.host}"
            )
        if self.missing_port(dest, entry.listener_port) is not None:
            return Refusal(
                503,
                f"{route.describe()}: cluster {cluster} not found (NC): Service {svc.name} has "
                f"no port {port} (ports: {listed(svc.ports)})",
            )
        labels: Mapping[str, str] | None = None
        if dest.subset:
            labels = self.subsets.get(dest.host, {}).get(dest.subset)
            if labels is None:
                return Refusal(
                    503,
                    f"{route.describe()}: cluster {cluster} not found (NC): no DestinationRule "
                    f"for {dest.host} defines subset {dest.subset!r}",
                )
        return Destination(
            svc.name, port, labels=labels or None, reason=f"{route.describe()} ({why})"
        )

    def missing_port(self, dest: RouteDestination, listener_port: int | None = None) -> int | None:
        """The port a destination's cluster names on a listener (``None``: a sidecar's)
        when its Service has no such port (no cluster is built for it: cluster.go
        ``buildOutboundClusters`` iterates the Service's ports), else None (also for a host
        without a Service)."""
        svc = self.services.get(dest.host)
        if svc is None:
            return None
        port = self.cluster_port(dest, listener_port)
        return None if port in svc.ports else port

    def cluster_port(self, dest: RouteDestination, listener_port: int | None = None) -> int:
        """The port of a destination's cluster (route.go ``GetDestinationCluster``): its
        ``port``, else its Service's only port, else the listener port -- at a gateway the
        server's; in the mesh (``listener_port`` None) the Service port the caller called,
        taken as the Service's first port (a sidecar has a listener per Service port)."""
        if dest.port is not None:
            return dest.port
        svc = self.services.get(dest.host)
        if svc is not None and len(svc.ports) == 1:
            return svc.ports[0]
        if listener_port is not None:
            return listener_port
        if svc is not None and svc.ports:
            return svc.ports[0]
        return LISTENER_PORT

    def _note(self, line: str) -> None:
        if line not in self.log:
            self.log.append(line)


# -- loading ----------------------------------------------------------------------------


def _is_istio(obj: Mapping[str, Any], kind: str) -> bool:
    return (
        obj.get("kind") == kind and str(obj.get("apiVersion", "")).split("/", 1)[0] == ISTIO_GROUP
    )


def _match_block(raw: Mapping[str, Any], namespace: str) -> MatchBlock:
    headers = tuple(
        (name.lower(), parse_string_match(value))
        for name, value in (raw.get("headers") or {}).items()
        # virtual_service.proto: "The keys uri, scheme, method, and authority will be ignored."
        if name.lower() not in ("uri", "scheme", "method", "authority")
    )
    without = tuple(
        (name.lower(), parse_string_match(value))
        for name, value in (raw.get("withoutHeaders") or {}).items()
    )

    def optional(key: str) -> StringMatch | None:
        return parse_string_match(raw[key]) if raw.get(key) is not None else None

    return MatchBlock(
        uri=optional("uri"),
        ignore_uri_case=bool(raw.get("ignoreUriCase", False)),
        scheme=optional("scheme"),
        method=optional("method"),
        authority=optional("authority"),
        headers=headers,
        without_headers=without,
        query_params=len(raw.get("queryParams") or {}),
        port=raw.get("port"),
        source_labels=dict(raw.get("sourceLabels") or {}),
        source_namespace=str(raw.get("sourceNamespace") or ""),
        gateways=tuple(_gateway_key(g, namespace) for g in raw.get("gateways") or ()),
    )


def _virtual_service(
    obj: Mapping[str, Any], default_namespace: str, log: list[str]
) -> VirtualServiceRules:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    namespace = str(meta.get("namespace") or default_namespace)
    spec = obj.get("spec") or {}
    routes: list[HttpRoute] = []
    for index, raw in enumerate(spec.get("http") or []):
        label = str(raw.get("name") or f"http[{index}]")
        if raw.get("delegate") or raw.get("redirect") or raw.get("directResponse"):
            log.append(
                f"VirtualService {name} route {label}: delegate/redirect/directResponse "
                "is not modelled; route skipped"
            )
            continue
        destinations = tuple(
            RouteDestination(
                host=fqdn(str((d.get("destination") or {}).get("host", "")), namespace),
                subset=str((d.get("destination") or {}).get("subset") or ""),
                port=((d.get("destination") or {}).get("port") or {}).get("number"),
                weight=int(d.get("weight") or 0),
            )
            for d in raw.get("route") or []
        )
        matches = tuple(_match_block(m, namespace) for m in raw.get("match") or [])
        routes.append(HttpRoute(name, label, matches, destinations))
    gateways = tuple(_gateway_key(g, namespace) for g in spec.get("gateways") or ()) or (MESH,)
    hosts = tuple(fqdn(str(h), namespace) for h in spec.get("hosts") or ())
    return VirtualServiceRules(name, namespace, hosts, gateways, tuple(routes))


def load(objects: Iterable[Mapping[str, Any]], namespace: str = "default") -> IstioConfig:
    """Build the routing configuration from objects in creation order (oldest first).

    Reads Services, Istio ``DestinationRule``, ``Gateway`` and ``VirtualService`` objects
    and ignores everything else. An object istiod's validation would reject (an invalid
    regex) is left out with a log line, as the admission webhook would refuse it.
    """
    config = IstioConfig(namespace=namespace)
    for obj in objects:
        meta = obj.get("metadata") or {}
        name = str(meta.get("name", ""))
        ns = str(meta.get("namespace") or namespace)
        spec = obj.get("spec") or {}
        if obj.get("kind") == "Service" and obj.get("apiVersion") == "v1":
            ports = tuple(int(p.get("port", 0)) for p in spec.get("ports") or [])
            selector = {str(k): str(v) for k, v in (spec.get("selector") or {}).items()}
            config.services[fqdn(name, ns)] = ServiceEntry(name, ns, ports, selector)
        elif _is_istio(obj, "DestinationRule"):
            host = fqdn(str(spec.get("host", "")), ns)
            declared = config.subsets.setdefault(host, {})
            for subset in spec.get("subsets") or []:
                # Several DestinationRules for one host: the first definition wins.
                subset_name = str(subset.get("name"))
                declared.setdefault(subset_name, dict(subset.get("labels") or {}))
                config.subset_owners.setdefault((host, subset_name), name)
        elif _is_istio(obj, "Gateway"):
            servers: list[HttpServer] = []
            every: list[str] = []
            for server in spec.get("servers") or []:
                # gateways.go sanitizeServerHostNamespace: "./h", "*/h" and "<ns>/h" are h
                # for a VirtualService of this namespace (the linter sees one namespace).
                hosts = tuple(str(h).split("/", 1)[-1].lower() for h in server.get("hosts") or [])
                every += hosts
                port = server.get("port") or {}
                if str(port.get("protocol", "")).upper() in ("HTTP", "HTTP2"):
                    servers.append(HttpServer(int(port.get("number", 0)), hosts))
            config.gateways[f"{ns}/{name}"] = IngressGateway(
                name, ns, tuple(servers), dict(spec.get("selector") or {}), tuple(every)
            )
        elif _is_istio(obj, "VirtualService"):
            try:
                config.virtual_services.append(_virtual_service(obj, namespace, config.log))
            except Re2Error as exc:
                config.log.append(f"VirtualService {name}: invalid regex ({exc}); rejected")
    return config
