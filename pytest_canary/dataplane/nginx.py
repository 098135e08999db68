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
  then cookie (always/never), then ``math.random(total) <= weight``. Request headers whose
  name has other characters than letters, digits and ``-`` never get there (nginx.tmpl
  ``ignore_invalid_headers on``, ``underscores_in_headers off``: the config.go defaults).
- Annotation parsing (internal/ingress/annotations/canary/main.go ``Parse``, through
  internal/ingress/annotations/parser/main.go ``GetBoolAnnotation`` / ``GetIntAnnotation`` /
  ``GetStringAnnotation`` and their validators in parser/validators.go, see
  :func:`parse_canary`): ``canary`` is Go's ``strconv.ParseBool``, ``canary-weight`` and
  ``canary-weight-total`` Go's ``strconv.Atoi`` (no spaces, no fraction, no exponent); a value
  they reject is read as the default (false, 0, 100) with only a log line. Header name,
  header value and cookie name must match ``^[/\\-._~a-zA-Z0-9:]*$`` once spaces are removed
  (``ValidateRegex(BasicCharsRegex, true)``), the header pattern ``IsValidRegex`` as written;
  otherwise they silently become "", and accepted values are trimmed. Canary values set
  without ``canary: "true"`` are an invalid configuration that ``Extract`` skips, so the
  Ingress loads as a main Ingress (the first of two on one location wins). Only the seven
  canary annotations of ``CanaryAnnotations`` are read: any other ``canary*`` name (a typo)
  has no effect.
- Endpoints of an upstream (controller.go ``createUpstreams`` -> ``serviceEndpoints``): the
  Service's first port whose number, ``targetPort`` (defaulted to the port) or name equals
  the backend's ``port.number`` (or ``port.name``); a Service that does not exist, or that
  has no such port, leaves the upstream without endpoints ("Error obtaining Endpoints",
  nothing logged for a port that matches nothing). balancer.lua ``sync_backend`` creates no
  balancer for an upstream without endpoints, so: a main upstream without one answers 503
  (``get_balancer`` returns nil, ``rewrite`` exits with ``HTTP_SERVICE_UNAVAILABLE``) before
  any canary rule is looked at; an alternative upstream without one is skipped
  (``route_to_alternative_balancer`` logs "no alternative balancer for backend" and returns
  false): every request of its main location, header, cookie and weight alike, goes to the
  main upstream. The same holds at run time for a Service whose selector matches no ready
  pod (the local backend asks :meth:`NginxConfig.route` with its live endpoints).
"""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_canary.dataplane.listing import listed
from pytest_canary.dataplane.request import Destination, Refusal, RoutedRequest
from pytest_canary.pcre import PcreError, PcreMatchLimit, pcre_problem
from pytest_canary.pcre import search as pcre_search

PREFIX = "nginx.ingress.kubernetes.io/"
# internal/ingress/annotations/canary/main.go: the character class of header/cookie fields.
ANNOTATION_CHARS = re.compile(r"^[/\-._~a-zA-Z0-9:]*$")
DEFAULT_SERVER = "_"
# nginx.tmpl ignore_invalid_headers on, underscores_in_headers off (config.go defaults
# IgnoreInvalidHeaders true, EnableUnderscoresInHeaders false): a request header whose name
# has anything but letters, digits and '-' is dropped before balancer.lua looks.
NGINX_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]+$")
# parser/validators.go IsValidRegex: the basic characters plus regex ones, ^$[](){}*+?|&=\.
PATTERN_CHARS = re.compile(r"^[/\-._~a-zA-Z0-9:^$\[\](){}*+?|&=\\]*$")
# canary/main.go CanaryAnnotations: the only canary annotations the controller reads.
CANARY_ANNOTATIONS = (
    "canary",
    "canary-weight",
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-header-pattern",
    "canary-by-cookie",
)


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


@dataclass(frozen=True)
class ServicePort:
    """One entry of a Service's ``spec.ports`` as ``serviceEndpoints`` compares it."""

    port: int
    target_port: str  # intstr.String(): the number or the name; defaulted to ``port``
    name: str

    def __str__(self) -> str:
        named = f" ({self.name})" if self.name else ""
        return f"{self.port}{named} -> targetPort {self.target_port}"


def service_ports(service: Mapping[str, Any]) -> tuple[ServicePort, ...]:
    """The ports of a Service object; ``targetPort`` defaults to ``port`` (the API server's
    defaulting of ``ServicePort.targetPort``)."""
    ports = []
    for raw in (service.get("spec") or {}).get("ports") or []:
        port = int(raw.get("port", 0))
        target = raw.get("targetPort")
        ports.append(
            ServicePort(port, str(port if target is None else target), str(raw.get("name") or ""))
        )
    return tuple(ports)


def matching_service_port(
    ports: Iterable[ServicePort], backend_port: int | str
) -> ServicePort | None:
    """controller.go ``serviceEndpoints``: the first Service port whose number, targetPort
    or name equals the backend's port (``port.number`` as a string, else ``port.name``)."""
    wanted = str(backend_port)
    for port in ports:
        if wanted in (str(port.port), port.target_port, port.name):
            return port
    return None


def service_port_index(ports: Iterable[ServicePort]) -> dict[str, ServicePort]:
    """:func:`matching_service_port` for every backend port at once: each number, targetPort
    and name -> the first Service port that has it."""
    index: dict[str, ServicePort] = {}
    for port in ports:
        for key in (str(port.port), port.target_port, port.name):
            index.setdefault(key, port)
    return index


@dataclass
class NginxConfig:
    """The routing configuration ingress-nginx would build from a set of Ingresses.

    ``services`` holds the ports of the Services given with the Ingresses (``None`` when
    none was given: then every upstream is taken to have endpoints).
    """

    servers: dict[str, list[Location]] = field(default_factory=dict)
    alternatives: dict[Upstream, list[Upstream]] = field(default_factory=dict)
    policies: dict[Upstream, CanaryPolicy] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    services: dict[str, tuple[ServicePort, ...] | None] | None = None
    # Service name -> service_port_index of its ports, built on first use.
    _port_indexes: dict[str, dict[str, ServicePort]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def without_endpoints(self, upstream: Upstream) -> str | None:
        """Why ``upstream`` has no endpoints whatever pods run, or None when its Service
        port resolves (controller.go ``serviceEndpoints``; an ExternalName Service, whose
        ports are ``externalNamePorts``, and unknown Services resolve when no Service was
        given at all)."""
        if self.services is None:
            return None
        if upstream.service not in self.services:
            return f"Service {upstream.service} not found"
        ports = self.services[upstream.service]
        if ports is None:  # ExternalName
            return None
        index = self._port_indexes.get(upstream.service)
        if index is None:
            index = self._port_indexes[upstream.service] = service_port_index(ports)
        if str(upstream.port) not in index:
            return (
                f"Service {upstream.service} has no port {upstream.port} (no port number, "
                f"targetPort or name equals it; its ports: {listed(ports)})"
            )
        return None

    def has_balancer(
        self, upstream: Upstream, has_endpoints: Callable[[Upstream], bool] | None
    ) -> bool:
        """balancer.lua ``sync_backend``: a balancer exists only for an upstream with
        endpoints."""
        if self.without_endpoints(upstream) is not None:
            return False
        return has_endpoints is None or has_endpoints(upstream)

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

    def route(
        self,
        request: RoutedRequest,
        rng: random.Random,
        *,
        has_endpoints: Callable[[Upstream], bool] | None = None,
    ) -> Destination | Refusal:
        """Where one request goes: a Service port, or a refusal answered by nginx itself.

        Args:
            request: the request.
            rng: the source of balancer.lua's weight draw.
            has_endpoints: whether an upstream's Service has ready endpoints now (None: all
                have); an upstream whose Service port does not resolve has none anyway.
        """
        chosen = self.location(request)
        if chosen is None or chosen.upstream is None:
            return Refusal(404, "no Ingress rule matches: answered by the default backend")
        primary = chosen.upstream
        if not self.has_balancer(primary, has_endpoints):
            # balancer.lua get_balancer: no balancer for the main upstream, rewrite() exits
            # with 503 before route_to_alternative_balancer is asked.
            why = (
                self.without_endpoints(primary)
                or f"Service {primary.service} has no ready endpoints"
            )
            return Refusal(503, f"upstream {primary.name} has no endpoints ({why})")
        shared = self.alternative(primary)
        if shared is not None and not self.has_balancer(shared[0], has_endpoints):
            # route_to_alternative_balancer: "no alternative balancer for backend", false.
            line = f"no alternative balancer for backend: {shared[0].name}"
            return Destination(
                primary.service, primary.port, reason=f"{line}: main backend", log=(line,)
            )
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
        value = next(
            (
                v
                for k, v in request.headers.items()
                if NGINX_HEADER_NAME.match(k) and k.lower().replace("-", "_") == wanted
            ),
            None,
        )
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


def go_atoi(raw: str) -> int | None:
    """Go's ``strconv.Atoi`` (strconv/atoi.go, base 10, int64): an optional ``+`` or ``-``
    then ASCII digits, nothing else -- no spaces, no ``_``, no fraction, no exponent; None
    where Atoi returns an error (ingress-nginx then uses the annotation's default)."""
    if re.fullmatch(r"[+-]?[0-9]+", raw) is None:
        return None
    value = int(raw)
    return value if -(2**63) <= value < 2**63 else None  # ErrRange beyond int64


# strconv.ParseBool (strconv/atob.go): exactly these spellings.
GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


def go_parse_bool(raw: str) -> bool | None:
    """Go's ``strconv.ParseBool``; None where it returns an error."""
    return True if raw in GO_TRUE else False if raw in GO_FALSE else None


@dataclass(frozen=True)
class AnnotationIssue:
    """A canary annotation that ingress-nginx ignores or reads otherwise than written.

    Attributes:
        annotation: the key as written (prefix included).
        value: its value.
        kind: ``unknown`` (no parser reads it), ``ignored`` (its value is read as the
            default, or has no effect) or ``invalid`` (a header/cookie field reset to "" or
            unusable because of its characters).
        effect: what ingress-nginx does with it.
        suggestion: the annotation probably meant, for an unknown one.
    """

    annotation: str
    value: str
    kind: str
    effect: str
    suggestion: str = ""


@dataclass(frozen=True)
class CanaryAnnotations:
    """The canary configuration ingress-nginx reads from an Ingress's annotations
    (``canary.Config``), and what it could not use."""

    enabled: bool = False
    weight: int = 0
    weight_total: int = 100
    header: str = ""
    header_value: str = ""
    header_pattern: str = ""
    cookie: str = ""
    issues: tuple[AnnotationIssue, ...] = ()


def request_header_for(header: str) -> str | None:
    """The request header that reaches a ``canary-by-header`` rule, or None when no request
    can: balancer.lua reads ``ngx.var["http_" .. name]`` with ``-`` as ``_`` (so ``X_Canary``
    is the request header ``X-Canary``), and nginx drops request header names with other
    characters than letters, digits and ``-`` (``ignore_invalid_headers``)."""
    name = header.replace("_", "-")
    return name if NGINX_HEADER_NAME.match(name) else None


def _unknown_canary_keys(annotations: Mapping[str, Any]) -> list[AnnotationIssue]:
    """annotations.go ``Extract`` runs the registered parsers, each reading its own names
    (canary/main.go ``CanaryAnnotations``): a misspelt canary annotation, or one under
    another prefix, is read by nobody."""
    found = []
    for key, value in annotations.items():
        prefix, _, name = str(key).rpartition("/")
        known = f"{PREFIX}{name}" if name in CANARY_ANNOTATIONS else ""
        if prefix + "/" == PREFIX and name in CANARY_ANNOTATIONS:
            continue
        close = difflib.get_close_matches(name.lower(), CANARY_ANNOTATIONS, n=1, cutoff=0.75)
        if not (known or close or (prefix + "/" == PREFIX and name.lower().startswith("canary"))):
            continue  # not of the canary family: another annotation, not ours to judge
        meant = known or (PREFIX + close[0] if close else "")
        found.append(
            AnnotationIssue(
                str(key),
                str(value),
                "unknown",
                "no ingress-nginx parser reads it, so it has no effect",
                meant,
            )
        )
    return found


def parse_canary(meta: Mapping[str, Any]) -> CanaryAnnotations:
    """The canary annotations as controller-v1.15.1 reads them (canary/main.go ``Parse``).

    Each value goes through parser/main.go ``checkAnnotation``, which runs the
    annotation's validator on a non-empty value, then the typed read:

    - ``canary``: ``ValidateBool`` / ``strconv.ParseBool``; otherwise false;
    - ``canary-weight``, ``canary-weight-total``: ``ValidateInt`` / ``strconv.Atoi``
      (:func:`go_atoi`); otherwise 0 and 100. A negative weight is kept and never wins
      balancer.lua's ``math.random(total) <= weight``; a total of 100 or less is ignored
      there (100 is used);
    - ``canary-by-header``, ``-value``, ``canary-by-cookie``: ``ValidateRegex(BasicCharsRegex,
      true)``, i.e. :data:`ANNOTATION_CHARS` once spaces are removed, then
      ``normalizeString`` (trimmed); otherwise "";
    - ``canary-by-header-pattern``: ``ValidateRegex(IsValidRegex, false)``
      (:data:`PATTERN_CHARS`, spaces not allowed), then trimmed; otherwise "".

    An empty value fails its typed read and is the default too. Every such case, and every
    unknown ``canary*`` annotation, is listed in ``issues``.
    """
    annotations = meta.get("annotations") or {}
    issues = _unknown_canary_keys(annotations)

    def issue(key: str, raw: str, kind: str, effect: str) -> None:
        issues.append(AnnotationIssue(PREFIX + key, raw, kind, effect))

    raw = _annotation(meta, "canary")
    enabled = False
    if raw is not None:
        parsed = go_parse_bool(raw)
        if parsed is None:
            issue(
                "canary",
                raw,
                "ignored",
                "strconv.ParseBool rejects it (1, t, T, TRUE, true, True or their false "
                "spellings), so it is read as false: the Ingress is no canary",
            )
        enabled = bool(parsed)

    def integer(key: str, default: int) -> int:
        raw = _annotation(meta, key)
        if raw is None:
            return default
        value = go_atoi(raw)
        if value is None:
            what = "empty" if raw == "" else "not an integer for strconv.Atoi"
            issue(key, raw, "ignored", f"{what}, so it is read as {default}")
            return default
        return value

    weight = integer("canary-weight", 0)
    if weight < 0:
        issue(
            "canary-weight",
            str(weight),
            "ignored",
            "a negative weight never wins math.random(total) <= weight: no request goes to "
            "the canary by weight",
        )
    weight_total = integer("canary-weight-total", 100)
    if weight_total < 100:
        issue(
            "canary-weight-total",
            str(weight_total),
            "ignored",
            "balancer.lua uses a total only above 100, so the weight counts out of 100",
        )

    def text(key: str, pattern: re.Pattern[str], spaces_allowed: bool) -> str:
        raw = _annotation(meta, key)
        if raw is None:
            return ""
        checked = raw.replace(" ", "") if spaces_allowed else raw
        if raw.strip() == "":
            issue(key, raw, "ignored", "empty, so it is read as '' and never applies")
            return ""
        if not pattern.match(checked) or "\n" in checked or "\r" in checked:
            allowed = "[/-._~a-zA-Z0-9:]" + ("" if spaces_allowed else " and ^$[](){}*+?|&=\\")
            issue(
                key,
                raw,
                "invalid",
                f"has characters outside {allowed}, so it is silently reset to '' and that "
                "routing rule never applies",
            )
            return ""
        value = raw.strip()
        if " " in value and key in ("canary-by-header", "canary-by-cookie"):
            # Kept by the parser, but nginx drops header lines whose name has a space
            # (ignore_invalid_headers on) and cookie names are tokens: nothing can match.
            issue(
                key,
                raw,
                "invalid",
                "a name with a space is kept, but no request can carry such a header or "
                "cookie, so that routing rule never applies",
            )
        return value

    header = text("canary-by-header", ANNOTATION_CHARS, True)
    header_value = text("canary-by-header-value", ANNOTATION_CHARS, True)
    header_pattern = text("canary-by-header-pattern", PATTERN_CHARS, False)
    problem = pcre_problem(header_pattern) if header_pattern else None
    if problem is not None:
        # The validator only checks characters; the pattern is compiled per request by
        # balancer.lua's ngx.re.match, whose error is logged and the request sent to the main
        # backend (cookie and weight not consulted) -- see route_to_canary above.
        issue(
            "canary-by-header-pattern",
            header_pattern,
            "invalid",
            f"PCRE cannot compile it ({problem}), so ingress-nginx logs an error for every "
            "request carrying the header and sends it to the main backend, whatever the "
            "cookie or the weight",
        )
    cookie = text("canary-by-cookie", ANNOTATION_CHARS, True)
    return CanaryAnnotations(
        enabled,
        weight,
        weight_total,
        header,
        header_value,
        header_pattern,
        cookie,
        tuple(issues),
    )


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
    """``nginx.ingress.kubernetes.io/canary`` read as Go's ``strconv.ParseBool`` true."""
    return parse_canary(obj.get("metadata") or {}).enabled


def canary_misconfigured(obj: Mapping[str, Any]) -> bool:
    """Canary knobs set without ``canary: "true"`` ("configured but not enabled").

    annotations/canary/main.go ``Parse``: an error only when a parsed value is set (weight
    above 0, or a non-empty header, header value, header pattern or cookie), so
    ``canary-weight: "0"``, an unparsable weight or ``canary-weight-total`` alone are no error.
    """
    parsed = parse_canary(obj.get("metadata") or {})
    if parsed.enabled:
        return False
    return parsed.weight > 0 or any(
        (parsed.header, parsed.header_value, parsed.header_pattern, parsed.cookie)
    )


def annotation_issues(obj: Mapping[str, Any]) -> tuple[AnnotationIssue, ...]:
    """What ingress-nginx ignores or reads otherwise among an Ingress's canary annotations
    (:func:`parse_canary`): what the linter reports."""
    return parse_canary(obj.get("metadata") or {}).issues


def backend_upstream(namespace: str, backend: Mapping[str, Any] | None) -> Upstream | None:
    """The upstream of an Ingress backend (controller.go ``upstreamName``), None for a
    backend without a Service."""
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
    """Build the routing configuration from Ingresses in creation order (oldest first).

    Services among ``objects`` give the upstreams their endpoints' ports
    (:meth:`NginxConfig.without_endpoints`); everything else is ignored.
    """
    items = list(objects)
    ingresses = [o for o in items if is_nginx_ingress(o, ingress_class)]
    config = NginxConfig()
    for obj in items:
        if obj.get("kind") == "Service" and obj.get("apiVersion") == "v1":
            if config.services is None:
                config.services = {}
            spec = obj.get("spec") or {}
            name = str((obj.get("metadata") or {}).get("name", ""))
            external = spec.get("type") == "ExternalName"
            config.services[name] = None if external else service_ports(obj)
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
    default_upstream = backend_upstream(namespace, spec.get("defaultBackend"))
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
            upstream = backend_upstream(namespace, path.get("backend"))
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
    parsed = parse_canary(ing.get("metadata") or {})
    policy = CanaryPolicy(
        ingress=name,
        weight=parsed.weight,
        weight_total=parsed.weight_total,
        header=parsed.header,
        header_value=parsed.header_value,
        header_pattern=parsed.header_pattern,
        cookie=parsed.cookie,
    )
    spec = ing.get("spec") or {}
    default_alt = backend_upstream(namespace, spec.get("defaultBackend"))
    if default_alt is not None:
        root = config.servers[DEFAULT_SERVER][0]
        if root.upstream is not None and root.upstream != default_alt:
            _attach(config, root.upstream, default_alt, policy)
    for rule in spec.get("rules") or []:
        host = rule.get("host") or DEFAULT_SERVER
        for path in (rule.get("http") or {}).get("paths") or []:
            alt = backend_upstream(namespace, path.get("backend"))
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
