"""A model of ingress-nginx (controller-v1.15.1) routing, canary rules included.

What it reproduces, each rule with its upstream source (repository kubernetes/ingress-nginx):

- Servers and locations are built from non-canary Ingresses of class ``nginx``, oldest first
  (internal/ingress/controller/controller.go ``createServers`` / ``getBackendServers``).
  A rule without host belongs to the catch-all server ``_``; every server starts with a root
  location that answers from the default backend (404) unless the Ingress names a
  ``defaultBackend``; an Ingress with a ``defaultBackend`` and no rules becomes the catch-all.
- Canary Ingresses create no servers. Each canary path is merged as an *alternative backend*
  into the upstream of the main location with the same host, path **and** pathType
  (controller.go ``mergeAlternativeBackends``); without one it is dropped with a log line;
  a canary whose Service is a primary upstream of that host is ignored.
- Upstreams are keyed by namespace-service-port, so a canary applies to every host/path that
  routes to the same main Service.
- Per request (rootfs/etc/nginx/lua/balancer.lua ``route_to_alternative_balancer``): only the
  first alternative backend is considered; header (value, then pattern, then always/never),
  then cookie (always/never), then ``math.random(total) <= weight``.
- Annotation parsing (internal/ingress/annotations/canary/main.go): header name, header value
  and cookie name outside ``^[/\\-._~a-zA-Z0-9:]*$`` silently become ""; canary values set
  without ``canary: "true"`` are an invalid configuration that ``Extract`` skips, so the
  Ingress loads as a main Ingress (the first of two on one location wins).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_canary.dataplane.request import Destination, Refusal, RoutedRequest
from pytest_canary.pcre import PcreError, PcreMatchLimit
from pytest_canary.pcre import search as pcre_search

PREFIX = "nginx.ingress.kubernetes.io/"
# internal/ingress/annotations/canary/main.go: the character class of header/cookie fields.
ANNOTATION_CHARS = re.compile(r"^[/\-._~a-zA-Z0-9:]*$")
DEFAULT_SERVER = "_"


@dataclass(frozen=True)
class Upstream:
    """An nginx upstream: one Service port (controller.go ``upstreamName``)."""

    namespace: str
    service: str
    port: int | str

    @property
    def name(self) -> str:
        """The name ingress-nginx logs as ``$proxy_upstream_name``."""
        return f"{self.namespace}-{self.service}-{self.port}"


@dataclass(frozen=True)
class CanaryPolicy:
    """``trafficShapingPolicy`` of an alternative upstream."""

    ingress: str
    weight: int = 0
    weight_total: int = 100
    header: str = ""
    header_value: str = ""
    header_pattern: str = ""
    cookie: str = ""


@dataclass
class Location:
    """One nginx location of a server."""

    path: str
    path_type: str
    upstream: Upstream | None  # None: the controller's default backend (404)
    ingress: str
    is_default_backend: bool = False

    def matches(self, path: str) -> bool:
        """nginx location matching as ingress-nginx renders each pathType."""
        if self.path_type == "Exact":
            return path == self.path
        if self.path_type == "Prefix" and not self.path.endswith("/"):
            # Prefix "/foo" becomes "location = /foo" plus "location /foo/" (element-wise prefix).
            return path == self.path or path.startswith(self.path + "/")
        return path.startswith(self.path)


@dataclass
class NginxConfig:
    """The routing configuration ingress-nginx would build from a set of Ingresses."""

    servers: dict[str, list[Location]] = field(default_factory=dict)
    alternatives: dict[Upstream, list[Upstream]] = field(default_factory=dict)
    policies: dict[Upstream, CanaryPolicy] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def server_for(self, host: str | None) -> list[Location]:
        """nginx ``server_name`` selection: exact, then the longest leading wildcard, then ``_``."""
        if host and host in self.servers:
            return self.servers[host]
        if host:
            wildcards = [h for h in self.servers if h.startswith("*.") and host.endswith(h[1:])]
            for candidate in sorted(wildcards, key=len, reverse=True):
                # A leading wildcard matches exactly one more label in ingress-nginx.
                if "." not in host[: -len(candidate) + 1]:
                    return self.servers[candidate]
        return self.servers[DEFAULT_SERVER]

    def location(self, request: RoutedRequest) -> Location | None:
        """The nginx location serving a request: an exact location first, then the longest
        matching prefix (None: nothing matches, the default backend answers)."""
        locations = self.server_for(request.host)
        exact = [loc for loc in locations if loc.path_type == "Exact" and loc.matches(request.path)]
        prefix = [
            loc for loc in locations if loc.path_type != "Exact" and loc.matches(request.path)
        ]
        return exact[0] if exact else max(prefix, key=lambda loc: len(loc.path), default=None)

    def alternative(self, primary: Upstream) -> tuple[Upstream, CanaryPolicy] | None:
        """The alternative upstream a primary one shares its traffic with, and its policy.

        balancer.lua: "TODO: support traffic shaping for n > 1 alternative backends" -- only
        the first alternative backend is considered.
        """
        alternatives = self.alternatives.get(primary, [])
        if not alternatives:
            return None
        return alternatives[0], self.policies[alternatives[0]]

    def route(self, request: RoutedRequest, rng: random.Random) -> Destination | Refusal:
        """Where one request goes: a Service port, or a refusal answered by nginx itself."""
        chosen = self.location(request)
        if chosen is None or chosen.upstream is None:
            return Refusal(404, "no Ingress rule matches: answered by the default backend")
        primary = chosen.upstream
        shared = self.alternative(primary)
        if shared is not None:
            alternative, policy = shared
            errors: list[str] = []
            verdict, why = decide_canary(policy, request, rng, log=errors)
            chosen_upstream = alternative if verdict else primary
            return Destination(
                chosen_upstream.service, chosen_upstream.port, reason=why, log=tuple(errors)
            )
        return Destination(primary.service, primary.port, reason=f"Ingress {chosen.ingress}")

    def reachable(self, request: RoutedRequest) -> list[Destination | Refusal]:
        """Every place one request may go, each once: :meth:`route` decided at the lowest and
        at the highest weight draw. The only random step of the decision is balancer.lua's
        ``math.random(total) <= weight``, which is monotone in the draw, so these two
        decisions cover every outcome (both sides when 0 < weight < total)."""
        outcomes: dict[tuple[object, ...], Destination | Refusal] = {}
        for highest in (False, True):
            outcome = self.route(request, _EdgeDraw(highest))
            key = (
                (outcome.service, outcome.port, tuple(sorted((outcome.labels or {}).items())))
                if isinstance(outcome, Destination)
                else (outcome.status,)
            )
            outcomes.setdefault(key, outcome)
        return list(outcomes.values())


class _EdgeDraw(random.Random):
    """A "random" source that always draws the lowest or the highest value allowed."""

    def __init__(self, highest: bool) -> None:
        super().__init__(0)
        self.highest = highest

    def randint(self, a: int, b: int) -> int:
        return b if self.highest else a


def decide_canary(
    policy: CanaryPolicy,
    request: RoutedRequest,
    rng: random.Random,
    *,
    log: list[str] | None = None,
) -> tuple[bool, str]:
    """balancer.lua ``route_to_alternative_balancer``: True sends the request to the canary.

    A header pattern that errors (does not compile, or hits PCRE's backtracking limit) sends
    the request to the main backend and adds nginx's error log line to ``log``.
    """
    if policy.header:
        # nginx exposes headers as $http_<name> with '-' turned into '_', case-insensitively.
        wanted = policy.header.lower().replace("-", "_")
        value = next((v for k, v in request.headers.items() if k.replace("-", "_") == wanted), None)
        if value is not None:
            if policy.header_value:
                # An exact value is set: only it matters, "always"/"never" are not special.
                if value == policy.header_value:
                    return True, f"header {policy.header}={value!r} equals canary-by-header-value"
            elif policy.header_pattern:
                # ngx.re.match is an unanchored PCRE search, bounded by PCRE's match limit.
                try:
                    if pcre_search(policy.header_pattern, value):
                        return True, f"header {policy.header}={value!r} matches the pattern"
                except (PcreError, PcreMatchLimit) as exc:
                    # balancer.lua: ngx.log(ngx.ERR, ...) and `return false`: the main backend,
                    # without looking at the cookie or the weight.
                    line = (
                        f"error when matching canary-by-header-pattern: "
                        f"'{policy.header_pattern}', error: {exc}"
                    )
                    if log is not None:
                        log.append(line)
                    return False, f"{line}: main backend"
            elif value == "always":
                return True, f"header {policy.header}=always"
            elif value == "never":
                return False, f"header {policy.header}=never"
    if policy.cookie:
        cookie = request.cookies.get(policy.cookie)
        if cookie == "always":
            return True, f"cookie {policy.cookie}=always"
        if cookie == "never":
            return False, f"cookie {policy.cookie}=never"
    # The weight check: math.random(total) <= weight; a total below 100 is ignored.
    total = policy.weight_total if policy.weight_total > 100 else 100
    if rng.randint(1, total) <= policy.weight:
        return True, f"weight {policy.weight}/{total} drew the canary"
    return False, f"weight {policy.weight}/{total} drew the main backend"


def _annotation(meta: Mapping[str, Any], key: str) -> str | None:
    value = (meta.get("annotations") or {}).get(PREFIX + key)
    return None if value is None else str(value)


def _int_annotation(meta: Mapping[str, Any], key: str, default: int) -> int:
    raw = _annotation(meta, key)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        return default


def _char_checked(meta: Mapping[str, Any], key: str) -> str:
    raw = _annotation(meta, key) or ""
    return raw if ANNOTATION_CHARS.match(raw) else ""


def is_nginx_ingress(obj: Mapping[str, Any], ingress_class: str = "nginx") -> bool:
    """Whether the controller watches this Ingress (class ``nginx`` or none, as the kind
    manifest runs with ``--watch-ingress-without-class=true``)."""
    if obj.get("kind") != "Ingress":
        return False
    spec = obj.get("spec") or {}
    cls = spec.get("ingressClassName")
    legacy = ((obj.get("metadata") or {}).get("annotations") or {}).get(
        "kubernetes.io/ingress.class"
    )
    chosen = cls or legacy
    return chosen is None or chosen == ingress_class


def canary_enabled(obj: Mapping[str, Any]) -> bool:
    """``nginx.ingress.kubernetes.io/canary: "true"``."""
    return (_annotation(obj.get("metadata") or {}, "canary") or "").lower() == "true"


def canary_misconfigured(obj: Mapping[str, Any]) -> bool:
    """Canary knobs set without ``canary: "true"`` ("configured but not enabled").

    annotations/canary/main.go ``Parse``: an error only when a parsed value is set (weight
    above 0, or a non-empty header, header value, header pattern or cookie), so
    ``canary-weight: "0"`` or ``canary-weight-total`` alone are no error.
    """
    if canary_enabled(obj):
        return False
    meta = obj.get("metadata") or {}
    return _int_annotation(meta, "canary-weight", 0) > 0 or any(
        _annotation(meta, key)
        for key in (
            "canary-by-header",
            "canary-by-header-value",
            "canary-by-header-pattern",
            "canary-by-cookie",
        )
    )


def _backend_upstream(namespace: str, backend: Mapping[str, Any] | None) -> Upstream | None:
    svc = (backend or {}).get("service")
    if not svc:
        return None
    port = svc.get("port") or {}
    return Upstream(namespace, svc["name"], port.get("number", port.get("name", 80)))


def load(
    objects: Iterable[Mapping[str, Any]],
    *,
    namespace: str = "default",
    ingress_class: str = "nginx",
) -> NginxConfig:
    """Build the routing configuration from Ingresses in creation order (oldest first)."""
    ingresses = [o for o in objects if is_nginx_ingress(o, ingress_class)]
    config = NginxConfig()
    config.servers[DEFAULT_SERVER] = [
        Location("/", "Prefix", None, "(default backend)", is_default_backend=True)
    ]
    mains: list[Mapping[str, Any]] = []
    canaries: list[Mapping[str, Any]] = []
    for ing in ingresses:
        name = ing["metadata"]["name"]
        if canary_misconfigured(ing):
            # annotations.go Extract skips an invalid annotation configuration: the Ingress
            # loads without its canary config, i.e. as a main Ingress.
            config.log.append(
                f"Ingress {name}: canary annotations configured but not enabled; the canary "
                "annotations are rejected and the Ingress serves as a main Ingress"
            )
        (canaries if canary_enabled(ing) else mains).append(ing)

    for ing in mains:
        _add_main(config, ing, namespace)
    for ing in canaries:
        _merge_canary(config, ing, namespace)
    return config


def _add_main(config: NginxConfig, ing: Mapping[str, Any], namespace: str) -> None:
    name = ing["metadata"]["name"]
    spec = ing.get("spec") or {}
    default_upstream = _backend_upstream(namespace, spec.get("defaultBackend"))
    rules = spec.get("rules") or []
    if default_upstream is not None and not rules:
        # Special "catch all" case: an Ingress with a backend but no rule.
        root = config.servers[DEFAULT_SERVER][0]
        if root.is_default_backend:
            root.upstream, root.ingress, root.is_default_backend = default_upstream, name, False
    for rule in rules:
        host = rule.get("host") or DEFAULT_SERVER
        if host not in config.servers:
            config.servers[host] = [
                Location("/", "Prefix", default_upstream, name, is_default_backend=True)
            ]
        locations = config.servers[host]
        for path in (rule.get("http") or {}).get("paths") or []:
            upstream = _backend_upstream(namespace, path.get("backend"))
            p, ptype = path.get("path") or "/", path.get("pathType", "ImplementationSpecific")
            existing = next(
                (loc for loc in locations if loc.path == p and _same_type(loc.path_type, ptype)),
                None,
            )
            if existing is None:
                locations.append(Location(p, ptype, upstream, name))
            elif existing.is_default_backend:
                existing.upstream, existing.ingress, existing.is_default_backend = (
                    upstream,
                    name,
                    False,
                )
                existing.path_type = ptype
            else:
                config.log.append(
                    f"Ingress {name}: location {host}{p} already defined by Ingress "
                    f"{existing.ingress}; ignored"
                )


def _same_type(a: str, b: str) -> bool:
    # The root default location is a prefix match, as is any Prefix or ImplementationSpecific "/".
    return a == b or {a, b} <= {"Prefix", "ImplementationSpecific"}


def _merge_canary(config: NginxConfig, ing: Mapping[str, Any], namespace: str) -> None:
    name = ing["metadata"]["name"]
    meta = ing.get("metadata") or {}
    policy = CanaryPolicy(
        ingress=name,
        weight=_int_annotation(meta, "canary-weight", 0),
        weight_total=_int_annotation(meta, "canary-weight-total", 100),
        header=_char_checked(meta, "canary-by-header"),
        header_value=_char_checked(meta, "canary-by-header-value"),
        header_pattern=_annotation(meta, "canary-by-header-pattern") or "",
        cookie=_char_checked(meta, "canary-by-cookie"),
    )
    spec = ing.get("spec") or {}
    default_alt = _backend_upstream(namespace, spec.get("defaultBackend"))
    if default_alt is not None:
        root = config.servers[DEFAULT_SERVER][0]
        if root.upstream is not None and root.upstream != default_alt:
            _attach(config, root.upstream, default_alt, policy)
    for rule in spec.get("rules") or []:
        host = rule.get("host") or DEFAULT_SERVER
        for path in (rule.get("http") or {}).get("paths") or []:
            alt = _backend_upstream(namespace, path.get("backend"))
            if alt is None:
                continue
            p, ptype = path.get("path") or "/", path.get("pathType", "ImplementationSpecific")
            server = config.servers.get(host)
            if server is None:
                config.log.append(
                    f"Ingress {name}: cannot merge alternative backend {alt.name} into hostname "
                    f"{host} that does not exist; canary dropped"
                )
                continue
            merged = alt_is_primary = False
            for loc in server:
                if loc.upstream == alt:
                    alt_is_primary = True
                    config.log.append(
                        f"Ingress {name}: alternative upstream {alt.name} is the primary upstream "
                        f"of location {host}{loc.path}; canary ignored"
                    )
                    break
                if loc.upstream is not None and loc.path == p and loc.path_type == ptype:
                    merged = _attach(config, loc.upstream, alt, policy) or merged
            if not merged and not alt_is_primary:
                config.log.append(
                    f"Ingress {name}: unable to find real backend for alternative backend "
                    f"{alt.name} (no main Ingress with host {host}, path {p}, pathType {ptype}); "
                    "deleting"
                )


def _attach(config: NginxConfig, primary: Upstream, alt: Upstream, policy: CanaryPolicy) -> bool:
    alts = config.alternatives.setdefault(primary, [])
    if alt not in alts:
        alts.append(alt)
    config.policies[alt] = policy
    return True
