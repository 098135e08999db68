"""What a test asks for: a validated, frozen description of one canary release.

All validation of user input happens here. Every error is a :class:`CanaryConfigError`
whose message names the field, the bad value and what is allowed; nothing downstream
validates again.

Example:
    >>> spec = build_spec("nginx", stable="1.0", canary="2.0", weight=20)
    >>> spec.weight
    20
"""

from __future__ import annotations

import copy
import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from pytest_canary.apps import (
    VERSION_READERS,
    VersionClassifier,
    VersionFromHeader,
    VersionReader,
)
from pytest_canary.errors import CanaryConfigError
from pytest_canary.pcre import pcre_problem
from pytest_canary.re2 import re2_problem
from pytest_canary.rollout_spec import MAX_PAUSE_SECONDS

#: ``replicas`` of ``deploy("rollouts", traffic=None)`` when not given.
BASIC_CANARY_REPLICAS = 10

Strategy = Literal["replicas", "nginx", "istio", "gateway", "bluegreen", "rolling", "rollouts"]
STRATEGIES: tuple[str, ...] = (
    "replicas",
    "nginx",
    "istio",
    "gateway",
    "bluegreen",
    "rolling",
    "rollouts",
)

# ingress-nginx internal/ingress/annotations/canary/main.go: header name, header value and
# cookie name must match this; upstream silently resets a bad value to "", we refuse it.
NGINX_ANNOTATION_CHARS = re.compile(r"^[/\-._~a-zA-Z0-9:]*$")
NGINX_ALLOWED_CHARS = "letters, digits and / - . _ ~ :"
# parser/validators.go IsValidRegex (canary-by-header-pattern): those plus ^$[](){}*+?|&=\;
# the model (dataplane/nginx.py PATTERN_CHARS) resets anything else to "", as upstream does.
NGINX_PATTERN_CHARS = re.compile(r"^[/\-._~a-zA-Z0-9:^$\[\](){}*+?|&=\\]*$")

# Kubernetes label value (versions become the `version` label and the image tag).
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
# RFC 1123 subdomain (hosts) and DNS-1035 label (object names).
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$")
# HTTP header field name (RFC 9110 token).
HTTP_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")

NGINX_DEFAULT_HEADER = "X-Canary"

HeaderMatch = Literal["exact", "prefix", "regex"]

# Knobs every strategy accepts.
COMMON_KNOBS: tuple[str, ...] = (
    "name",
    "host",
    "path",
    "path_type",
    "app",
    "canary_error_rate",
    "canary_latency_ms",
)

#: Largest injected delay (milliseconds): a minute, well past any request timeout.
MAX_LATENCY_MS = 60_000.0
_LATENCY_RANGE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*-\s*([0-9]+(?:\.[0-9]*)?)\s*$")

# Routing knobs each strategy understands (DESIGN.md "Strategies").
STRATEGY_KNOBS: dict[str, tuple[str, ...]] = {
    "replicas": ("stable_replicas", "canary_replicas"),
    "nginx": (
        "weight",
        "weight_total",
        "header",
        "header_value",
        "header_pattern",
        "cookie",
        "canary_host",
        "replicas",
    ),
    "istio": ("weight", "weights", "header", "header_value", "header_match", "source", "replicas"),
    "gateway": ("weight", "weights", "header", "header_value", "header_match", "replicas"),
    "bluegreen": ("replicas",),
    "rolling": ("replicas", "surge", "unavailable", "pause_after"),
    "rollouts": (
        "steps",
        "traffic",
        "replicas",
        "max_surge",
        "max_unavailable",
        "canary_ingress_annotations",
        "additional_ingress_annotations",
        "managed_routes",
        "istio_split",
        "scale_down_delay",
        "abort_scale_down_delay",
    ),
}

# Advice for knobs a strategy cannot express, instead of a bare "not allowed".
KNOB_ADVICE: dict[tuple[str, str], str] = {
    ("gateway", "cookie"): (
        "Gateway API HTTPRoute has no cookie match; use header='Cookie' with "
        "header_match='regex' and a pattern such as 'user_from_cd=always'"
    ),
    ("gateway", "header_pattern"): "for Gateway API use header_value=... with header_match='regex'",
    ("istio", "header_pattern"): "for Istio use header_value=... with header_match='regex'",
    ("istio", "cookie"): "for Istio match the Cookie header: header='cookie', header_match='regex'",
    ("rollouts", "weight"): "Argo Rollouts sets weights in steps, e.g. steps=[{'setWeight': 20}]",
    ("rollouts", "header"): (
        "with traffic='nginx' pass additional_ingress_annotations={'canary-by-header': "
        "'X-Canary'}; with traffic='istio' a setHeaderRoute step and managed_routes"
    ),
}


@dataclass(frozen=True)
class AppImage:
    """The application each version runs: any container image that serves HTTP.

    Attributes:
        image: image reference with ``{version}`` where the version goes,
            e.g. ``"registry.example/shop:{version}"``.
        port: container port the app listens on (1-65535).
        health: HTTP path that answers 200 once the app is ready (the readiness probe).
        version_from: how a response says which version answered (see
            ``pytest_canary.apps``): ``VersionFromHeader("X-App-Version")`` (the default),
            ``VersionFromJson("build.version")`` or ``VersionFromRegex(r"Version: (\\S+)")``.
        run_as_user: the uid the container runs as on a cluster (its pods pass the Pod
            Security "restricted" profile, which forbids root): None runs the image's own
            ``USER``, which must then be a numeric uid other than 0 (the sample images run
            as 65532).

    Example:
        >>> from pytest_canary.apps import VersionFromJson
        >>> shop = AppImage("registry.example/shop:{version}", port=8080, health="/healthz",
        ...                 version_from=VersionFromJson("version"))
        >>> shop.image_for("2.0")
        'registry.example/shop:2.0'
    """

    image: str = "pytest-canary/sample-go:{version}"
    port: int = 8080
    health: str = "/health"
    version_from: VersionReader = field(default_factory=VersionFromHeader)
    run_as_user: int | None = None

    # Docker image reference: [domain[:port]/]path[:tag][@digest] (distribution/reference).
    REFERENCE: ClassVar[re.Pattern[str]] = re.compile(
        r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?"
        r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
        r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$"
    )

    def image_for(self, version: str) -> str:
        """The image reference of one version."""
        return self.image.replace("{version}", version)

    @property
    def is_sample(self) -> bool:
        """True for the bundled sample app, which the local backend can run as a process."""
        return self.image.startswith("pytest-canary/sample-")

    @property
    def version_header(self) -> str | None:
        """The header carrying the version, or None when it is read from the body."""
        if isinstance(self.version_from, VersionFromHeader):
            return self.version_from.header
        return None

    def classifier(self) -> VersionClassifier:
        """Reads the version of one response: (status, headers, body) -> version or None."""
        return self.version_from.classifier()

    def check(self, versions: tuple[str, ...] = ()) -> None:
        """Validate every field (``build_spec`` calls it with the release's versions).

        Raises:
            CanaryConfigError: naming ``app.<field>``, the value and what is allowed.
        """
        image = self.image
        if not isinstance(image, str) or "{version}" not in image:
            raise _fail(
                "app.image",
                image,
                "must be an image reference with {version} where the version goes, e.g. "
                "'registry.example/shop:{version}'",
            )
        for version in versions or ("1.0",):
            if not self.REFERENCE.match(self.image_for(version)):
                raise _fail(
                    "app.image",
                    image,
                    f"gives {self.image_for(version)!r} for version {version!r}, which is not a "
                    "valid image reference ([registry/]name[:tag], lowercase name)",
                )
        port = self.port
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise _fail(
                "app.port", port, "must be an integer from 1 to 65535 (the port the app listens on)"
            )
        health = self.health
        if (
            not isinstance(health, str)
            or not health.startswith("/")
            or any(c.isspace() for c in health)
        ):
            raise _fail(
                "app.health",
                health,
                "must be an HTTP path starting with '/' that answers 200 when the app is "
                "ready, e.g. '/healthz'",
            )
        uid = self.run_as_user
        if uid is not None and (
            isinstance(uid, bool) or not isinstance(uid, int) or not 1 <= uid <= 2147483647
        ):
            raise _fail(
                "app.run_as_user",
                uid,
                "must be None (the image's own numeric USER) or a uid from 1 to 2147483647 "
                "(Pod Security 'restricted' forbids root, uid 0)",
            )
        if not isinstance(self.version_from, VERSION_READERS):
            raise _fail(
                "app.version_from",
                self.version_from,
                "must be VersionFromHeader(name), VersionFromJson('dotted.path') or "
                "VersionFromRegex(pattern) from pytest_canary.apps",
            )
        self.version_from.check("app.version_from")


SAMPLE_APP = AppImage()


@dataclass(frozen=True)
class ReleaseSpec:
    """One canary release: two (or more) versions of an app and the routing between them.

    Weights are percentages 0-100 of traffic to the canary unless ``weight_total`` says
    otherwise (ingress-nginx) or ``weights`` gives relative weights per version (Istio,
    Gateway API).
    """

    strategy: str
    stable: str
    canary: str
    name: str = "kubeapp"
    host: str = "foo.bar"
    path: str = "/"
    path_type: str = "Prefix"
    app: AppImage = SAMPLE_APP
    canary_error_rate: float = 0.0
    canary_latency_ms: float | str = 0.0
    replicas: int = 1
    stable_replicas: int = 3
    canary_replicas: int = 1
    weight: int | None = None
    weight_total: int | None = None
    weights: Mapping[str, int] | None = None
    header: str | None = None
    header_value: str | None = None
    header_pattern: str | None = None
    header_match: str = "exact"
    cookie: str | None = None
    canary_host: str | None = None
    source: bool = False
    surge: int | str = 1
    unavailable: int | str = 0
    pause_after: int | None = None
    steps: tuple[Mapping[str, Any], ...] = ()
    traffic: str | None = None
    max_surge: int | str = "25%"
    max_unavailable: int | str = "25%"
    canary_ingress_annotations: Mapping[str, str] | None = None
    additional_ingress_annotations: Mapping[str, str] | None = None
    managed_routes: tuple[str, ...] = ()
    istio_split: str = "subset"
    scale_down_delay: int | None = None
    abort_scale_down_delay: int | None = None
    knobs: frozenset[str] = field(default_factory=frozenset)

    @property
    def versions(self) -> tuple[str, ...]:
        """Every version deployed: stable, canary, then any further ``weights`` keys."""
        extra = tuple(v for v in (self.weights or {}) if v not in (self.stable, self.canary))
        return (self.stable, self.canary, *extra)

    def with_knobs(self, **changes: Any) -> ReleaseSpec:
        """A copy with some routing knobs changed, validated like the original."""
        args = {k: getattr(self, k) for k in self.knobs}
        args.update(changes)
        return build_spec(self.strategy, stable=self.stable, canary=self.canary, **args)


def _where(fld: str, value: object) -> str:
    return f"{fld}={value!r}"


def _fail(fld: str, value: object, allowed: str) -> CanaryConfigError:
    return CanaryConfigError(f"{_where(fld, value)}: {allowed}")


def _int_in(fld: str, value: object, low: int, high: int | None, meaning: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        top = "" if high is None else f" to {high}"
        return_msg = f"must be an integer from {low}{top} ({meaning})"
        raise _fail(fld, value, return_msg)
    if value < low or (high is not None and value > high):
        top = "or more" if high is None else f"to {high}"
        raise _fail(fld, value, f"must be an integer from {low} {top} ({meaning})")
    return value


def _nginx_token(fld: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(fld, value, f"must be a non-empty string of {NGINX_ALLOWED_CHARS}")
    if not NGINX_ANNOTATION_CHARS.match(value):
        raise _fail(
            fld,
            value,
            f"ingress-nginx accepts only {NGINX_ALLOWED_CHARS} here "
            "(it would silently ignore this value)",
        )
    return value


def _version(fld: str, value: object) -> str:
    if not isinstance(value, str) or not LABEL_VALUE.match(value):
        raise _fail(
            fld,
            value,
            "must be a version usable as a Kubernetes label value and image tag: 1-63 "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
        )
    return value


def _regex(fld: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(fld, value, "must be a non-empty regular expression")
    return value


def _pcre(fld: str, value: object) -> None:
    # ingress-nginx balancer.lua matches canary-by-header-pattern with PCRE (ngx.re.match).
    pattern = _regex(fld, value)
    if not NGINX_PATTERN_CHARS.match(pattern):
        raise _fail(
            fld,
            _short(pattern),
            f"ingress-nginx accepts only {NGINX_ALLOWED_CHARS} and ^$[](){{}}*+?|&=\\ in a "
            "header pattern (it would silently ignore this one)",
        )
    problem = pcre_problem(pattern)
    if problem:
        raise _fail(
            fld,
            _short(pattern),
            f"is not a valid PCRE regular expression (ingress-nginx matches it with "
            f"ngx.re.match): {problem}",
        )


# istio/istio pkg/config/validation validateStringRegexp: at most 1024 characters;
# Gateway API HTTPHeaderMatch.value: at most 4096 (CRD maxLength).
RE2_MAX_LENGTH = {"istio": 1024, "gateway": 4096}


def _re2(fld: str, value: str, strategy: str) -> None:
    limit = RE2_MAX_LENGTH[strategy]
    if len(value) > limit:
        raise _fail(fld, _short(value), f"{strategy} accepts regexes of at most {limit} characters")
    problem = re2_problem(value)
    if problem:
        raise _fail(fld, value, f"{strategy} matches regexes with Envoy's RE2, and {problem}")


def _short(value: str, limit: int = 80) -> str:
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value)} characters)"


# The headers and cookies a test sends with every request. Bounds: ingress-nginx reads a
# request header line into one of its large_client_header_buffers (default 4 x 8k), so a name
# and value well inside 8 KiB; the count keeps a request far below any proxy's header limit.
MAX_REQUEST_FIELDS = 32
MAX_FIELD_NAME = 256
MAX_FIELD_VALUE = 4096
# RFC 9110 field-value: no control characters but HTAB (CR/LF would end the field and start
# another, NUL is refused by every server).
FIELD_VALUE_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, elided past ``limit`` characters (an error repeats what was given)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def check_request(
    headers: object, cookies: object
) -> tuple[dict[str, str] | None, dict[str, str] | None]:
    """Check the ``headers`` and ``cookies`` a call sends with every request.

    Each is None or a mapping of str to str: at most :data:`MAX_REQUEST_FIELDS` entries, names
    HTTP tokens (RFC 9110) of at most :data:`MAX_FIELD_NAME` characters, values of at most
    :data:`MAX_FIELD_VALUE` characters without control characters (CR, LF, NUL, ...); cookie
    values without ``;`` (it would start another cookie), all cookies together at most
    :data:`MAX_FIELD_VALUE` characters as one ``Cookie`` header.

    Returns:
        plain-dict copies of both (None stays None).

    Raises:
        CanaryConfigError: naming the field, the value (elided if long) and what is allowed.
    """
    return _fields("headers", headers), _fields("cookies", cookies)


def _fields(fld: str, given: object) -> dict[str, str] | None:
    if given is None:
        return None
    what = "header" if fld == "headers" else "cookie"
    allowed = f"must be a mapping of {what} name to value (str to str), e.g. " + (
        "{'X-Canary': 'always'}" if fld == "headers" else "{'canary': 'always'}"
    )
    if not isinstance(given, Mapping):
        raise CanaryConfigError(f"{fld}={_shown(given)}: {allowed}")
    if len(given) > MAX_REQUEST_FIELDS:
        raise CanaryConfigError(
            f"{fld}: {len(given)} entries given; at most {MAX_REQUEST_FIELDS} {what}s are sent"
        )
    checked: dict[str, str] = {}
    for name, value in given.items():
        if not isinstance(name, str) or not HTTP_TOKEN.match(name) or len(name) > MAX_FIELD_NAME:
            raise CanaryConfigError(
                f"{fld} name {_shown(name)}: must be an HTTP token of 1 to {MAX_FIELD_NAME} "
                "characters (letters, digits and !#$%&'*+-.^_`|~; no space, ':' or '=')"
            )
        where = f"{fld}[{name!r}]={_shown(value)}"
        if not isinstance(value, str):
            raise CanaryConfigError(f"{where}: {allowed}")
        if len(value) > MAX_FIELD_VALUE:
            raise CanaryConfigError(
                f"{where}: a {what} value of at most {MAX_FIELD_VALUE} characters"
            )
        if FIELD_VALUE_CONTROL.search(value):
            raise CanaryConfigError(
                f"{where}: a {what} value must not contain control characters (CR, LF, NUL, "
                "...): they would end the header or be refused"
            )
        if fld == "cookies" and ";" in value:
            raise CanaryConfigError(f"{where}: a cookie value must not contain ';'")
        checked[name] = value
    if fld == "cookies":
        joined = sum(len(name) + len(value) + 3 for name, value in checked.items()) - 2
        if joined > MAX_FIELD_VALUE:
            raise CanaryConfigError(
                f"cookies: {joined} characters as one Cookie header; at most {MAX_FIELD_VALUE}"
            )
    return checked


# Gateway API HTTPPathMatch.value: maxLength 1024 and this pattern (httproute_types.go): RFC
# 3986 path characters and %XX escapes, so no space, control character, '?' or '#'.
MAX_PATH_LENGTH = 1024
PATH_CHARS = re.compile(r"(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|%[0-9a-fA-F]{2})+")
# kubernetes pkg/apis/networking/validation validateIngressHTTPIngressPath (Exact, Prefix)
# and Gateway API HTTPPathMatch (CEL rules): sequences and suffixes a path must not have.
INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
INVALID_PATH_SUFFIXES = ("/..", "/.")
# ingress-nginx internal/ingress/inspector/rules.go validPathType, enforced by the admission
# webhook for Exact and Prefix paths (strict-validate-path-type, default true).
NGINX_STRICT_PATH = re.compile(r"/[A-Za-z0-9._\-/]*")


def check_path(
    fld: str, path: object, *, strategy: str | None = None, path_type: str = "Prefix"
) -> str:
    """Validate a URL path the way the Ingress and HTTPRoute APIs do (and ingress-nginx's
    admission webhook for ``strategy="nginx"``); return it.

    Raises:
        CanaryConfigError: naming ``fld``, the value and the rule it breaks.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise _fail(fld, path, "must be an absolute URL path starting with '/'")
    if len(path) > MAX_PATH_LENGTH:
        raise _fail(
            fld, _short(path), f"must be at most {MAX_PATH_LENGTH} characters (Gateway API limit)"
        )
    if not PATH_CHARS.fullmatch(path):
        raise _fail(
            fld,
            path,
            "may hold only URL path characters (letters, digits, -/._~!$&'()*+,;=:@ and %XX "
            "escapes): no spaces, control characters, '?' or '#' (the Ingress and HTTPRoute "
            "APIs refuse them)",
        )
    bad = next((seq for seq in INVALID_PATH_SEQUENCES if seq in path), None)
    bad = bad or next((end for end in INVALID_PATH_SUFFIXES if path.endswith(end)), None)
    if bad is not None:
        raise _fail(
            fld,
            path,
            f"must not contain {bad!r} (Kubernetes refuses '//', '/./', '/../', '%2f' and a "
            "trailing '/..' or '/.' in Exact and Prefix paths, as does Gateway API)",
        )
    strict = strategy == "nginx" and path_type != "ImplementationSpecific"
    if strict and not NGINX_STRICT_PATH.fullmatch(path):
        raise _fail(
            fld,
            path,
            f"ingress-nginx refuses a {path_type} path with characters other than letters, "
            "digits, '.', '_', '-' and '/' (strict-validate-path-type); use "
            "path_type='ImplementationSpecific' for others",
        )
    return path


def _check_unknown_knobs(strategy: str, given: Mapping[str, Any]) -> None:
    allowed = set(COMMON_KNOBS) | set(STRATEGY_KNOBS[strategy])
    for knob in given:
        if knob in allowed:
            continue
        advice = KNOB_ADVICE.get((strategy, knob))
        listing = ", ".join(sorted(STRATEGY_KNOBS[strategy])) or "none"
        msg = (
            f"{_where(knob, given[knob])}: strategy {strategy!r} has no routing knob {knob!r}; "
            f"its knobs are: {listing} (and for every strategy: {', '.join(COMMON_KNOBS)})"
        )
        if advice:
            msg += f". {advice}"
        raise CanaryConfigError(msg)


def latency_setting(value: object) -> float | str:
    """``canary_latency_ms`` validated: a delay in milliseconds (a number), or ``"LO-HI"`` for
    a delay drawn uniformly from LO to HI milliseconds per request; both from 0 to
    :data:`MAX_LATENCY_MS`. Returns the number, or the range as ``"LO-HI"`` (the value of the
    sample app's ``LATENCY_MS``).

    Raises:
        CanaryConfigError: naming ``canary_latency_ms``, the value and what is allowed.
    """
    allowed = (
        f"must be milliseconds from 0 to {MAX_LATENCY_MS:g} added to every canary answer: a "
        "number (fixed delay) or 'LO-HI' such as '50-150' (uniformly random per request; "
        "fault injection, needs the sample app)"
    )
    if isinstance(value, bool):
        raise _fail("canary_latency_ms", value, allowed)
    if isinstance(value, (int, float)):
        if not 0.0 <= float(value) <= MAX_LATENCY_MS:  # NaN fails too
            raise _fail("canary_latency_ms", value, allowed)
        return float(value)
    if isinstance(value, str):
        match = _LATENCY_RANGE.match(value)
        if match:
            low, high = float(match.group(1)), float(match.group(2))
            if low <= high <= MAX_LATENCY_MS:
                return f"{low:g}-{high:g}" if low < high else low
    raise _fail("canary_latency_ms", value, allowed)


def build_spec(strategy: str, stable: str, canary: str, **routing: Any) -> ReleaseSpec:
    """Validate a user's release arguments and return the frozen :class:`ReleaseSpec`.

    Raises:
        CanaryConfigError: naming the field, the value and what is allowed.
    """
    if strategy not in STRATEGIES:
        raise _fail("strategy", strategy, f"must be one of {', '.join(STRATEGIES)}")
    _version("stable", stable)
    _version("canary", canary)
    if stable == canary:
        raise CanaryConfigError(
            f"stable={stable!r}, canary={canary!r}: the canary must be a different version "
            "from the stable one (otherwise no split can be observed)"
        )
    _check_unknown_knobs(strategy, routing)
    values: dict[str, Any] = dict(routing)

    name = values.get("name", "kubeapp")
    if not isinstance(name, str) or not DNS_LABEL.match(name):
        raise _fail(
            "name",
            name,
            "must be a DNS-1035 label of at most 42 characters: lowercase letters, "
            "digits and '-', starting with a letter (object names are built from it)",
        )
    host = values.get("host", "foo.bar")
    if not isinstance(host, str) or not DNS_SUBDOMAIN.match(host) or len(host) > 253:
        raise _fail("host", host, "must be a lowercase DNS name such as 'foo.bar'")
    path_type = values.get("path_type", "Prefix")
    if path_type not in ("Prefix", "Exact", "ImplementationSpecific"):
        raise _fail("path_type", path_type, "must be 'Prefix', 'Exact' or 'ImplementationSpecific'")
    check_path("path", values.get("path", "/"), strategy=strategy, path_type=path_type)
    app = values.get("app", SAMPLE_APP)
    if app is None:  # app=None: the bundled sample app
        app = values["app"] = SAMPLE_APP
    if not isinstance(app, AppImage):
        raise _fail("app", app, "must be a pytest_canary.AppImage (or None for the sample app)")
    app.check((stable, canary))
    rate = values.get("canary_error_rate", 0.0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
        raise _fail(
            "canary_error_rate",
            rate,
            "must be a fraction from 0 to 1 of canary requests that "
            "answer 500 (fault injection; needs the sample app)",
        )
    if rate and not app.is_sample:
        raise _fail("canary_error_rate", rate, "fault injection needs the sample app (app=None)")
    if "canary_latency_ms" in values:
        values["canary_latency_ms"] = latency_setting(values["canary_latency_ms"])
        if values["canary_latency_ms"] and not app.is_sample:
            raise _fail(
                "canary_latency_ms",
                values["canary_latency_ms"],
                "fault injection needs the sample app (app=None)",
            )

    for fld in ("replicas", "stable_replicas", "canary_replicas"):
        if fld in values:
            _int_in(fld, values[fld], 0 if fld != "replicas" else 1, 50, "pods of that workload")

    if "weight" in values:
        total = values.get("weight_total")
        top = (
            total if isinstance(total, int) and not isinstance(total, bool) and total > 100 else 100
        )
        _int_in("weight", values["weight"], 0, top, f"percent of traffic to the canary, of {top}")
    if "weight_total" in values:
        _int_in(
            "weight_total",
            values["weight_total"],
            100,
            None,
            "ingress-nginx ignores a total below 100",
        )
    if "weights" in values:
        weights = values["weights"]
        if not isinstance(weights, Mapping) or len(weights) < 2:
            raise _fail("weights", weights, "must map at least two versions to relative weights")
        for version, w in weights.items():
            _version(f"weights[{version!r}]", version)
            _int_in(f"weights[{version!r}]", w, 0, 1_000_000, "relative weight")
        if stable not in weights:
            raise _fail("weights", dict(weights), f"must include the stable version {stable!r}")
        if sum(weights.values()) == 0:
            raise _fail("weights", dict(weights), "at least one weight must be above 0")
        if "weight" in values:
            raise CanaryConfigError(
                "weight and weights given together: use weight (percent to the canary) for two "
                "versions or weights (relative, per version) for more"
            )
        values["weights"] = dict(weights)

    if strategy == "nginx":
        # The seeds' header: X-Canary: always / never works out of the box; header=None
        # turns header routing off.
        values.setdefault("header", NGINX_DEFAULT_HEADER)
        if values["header"] is None:
            del values["header"]
        for fld in ("header", "header_value", "cookie"):
            if fld in values:
                _nginx_token(fld, values[fld])
        if "header_pattern" in values:
            _pcre("header_pattern", values["header_pattern"])
        if "header_value" in values and "header_pattern" in values:
            raise CanaryConfigError(
                f"header_value={values['header_value']!r} and header_pattern="
                f"{values['header_pattern']!r} given together: ingress-nginx uses the value and "
                "ignores the pattern; give one of them"
            )
        if "canary_host" in values:
            ch = values["canary_host"]
            if not isinstance(ch, str) or not DNS_SUBDOMAIN.match(ch):
                raise _fail(
                    "canary_host", ch, "must be a lowercase DNS name such as 'canary.foo.bar'"
                )
            if ch == host:
                raise _fail("canary_host", ch, f"must differ from host={host!r}")
    elif strategy in ("istio", "gateway"):
        if "header" in values:
            hdr = values["header"]
            if not isinstance(hdr, str) or not HTTP_TOKEN.match(hdr):
                raise _fail("header", hdr, "must be an HTTP header name (letters, digits, '-')")
        allowed_match = ("exact", "prefix", "regex") if strategy == "istio" else ("exact", "regex")
        match = values.get("header_match", "exact")
        if match not in allowed_match:
            raise _fail("header_match", match, f"must be one of {', '.join(allowed_match)}")
        if "header_value" in values:
            hv = values["header_value"]
            if not isinstance(hv, str) or not hv:
                raise _fail("header_value", hv, "must be a non-empty string")
            if match == "regex":
                _re2("header_value", hv, strategy)
        if "source" in values and not isinstance(values["source"], bool):
            raise _fail("source", values["source"], "must be True or False")
    elif strategy == "rolling":
        # A paused rollout needs old pods to stay: with fewer than 2 replicas the paused
        # Deployment ends at 100% new (sync.go scale saturates the new ReplicaSet).
        values.setdefault("replicas", 4)
        _int_in("replicas", values["replicas"], 2, 50, "pods of the rolling Deployment")
        if "pause_after" in values:
            _int_in(
                "pause_after",
                values["pause_after"],
                1,
                values["replicas"],
                "new pods ready before the rollout pauses",
            )
        for fld in ("surge", "unavailable"):
            if fld in values:
                v = values[fld]
                if isinstance(v, str):
                    if not re.fullmatch(r"(100|[1-9]?[0-9])%", v):
                        raise _fail(fld, v, "must be an integer or a percentage such as '25%'")
                else:
                    _int_in(fld, v, 0, 50, "pods")
        if values.get("surge", 1) in (0, "0%") and values.get("unavailable", 0) in (0, "0%"):
            raise CanaryConfigError(
                "surge=0 and unavailable=0: a rolling update needs one of them above 0 "
                "(Kubernetes rejects this Deployment)"
            )

    elif strategy == "rollouts":
        _check_rollouts(values)

    for dependent in ("header_value", "header_pattern", "header_match"):
        if dependent in values and "header" not in values:
            raise CanaryConfigError(
                f"{_where(dependent, values[dependent])} needs header=... (the header to match)"
            )

    return ReleaseSpec(
        strategy=strategy, stable=stable, canary=canary, knobs=frozenset(routing), **values
    )


# -- Argo Rollouts ---------------------------------------------------------------------------

ROLLOUT_TRAFFIC = ("nginx", "istio", None)
# MAX_PAUSE_SECONDS (rollout_spec): our bound, a test waits for timed pauses.
MAX_ANNOTATIONS = 32
ANNOTATION_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)
# The canary Ingress annotations whose values ingress-nginx checks (canary/main.go).
NGINX_CHECKED = ("canary-by-header", "canary-by-header-value", "canary-by-cookie")
# Field names of the Rollout -> our knob names, for messages.
ROLLOUT_FIELDS = {
    "maxSurge": "max_surge",
    "maxUnavailable": "max_unavailable",
    "trafficRouting.managedRoutes": "managed_routes",
    "scaleDownDelaySeconds": "scale_down_delay",
    "abortScaleDownDelaySeconds": "abort_scale_down_delay",
    "trafficRouting": "traffic",
    "canaryService": "traffic",
    "stableService": "traffic",
}


def _rollout_annotations(fld: str, value: object, prefix_free: bool) -> dict[str, str]:
    if not isinstance(value, Mapping) or len(value) > MAX_ANNOTATIONS:
        raise _fail(fld, value, f"must map at most {MAX_ANNOTATIONS} annotation names to strings")
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not ANNOTATION_KEY.match(key) or len(key) > 253:
            raise _fail(f"{fld}[{key!r}]", item, "the key must be an annotation name")
        if not isinstance(item, str) or len(item) > 4096:
            raise _fail(f"{fld}[{key!r}]", item, "must be a string of at most 4096 characters")
        short = key.rsplit("/", 1)[-1] if key.startswith("nginx.ingress.kubernetes.io/") else key
        if prefix_free or key.startswith("nginx.ingress.kubernetes.io/"):
            if short in ("canary", "canary-weight"):
                raise _fail(
                    f"{fld}[{key!r}]",
                    item,
                    "the controller always overwrites canary and canary-weight on the canary "
                    "Ingress (argo-rollouts v1.9.1 rollout/trafficrouting/nginx/nginx.go "
                    "buildCanaryIngress); set weights with setWeight steps",
                )
            if short in NGINX_CHECKED:
                _nginx_token(f"{fld}[{key!r}]", item)
            if short == "canary-by-header-pattern":
                _regex(f"{fld}[{key!r}]", item)
        out[key] = item
    return out


def _rollout_knob(path: str) -> str:
    """``spec.strategy.canary.steps[2].pause`` -> ``steps[2].pause`` (knob names)."""
    rest = path.removeprefix("spec.strategy.canary.").removeprefix("spec.strategy.canary")
    for field_name, knob in ROLLOUT_FIELDS.items():
        if rest == field_name or rest.startswith(field_name + "."):
            return knob + rest[len(field_name) :]
    return rest


def _check_rollouts(values: dict[str, Any]) -> None:
    """Argo Rollouts knobs, and the canary strategy they make checked as Argo v1.9.1 does
    (``pytest_canary.rollout_spec``: types.go, validation.go)."""
    from pytest_canary.rollout_spec import (
        canary_problems,
        parse_steps,
        pause_bound_problems,
        unmodelled,
    )

    traffic = values.get("traffic")
    if traffic not in ROLLOUT_TRAFFIC:
        raise _fail(
            "traffic",
            traffic,
            "must be 'nginx' (ingress-nginx canary Ingress), 'istio' (VirtualService weights) "
            "or None (basic canary: the weight becomes replica counts)",
        )
    values.setdefault("steps", [])
    # With traffic routing the router splits the traffic: one pod per ReplicaSet will do (as
    # Argo's default). A basic canary splits by pod counts: 10 pods make every setWeight that
    # is a multiple of 10 an exact count (with 1, any weight below 100 is 1 pod of 2: 50%).
    values.setdefault("replicas", BASIC_CANARY_REPLICAS if traffic is None else 1)
    for fld in ("max_surge", "max_unavailable"):
        if fld in values:
            v = values[fld]
            if isinstance(v, str):
                if not re.fullmatch(r"(100|[1-9]?[0-9])%", v):
                    raise _fail(fld, v, "must be an integer or a percentage such as '25%'")
            else:
                _int_in(fld, v, 0, 50, "pods")
    routed_only = {
        "scale_down_delay": "scaleDownDelaySeconds",
        "abort_scale_down_delay": "abortScaleDownDelaySeconds",
    }
    for fld, field_name in routed_only.items():
        if fld not in values:
            continue
        if traffic is None:
            raise _fail(
                fld,
                values[fld],
                f"{field_name} needs traffic routing (traffic='nginx' or 'istio'); a basic "
                "canary scales old pods down as the steps go (argo-rollouts v1.9.1 "
                "validation.go InvalidCanaryScaleDownDelay)",
            )
    if "scale_down_delay" in values:
        _int_in(
            "scale_down_delay",
            values["scale_down_delay"],
            1,
            MAX_PAUSE_SECONDS,
            "seconds the old ReplicaSet keeps its pods after promotion; with 0 the v1.9.1 "
            "controller never scales it down (rollout/replicaset.go scaleDownDelayHelper)",
        )
    if "abort_scale_down_delay" in values:
        _int_in(
            "abort_scale_down_delay",
            values["abort_scale_down_delay"],
            0,
            MAX_PAUSE_SECONDS,
            "seconds the canary keeps its pods after an abort; 0 keeps them",
        )
    for fld in ("canary_ingress_annotations", "additional_ingress_annotations"):
        if fld in values:
            if traffic != "nginx":
                raise _fail(fld, values[fld], "is an ingress-nginx setting: needs traffic='nginx'")
            values[fld] = _rollout_annotations(
                fld, values[fld], prefix_free=fld == "additional_ingress_annotations"
            )
    if "managed_routes" in values:
        routes = values["managed_routes"]
        if traffic != "istio":
            raise _fail(
                "managed_routes",
                routes,
                "routes the controller adds for setHeaderRoute / setMirrorRoute steps: needs "
                "traffic='istio'",
            )
        if (
            isinstance(routes, (str, bytes))
            or not isinstance(routes, (list, tuple))
            or len(routes) > 16
            or not all(isinstance(r, str) and DNS_LABEL.match(r) for r in routes)
        ):
            raise _fail(
                "managed_routes",
                routes,
                "must be a list of at most 16 route names (lowercase letters, digits, '-')",
            )
        values["managed_routes"] = tuple(routes)
    if "istio_split" in values:
        if traffic != "istio":
            raise _fail("istio_split", values["istio_split"], "needs traffic='istio'")
        if values["istio_split"] not in ("subset", "host"):
            raise _fail(
                "istio_split",
                values["istio_split"],
                "must be 'subset' (one Service, DestinationRule subsets labelled with the pod "
                "template hash) or 'host' (a stable and a canary Service)",
            )

    if values["steps"] is None:
        raise _fail("steps", None, "must be a list of steps such as [{'setWeight': 20}]")
    for problem in pause_bound_problems(values["steps"], "steps"):
        raise _fail(problem.path, problem.value, f"{problem.message} ({problem.rule})")
    steps, _ = parse_steps(values["steps"], "steps")
    for step in steps:
        # Argo scales the canary to setCanaryScale.replicas whatever spec.replicas says
        # (utils/replicaset/canary.go CalculateReplicaCountsForTrafficRoutedCanary).
        if step.kind != "setCanaryScale":
            continue
        pods = step.canary_replicas or -(-values["replicas"] * (step.weight or 0) // 100)
        if pods > 50:
            raise _fail(
                "steps",
                step.raw,
                f"scales the canary to {pods} pods; setCanaryScale may ask for at most 50 "
                "(replicas, or weight percent of replicas)",
            )
    canary = {
        "steps": values["steps"],
        "maxSurge": values.get("max_surge", "25%"),
        "maxUnavailable": values.get("max_unavailable", "25%"),
    }
    if traffic is not None:
        canary["canaryService"], canary["stableService"] = "canary", "stable"
        routing: dict[str, Any] = {traffic: {"rendered": True}}
        if "managed_routes" in values:
            routing["managedRoutes"] = [{"name": r} for r in values["managed_routes"]]
        canary["trafficRouting"] = routing
    problems = canary_problems(canary) + unmodelled(canary)
    if problems:
        lines = [f"{_rollout_knob(p.path)}={p.value!r}: {p.message} ({p.rule})" for p in problems]
        raise CanaryConfigError(
            "Argo Rollouts would not run these steps as given:\n  " + "\n  ".join(lines)
        )
    values["steps"] = tuple(copy.deepcopy(list(values["steps"])))


def replace(spec: ReleaseSpec, **changes: Any) -> ReleaseSpec:
    """``dataclasses.replace`` for fields that are not user knobs (no re-validation)."""
    return dataclasses.replace(spec, **changes)
