"""Reading the Rollout: what the controller takes from a Rollout's spec, defaults applied.

Upstream (argoproj/argo-rollouts, tag v1.9.1):

- **Defaults** (``utils/defaults``): ``maxSurge`` / ``maxUnavailable`` 25% / 25%;
  ``GetScaleDownDelaySecondsOrDefault`` / ``GetAbortScaleDownDelaySecondsOrDefault``: 30 s
  each with traffic routing, none without; ``abortScaleDownDelaySeconds`` 0 = keep the
  canary's pods.
- **Fenceposts** (``utils/replicaset/replicaset.go`` ``resolveFenceposts``): maxSurge rounds
  up, maxUnavailable down, both 0 -> maxUnavailable 1.
- **Traffic routing** (``pkg/apis/rollouts/v1alpha1`` ``RolloutTrafficRouting``):
  ``trafficRouting.nginx`` (``stableIngress`` / ``stableIngresses``, ``annotationPrefix``,
  ``additionalIngressAnnotations``, ``canaryIngressAnnotations``) and
  ``trafficRouting.istio`` (``virtualService`` / ``virtualServices`` with their routes,
  ``destinationRule`` with its canary and stable subsets), ``managedRoutes``.
- **Names** (``rollout/sync.go`` ``createDesiredReplicaSet``): a ReplicaSet is
  ``<rollout>-<pod template hash>``.
- **Validation** (``InvalidSpec``): ``pkg/apis/rollouts/validation/validation.go``
  ``ValidateRolloutSpec`` for the spec outside the strategy (:func:`spec_problems`:
  ``replicas`` not negative (``ValidateNonnegativeField``); a selector required and not
  empty unless ``workloadRef`` is given; the selector selecting the template's labels
  (Kubernetes ``ValidatePodTemplateSpecForReplicaSet``) -- the CRD's schema checks none of
  them, so the API server stores such a Rollout and the controller refuses it), then the
  strategy's
  rules of :mod:`pytest_canary.rollout_spec`, which cites them; what the model does not
  cover is listed apart (``unmodelled``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_canary.dataplane.argo_rollouts.hashes import pod_template_hash, step_hash
from pytest_canary.manifests.rolling import scaled_value
from pytest_canary.rollout_spec import (
    VALIDATION,
    Problem,
    Step,
    canary_problems,
    parse_steps,
    pause_bound_problems,
    unmodelled,
)

NGINX_PREFIX = "nginx.ingress.kubernetes.io"
DEFAULT_SCALE_DOWN_DELAY = 30
DEFAULT_ABORT_SCALE_DOWN_DELAY = 30
DEFAULT_SURGE = "25%"
DEFAULT_UNAVAILABLE = "25%"


@dataclass(frozen=True)
class NginxRouting:
    """``trafficRouting.nginx``."""

    stable_ingresses: tuple[str, ...]
    annotation_prefix: str = NGINX_PREFIX
    additional_annotations: Mapping[str, str] = field(default_factory=dict)
    canary_annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IstioVirtualServiceRef:
    """One ``trafficRouting.istio.virtualService(s)`` entry."""

    name: str
    routes: tuple[str, ...] = ()


@dataclass(frozen=True)
class IstioRouting:
    """``trafficRouting.istio``."""

    virtual_services: tuple[IstioVirtualServiceRef, ...]
    destination_rule: str | None = None
    canary_subset: str = ""
    stable_subset: str = ""


@dataclass(frozen=True)
class RolloutConfig:
    """What the controller reads from a Rollout's spec (defaults applied).

    ``problems`` are what Argo Rollouts refuses (the controller's ``InvalidSpec``, or the
    CRD's schema); ``unmodelled`` what the local model does not run; ``bounds`` what
    pytest-canary's own bounds refuse (Argo runs it; a test does not)."""

    name: str
    generation: int
    replicas: int
    template: Mapping[str, Any]
    template_hash: str
    steps: tuple[Step, ...]
    steps_hash: str
    max_surge: int | str = DEFAULT_SURGE
    max_unavailable: int | str = DEFAULT_UNAVAILABLE
    canary_service: str = ""
    stable_service: str = ""
    nginx: NginxRouting | None = None
    istio: IstioRouting | None = None
    managed_routes: tuple[str, ...] = ()
    scale_down_delay: int = 0
    abort_scale_down_delay: int | None = None
    paused: bool = False
    problems: tuple[Problem, ...] = ()
    unmodelled: tuple[Problem, ...] = ()
    bounds: tuple[Problem, ...] = ()
    uid: str = ""

    @property
    def traffic_routing(self) -> bool:
        """Whether a traffic router splits the traffic (else replica counts do)."""
        return self.nginx is not None or self.istio is not None

    @property
    def step_count(self) -> int:
        """Number of steps."""
        return len(self.steps)

    def fenceposts(self) -> tuple[int, int]:
        """(maxSurge, maxUnavailable) in pods: ``resolveFenceposts`` (surge rounds up,
        unavailable down, both 0 -> unavailable 1), maxUnavailable capped at replicas."""
        if self.replicas == 0:
            return 0, 0
        surge = scaled_value(self.max_surge, self.replicas, round_up=True)
        unavailable = scaled_value(self.max_unavailable, self.replicas, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        return surge, min(unavailable, self.replicas)

    def replicaset_name(self, pod_hash: str) -> str:
        """``<rollout>-<hash>`` (createDesiredReplicaSet)."""
        return f"{self.name}-{pod_hash}"


def _int(value: object, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str_map(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _nginx_routing(raw_nginx: object) -> NginxRouting | None:
    """``trafficRouting.nginx``, if given."""
    if not isinstance(raw_nginx, Mapping):
        return None
    ingresses = raw_nginx.get("stableIngresses") or (
        [raw_nginx["stableIngress"]] if raw_nginx.get("stableIngress") else []
    )
    return NginxRouting(
        stable_ingresses=tuple(str(i) for i in ingresses),
        annotation_prefix=str(raw_nginx.get("annotationPrefix") or NGINX_PREFIX),
        additional_annotations=_str_map(raw_nginx.get("additionalIngressAnnotations")),
        canary_annotations=_str_map(raw_nginx.get("canaryIngressAnnotations")),
    )


def _istio_routing(raw_istio: object) -> IstioRouting | None:
    """``trafficRouting.istio``, if given."""
    if not isinstance(raw_istio, Mapping):
        return None
    refs = raw_istio.get("virtualServices") or (
        [raw_istio["virtualService"]] if raw_istio.get("virtualService") else []
    )
    dr = (
        raw_istio.get("destinationRule")
        if isinstance(raw_istio.get("destinationRule"), Mapping)
        else None
    )
    return IstioRouting(
        virtual_services=tuple(
            IstioVirtualServiceRef(
                str(r.get("name", "")), tuple(str(x) for x in r.get("routes") or ())
            )
            for r in refs
            if isinstance(r, Mapping)
        ),
        destination_rule=str(dr.get("name")) if dr else None,
        canary_subset=str(dr.get("canarySubsetName", "")) if dr else "",
        stable_subset=str(dr.get("stableSubsetName", "")) if dr else "",
    )


def spec_problems(spec: Mapping[str, Any]) -> list[Problem]:
    """``validation.go`` ``ValidateRolloutSpec`` before the strategy, in its order: what the
    controller refuses (``InvalidSpec``) that the CRD's schema lets through.

    Example:
        >>> [p.message for p in spec_problems({"template": {}})]
        ["Rollout has missing field '.spec.selector'"]
    """
    problems: list[Problem] = []
    rule = f"{VALIDATION} ValidateRolloutSpec"
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and not isinstance(replicas, bool) and replicas < 0:
        problems.append(
            Problem(
                "spec.replicas",
                replicas,
                "must be greater than or equal to 0",
                f"{rule} (ValidateNonnegativeField)",
            )
        )
    if not spec.get("workloadRef"):
        selector = spec.get("selector")
        if selector is None:
            problems.append(
                Problem(
                    "spec.selector",
                    None,
                    "Rollout has missing field '.spec.selector'",
                    f"{rule} (MissingFieldMessage)",
                )
            )
        elif isinstance(selector, Mapping) and not (
            selector.get("matchLabels") or selector.get("matchExpressions")
        ):
            problems.append(
                Problem(
                    "spec.selector",
                    dict(selector),
                    "empty selector is invalid for deployment",
                    rule,
                )
            )
        elif isinstance(selector, Mapping):
            template = spec.get("template")
            meta = template.get("metadata") if isinstance(template, Mapping) else None
            labels = meta.get("labels") if isinstance(meta, Mapping) else None
            labels = labels if isinstance(labels, Mapping) else {}
            if selects(selector, labels) is False:
                problems.append(
                    Problem(
                        "spec.template.metadata.labels",
                        dict(labels),
                        f"`selector` does not match template `labels` (selector {dict(selector)})",
                        f"{rule} (ValidatePodTemplateSpecForReplicaSet)",
                    )
                )
    return problems


def selects(selector: Mapping[str, Any], labels: Mapping[str, Any]) -> bool | None:
    """Whether a ``LabelSelector`` selects ``labels`` (apimachinery
    ``LabelSelectorAsSelector``: every ``matchLabels`` pair, every ``matchExpressions``
    requirement: In, NotIn, Exists, DoesNotExist); ``None`` when it is not a selector the
    API would read (the schema check reports that)."""
    match = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not isinstance(match, Mapping) or not isinstance(expressions, list):
        return None
    if any(labels.get(k) != v for k, v in match.items()):
        return False
    for expression in expressions:
        if not isinstance(expression, Mapping):
            return None
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if not isinstance(key, str) or not isinstance(values, list):
            return None
        if operator == "In":
            held = key in labels and labels[key] in values
        elif operator == "NotIn":
            held = key not in labels or labels[key] not in values
        elif operator == "Exists":
            held = key in labels
        elif operator == "DoesNotExist":
            held = key not in labels
        else:
            return None
        if not held:
            return False
    return True


def read_rollout(obj: Mapping[str, Any]) -> RolloutConfig:
    """Read a Rollout object as the controller does: defaults, typed steps, its validation
    problems (``InvalidSpec``) and what the model does not cover."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    strategy = spec.get("strategy") or {}
    canary = strategy.get("canary") if isinstance(strategy.get("canary"), Mapping) else None
    problems: list[Problem] = []
    not_covered: list[Problem] = []
    if canary is None:
        not_covered.append(
            Problem(
                "spec.strategy",
                dict(strategy),
                "only the canary strategy is modelled (blueGreen is not)",
                "not modelled",
            )
        )
        canary = {}
    problems += spec_problems(spec)
    problems += canary_problems(canary)
    not_covered += unmodelled(canary)
    if spec.get("workloadRef"):
        not_covered.append(
            Problem("spec.workloadRef", spec["workloadRef"], "give spec.template", "not modelled")
        )
    steps, _ = parse_steps(canary.get("steps"))
    given_steps = canary.get("steps")
    raw_steps: list[Any] = given_steps if isinstance(given_steps, list) else []
    raw_routing = canary.get("trafficRouting")
    routing: Mapping[str, Any] = raw_routing if isinstance(raw_routing, Mapping) else {}
    nginx = _nginx_routing(routing.get("nginx"))
    istio = _istio_routing(routing.get("istio"))
    traffic = nginx is not None or istio is not None
    # utils/defaults GetScaleDownDelaySecondsOrDefault / GetAbortScaleDownDelaySecondsOrDefault:
    # 30 s each with traffic routing, none without; abortScaleDownDelaySeconds 0 = never.
    scale_down = (
        _int(canary.get("scaleDownDelaySeconds"), DEFAULT_SCALE_DOWN_DELAY) if traffic else 0
    )
    abort_delay: int | None = None
    if traffic:
        abort_delay = _int(canary.get("abortScaleDownDelaySeconds"), DEFAULT_ABORT_SCALE_DOWN_DELAY)
        abort_delay = None if abort_delay == 0 else abort_delay
    template = spec.get("template") or {}
    raw_managed = routing.get("managedRoutes")
    managed: list[Any] = raw_managed if isinstance(raw_managed, list) else []
    return RolloutConfig(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid") or ""),
        generation=_int(meta.get("generation"), 1),
        replicas=_int(spec.get("replicas"), 1),
        template=template,
        template_hash=pod_template_hash(template),
        steps=steps,
        steps_hash=step_hash([s for s in raw_steps if isinstance(s, Mapping)]),
        max_surge=canary.get("maxSurge", DEFAULT_SURGE),
        max_unavailable=canary.get("maxUnavailable", DEFAULT_UNAVAILABLE),
        canary_service=str(canary.get("canaryService") or ""),
        stable_service=str(canary.get("stableService") or ""),
        nginx=nginx,
        istio=istio,
        managed_routes=tuple(str(r.get("name")) for r in managed if isinstance(r, Mapping)),
        scale_down_delay=scale_down,
        abort_scale_down_delay=abort_delay,
        paused=bool(spec.get("paused", False)),
        problems=tuple(p for p in problems if p.refused_by != "pytest-canary"),
        unmodelled=tuple(not_covered),
        bounds=(
            *(p for p in problems if p.refused_by == "pytest-canary"),
            *pause_bound_problems(canary.get("steps"), "spec.strategy.canary.steps"),
        ),
    )
