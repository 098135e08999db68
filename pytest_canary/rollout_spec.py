"""An Argo Rollouts canary strategy as the controller reads and validates it (v1.9.1).

One job: turn ``spec.strategy.canary`` (the ``steps`` a test passes to
``canary.deploy("rollouts", steps=...)``, or the same field of a user's own Rollout) into
typed :class:`Step` values, and list every problem Argo Rollouts would report for it. The
spec (:func:`pytest_canary.spec.build_spec`), the controller model
(:mod:`pytest_canary.dataplane.argo_rollouts`) and the linter all read strategies here, so
they cannot disagree about what a step means.

Upstream sources (repository argoproj/argo-rollouts, tag v1.9.1):

- ``pkg/apis/rollouts/v1alpha1/types.go``: the fields of ``CanaryStrategy`` and
  ``CanaryStep``; ``RolloutPause.DurationSeconds``: an integer is seconds, a string is an
  integer of seconds or a Go duration (``time.ParseDuration``) truncated to whole seconds,
  anything else is -1 (invalid).
- ``pkg/apis/rollouts/validation/validation.go`` ``ValidateRolloutStrategyCanary``: the rules
  behind :data:`RULES` (setWeight range, pause duration, one type per step, setCanaryScale and
  setHeaderRoute / setMirrorRoute need traffic routing (Istio for mirror routes) and
  ``managedRoutes`` naming the route, a header match has exactly one of exact / regex /
  prefix, maxSurge and maxUnavailable not both 0, distinct canary and stable Services,
  Services required by nginx and by Istio without a DestinationRule, scaleDownDelaySeconds
  and dynamicStableScale only with traffic routing, maxTrafficWeight only with nginx).
  The controller reports such a Rollout as ``InvalidSpec`` (phase Degraded) and never
  starts it.
- ``manifests/crds/rollout-crd.yaml``: field types (``setWeight`` int32, ``duration``
  int-or-string, ...); with the CRD's structural schema an unknown field is refused by
  ``kubectl apply`` (strict field validation).

Bounds of our own (at most :data:`MAX_STEPS` steps, 16 header matches, 1024-character
header values, route names, timed pauses of at most :data:`MAX_PAUSE_SECONDS`) and our RE2
check of header regexes cite themselves as pytest-canary's (:attr:`Problem.refused_by`):
Argo Rollouts runs such a Rollout, a test does not.

Besides Argo's own rules, :func:`unmodelled` names what the local model does not cover
(analysis, experiment and plugin steps need an AnalysisTemplate and a metrics provider or a
plugin binary; ``dynamicStableScale`` and friends), so a test learns it before deploying.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_canary.re2 import re2_problem

__all__ = [
    "ARGO_ROLLOUTS",
    "BOUND",
    "MAX_PAUSE_SECONDS",
    "MAX_STEPS",
    "HeaderMatch",
    "Problem",
    "Step",
    "canary_problems",
    "duration_seconds",
    "go_duration_seconds",
    "parse_steps",
    "pause_bound_problems",
    "unmodelled",
]

ARGO_ROLLOUTS = "argoproj/argo-rollouts v1.9.1"
VALIDATION = f"{ARGO_ROLLOUTS} pkg/apis/rollouts/validation/validation.go"
TYPES = f"{ARGO_ROLLOUTS} pkg/apis/rollouts/v1alpha1/types.go"
CRD = f"{ARGO_ROLLOUTS} manifests/crds/rollout-crd.yaml"

# Bounds of our own (Argo has none): every input has one.
BOUND = "pytest-canary's bound; Argo Rollouts has none"
# Header regexes are copied into the VirtualService, where Envoy matches them with RE2.
REGEX_CHECK = "pytest-canary's check: the controller copies it into the VirtualService (RE2)"
MAX_STEPS = 100
# A test waits for every timed pause it crosses (types.go RolloutPause.DurationSeconds
# allows any int32 of seconds, or any Go duration).
MAX_PAUSE_SECONDS = 3600
MAX_NAME = 253
MAX_MATCHES = 16
INT32_MAX = 2**31 - 1

STEP_TYPES = (
    "setWeight",
    "pause",
    "setCanaryScale",
    "setHeaderRoute",
    "setMirrorRoute",
    "analysis",
    "experiment",
    "plugin",
)
# Steps the local model cannot run: each needs something outside the Rollout.
UNMODELLED_STEPS = {
    "analysis": "an analysis step runs an AnalysisTemplate against a metrics provider "
    "(Prometheus, Datadog, ...), which the harness does not have; check health from the "
    "observed traffic instead, or pause and assert",
    "experiment": "an experiment step runs extra ReplicaSets with AnalysisTemplates and a "
    "metrics provider, which the harness does not have",
    "plugin": "a plugin step runs a step plugin binary loaded by the controller",
}
# Canary fields the local model does not cover, with why.
UNMODELLED_FIELDS = {
    "analysis": "background analysis needs an AnalysisTemplate and a metrics provider",
    "dynamicStableScale": "the stable ReplicaSet is kept fully scaled in the model",
    "minPodsPerReplicaSet": "not modelled",
    "replicaProgressThreshold": "a step waits for every desired canary pod in the model",
    "pingPong": "ALB ping-pong services are not modelled",
    "canaryMetadata": "ephemeral pod metadata is not modelled",
    "stableMetadata": "ephemeral pod metadata is not modelled",
    "maxTrafficWeight": "weights are percentages (of 100) in the model",
}


@dataclass(frozen=True)
class Problem:
    """One thing Argo Rollouts (or its CRD, or a bound of ours) refuses in a canary strategy.

    Attributes:
        path: the field, e.g. ``steps[3].pause.duration``.
        value: the value found there.
        message: what is wrong and what is allowed.
        rule: the upstream source (file and function or constant).
    """

    path: str
    value: object
    message: str
    rule: str

    def __str__(self) -> str:
        return f"{self.path}={self.value!r}: {self.message} ({self.rule})"

    @property
    def refused_by(self) -> str:
        """Who refuses it: ``"controller"`` (validation.go: the Rollout is ``InvalidSpec``),
        ``"api-server"`` (the CRD's schema: the Rollout is not stored) or
        ``"pytest-canary"`` (a bound of ours; Argo Rollouts runs it)."""
        if self.rule in (BOUND, REGEX_CHECK):
            return "pytest-canary"
        if self.rule == CRD:
            return "api-server"
        return "controller"


@dataclass(frozen=True)
class HeaderMatch:
    """One ``HeaderRoutingMatch``: a header and one of exact / prefix / regex."""

    header: str
    kind: str  # "exact" | "prefix" | "regex"
    value: str


@dataclass(frozen=True)
class Step:
    """One canary step, typed.

    Attributes:
        kind: the step's type, one of :data:`STEP_TYPES`.
        weight: ``setWeight`` (percent), or ``setCanaryScale.weight``.
        pause_seconds: a pause's duration in whole seconds; ``None`` for ``pause: {}``
            (indefinite, until promoted).
        canary_replicas: ``setCanaryScale.replicas``.
        match_traffic_weight: ``setCanaryScale.matchTrafficWeight``.
        route: the name of a ``setHeaderRoute`` / ``setMirrorRoute``.
        matches: a header route's matches; empty removes the route.
        raw: the step as written.
    """

    kind: str
    weight: int | None = None
    pause_seconds: int | None = None
    canary_replicas: int | None = None
    match_traffic_weight: bool = False
    route: str = ""
    matches: tuple[HeaderMatch, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def describe(self) -> str:
        """What ``kubectl argo rollouts get`` shows for the step (utils/rollout
        ``CanaryStepString``): ``setWeight: 20``, ``pause: 5s``, ``pause``, ..."""
        if self.kind == "setWeight":
            return f"setWeight: {self.weight}"
        if self.kind == "pause":
            return "pause" if self.pause_seconds is None else f"pause: {self.pause_seconds}s"
        if self.kind == "setCanaryScale":
            if self.match_traffic_weight:
                return "setCanaryScale{matchTrafficWeight: true}"
            if self.canary_replicas is not None:
                return f"setCanaryScale{{replicas: {self.canary_replicas}}}"
            return f"setCanaryScale{{weight: {self.weight}}}"
        if self.kind in ("setHeaderRoute", "setMirrorRoute"):
            return f"{self.kind}: {self.route}"
        return self.kind


# -- durations ------------------------------------------------------------------------------

# Go time.ParseDuration: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+, or "0".
_GO_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_GO_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def go_duration_seconds(text: str) -> float | None:
    """Go ``time.ParseDuration`` in seconds, or ``None`` when Go would return an error.

    Example:
        >>> go_duration_seconds("1m30s"), go_duration_seconds("250ms"), go_duration_seconds("5")
        (90.0, 0.25, None)
    """
    if len(text) > 64:
        return None
    body, sign = text, 1.0
    if body[:1] in "+-" and body:
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        return None
    total, pos = 0.0, 0
    while pos < len(body):
        match = _GO_PART.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            return None
        total += float(match.group(1)) * _GO_UNITS[match.group(2)]
        pos = match.end()
    return sign * total


def duration_seconds(value: object) -> int:
    """``RolloutPause.DurationSeconds`` (types.go): an integer is seconds; a string is parsed
    as a base-10 integer, else as a Go duration truncated to whole seconds; invalid gives -1.

    Example:
        >>> [duration_seconds(v) for v in (30, "30", "1m", "1.9s")]
        [30, 30, 60, 1]
        >>> duration_seconds("soon")
        -1
    """
    if isinstance(value, bool):
        return -1
    if isinstance(value, int):
        return value
    if not isinstance(value, str):
        return -1
    if re.fullmatch(r"[+-]?[0-9]{1,10}", value):
        number = int(value)
        return number if -(2**31) <= number <= INT32_MAX else -1  # strconv.ParseInt(s, 10, 32)
    seconds = go_duration_seconds(value)
    if seconds is None:
        return -1
    return math.trunc(seconds)  # int32(d.Seconds())


# -- steps ----------------------------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _match(raw: object, where: str, problems: list[Problem], *, regex_engine: str) -> HeaderMatch:
    entry = raw if isinstance(raw, Mapping) else {}
    if not isinstance(raw, Mapping):
        problems.append(
            Problem(where, raw, "must be a mapping with headerName and headerValue", CRD)
        )
    name = entry.get("headerName")
    if not isinstance(name, str):
        problems.append(Problem(f"{where}.headerName", name, "must be a string", CRD))
        name = ""
    elif not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,256}", name):
        problems.append(
            Problem(
                f"{where}.headerName",
                name,
                "must be an HTTP header name (a token of at most 256 characters)",
                BOUND,
            )
        )
        name = ""
    value = entry.get("headerValue")
    kinds = [k for k in ("exact", "regex", "prefix") if isinstance(value, Mapping) and value.get(k)]
    if not isinstance(value, Mapping) or len(kinds) != 1:
        # validation.go hasMultipleMatchValues: InvalidStringMatchMissedValuePolicy /
        # InvalidStringMatchMultipleValuePolicy.
        message = (
            "StringMatch value missed, match value must have one of the following: exact, "
            "regex, prefix"
            if not kinds
            else "StringMatch match value must have exactly one of the following: exact, "
            "regex, prefix"
        )
        problems.append(
            Problem(f"{where}.headerValue", value, message, f"{VALIDATION} hasMultipleMatchValues")
        )
        return HeaderMatch(name, "exact", "")
    unknown = sorted(set(value) - {"exact", "regex", "prefix"})
    if unknown:
        problems.append(
            Problem(
                f"{where}.headerValue",
                dict(value),
                f"unknown field(s) {', '.join(unknown)}; StringMatch has exact, prefix, regex",
                CRD,
            )
        )
    kind = kinds[0]
    text = value[kind]
    if not isinstance(text, str) or len(text) > 1024:
        problems.append(
            Problem(
                f"{where}.headerValue.{kind}",
                text if isinstance(text, str) and len(text) <= 64 else f"<{len(str(text))} chars>",
                "must be a string" if not isinstance(text, str) else "at most 1024 characters",
                CRD if not isinstance(text, str) else BOUND,
            )
        )
        return HeaderMatch(name, kind, "")
    if kind == "regex":
        try:
            re.compile(text)
        except re.error as exc:
            problems.append(
                Problem(
                    f"{where}.headerValue.regex",
                    text,
                    f"is not a valid regular expression ({exc})",
                    REGEX_CHECK,
                )
            )
        else:
            trouble = re2_problem(text)
            if trouble:
                problems.append(
                    Problem(
                        f"{where}.headerValue.regex",
                        text,
                        f"{regex_engine} matches regexes with {trouble}",
                        REGEX_CHECK,
                    )
                )
    return HeaderMatch(name, kind, text)


def _route_name(raw: Mapping[str, Any], where: str, problems: list[Problem]) -> str:
    name = raw.get("name", "")
    if not isinstance(name, str):
        problems.append(Problem(f"{where}.name", name, "must be a string", CRD))
        return ""
    if not re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,252})?", name):
        problems.append(
            Problem(
                f"{where}.name",
                name,
                "must be the route's name (letters, digits, '-', '_', '.'; at most 253)",
                BOUND,
            )
        )
        return ""
    return name


def _parse_step(raw: object, where: str, problems: list[Problem]) -> Step | None:
    if not isinstance(raw, Mapping):
        problems.append(
            Problem(
                where,
                raw,
                "each step must be a mapping such as {'setWeight': 20} or {'pause': {}}",
                CRD,
            )
        )
        return None
    kinds = [k for k in STEP_TYPES if k in raw]
    unknown = sorted(str(k) for k in raw if k not in STEP_TYPES)
    if unknown:
        problems.append(
            Problem(
                where,
                dict(raw),
                f"unknown field(s) {', '.join(unknown)}; a step is one of {', '.join(STEP_TYPES)}",
                CRD,
            )
        )
    if len(kinds) != 1:
        # validation.go: hasMultipleStepsType / InvalidStepMessage.
        problems.append(
            Problem(
                where,
                dict(raw),
                "Step must have one of the following set: experiment, setWeight, "
                "setCanaryScale, plugin or pause (exactly one per step)",
                f"{VALIDATION} InvalidStepMessage",
            )
        )
        return None
    kind = kinds[0]
    body = raw[kind]
    if kind == "setWeight":
        if not _is_int(body):
            problems.append(Problem(f"{where}.setWeight", body, "must be an integer (int32)", CRD))
            return None
        return Step("setWeight", weight=body, raw=raw)
    if kind == "pause":
        if body is None:
            body = {}
        if not isinstance(body, Mapping) or set(body) - {"duration"}:
            problems.append(
                Problem(
                    f"{where}.pause", body, "must be {} (until promoted) or {'duration': ...}", CRD
                )
            )
            return None
        if "duration" not in body or body["duration"] is None:
            return Step("pause", raw=raw)
        duration = body["duration"]
        if not (_is_int(duration) or isinstance(duration, str)):
            problems.append(
                Problem(
                    f"{where}.pause.duration",
                    duration,
                    "must be an integer of seconds or a string such as '30', '30s' or '1m' "
                    "(int-or-string)",
                    CRD,
                )
            )
            return None
        seconds = duration_seconds(duration)
        if seconds < 0:
            # validation.go: step.Pause.DurationSeconds() < 0 -> InvalidDurationMessage.
            problems.append(
                Problem(
                    f"{where}.pause.duration",
                    duration,
                    "Duration needs to be greater than 0: an integer of seconds, a digit "
                    "string, or a Go duration such as '30s', '10m', '1h'",
                    f"{VALIDATION} InvalidDurationMessage; {TYPES} RolloutPause.DurationSeconds",
                )
            )
            return None
        return Step("pause", pause_seconds=seconds, raw=raw)
    if kind == "setCanaryScale":
        scale = body if isinstance(body, Mapping) else None
        if scale is None or set(scale) - {"weight", "replicas", "matchTrafficWeight"}:
            problems.append(
                Problem(
                    f"{where}.setCanaryScale",
                    body,
                    "must have weight, replicas or matchTrafficWeight",
                    CRD,
                )
            )
            return None
        for key in ("weight", "replicas"):
            if key in scale and (not _is_int(scale[key]) or scale[key] < 0):
                problems.append(
                    Problem(
                        f"{where}.setCanaryScale.{key}",
                        scale[key],
                        "must be a non-negative integer (int32)",
                        CRD if not _is_int(scale[key]) else BOUND,
                    )
                )
                return None
        match = scale.get("matchTrafficWeight", False)
        if not isinstance(match, bool):
            problems.append(
                Problem(
                    f"{where}.setCanaryScale.matchTrafficWeight",
                    match,
                    "must be true or false",
                    CRD,
                )
            )
            return None
        return Step(
            "setCanaryScale",
            weight=scale.get("weight"),
            canary_replicas=scale.get("replicas"),
            match_traffic_weight=match,
            raw=raw,
        )
    if kind == "setHeaderRoute":
        route = body if isinstance(body, Mapping) else None
        if route is None or set(route) - {"name", "match"}:
            problems.append(
                Problem(
                    f"{where}.setHeaderRoute",
                    body,
                    "must be {'name': ..., 'match': [{'headerName': ..., "
                    "'headerValue': {'exact': ...}}]}",
                    CRD,
                )
            )
            return None
        name = _route_name(route, f"{where}.setHeaderRoute", problems)
        raw_matches = route.get("match") or []
        if not isinstance(raw_matches, Sequence) or isinstance(raw_matches, (str, bytes)):
            problems.append(
                Problem(f"{where}.setHeaderRoute.match", raw_matches, "must be a list", CRD)
            )
            return None
        if len(raw_matches) > MAX_MATCHES:
            problems.append(
                Problem(
                    f"{where}.setHeaderRoute.match",
                    f"<{len(raw_matches)} matches>",
                    f"at most {MAX_MATCHES} header matches",
                    BOUND,
                )
            )
            return None
        matches = tuple(
            _match(m, f"{where}.setHeaderRoute.match[{j}]", problems, regex_engine="Envoy (Istio)")
            for j, m in enumerate(raw_matches)
        )
        return Step("setHeaderRoute", route=name, matches=matches, raw=raw)
    if kind == "setMirrorRoute":
        route = body if isinstance(body, Mapping) else None
        if route is None or set(route) - {"name", "match", "percentage"}:
            problems.append(
                Problem(
                    f"{where}.setMirrorRoute",
                    body,
                    "must be {'name': ..., 'match': [...], 'percentage': ...}",
                    CRD,
                )
            )
            return None
        name = _route_name(route, f"{where}.setMirrorRoute", problems)
        percentage = route.get("percentage")
        if percentage is not None and (not _is_int(percentage) or not 0 <= percentage <= 100):
            problems.append(
                Problem(
                    f"{where}.setMirrorRoute.percentage",
                    percentage,
                    "must be an integer from 0 to 100",
                    CRD if not _is_int(percentage) else BOUND,
                )
            )
        return Step("setMirrorRoute", route=name, raw=raw)
    return Step(kind, raw=raw)


def pause_bound_problems(raw: object, path: str = "steps") -> list[Problem]:
    """Timed pauses longer than :data:`MAX_PAUSE_SECONDS`: Argo Rollouts runs them, but a
    test waits for every timed pause it crosses, so this is pytest-canary's bound.

    Example:
        >>> [str(p).split(":")[0] for p in pause_bound_problems([{"pause": {"duration": "2h"}}])]
        ["steps[0].pause.duration='2h'"]
    """
    steps, _ = parse_steps(raw, path)
    found: list[Problem] = []
    for index, step in enumerate(steps_with_index(raw, steps)):
        if step is None or step.kind != "pause" or step.pause_seconds is None:
            continue
        if step.pause_seconds > MAX_PAUSE_SECONDS:
            found.append(
                Problem(
                    f"{path}[{index}].pause.duration",
                    step.raw["pause"]["duration"],
                    f"is {step.pause_seconds} s; a timed pause must be 0 to "
                    f"{MAX_PAUSE_SECONDS} s, since the test waits for it; shorten it for the "
                    "test",
                    BOUND,
                )
            )
    return found


def parse_steps(raw: object, path: str = "steps") -> tuple[tuple[Step, ...], list[Problem]]:
    """The steps as typed values, and the problems found parsing them (types, shapes and
    the per-step rules that need no other field; see :func:`canary_problems` for all).

    Example:
        >>> steps, problems = parse_steps([{"setWeight": 20}, {"pause": {"duration": "5s"}}])
        >>> [s.describe() for s in steps], problems
        (['setWeight: 20', 'pause: 5s'], [])
    """
    problems: list[Problem] = []
    if raw is None:
        return (), problems
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        problems.append(Problem(path, raw, "must be a list of steps", CRD))
        return (), problems
    if len(raw) > MAX_STEPS:
        problems.append(Problem(path, f"<{len(raw)} steps>", f"at most {MAX_STEPS} steps", BOUND))
        return (), problems
    steps: list[Step] = []
    for index, item in enumerate(raw):
        step = _parse_step(item, f"{path}[{index}]", problems)
        if step is not None:
            steps.append(step)
    return tuple(steps), problems


# -- the strategy ---------------------------------------------------------------------------


def _int_or_percent(value: object) -> int | None:
    """getIntOrPercentValue: an int, or the number of ``N%``; None when neither."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,9}%", value):
        return int(value[:-1])
    return None


def _traffic_routers(canary: Mapping[str, Any]) -> set[str]:
    routing = canary.get("trafficRouting")
    if not isinstance(routing, Mapping):
        return set()
    known = (
        "nginx",
        "istio",
        "alb",
        "smi",
        "ambassador",
        "appMesh",
        "traefik",
        "apisix",
        "plugins",
    )
    return {key for key in known if routing.get(key)}


def canary_problems(canary: Mapping[str, Any], path: str = "spec.strategy.canary") -> list[Problem]:
    """Every problem Argo Rollouts v1.9.1 reports for ``spec.strategy.canary``: the shapes of
    the steps and the rules of ``validation.go`` ``ValidateRolloutStrategyCanary``.

    Example:
        >>> [p.message for p in canary_problems({"steps": [{"setWeight": 120}]})]
        ['SetWeight needs to be between 0 and 100']
    """
    steps, problems = parse_steps(canary.get("steps"), f"{path}.steps")
    routers = _traffic_routers(canary)
    routing = (
        canary.get("trafficRouting") if isinstance(canary.get("trafficRouting"), Mapping) else None
    )
    routing = routing or {}
    max_weight = 100
    if routing.get("maxTrafficWeight") is not None:
        value = routing["maxTrafficWeight"]
        if _is_int(value) and value > 0:
            max_weight = int(value)
        if "nginx" not in routers and "plugins" not in routers:
            problems.append(
                Problem(
                    f"{path}.trafficRouting.maxTrafficWeight",
                    value,
                    "Canary maxTrafficWeight in traffic routing only supported in Nginx and "
                    "Plugins",
                    f"{VALIDATION} InvalidCanaryMaxWeightOnlySupportInNginxAndPlugins",
                )
            )

    # invalidMaxSurgeMaxUnavailable: both resolve to 0 (defaults 25%).
    surge = _int_or_percent(canary.get("maxSurge", "25%"))
    unavailable = _int_or_percent(canary.get("maxUnavailable", "25%"))
    for key in ("maxSurge", "maxUnavailable"):
        if key in canary and _int_or_percent(canary[key]) is None:
            problems.append(
                Problem(
                    f"{path}.{key}",
                    canary[key],
                    "must be a non-negative integer or a percentage such as '25%'",
                    CRD,
                )
            )
    if surge == 0 and unavailable == 0:
        problems.append(
            Problem(
                f"{path}.maxSurge",
                canary.get("maxSurge"),
                "MaxSurge and MaxUnavailable both can not be zero",
                f"{VALIDATION} InvalidMaxSurgeMaxUnavailable",
            )
        )

    canary_service = canary.get("canaryService") or ""
    stable_service = canary.get("stableService") or ""
    if canary_service and canary_service == stable_service:
        problems.append(
            Problem(
                f"{path}.stableService",
                stable_service,
                "This rollout uses the same service for the stable and canary services, but "
                "two different services are required.",
                f"{VALIDATION} DuplicatedServicesCanaryMessage",
            )
        )
    istio = routing.get("istio") if isinstance(routing.get("istio"), Mapping) else None
    needs_services = bool(
        routers & {"nginx", "alb", "smi", "apisix", "ambassador", "appMesh", "traefik"}
    ) or (istio is not None and not istio.get("destinationRule"))
    if needs_services:  # requireCanaryStableServices
        for key, value in (("stableService", stable_service), ("canaryService", canary_service)):
            if not value:
                problems.append(
                    Problem(
                        f"{path}.{key}",
                        value,
                        "Canary service and Stable service must to be set to use Traffic Routing",
                        f"{VALIDATION} InvalidTrafficRoutingMessage",
                    )
                )
    if not routers:
        if canary.get("scaleDownDelaySeconds") is not None:
            problems.append(
                Problem(
                    f"{path}.scaleDownDelaySeconds",
                    canary["scaleDownDelaySeconds"],
                    "Canary scaleDownDelaySeconds can only be used with traffic routing",
                    f"{VALIDATION} InvalidCanaryScaleDownDelay",
                )
            )
        if canary.get("dynamicStableScale"):
            problems.append(
                Problem(
                    f"{path}.dynamicStableScale",
                    True,
                    "Canary dynamicStableScale can only be used with traffic routing",
                    f"{VALIDATION} InvalidCanaryDynamicStableScale",
                )
            )
    elif canary.get("scaleDownDelaySeconds") is not None and canary.get("dynamicStableScale"):
        problems.append(
            Problem(
                f"{path}.dynamicStableScale",
                True,
                "Canary dynamicStableScale cannot be used with scaleDownDelaySeconds",
                f"{VALIDATION} InvalidCanaryDynamicStableScaleWithScaleDownDelay",
            )
        )

    managed = routing.get("managedRoutes")
    managed_names = (
        {str(r.get("name")) for r in managed if isinstance(r, Mapping)}
        if isinstance(managed, Sequence) and not isinstance(managed, (str, bytes))
        else None
    )
    for index, step in enumerate(steps_with_index(canary.get("steps"), steps)):
        if step is None:
            continue
        where = f"{path}.steps[{index}]"
        if (
            step.kind == "setWeight"
            and step.weight is not None
            and not 0 <= step.weight <= max_weight
        ):
            problems.append(
                Problem(
                    f"{where}.setWeight",
                    step.weight,
                    f"SetWeight needs to be between 0 and {max_weight}",
                    f"{VALIDATION} InvalidSetWeightMessage",
                )
            )
        if step.kind == "setCanaryScale" and not routers:
            problems.append(
                Problem(
                    f"{path}.trafficRouting",
                    None,
                    f"SetCanaryScale requires TrafficRouting to be set (steps[{index}])",
                    f"{VALIDATION} InvalidSetCanaryScaleTrafficPolicy",
                )
            )
        if step.kind == "setHeaderRoute" and not routers & {"istio", "alb", "apisix", "plugins"}:
            problems.append(
                Problem(
                    f"{where}.setHeaderRoute",
                    dict(step.raw.get("setHeaderRoute") or {}),
                    "SetHeaderRoute requires TrafficRouting, supports Istio and ALB and Apisix "
                    "(with ingress-nginx, route by header with the static canary Ingress "
                    "annotation canary-by-header in additionalIngressAnnotations)",
                    f"{VALIDATION} InvalidSetHeaderRouteTrafficPolicy",
                )
            )
        if step.kind == "setMirrorRoute" and "istio" not in routers:
            problems.append(
                Problem(
                    f"{where}.setMirrorRoute",
                    dict(step.raw.get("setMirrorRoute") or {}),
                    "SetMirrorRoute requires TrafficRouting, supports Istio only",
                    f"{VALIDATION} InvalidSetMirrorRouteTrafficPolicy",
                )
            )
        if step.kind in ("setHeaderRoute", "setMirrorRoute") and routers:
            if managed_names is None:
                problems.append(
                    Problem(
                        f"{path}.trafficRouting.managedRoutes",
                        None,
                        "Rollout has missing field 'spec.strategy.canary.trafficRouting."
                        f"managedRoutes' (steps[{index}] is a {step.kind})",
                        f"{VALIDATION} MissingFieldMessage",
                    )
                )
            elif step.route not in managed_names:
                problems.append(
                    Problem(
                        f"{where}.{step.kind}",
                        step.route,
                        "Steps define a route that does not exist in spec.strategy.canary."
                        f"trafficRouting.managedRoutes (managedRoutes: {sorted(managed_names)})",
                        f"{VALIDATION} InvalideStepRouteNameNotFoundInManagedRoutes",
                    )
                )
    return problems


def steps_with_index(raw: object, parsed: tuple[Step, ...]) -> list[Step | None]:
    """The parsed steps aligned with the raw list (``None`` where a step did not parse)."""
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)) or len(raw) > MAX_STEPS:
        return []
    by_raw = iter(parsed)
    aligned: list[Step | None] = []
    pending = next(by_raw, None)
    for item in raw:
        if pending is not None and pending.raw is item:
            aligned.append(pending)
            pending = next(by_raw, None)
        else:
            aligned.append(None)
    return aligned


def unmodelled(canary: Mapping[str, Any], path: str = "spec.strategy.canary") -> list[Problem]:
    """What Argo Rollouts accepts but the local controller model does not run: analysis,
    experiment and plugin steps, and the fields of :data:`UNMODELLED_FIELDS`."""
    found: list[Problem] = []
    steps, _ = parse_steps(canary.get("steps"), f"{path}.steps")
    for index, step in enumerate(steps_with_index(canary.get("steps"), steps)):
        if step is not None and step.kind in UNMODELLED_STEPS:
            found.append(
                Problem(
                    f"{path}.steps[{index}].{step.kind}",
                    "...",
                    UNMODELLED_STEPS[step.kind],
                    "not modelled",
                )
            )
    for key, why in UNMODELLED_FIELDS.items():
        value = canary.get(key)
        if value not in (None, False, {}, []):
            found.append(Problem(f"{path}.{key}", value, why, "not modelled"))
    routing = canary.get("trafficRouting")
    if isinstance(routing, Mapping):
        routers = _traffic_routers(canary) - {"nginx", "istio"}
        for router in sorted(routers):
            found.append(
                Problem(
                    f"{path}.trafficRouting.{router}",
                    "...",
                    "only nginx and istio traffic routing are modelled",
                    "not modelled",
                )
            )
        istio = routing.get("istio")
        if (
            isinstance(istio, Mapping)
            and istio.get("virtualService")
            and istio.get("virtualServices")
        ):
            found.append(
                Problem(
                    f"{path}.trafficRouting.istio",
                    "...",
                    "give virtualService or virtualServices, not both",
                    "not modelled",
                )
            )
    return found
