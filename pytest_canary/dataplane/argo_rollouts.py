"""A model of the Argo Rollouts controller (v1.9.1), canary strategy: what it decides and
writes at every reconciliation, as pure functions.

Given a ``Rollout`` object, its status, its ReplicaSets and the namespace's routing objects,
:func:`reconcile` returns what one sync of the real controller does: the new status, the
ReplicaSet sizes, the Services / canary Ingress / VirtualService / DestinationRule it
writes, and when it wants to be woken again (a timed pause, a scale-down deadline). The
local backend drives it in a loop (``backends/local/rollouts.py``); the linter asks it what
the controller would refuse; the cluster waits ask it what weights, replica counts and
status to expect. The objects it writes are then routed by the existing data-plane models
(``dataplane/nginx.py``, ``dataplane/istio.py``): nothing here routes a request.

Every rule with its upstream source (repository argoproj/argo-rollouts, tag v1.9.1):

- **ReplicaSets per pod template** (``rollout/controller.go`` ``newRolloutContext``,
  ``rollout/sync.go`` ``createDesiredReplicaSet``): a template no ReplicaSet runs gets a new
  one, revision = highest + 1, 0 replicas, pods labelled ``rollouts-pod-template-hash``.
  The stable ReplicaSet is the one whose hash is ``status.stableRS``
  (``utils/replicaset`` ``GetStableRS``); the others are "other" ReplicaSets.
- **Template or steps changed** (``utils/replicaset`` ``PodTemplateOrStepsChanged``,
  ``rollout/sync.go`` ``resetRolloutStatus``): that sync only resets the status (step 0,
  pause and abort cleared); back on the stable template the steps are skipped ("Rollback to
  stable ReplicaSets", ``currentStepIndex`` = number of steps).
- **Replica counts**, ``utils/replicaset/canary.go``: without traffic routing
  ``CalculateReplicaCountsForBasicCanary`` (``approximateWeightedCanaryStableReplicaCounts``:
  floor or ceil of replicas x weight, totals ``replicas`` or ``replicas + 1`` when surge is
  allowed, the closest to the weight, ties to the first option; then scale up within
  ``replicas + maxSurge``, stable first, and down within ``replicas - maxUnavailable``);
  with traffic routing ``CalculateReplicaCountsForTrafficRoutedCanary`` (canary =
  ceil(weight x replicas / 100) or ``setCanaryScale``, stable = replicas).
  ``utils/replicaset/replicaset.go`` ``resolveFenceposts``: maxSurge rounds up,
  maxUnavailable down, both 0 -> maxUnavailable 1; defaults 25% / 25%
  (``utils/defaults``).
- **Step completion** (``rollout/canary.go`` ``completedCurrentCanaryStep``): setWeight and
  setCanaryScale when ``AtDesiredReplicaCountsForCanary`` (the canary's desired replicas all
  available, the stable's all created, basic canary: no other pod available); a pause when
  promoted or ``startTime + duration`` passed (``rollout/pause.go``
  ``CompletedCanaryPauseStep``); setHeaderRoute / setMirrorRoute at once.
- **Pauses** (``rollout/canary.go`` ``reconcileCanaryPause``, ``rollout/pause.go``): reaching
  a pause step adds ``PauseCondition{CanaryPauseStep, startTime: now}`` and
  ``controllerPause``; a timed pause requeues at its expiry; ``pause: {}`` waits for promote.
- **Traffic weight** (``rollout/trafficrouting.go`` ``reconcileTrafficRouting``): fully
  promoted -> 0 (managed routes removed); aborted -> 0 and the canary Service back on the
  stable ReplicaSet; no canary pod available -> 0; ``promoteFull`` -> the weight already
  set; at a step whose replica counts are not reached yet -> the previous step's setWeight
  (the weight advances only once the canary's pods are available); else the current
  setWeight, or 100 after the last step. Written only when the stable ReplicaSet has the
  pods for the rest (``checkReplicasAvailable``).
- **ingress-nginx** (``rollout/trafficrouting/nginx/nginx.go`` ``buildCanaryIngress``,
  ``utils/ingress`` ``GetCanaryIngressName``): Ingress ``<rollout>-<stableIngress>-canary``
  with the stable Ingress's rules that use the stable Service, pointed at the canary
  Service, TLS and class copied, ``additionalIngressAnnotations`` (prefixed),
  ``canaryIngressAnnotations`` (as written), then always ``canary: "true"`` and
  ``canary-weight``; existing annotations kept (``getDesiredAnnotations``).
- **Istio** (``rollout/trafficrouting/istio/istio.go``): ``SetWeight`` patches the named
  routes (or the only / first unnamed one): canary host (before the first dot) or subset
  gets the weight, stable 100 - weight, other destinations are removed
  (``processRoutes``); ``UpdateHash`` labels the DestinationRule's canary / stable subsets
  with ``rollouts-pod-template-hash`` and drops other subsets, delayed while a ReplicaSet
  that takes traffic is not fully available (``shouldDelayDestinationRuleUpdate``, subset
  splitting only); ``SetHeaderRoute`` adds a route matching the headers to the canary,
  ``orderRoutes`` puts ``managedRoutes`` first in their order, ``RemoveManagedRoutes``
  deletes them; ``ValidateHTTPRoutes`` refuses a route without both destinations.
- **Services** (``rollout/service.go`` ``reconcileStableAndCanaryService`` /
  ``ensureSVCTargets``): the stable Service selects the stable ReplicaSet's hash, the canary
  Service the new one's (the stable's when a basic canary aborts); a Service not yet
  managed is switched only to a fully available ReplicaSet, any switch needs one available
  pod; the Service is annotated ``argo-rollouts.argoproj.io/managed-by``.
- **Promotion** (``rollout/sync.go`` ``shouldFullPromote`` / ``promoteStable``): the first
  ReplicaSet is stable at once ("Initial deploy"); later the new ReplicaSet becomes stable
  when all its pods are available and all steps completed or ``promoteFull`` was asked.
- **Old ReplicaSets** (``rollout/canary.go`` ``scaleDownOldReplicaSetsForCanary``,
  ``rollout/replicaset.go`` ``scaleDownDelayHelper`` / ``isReplicaSetReferenced``): basic
  canary: scaled down within maxUnavailable; traffic routing: once fully promoted an
  unreferenced old ReplicaSet gets ``scale-down-deadline`` = now + ``scaleDownDelaySeconds``
  (default 30) and is scaled to 0 after it.
- **Abort** (``rollout/replicaset.go`` ``reconcileNewReplicaSet`` /
  ``shouldDelayScaleDownOnAbort``, ``rollout/sync.go`` ``calculateRolloutConditions``):
  ``currentStepIndex`` 0, condition ``Progressing=False RolloutAborted`` (phase Degraded);
  with traffic routing the canary ReplicaSet keeps its pods until the stable one is fully
  available, then for ``abortScaleDownDelaySeconds`` (default 30; 0 = keep them).
- **Phase** (``utils/rollout/rolloututil.go`` ``CalculateRolloutPhase``): Degraded on an
  aborted / timed-out / InvalidSpec condition, Paused with pause conditions, Progressing while
  replicas are being updated or steps remain, else Healthy.
- **kubectl argo rollouts** (``pkg/kubectl-argo-rollouts/cmd``): the status merge patches of
  promote, promote --full, abort and retry (:func:`promote_patch`, :func:`abort_patch`,
  :func:`retry_patch`), undo = the previous revision's template (:func:`undo_target`).

Stated simplification: after an abort with traffic routing, each upstream sync switches the
canary Service to the canary ReplicaSet (``reconcileStableAndCanaryService``) and back to the
stable one (``reconcileTrafficRouting``), reading a cached Service in between, so its
selector flaps from sync to sync while the canary has pods (argoproj/argo-rollouts#3078,
open). Here a sync's writes are applied together, so the canary Service stays on the stable
ReplicaSet, as PR #2540 intended; only traffic forced to the canary Service (e.g.
``canary-by-header``) would see the difference.

Not modelled, stated: analysis / experiment / plugin steps, ``dynamicStableScale``,
``minPodsPerReplicaSet``, ``replicaProgressThreshold``, rollback windows, ping-pong,
ephemeral metadata, ``maxTrafficWeight``, traffic routers other than nginx and Istio,
``progressDeadlineSeconds`` (no TimedOut), HPA scaling events, ``minReadySeconds`` (available
= ready). The pod template hash is computed here (fnv-1a of our canonical JSON, encoded as
Kubernetes ``SafeEncodeString``), not byte-for-byte Argo's (the JSON of the Go structs); the
step hash follows Go's field order for the modelled steps, so it matches Argo's
``status.currentStepHash`` for them.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pytest_canary.manifests.rolling import scaled_value
from pytest_canary.rollout_spec import (
    ARGO_ROLLOUTS,
    Problem,
    Step,
    canary_problems,
    parse_steps,
    unmodelled,
)

Manifest = dict[str, Any]
Key = tuple[str, str]

GROUP = "argoproj.io"
API_VERSION = "argoproj.io/v1alpha1"
KIND = "Rollout"
# v1alpha1.DefaultRolloutUniqueLabelKey / ManagedByRolloutsKey /
# DefaultReplicaSetScaleDownDeadlineAnnotationKey / annotations.RevisionAnnotation.
POD_TEMPLATE_HASH = "rollouts-pod-template-hash"
MANAGED_BY = "argo-rollouts.argoproj.io/managed-by"
SCALE_DOWN_DEADLINE = "argo-rollouts.argoproj.io/scale-down-deadline"
REVISION = "rollout.argoproj.io/revision"
CANARY_INGRESS_SUFFIX = "-canary"
NGINX_PREFIX = "nginx.ingress.kubernetes.io"
PAUSE_STEP = "CanaryPauseStep"
MAX_WEIGHT = 100
DEFAULT_SCALE_DOWN_DELAY = 30
DEFAULT_ABORT_SCALE_DOWN_DELAY = 30
DEFAULT_SURGE = "25%"
DEFAULT_UNAVAILABLE = "25%"

# Phases (v1alpha1.RolloutPhase*) and condition reasons (utils/conditions).
HEALTHY, PROGRESSING, PAUSED, DEGRADED = "Healthy", "Progressing", "Paused", "Degraded"
ABORTED_REASON = "RolloutAborted"
RETRY_REASON = "RolloutRetry"
PAUSED_REASON = "RolloutPaused"
RESUMED_REASON = "RolloutResumed"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
RS_UPDATED = "ReplicaSetUpdated"
INVALID_SPEC = "InvalidSpec"

SOURCE = {
    "canary": f"{ARGO_ROLLOUTS} rollout/canary.go",
    "replicas": f"{ARGO_ROLLOUTS} utils/replicaset/canary.go",
    "nginx": f"{ARGO_ROLLOUTS} rollout/trafficrouting/nginx/nginx.go",
    "istio": f"{ARGO_ROLLOUTS} rollout/trafficrouting/istio/istio.go",
    "service": f"{ARGO_ROLLOUTS} rollout/service.go",
    "plugin": f"{ARGO_ROLLOUTS} pkg/kubectl-argo-rollouts/cmd",
}


class ReconcileError(Exception):
    """An error the real controller returns from a sync (it logs it and retries)."""


# -- hashes ---------------------------------------------------------------------------------

_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"


def _safe_encode(text: str) -> str:
    """k8s.io/apimachinery ``rand.SafeEncodeString``."""
    return "".join(_SAFE_ALPHANUMS[ord(ch) % len(_SAFE_ALPHANUMS)] for ch in text)


def _fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value = ((value ^ byte) * 0x01000193) & 0xFFFFFFFF
    return value


def pod_template_hash(template: Mapping[str, Any]) -> str:
    """The ``rollouts-pod-template-hash`` of a template (``utils/hash``
    ``ComputePodTemplateHash``: fnv-1a, ``SafeEncodeString``), over our canonical JSON."""
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    labels.pop(POD_TEMPLATE_HASH, None)
    clean = {**template, "metadata": {**(template.get("metadata") or {}), "labels": labels}}
    blob = json.dumps(clean, sort_keys=True, separators=(",", ":")).encode()
    return _safe_encode(str(_fnv32a(blob)))


# Go struct field order of CanaryStep and its parts (types.go), for json.Marshal.
_GO_ORDER: dict[str, tuple[str, ...]] = {
    "step": (
        "setWeight",
        "pause",
        "experiment",
        "analysis",
        "setCanaryScale",
        "setHeaderRoute",
        "setMirrorRoute",
        "plugin",
    ),
    "pause": ("duration",),
    "setCanaryScale": ("weight", "replicas", "matchTrafficWeight"),
    "setHeaderRoute": ("name", "match"),
    "match": ("headerName", "headerValue"),
    "headerValue": ("exact", "prefix", "regex"),
    "setMirrorRoute": ("name", "match", "percentage"),
}


def _go_json(value: Any, kind: str) -> Any:
    if isinstance(value, Mapping):
        order = _GO_ORDER.get(kind)
        keys = (
            [k for k in order if k in value] + sorted(k for k in value if k not in order)
            if order
            else sorted(value)
        )
        out = {}
        for key in keys:
            item = value[key]
            if item in (None, "", False) and key not in ("name", "headerName"):
                continue  # omitempty
            out[key] = _go_json(item, key)
        return out
    if isinstance(value, list):
        return [_go_json(item, kind) for item in value]
    return value


def step_hash(raw_steps: Sequence[Mapping[str, Any]]) -> str:
    """``status.currentStepHash`` (utils/conditions ``ComputeStepHash``: fnv-1a of
    ``json.Marshal(steps)``, ``SafeEncodeString``), with Go's field order and omitempty for
    the modelled step types, so it is Argo's own value for them."""
    steps = [_go_json(step, "step") for step in raw_steps]
    blob = json.dumps(steps, separators=(",", ":"), ensure_ascii=False).encode()
    return _safe_encode(str(_fnv32a(blob)))


# -- the Rollout as the controller reads it -------------------------------------------------


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
    """What the controller reads from a Rollout's spec (defaults applied)."""

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
    nginx = istio = None
    raw_nginx = routing.get("nginx")
    if isinstance(raw_nginx, Mapping):
        ingresses = raw_nginx.get("stableIngresses") or (
            [raw_nginx["stableIngress"]] if raw_nginx.get("stableIngress") else []
        )
        nginx = NginxRouting(
            stable_ingresses=tuple(str(i) for i in ingresses),
            annotation_prefix=str(raw_nginx.get("annotationPrefix") or NGINX_PREFIX),
            additional_annotations=_str_map(raw_nginx.get("additionalIngressAnnotations")),
            canary_annotations=_str_map(raw_nginx.get("canaryIngressAnnotations")),
        )
    raw_istio = routing.get("istio")
    if isinstance(raw_istio, Mapping):
        refs = raw_istio.get("virtualServices") or (
            [raw_istio["virtualService"]] if raw_istio.get("virtualService") else []
        )
        dr = (
            raw_istio.get("destinationRule")
            if isinstance(raw_istio.get("destinationRule"), Mapping)
            else None
        )
        istio = IstioRouting(
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
        problems=tuple(problems),
        unmodelled=tuple(not_covered),
    )


# -- state ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplicaSetState:
    """One ReplicaSet of the Rollout.

    Attributes:
        hash: its ``rollouts-pod-template-hash``.
        revision: its ``rollout.argoproj.io/revision``.
        replicas: ``spec.replicas`` (what the controller asks for).
        pods: ``status.replicas`` (pods that exist, ready or not).
        available: ``status.availableReplicas`` (ready pods; minReadySeconds 0).
        created: creation time (orders ReplicaSets).
        scale_down_deadline: the ``scale-down-deadline`` annotation, if any.
    """

    hash: str
    revision: int
    replicas: int = 0
    pods: int = 0
    available: int = 0
    created: float = 0.0
    scale_down_deadline: float | None = None


@dataclass(frozen=True)
class PauseCondition:
    """``status.pauseConditions[]``."""

    reason: str
    start_time: float


@dataclass(frozen=True)
class Condition:
    """``status.conditions[]`` (the fields the phase and the waits use)."""

    type: str
    status: str
    reason: str
    message: str


@dataclass(frozen=True)
class TrafficWeights:
    """``status.canary.weights``: what the controller last wrote to the traffic router."""

    canary_weight: int
    stable_weight: int
    canary_hash: str
    stable_hash: str


@dataclass(frozen=True)
class RolloutStatus:
    """A Rollout's ``status`` as the controller writes it (snake_case of Argo's fields), plus
    a few conveniences.

    Attributes:
        phase: Healthy, Progressing, Paused or Degraded.
        message: why (e.g. ``CanaryPauseStep``, ``RolloutAborted: Rollout aborted update to
            revision 2``).
        current_step_index: ``currentStepIndex`` (``None`` without steps).
        stable_rs: ``stableRS``, the stable ReplicaSet's hash.
        current_pod_hash: ``currentPodHash``, the hash of the template being rolled out.
        weights: ``canary.weights`` (traffic routing only).
        step_count: the number of steps (not an Argo field).
        set_weight: the setWeight in effect (``GetCurrentSetWeight``; not an Argo field).
        error: the last error a sync returned (the controller logs it; not an Argo field).
    """

    observed_generation: int = 0
    current_pod_hash: str = ""
    current_step_hash: str = ""
    stable_rs: str = ""
    current_step_index: int | None = None
    pause_conditions: tuple[PauseCondition, ...] = ()
    controller_pause: bool = False
    abort: bool = False
    aborted_at: float | None = None
    promote_full: bool = False
    weights: TrafficWeights | None = None
    replicas: int = 0
    updated_replicas: int = 0
    ready_replicas: int = 0
    available_replicas: int = 0
    conditions: tuple[Condition, ...] = ()
    phase: str = PROGRESSING
    message: str = ""
    revision: int = 0
    step_count: int = 0
    set_weight: int = 0
    error: str = ""

    # -- what a test reads ------------------------------------------------------------------

    @property
    def step(self) -> int | None:
        """``currentStepIndex``: the step being run (== ``step_count`` once all are done)."""
        return self.current_step_index

    @property
    def weight(self) -> int:
        """Percent of traffic to the canary: what the controller wrote to the traffic router
        (``status.canary.weights.canary.weight``), or for a basic canary (no router) the
        setWeight in effect, which the replica counts approximate."""
        return self.weights.canary_weight if self.weights is not None else self.set_weight

    @property
    def stable_hash(self) -> str:
        """The stable ReplicaSet's pod template hash."""
        return self.stable_rs

    @property
    def canary_hash(self) -> str:
        """The pod template hash being rolled out (== ``stable_hash`` when done)."""
        return self.current_pod_hash

    @property
    def paused(self) -> bool:
        """Whether a pause condition holds the rollout."""
        return bool(self.pause_conditions)

    @property
    def completed(self) -> bool:
        """``RolloutCompleted``: the current template is the stable one."""
        return bool(self.stable_rs) and self.stable_rs == self.current_pod_hash

    def condition(self, kind: str) -> Condition | None:
        """The condition of type ``kind``, if any."""
        return next((c for c in self.conditions if c.type == kind), None)

    def describe(self) -> str:
        """One line for messages: phase, step, weight, hashes."""
        step = (
            "-"
            if self.current_step_index is None
            else f"{self.current_step_index}/{self.step_count}"
        )
        text = (
            f"phase {self.phase}"
            + (f" ({self.message})" if self.message else "")
            + f", step {step}, canary weight {self.weight}, stable {self.stable_rs or '-'}, "
            f"canary {self.current_pod_hash or '-'}"
        )
        return text + (f"; controller error: {self.error}" if self.error else "")


def with_condition(conditions: tuple[Condition, ...], new: Condition) -> tuple[Condition, ...]:
    """``conditions.SetRolloutCondition``: replace the condition of the same type."""
    return (*(c for c in conditions if c.type != new.type), new)


def calculate_phase(config: RolloutConfig, status: RolloutStatus) -> tuple[str, str]:
    """``utils/rollout`` ``CalculateRolloutPhase`` for the canary strategy."""
    for cond in status.conditions:
        if cond.type == INVALID_SPEC:
            return DEGRADED, f"{INVALID_SPEC}: {cond.message}"
        if cond.reason in (ABORTED_REASON, "ProgressDeadlineExceeded"):
            return DEGRADED, f"{cond.reason}: {cond.message}"
    if config.paused:
        return PAUSED, "manually paused"
    for pause in status.pause_conditions:
        return PAUSED, pause.reason
    if status.updated_replicas < config.replicas:
        return PROGRESSING, "more replicas need to be updated"
    if status.available_replicas < status.updated_replicas:
        return PROGRESSING, "updated replicas are still becoming available"
    if not config.traffic_routing and status.replicas > status.updated_replicas:
        return PROGRESSING, "old replicas are pending termination"
    if not status.stable_rs or status.stable_rs != status.current_pod_hash:
        return PROGRESSING, "waiting for all steps to complete"
    return HEALTHY, ""


# -- replica counts (utils/replicaset/canary.go) --------------------------------------------


def approximate_weighted_counts(
    replicas: int, weight: int, max_weight: int, max_surge: int
) -> tuple[int, int]:
    """``approximateWeightedCanaryStableReplicaCounts``: (canary, stable) pods closest to
    ``weight``, totalling ``replicas`` or, when surge is allowed, ``replicas + 1``; for a
    weight strictly between 0 and max with 2+ pods possible, the canary is never 0.

    Example:
        >>> approximate_weighted_counts(5, 20, 100, 2), approximate_weighted_counts(10, 24, 100, 1)
        ((1, 4), (3, 8))
    """
    if replicas == 0:
        return 0, 0
    exact = replicas * weight / max_weight
    ceil_count, floor_count = math.ceil(exact), math.floor(exact)
    tied = _floor_ceiling_tied(weight, max_weight, replicas)
    zero_allowed = weight in (max_weight, 0) or (replicas == 1 and max_surge == 0)
    options: list[tuple[int, int]] = []
    if ceil_count < replicas or zero_allowed:
        options.append((ceil_count, replicas))
    if not tied and (floor_count != 0 or zero_allowed):
        options.append((floor_count, replicas))
    if max_surge > 0:
        options.append((ceil_count, replicas + 1))
        surge_tied = _floor_ceiling_tied(weight, max_weight, replicas + 1)
        if not surge_tied and (floor_count != 0 or zero_allowed):
            options.append((floor_count, replicas + 1))
    if not options:
        return 0, replicas  # "should not get here"
    best = options[0]
    best_delta = _weight_delta(weight, max_weight, *best)
    for option in options[1:]:
        delta = _weight_delta(weight, max_weight, *option)
        if delta < best_delta:  # strictly closer: ties keep the earlier option
            best, best_delta = option, delta
    return best[0], best[1] - best[0]


def _floor_ceiling_tied(weight: int, max_weight: int, total: int) -> bool:
    value = float(total) * (float(weight) / float(max_weight))
    return value - math.trunc(value) == 0.5


def _weight_delta(weight: int, max_weight: int, canary: int, total: int) -> float:
    return abs(float(canary * max_weight) / float(total) - float(weight))


def traffic_weight_to_replicas(replicas: int, weight: int, max_weight: int = MAX_WEIGHT) -> int:
    """``trafficWeightToReplicas``: ceil(weight x replicas / max)."""
    return math.ceil(weight * replicas / max_weight)


def current_step(config: RolloutConfig, status: RolloutStatus) -> tuple[Step | None, int | None]:
    """``GetCurrentCanaryStep``: the step at ``currentStepIndex`` (0 when unset)."""
    if not config.steps:
        return None, None
    index = status.current_step_index or 0
    if index >= len(config.steps):
        return None, index
    return config.steps[index], index


def current_set_weight(config: RolloutConfig, status: RolloutStatus) -> int:
    """``GetCurrentSetWeight``: 0 when aborted; 100 past the last step; else the last
    setWeight at or before the current step (0 if none)."""
    if status.abort:
        return 0
    step, index = current_step(config, status)
    if step is None or index is None:
        return MAX_WEIGHT
    for i in range(index, -1, -1):
        if config.steps[i].kind == "setWeight" and config.steps[i].weight is not None:
            return int(config.steps[i].weight)  # type: ignore[arg-type]
    return 0


def set_canary_scale(config: RolloutConfig, status: RolloutStatus) -> Step | None:
    """``UseSetCanaryScale``: the last setCanaryScale at or before the current step, unless
    matchTrafficWeight cancels it, there is no traffic routing, or an abort scales down."""
    if not config.traffic_routing:
        return None
    if status.abort and config.abort_scale_down_delay is not None:
        return None
    step, index = current_step(config, status)
    if step is None or index is None:
        return None
    for i in range(index, -1, -1):
        candidate = config.steps[i]
        if candidate.kind != "setCanaryScale":
            continue
        return None if candidate.match_traffic_weight else candidate
    return None


def canary_replicas_or_weight(
    config: RolloutConfig, status: RolloutStatus
) -> tuple[int | None, int]:
    """``GetCanaryReplicasOrWeight``: (explicit canary replicas, weight)."""
    if status.promote_full or not status.stable_rs or status.current_pod_hash == status.stable_rs:
        return None, MAX_WEIGHT
    scale = set_canary_scale(config, status)
    if scale is not None:
        if scale.canary_replicas is not None:
            return scale.canary_replicas, 0
        if scale.weight is not None:
            return None, scale.weight
    return None, current_set_weight(config, status)


def _scale_down_replicas(rs: ReplicaSetState | None, ignore_availability: bool) -> int:
    """``GetReplicasForScaleDown``."""
    if rs is None:
        return 0
    if rs.replicas < rs.available:
        return rs.replicas
    return rs.replicas if ignore_availability else rs.available


def _calc_scale_down(rs: ReplicaSetState | None, desired: int, scale_down: int, count: int) -> int:
    """``calculateScaleDownReplicaCount``."""
    if rs is not None and rs.replicas > desired:
        return max(desired, rs.replicas - scale_down)
    return count


def _adjust_within_limits(
    drain: ReplicaSetState | None,
    adjust: ReplicaSetState | None,
    drain_count: int,
    adjust_count: int,
    max_allowed: int,
    min_available: int,
) -> tuple[int, int]:
    """``adjustReplicaWithinLimits``: keep maxSurge and maxUnavailable."""
    total_available = 0
    over = max(0, adjust_count + drain_count - max_allowed)
    if drain is not None:
        total_available += min(drain.available, drain_count)
    if adjust is not None:
        adjust_count -= over
        total_available += min(adjust.available, adjust_count)
        extra = max(0, adjust.available - adjust_count)
        needed = max(0, min_available - total_available)
        adjust_count += min(extra, needed)
        over = max(0, adjust_count + drain_count - max_allowed)
        drain_count -= over
    return drain_count, adjust_count


def basic_canary_counts(
    config: RolloutConfig,
    status: RolloutStatus,
    new: ReplicaSetState | None,
    stable: ReplicaSetState | None,
    others: Sequence[ReplicaSetState],
) -> tuple[int, int]:
    """``CalculateReplicaCountsForBasicCanary``: the next (canary, stable) sizes toward the
    weight, within ``replicas + maxSurge`` and ``replicas - maxUnavailable``."""
    replicas = config.replicas
    _, weight = canary_replicas_or_weight(config, status)
    max_surge, max_unavailable = config.fenceposts()
    desired_new, desired_stable = approximate_weighted_counts(
        replicas, weight, MAX_WEIGHT, max_surge
    )
    new_count = new.replicas if new is not None else 0
    scale_stable = stable is not None and (new is None or new.hash != stable.hash)
    stable_count = stable.replicas if scale_stable and stable is not None else 0
    if not scale_stable:
        desired_new, desired_stable = replicas, 0
    max_allowed = replicas + max_surge
    counted = [*others, new] + ([stable] if scale_stable else [])
    scale_up = max_allowed - sum(rs.replicas for rs in counted if rs is not None)
    if scale_stable and stable is not None and stable.replicas < desired_stable and scale_up > 0:
        if stable.replicas + scale_up < desired_stable:
            stable_count, scale_up = stable.replicas + scale_up, 0
        else:
            stable_count = desired_stable
            scale_up -= desired_stable - stable.replicas
    if new is not None and new.replicas < desired_new and scale_up > 0:
        new_count = min(new.replicas + scale_up, desired_new)
    if sum(rs.replicas for rs in others) > 0:
        return new_count, stable_count  # older ReplicaSets are scaled down first
    min_available = replicas - max_unavailable
    increasing = new is None or desired_new >= new.replicas
    to_scale_down = _scale_down_replicas(new, not increasing) + _scale_down_replicas(
        stable, increasing
    )
    if to_scale_down <= min_available:
        return new_count, stable_count
    scale_down = to_scale_down - min_available
    if not increasing:
        new_count = _calc_scale_down(new, desired_new, scale_down, new_count)
        new_count, stable_count = _adjust_within_limits(
            new, stable, new_count, stable_count, max_allowed, min_available
        )
    elif scale_stable:
        stable_count = _calc_scale_down(stable, desired_stable, scale_down, stable_count)
        stable_count, new_count = _adjust_within_limits(
            stable, new, stable_count, new_count, max_allowed, min_available
        )
    return new_count, stable_count


def traffic_routed_counts(config: RolloutConfig, status: RolloutStatus) -> tuple[int, int]:
    """``CalculateReplicaCountsForTrafficRoutedCanary`` (no dynamicStableScale): canary =
    setCanaryScale or ceil(weight x replicas / 100); the stable stays fully scaled."""
    explicit, weight = canary_replicas_or_weight(config, status)
    canary = (
        explicit if explicit is not None else traffic_weight_to_replicas(config.replicas, weight)
    )
    return canary, config.replicas


def desired_counts(
    config: RolloutConfig,
    status: RolloutStatus,
    new: ReplicaSetState | None,
    stable: ReplicaSetState | None,
    others: Sequence[ReplicaSetState],
) -> tuple[int, int]:
    """(canary, stable) sizes the controller asks for next."""
    if config.traffic_routing:
        return traffic_routed_counts(config, status)
    return basic_canary_counts(config, status, new, stable, others)


def at_desired_counts(
    config: RolloutConfig,
    status: RolloutStatus,
    new: ReplicaSetState | None,
    stable: ReplicaSetState | None,
    others: Sequence[ReplicaSetState],
) -> bool:
    """``AtDesiredReplicaCountsForCanary``: the canary's desired pods all available, the
    stable's all created, and (basic canary) no pod of another ReplicaSet available."""
    desired_new, desired_stable = desired_counts(config, status, new, stable, others)
    if new is None or not (desired_new == new.replicas == new.available):
        return False
    if stable is None or not (desired_stable == stable.replicas == stable.pods):
        return False
    return config.traffic_routing or sum(rs.available for rs in others) == 0


# -- what the controller writes -------------------------------------------------------------


def canary_ingress_name(rollout: str, stable_ingress: str) -> str:
    """``GetCanaryIngressName``: ``<rollout>-<stableIngress>-canary``, the prefix cut to
    fit 253 characters."""
    prefix = f"{rollout}-{stable_ingress}"[: 253 - len(CANARY_INGRESS_SUFFIX)]
    return prefix + CANARY_INGRESS_SUFFIX


def canary_ingress(
    config: RolloutConfig,
    stable_ingress: Mapping[str, Any],
    weight: int,
    existing: Mapping[str, Any] | None = None,
) -> Manifest:
    """The canary Ingress ``buildCanaryIngress`` makes from the stable Ingress.

    Raises:
        ReconcileError: the stable Ingress has no rule using the stable Service.
    """
    assert config.nginx is not None
    prefix = config.nginx.annotation_prefix
    spec = stable_ingress.get("spec") or {}
    meta = stable_ingress.get("metadata") or {}
    rules = []
    for rule in spec.get("rules") or []:
        copied = copy.deepcopy(dict(rule))
        uses_stable = False
        for path in (copied.get("http") or {}).get("paths") or []:
            service = (path.get("backend") or {}).get("service") or {}
            if service.get("name") == config.stable_service:
                uses_stable = True
                service["name"] = config.canary_service
        if uses_stable:
            rules.append(copied)
    if not rules:
        raise ReconcileError(
            f"ingress `{meta.get('name')}` has no rules using service {config.stable_service} "
            "backend"
        )
    annotations: dict[str, str] = {}
    legacy_class = (meta.get("annotations") or {}).get("kubernetes.io/ingress.class")
    if legacy_class is not None:
        annotations["kubernetes.io/ingress.class"] = str(legacy_class)
    for key, value in config.nginx.additional_annotations.items():
        annotations[key if key.startswith(prefix) else f"{prefix}/{key}"] = value
    annotations.update(config.nginx.canary_annotations)
    # Always set, whatever the annotations above said (nginx.go buildCanaryIngress).
    annotations[f"{prefix}/canary"] = "true"
    annotations[f"{prefix}/canary-weight"] = str(weight)
    for key, value in ((existing or {}).get("metadata") or {}).get("annotations", {}).items():
        annotations.setdefault(key, value)  # getDesiredAnnotations
    body: Manifest = {"rules": rules}
    if spec.get("tls") is not None:
        body["tls"] = copy.deepcopy(spec["tls"])
    if spec.get("ingressClassName") is not None:
        body["ingressClassName"] = spec["ingressClassName"]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": canary_ingress_name(config.name, str(meta.get("name", ""))),
            "annotations": annotations,
            "ownerReferences": [owner_reference(config)],
        },
        "spec": body,
    }


def owner_reference(config: RolloutConfig) -> Manifest:
    """The controller reference of objects the Rollout owns (garbage-collected with it)."""
    return {"apiVersion": API_VERSION, "kind": KIND, "name": config.name, "controller": True}


def switch_service(service: Mapping[str, Any], pod_hash: str, rollout: str) -> Manifest:
    """``switchServiceSelector``: the selector gains ``rollouts-pod-template-hash``."""
    svc = copy.deepcopy(dict(service))
    meta = svc.setdefault("metadata", {})
    meta.setdefault("annotations", {})[MANAGED_BY] = rollout
    svc.setdefault("spec", {}).setdefault("selector", {})[POD_TEMPLATE_HASH] = pod_hash
    return svc


def _host(destination: Mapping[str, Any]) -> str:
    """istio.go ``getHost``: the host up to its first dot."""
    host = str((destination.get("destination") or {}).get("host", ""))
    return host.split(".", 1)[0]


def _route_indexes(names: Sequence[str], routes: Sequence[Mapping[str, Any]]) -> list[int]:
    """``getHttpRouteIndexesToPatch``."""
    if not names:
        if len(routes) == 1:
            return [0]
        unnamed = [i for i, r in enumerate(routes) if not r.get("name")]
        return unnamed[:1]
    indexes = []
    for name in names:
        found = next((i for i, r in enumerate(routes) if r.get("name") == name), -1)
        if found < 0:
            raise ReconcileError(
                f"HTTP Route '{name}' is not found in the defined Virtual Service."
            )
        indexes.append(found)
    return indexes


def _validate_routes(
    config: RolloutConfig, names: Sequence[str], routes: Sequence[Mapping[str, Any]]
) -> None:
    """``ValidateHTTPRoutes`` / ``validateVirtualServiceRouteDestinations``."""
    assert config.istio is not None
    istio = config.istio
    for index in _route_indexes(names, routes):
        destinations = routes[index].get("route") or []
        hosts = {_host(d) for d in destinations}
        subsets = {str((d.get("destination") or {}).get("subset", "")) for d in destinations}
        if istio.destination_rule:
            if istio.canary_subset not in subsets:
                raise ReconcileError(
                    f"Canary DestinationRule subset '{istio.canary_subset}' not found in route"
                )
            if istio.stable_subset not in subsets:
                raise ReconcileError(
                    f"Stable DestinationRule subset '{istio.stable_subset}' not found in route"
                )
        else:
            if config.canary_service not in hosts:
                raise ReconcileError(f"Canary Service '{config.canary_service}' not found in route")
            if config.stable_service not in hosts:
                raise ReconcileError(f"Stable Service '{config.stable_service}' not found in route")
    unmanaged = [r for r in routes if r.get("name") not in config.managed_routes]
    if not names and len(unmanaged) > 1:
        raise ReconcileError(
            "spec.http[] should be set in VirtualService and it must have exactly one route "
            "when omitting spec.strategy.canary.trafficRouting.istio.virtualService.routes"
        )


def _order_routes(config: RolloutConfig, routes: list[Manifest]) -> list[Manifest]:
    """``orderRoutes``: managed routes first, in managedRoutes order, then the others."""
    if not config.managed_routes:
        return routes
    managed = [r for name in config.managed_routes for r in routes if r.get("name") == name]
    return managed + [r for r in routes if r.get("name") not in config.managed_routes]


def virtual_service_with_weight(
    config: RolloutConfig, vs: Mapping[str, Any], ref: IstioVirtualServiceRef, weight: int
) -> Manifest:
    """``SetWeight`` on one VirtualService: canary = weight, stable = 100 - weight, other
    destinations of the patched routes removed (``processRoutes``).

    Raises:
        ReconcileError: a named route is missing or lacks the canary or stable destination.
    """
    assert config.istio is not None
    out = copy.deepcopy(dict(vs))
    routes: list[Manifest] = list((out.get("spec") or {}).get("http") or [])
    names = list(ref.routes)
    # Managed routes that mirror are patched too (generateVirtualServicePatches).
    names += [
        r["name"] for r in routes if r.get("mirror") and r.get("name") in config.managed_routes
    ]
    _validate_routes(config, list(ref.routes), routes)
    istio = config.istio
    for index in _route_indexes(names, routes):
        kept = []
        for destination in routes[index].get("route") or []:
            host = _host(destination)
            subset = str((destination.get("destination") or {}).get("subset", ""))
            if host and (
                host == config.canary_service or (subset and subset == istio.canary_subset)
            ):
                kept.append({**destination, "weight": weight})
            elif host and (
                host == config.stable_service or (subset and subset == istio.stable_subset)
            ):
                kept.append({**destination, "weight": MAX_WEIGHT - weight})
            elif not host:
                kept.append(destination)
        routes[index] = {**routes[index], "route": kept}
    out.setdefault("spec", {})["http"] = _order_routes(config, routes)
    return out


def virtual_service_with_header_route(
    config: RolloutConfig,
    vs: Mapping[str, Any],
    ref: IstioVirtualServiceRef,
    step: Step,
    destination_rule_host: str | None,
) -> Manifest:
    """``SetHeaderRoute``: the route named by the step is replaced by one matching its
    headers and sending 100% to the canary (host = the canary Service, or the
    DestinationRule's host with the canary subset); no match removes it."""
    assert config.istio is not None
    out = copy.deepcopy(dict(vs))
    routes = [r for r in (out.get("spec") or {}).get("http") or [] if r.get("name") != step.route]
    if step.matches:
        host = destination_rule_host or config.canary_service
        weighted = _route_indexes(list(ref.routes), routes)
        port = None
        if weighted:
            first = (routes[weighted[0]].get("route") or [{}])[0].get("destination") or {}
            port = (first.get("port") or {}).get("number")
        destination: Manifest = {"host": host}
        if port:
            destination["port"] = {"number": port}
        if config.istio.canary_subset:
            destination["subset"] = config.istio.canary_subset
        routes.append(
            {
                "name": step.route,
                "match": [{"headers": {m.header: {m.kind: m.value}}} for m in step.matches],
                "route": [{"destination": destination, "weight": 100}],
            }
        )
    out.setdefault("spec", {})["http"] = _order_routes(config, routes)
    return out


def virtual_service_with_mirror_route(
    config: RolloutConfig,
    vs: Mapping[str, Any],
    ref: IstioVirtualServiceRef,
    step: Step,
    destination_rule_host: str | None,
) -> Manifest:
    """``SetMirrorRoute``: a route with the step's matches, the weighted route's current
    destinations and a ``mirror`` to the canary, first (``createMirrorRoute``)."""
    assert config.istio is not None
    out = copy.deepcopy(dict(vs))
    routes = [r for r in (out.get("spec") or {}).get("http") or [] if r.get("name") != step.route]
    body = step.raw.get("setMirrorRoute") or {}
    if body.get("match"):
        weighted = _route_indexes(list(ref.routes), routes)
        destinations = copy.deepcopy(routes[weighted[0]].get("route") or []) if weighted else []
        mirror: Manifest = {"host": destination_rule_host or config.canary_service}
        if config.istio.canary_subset:
            mirror["subset"] = config.istio.canary_subset
        matches = []
        for match in body["match"]:
            block: Manifest = {}
            for ours, theirs in (("method", "method"), ("path", "uri"), ("headers", "headers")):
                if match.get(ours):
                    block[theirs] = copy.deepcopy(match[ours])
            matches.append(block)
        percent = body.get("percentage")
        routes.insert(
            0,
            {
                "name": step.route,
                "match": matches,
                "route": destinations,
                "mirror": mirror,
                "mirrorPercentage": {"value": float(100 if percent is None else percent)},
            },
        )
    out.setdefault("spec", {})["http"] = _order_routes(config, routes)
    return out


def virtual_service_without_managed_routes(
    config: RolloutConfig, vs: Mapping[str, Any]
) -> Manifest:
    """``RemoveManagedRoutes``."""
    out = copy.deepcopy(dict(vs))
    spec = out.setdefault("spec", {})
    spec["http"] = [r for r in spec.get("http") or [] if r.get("name") not in config.managed_routes]
    return out


def destination_rule_with_hashes(
    config: RolloutConfig, dr: Mapping[str, Any], canary_hash: str, stable_hash: str
) -> Manifest:
    """``UpdateHash``: canary / stable subsets labelled with their ReplicaSet's hash; other
    subsets are dropped; annotated managed-by."""
    assert config.istio is not None
    out = copy.deepcopy(dict(dr))
    out.setdefault("metadata", {}).setdefault("annotations", {})[MANAGED_BY] = config.name
    subsets = []
    for subset in (out.get("spec") or {}).get("subsets") or []:
        labels = dict(subset.get("labels") or {})
        if subset.get("name") == config.istio.canary_subset:
            value = canary_hash
        elif subset.get("name") == config.istio.stable_subset:
            value = stable_hash
        else:
            continue
        if value:
            labels[POD_TEMPLATE_HASH] = value
        else:
            labels.pop(POD_TEMPLATE_HASH, None)
        subsets.append({**subset, "labels": labels})
    out.setdefault("spec", {})["subsets"] = subsets
    return out


# -- kubectl argo rollouts: what the plugin patches -----------------------------------------


def promote_patch(
    config: RolloutConfig, status: RolloutStatus, *, full: bool = False
) -> dict[str, Any]:
    """The status merge patch of ``kubectl argo rollouts promote [--full]``
    (``cmd/promote/promote.go`` ``getPatches``): ``--full`` sets ``promoteFull`` (unless
    already complete); otherwise clear the pause conditions, or, with none, skip the current
    step (``currentStepIndex`` + 1). ``spec.paused: false`` goes in a separate spec patch."""
    if full:
        return {} if status.completed else {"promoteFull": True}
    if status.pause_conditions:
        return {"pauseConditions": None}
    _, index = current_step(config, status)
    if index is None:
        return {}
    return {"pauseConditions": None, "currentStepIndex": min(index + 1, config.step_count)}


def abort_patch() -> dict[str, Any]:
    """``kubectl argo rollouts abort``: ``{"abort": true}`` (``cmd/abort/abort.go``)."""
    return {"abort": True}


def retry_patch() -> dict[str, Any]:
    """``kubectl argo rollouts retry rollout``: ``{"abort": false}`` (``cmd/retry``)."""
    return {"abort": False}


def apply_status_patch(status: RolloutStatus, patch: Mapping[str, Any]) -> RolloutStatus:
    """A JSON merge patch of the status fields the plugin patches, applied."""
    changes: dict[str, Any] = {}
    if "pauseConditions" in patch:
        changes["pause_conditions"] = ()
    if "currentStepIndex" in patch:
        changes["current_step_index"] = patch["currentStepIndex"]
    if "promoteFull" in patch:
        changes["promote_full"] = bool(patch["promoteFull"])
    if "abort" in patch:
        changes["abort"] = bool(patch["abort"])
    return replace(status, **changes)


def undo_target(replica_sets: Iterable[ReplicaSetState]) -> ReplicaSetState | None:
    """``kubectl argo rollouts undo`` (``cmd/undo/undo.go`` ``rolloutRevision``): the
    ReplicaSet of the second-highest revision, whose template replaces the Rollout's."""
    ordered = sorted(replica_sets, key=lambda rs: rs.revision, reverse=True)
    return ordered[1] if len(ordered) > 1 else None


# -- one sync -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reconciled:
    """What one sync of the controller did.

    Attributes:
        status: the new status.
        replica_sets: every ReplicaSet with its new size and deadline (a new one included).
        objects: the objects written (Services, canary Ingress, VirtualService,
            DestinationRule), each whole.
        requeue_at: when the controller wants the next sync (pause end, deadline), if set.
        events: what it would record as Kubernetes events.
    """

    status: RolloutStatus
    replica_sets: tuple[ReplicaSetState, ...]
    objects: tuple[Manifest, ...] = ()
    requeue_at: float | None = None
    events: tuple[str, ...] = ()


class _Sync:
    """The state of one sync: ``rolloutContext`` and ``pauseContext`` of the controller."""

    def __init__(
        self,
        config: RolloutConfig,
        status: RolloutStatus,
        replica_sets: Sequence[ReplicaSetState],
        objects: Mapping[Key, Mapping[str, Any]],
        now: float,
    ) -> None:
        self.c = config
        self.prev = status
        self.now = now
        self.rss: dict[str, ReplicaSetState] = {rs.hash: rs for rs in replica_sets}
        self.original = objects
        self.objects: dict[Key, Manifest] = {k: dict(v) for k, v in objects.items()}
        self.written: dict[Key, Manifest] = {}
        self.events: list[str] = []
        self.requeue: list[float] = []
        # pauseContext
        self.add_pause = False
        self.remove_pause = False
        self.clear_pause = False
        self.add_abort = False
        self.remove_abort = False
        self.weights = status.weights

    # -- context ----------------------------------------------------------------------------

    @property
    def new(self) -> ReplicaSetState:
        return self.rss[self.c.template_hash]

    @property
    def stable(self) -> ReplicaSetState | None:
        return self.rss.get(self.prev.stable_rs) if self.prev.stable_rs else None

    @property
    def others(self) -> list[ReplicaSetState]:
        stable = self.prev.stable_rs
        return [rs for h, rs in self.rss.items() if h != self.c.template_hash and h != stable]

    def aborted(self) -> bool:
        """``pauseContext.IsAborted``."""
        if self.remove_abort:
            return False
        return self.add_abort or self.prev.abort

    def fully_promoted(self) -> bool:
        return self.prev.stable_rs == self.prev.current_pod_hash

    def scale(self, rs: ReplicaSetState, count: int) -> bool:
        """``scaleReplicaSetAndRecordEvent``: True when the size changed."""
        if rs.replicas == count:
            return False
        deadline = rs.scale_down_deadline
        if count == 0 and not self.delay_scale_down_on_abort():
            deadline = None
        direction = "up" if count > rs.replicas else "down"
        self.events.append(
            f"ScalingReplicaSet: Scaled {direction} ReplicaSet {self.c.replicaset_name(rs.hash)} "
            f"(revision {rs.revision}) from {rs.replicas} to {count}"
        )
        self.rss[rs.hash] = replace(rs, replicas=count, scale_down_deadline=deadline)
        return True

    def set_deadline(self, rs: ReplicaSetState, deadline: float | None) -> None:
        self.rss[rs.hash] = replace(self.rss[rs.hash], scale_down_deadline=deadline)

    def write(self, obj: Manifest) -> None:
        key = (str(obj["kind"]), str(obj["metadata"]["name"]))
        if self.objects.get(key) != obj:
            self.objects[key] = obj
            self.written[key] = obj

    # -- services (rollout/service.go) ------------------------------------------------------

    def ensure_service(self, name: str, rs: ReplicaSetState | None, check: bool) -> None:
        """``ensureSVCTargets``."""
        if rs is None or not name:
            return
        svc = self.objects.get(("Service", name))
        if svc is None:
            raise ReconcileError(f'services "{name}" not found')
        selector = (svc.get("spec") or {}).get("selector") or {}
        if selector.get(POD_TEMPLATE_HASH) == rs.hash:
            return
        managed = MANAGED_BY in ((svc.get("metadata") or {}).get("annotations") or {})
        if (
            not managed
            and check
            and not (rs.replicas and rs.available and rs.replicas <= rs.available)
        ):
            return  # adopting: wait for a fully available ReplicaSet (IsReplicaSetAvailable)
        if check and rs.available == 0:
            return  # IsReplicaSetPartiallyAvailable
        self.write(switch_service(svc, rs.hash, self.c.name))
        self.events.append(f"SwitchService: Switched selector for service '{name}' to '{rs.hash}'")

    def reconcile_services(self) -> None:
        """``reconcileStableAndCanaryService``."""
        self.ensure_service(self.c.stable_service, self.stable, True)
        if self.aborted() and not self.c.traffic_routing:
            self.ensure_service(self.c.canary_service, self.stable, True)
            return
        self.ensure_service(self.c.canary_service, self.new, True)

    # -- traffic routing (rollout/trafficrouting.go) ----------------------------------------

    def desired_weight(self) -> tuple[int, bool]:
        """(weight, whether managed routes are removed), the branches of
        ``reconcileTrafficRouting``."""
        _, index = current_step(self.c, self.prev)
        if self.fully_promoted():
            return 0, True
        if self.aborted():
            self.ensure_service(self.c.canary_service, self.stable, False)
            return 0, True
        if self.new.available == 0:
            return 0, True
        if self.prev.promote_full:
            return (self.prev.weights.canary_weight if self.prev.weights else 0), True
        if index is None:
            return 0, False
        at_desired = at_desired_counts(self.c, self.prev, self.new, self.stable, self.others)
        if not at_desired:
            # The previous setWeight: the canary is not ready for the next weight yet.
            for i in range(index - 1, -1, -1):
                if self.c.steps[i].kind == "setWeight":
                    return int(self.c.steps[i].weight or 0), False
            return 0, False
        if index != self.c.step_count:
            return current_set_weight(self.c, self.prev), False
        return MAX_WEIGHT, False

    def reconcile_traffic(self) -> None:
        if not self.c.traffic_routing:
            self.weights = None
            return
        weight, remove_managed = self.desired_weight()
        stable_hash = self.stable.hash if self.stable else ""
        canary_hash = self.new.hash
        if remove_managed:
            self.remove_managed_routes()
        # checkReplicasAvailable: the stable ReplicaSet can take the rest of the traffic.
        stable = self.stable
        needed = (MAX_WEIGHT - weight) * self.c.replicas // MAX_WEIGHT
        if stable is None or stable.available < needed:
            return
        step, _ = current_step(self.c, self.prev)
        if step is not None and self.new.revision > 1:
            if step.kind == "setHeaderRoute":
                self.set_header_route(step)
            elif step.kind == "setMirrorRoute":
                self.set_mirror_route(step)
        self.update_hash(canary_hash, stable_hash)
        self.set_weight(weight)
        new_weights = TrafficWeights(weight, MAX_WEIGHT - weight, canary_hash, stable_hash)
        if new_weights != self.prev.weights:
            before = self.prev.weights.canary_weight if self.prev.weights else None
            change = f"to {weight}" if before is None else f"from {before} to {weight}"
            if before != weight:
                self.events.append(f"TrafficWeightUpdated: Traffic weight updated {change}")
        self.weights = new_weights

    def _virtual_services(self) -> list[tuple[IstioVirtualServiceRef, Manifest]]:
        assert self.c.istio is not None
        found = []
        for ref in self.c.istio.virtual_services:
            name = ref.name.split(".", 1)[0]
            vs = self.objects.get(("VirtualService", name))
            if vs is None:
                raise ReconcileError(f'virtualservices.networking.istio.io "{name}" not found')
            found.append((ref, vs))
        return found

    def _dr_host(self) -> str | None:
        assert self.c.istio is not None
        if not self.c.istio.destination_rule:
            return None
        dr = self.objects.get(("DestinationRule", self.c.istio.destination_rule))
        if dr is None:
            raise ReconcileError(
                f'destinationrules.networking.istio.io "{self.c.istio.destination_rule}" not found'
            )
        return str((dr.get("spec") or {}).get("host", "")) or None

    def remove_managed_routes(self) -> None:
        if self.c.istio is None or not self.c.managed_routes:
            return  # nginx.go RemoveManagedRoutes: nothing to do
        for _, vs in self._virtual_services():
            self.write(virtual_service_without_managed_routes(self.c, vs))

    def set_header_route(self, step: Step) -> None:
        if self.c.istio is None:
            return  # nginx.go SetHeaderRoute: nothing to do
        host = self._dr_host()
        for ref, vs in self._virtual_services():
            self.write(virtual_service_with_header_route(self.c, vs, ref, step, host))

    def set_mirror_route(self, step: Step) -> None:
        if self.c.istio is None:
            return
        host = self._dr_host()
        for ref, vs in self._virtual_services():
            self.write(virtual_service_with_mirror_route(self.c, vs, ref, step, host))

    def update_hash(self, canary_hash: str, stable_hash: str) -> None:
        istio = self.c.istio
        if istio is None:
            return  # nginx.go UpdateHash: nothing to do
        if not self.c.canary_service and not self.c.stable_service:
            # shouldDelayDestinationRuleUpdate
            for rs in self.rss.values():
                if rs.replicas == 0 or rs.hash not in (stable_hash, canary_hash):
                    continue
                if self.aborted() and rs.hash == canary_hash:
                    continue
                if not (rs.replicas and rs.available and rs.replicas <= rs.available):
                    raise ReconcileError(
                        "delaying destination rule switch: ReplicaSet "
                        f"{self.c.replicaset_name(rs.hash)} not fully available"
                    )
        if not istio.destination_rule:
            return
        dr = self.objects.get(("DestinationRule", istio.destination_rule))
        if dr is None:
            raise ReconcileError(
                f'destinationrules.networking.istio.io "{istio.destination_rule}" not found'
            )
        self.write(destination_rule_with_hashes(self.c, dr, canary_hash, stable_hash))

    def set_weight(self, weight: int) -> None:
        if self.c.nginx is not None:
            for stable_name in self.c.nginx.stable_ingresses:
                stable = self.objects.get(("Ingress", stable_name))
                if stable is None:
                    raise ReconcileError(
                        f"error retrieving stableIngress `{stable_name}` from cache: ingress "
                        f'"{stable_name}" not found'
                    )
                name = canary_ingress_name(self.c.name, stable_name)
                existing = self.objects.get(("Ingress", name))
                self.write(canary_ingress(self.c, stable, weight, existing))
        if self.c.istio is not None:
            for ref, vs in self._virtual_services():
                self.write(virtual_service_with_weight(self.c, vs, ref, weight))

    # -- ReplicaSets (rollout/canary.go, rollout/replicaset.go) -----------------------------

    def delay_scale_down_on_abort(self) -> bool:
        """``shouldDelayScaleDownOnAbort``."""
        return (
            self.aborted()
            and self.stable is not None
            and self.c.traffic_routing
            and self.c.abort_scale_down_delay is not None
        )

    def reconcile_replica_sets(self) -> bool:
        """``reconcileCanaryReplicaSets``: True when something was scaled."""
        if self.c.paused:
            return False  # haltProgress: user paused
        if not self.delay_scale_down_on_abort():
            self.set_deadline(self.new, None)  # removeScaleDownDeadlines
        if self.stable is not None:
            self.set_deadline(self.stable, None)
        # reconcileCanaryStableReplicaSet
        stable = self.stable
        if stable is not None and stable.hash != self.new.hash:
            if self.c.traffic_routing:
                # Uses the weights of the previous status on purpose (canary.go comment).
                _, desired_stable = traffic_routed_counts(self.c, self.prev)
            else:
                _, desired_stable = basic_canary_counts(
                    self.c, self.prev, self.new, stable, self.others
                )
            if self.scale(stable, desired_stable):
                return True
        if self.reconcile_new_replica_set():
            return True
        return self.scale_down_others()

    def reconcile_new_replica_set(self) -> bool:
        new = self.new
        if self.c.traffic_routing:
            count, _ = traffic_routed_counts(self.c, self.prev)
        else:
            count, _ = basic_canary_counts(self.c, self.prev, new, self.stable, self.others)
        if self.delay_scale_down_on_abort():
            assert self.c.abort_scale_down_delay is not None and self.stable is not None
            if new.scale_down_deadline is not None:
                if new.scale_down_deadline > self.now:
                    self.requeue.append(new.scale_down_deadline)
                    return False
                count = 0
            else:
                if self.stable.available == self.c.replicas:
                    self.set_deadline(new, self.now + self.c.abort_scale_down_delay)
                    self.requeue.append(self.now + self.c.abort_scale_down_delay)
                return False  # leave the canary up until annotated
        return self.scale(self.new, count)

    def referenced(self, rs: ReplicaSetState) -> bool:
        """``isReplicaSetReferenced``."""
        refs = {self.prev.stable_rs, self.prev.current_pod_hash}
        if self.prev.weights is not None:
            refs |= {self.prev.weights.canary_hash, self.prev.weights.stable_hash}
        if rs.hash in refs:
            return True
        for name in (self.c.canary_service, self.c.stable_service):
            svc = self.objects.get(("Service", name)) if name else None
            if (
                svc
                and ((svc.get("spec") or {}).get("selector") or {}).get(POD_TEMPLATE_HASH)
                == rs.hash
            ):
                return True
        if self.c.istio is not None and self.c.istio.destination_rule:
            dr = self.objects.get(("DestinationRule", self.c.istio.destination_rule)) or {}
            for subset in (dr.get("spec") or {}).get("subsets") or []:
                if (subset.get("labels") or {}).get(POD_TEMPLATE_HASH) == rs.hash:
                    return True
        return False

    def scale_down_others(self) -> bool:
        """``reconcileOtherReplicaSets`` / ``scaleDownOldReplicaSetsForCanary``."""
        others = [rs for rs in self.others if rs.replicas > 0]
        if not others:
            return False
        scaled = 0
        # cleanupUnhealthyReplicas, oldest first
        for rs in sorted(others, key=lambda r: r.created):
            if rs.replicas != rs.available:
                scaled += rs.replicas - rs.available
                self.scale(rs, rs.available)
        others = [self.rss[rs.hash] for rs in others]
        available = sum(rs.available for rs in self.rss.values())
        _, max_unavailable = self.c.fenceposts()
        max_scale_down = available - (self.c.replicas - max_unavailable)
        if max_scale_down <= 0:
            return scaled > 0
        for rs in sorted(others, key=lambda r: r.revision, reverse=True):
            rs = self.rss[rs.hash]
            if self.c.traffic_routing and self.referenced(rs):
                continue
            if max_scale_down <= 0:
                break
            if rs.replicas == 0:
                continue
            desired = 0
            if not self.c.traffic_routing:
                if rs.replicas > max_scale_down:
                    desired = rs.replicas - max_scale_down
            elif self.fully_promoted() or rs.scale_down_deadline is not None:
                desired = self.scale_down_delay(rs)
            if rs.replicas == desired:
                continue
            self.scale(rs, desired)
            max_scale_down -= rs.replicas - desired
            scaled += rs.replicas - desired
        return scaled > 0

    def scale_down_delay(self, rs: ReplicaSetState) -> int:
        """``scaleDownDelayHelper`` (no revision limit): annotate a deadline, keep the pods
        until it passes. With scaleDownDelaySeconds 0 nothing is annotated and the pods stay
        (addScaleDownDelay removes the annotation; the size is kept)."""
        if rs.scale_down_deadline is None:
            if self.c.scale_down_delay > 0:
                deadline = self.now + self.c.scale_down_delay
                self.set_deadline(rs, deadline)
                self.requeue.append(deadline)
            return rs.replicas
        if rs.scale_down_deadline > self.now:
            self.requeue.append(rs.scale_down_deadline)
            return rs.replicas
        return 0

    # -- pause and steps --------------------------------------------------------------------

    def reconcile_pause(self) -> bool:
        """``reconcileCanaryPause``: True while at a pause step."""
        if self.c.paused or self.prev.promote_full or not self.c.steps:
            return False
        step, _ = current_step(self.c, self.prev)
        if step is None or step.kind != "pause":
            return False
        cond = next((p for p in self.prev.pause_conditions if p.reason == PAUSE_STEP), None)
        if cond is None:
            if not self.prev.controller_pause:
                self.add_pause = True
            return True
        if step.pause_seconds is not None:
            self.requeue.append(cond.start_time + step.pause_seconds)
        return True

    def completed_step(self) -> bool:
        """``completedCurrentCanaryStep``."""
        if self.c.paused:
            return False
        step, _ = current_step(self.c, self.prev)
        if step is None:
            return False
        if step.kind == "pause":
            cond = next((p for p in self.prev.pause_conditions if p.reason == PAUSE_STEP), None)
            if self.prev.controller_pause and cond is None:
                return True  # "Rollout has been unpaused"
            return (
                step.pause_seconds is not None
                and cond is not None
                and self.now > cond.start_time + step.pause_seconds
            )
        if step.kind in ("setWeight", "setCanaryScale"):
            return at_desired_counts(
                self.c, self.prev, self.rss[self.c.template_hash], self.stable, self.others
            )
        return step.kind in ("setHeaderRoute", "setMirrorRoute")

    # -- status -----------------------------------------------------------------------------

    def base_status(self) -> RolloutStatus:
        """``calculateBaseStatus``."""
        all_rs = list(self.rss.values())
        new = self.new
        return RolloutStatus(
            observed_generation=self.prev.observed_generation,
            current_pod_hash=new.hash,
            current_step_hash=self.c.steps_hash,
            stable_rs=self.prev.stable_rs,
            replicas=sum(rs.pods for rs in all_rs),
            updated_replicas=new.pods,
            ready_replicas=sum(rs.available for rs in all_rs),
            available_replicas=sum(rs.available for rs in all_rs),
            conditions=self.prev.conditions,
            promote_full=new.hash != self.prev.stable_rs and self.prev.promote_full,
            weights=self.weights,
            revision=new.revision,
            step_count=self.c.step_count,
        )

    def healthy(self, status: RolloutStatus) -> bool:
        """``conditions.RolloutHealthy``."""
        executed_all = True
        if self.c.steps and status.current_step_index is not None:
            executed_all = status.current_step_index == self.c.step_count
        return (
            status.updated_replicas == self.c.replicas
            and status.available_replicas == self.c.replicas
            and self.prev.observed_generation == self.c.generation
            and executed_all
            and status.completed
            and status.replicas == self.c.replicas
        )

    def progressing(self, status: RolloutStatus) -> bool:
        """``conditions.RolloutProgressing``."""
        old = self.prev
        step_changed = (
            status.current_step_index is not None
            and old.current_step_index is not None
            and status.current_step_index != old.current_step_index
        )
        return (
            status.updated_replicas != old.updated_replicas
            or status.replicas - status.updated_replicas < old.replicas - old.updated_replicas
            or status.ready_replicas > old.ready_replicas
            or status.available_replicas > old.available_replicas
            or status.stable_rs != old.stable_rs
            or step_changed
            or status.current_step_hash != old.current_step_hash
        )

    def conditions(self, status: RolloutStatus) -> RolloutStatus:
        """``calculateRolloutConditions`` (no progress deadline)."""
        conds = status.conditions
        rs_name = self.c.replicaset_name(status.current_pod_hash)
        is_paused = bool(self.prev.pause_conditions) or self.c.paused
        became_unhealthy = False
        if not is_paused and self.healthy(status):
            conds = with_condition(
                conds, Condition("Healthy", "True", "RolloutHealthy", "Rollout is healthy")
            )
        else:
            healthy = next((c for c in conds if c.type == "Healthy"), None)
            if healthy is not None:
                became_unhealthy = healthy.status != "False"
                conds = with_condition(
                    conds, Condition("Healthy", "False", "RolloutHealthy", "Rollout is not healthy")
                )
        if self.aborted():
            message = f"Rollout aborted update to revision {status.revision}"
            progressing = next((c for c in conds if c.type == "Progressing"), None)
            if progressing is None or progressing.reason != ABORTED_REASON:
                self.events.append(f"RolloutAborted: {message}")
            conds = with_condition(
                conds, Condition("Progressing", "False", ABORTED_REASON, message)
            )
        else:
            if self.healthy(status):
                conds = with_condition(
                    conds,
                    Condition(
                        "Progressing",
                        "True",
                        NEW_RS_AVAILABLE,
                        f'ReplicaSet "{rs_name}" has successfully progressed.',
                    ),
                )
            elif self.progressing(status) or became_unhealthy:
                conds = with_condition(
                    conds,
                    Condition(
                        "Progressing", "True", RS_UPDATED, f'ReplicaSet "{rs_name}" is progressing.'
                    ),
                )
        available = "True" if status.available_replicas >= self.c.replicas else "False"
        conds = with_condition(
            conds,
            Condition("Available", available, "AvailableReason", f"Rollout available: {available}"),
        )
        done = "True" if status.completed else "False"
        conds = with_condition(
            conds, Condition("Completed", done, "RolloutCompleted", "RolloutCompleted")
        )
        return replace(status, conditions=conds)

    def persist(self, status: RolloutStatus) -> RolloutStatus:
        """``persistRolloutStatus``: pause / abort status, generation, phase."""
        # CalculateAbortStatus
        if self.add_abort or (not self.remove_abort and self.prev.abort):
            status = replace(status, abort=True, aborted_at=self.prev.aborted_at or self.now)
        else:
            status = replace(status, abort=False, aborted_at=None)
            if not self.clear_pause:
                # CalculatePauseConditions
                kept = tuple(
                    p
                    for p in self.prev.pause_conditions
                    if not (self.remove_pause and p.reason == PAUSE_STEP)
                )
                controller_pause = self.prev.controller_pause
                if self.add_pause and not any(
                    p.reason == PAUSE_STEP for p in self.prev.pause_conditions
                ):
                    kept = (*kept, PauseCondition(PAUSE_STEP, self.now))
                    controller_pause = True
                if kept:
                    status = replace(
                        status, pause_conditions=kept, controller_pause=controller_pause
                    )
        status = replace(
            status,
            observed_generation=self.c.generation,
            set_weight=current_set_weight(self.c, replace(status, abort=status.abort)),
        )
        phase, message = calculate_phase(self.c, status)
        if status.pause_conditions and not self.prev.pause_conditions:
            self.events.append(
                f"RolloutPaused: Rollout is paused ({status.pause_conditions[0].reason})"
            )
        elif self.prev.pause_conditions and not status.pause_conditions and not status.abort:
            self.events.append("RolloutResumed: Rollout is resumed")
        return replace(status, phase=phase, message=message)

    def sync_status(self, reset: bool) -> RolloutStatus:
        """``syncRolloutStatusCanary``."""
        status = self.base_status()
        step, index = current_step(self.c, self.prev)
        count = self.c.step_count
        if reset:
            # resetRolloutStatus
            self.clear_pause = True
            self.remove_abort = True
            status = replace(status, promote_full=False, current_step_index=0 if count else None)
            if count and self.prev.stable_rs == self.new.hash:
                self.events.append("SkipSteps: Rollback to stable ReplicaSets")
                status = replace(status, current_step_index=count)
            return self.persist(self.conditions(status))
        if self.prev.promote_full:
            self.clear_pause = True
            self.remove_abort = True
            if count:
                index = count
        reason = self.should_full_promote()
        if reason:
            # promoteStable
            self.clear_pause = True
            self.remove_abort = True
            status = replace(
                status, promote_full=False, current_step_index=count if count else None
            )
            if status.stable_rs != status.current_pod_hash:
                status = replace(status, stable_rs=status.current_pod_hash)
                self.events.append(
                    f"RolloutCompleted: Rollout completed update to revision {status.revision} "
                    f"({status.current_pod_hash}): {reason}"
                )
            return self.persist(self.conditions(status))
        if self.aborted():
            if count:
                status = replace(
                    status,
                    current_step_index=count if status.stable_rs == status.current_pod_hash else 0,
                )
            return self.persist(self.conditions(status))
        if step is not None and index is not None and self.completed_step():
            index += 1
            self.events.append(
                f"RolloutStepCompleted: Rollout step {index}/{count} completed ({step.describe()})"
            )
            self.remove_pause = True
        status = replace(status, current_step_index=index)
        return self.persist(self.conditions(status))

    def should_full_promote(self) -> str:
        """``shouldFullPromote`` (canary)."""
        if self.stable is None:
            return "Initial deploy"
        if self.aborted():
            return ""
        if self.new.available < self.c.replicas:
            return ""
        if self.prev.promote_full:
            return "Full promotion requested"
        _, index = current_step(self.c, self.prev)
        if not self.c.steps or (index is not None and index == self.c.step_count):
            return f"Completed all {self.c.step_count} canary steps"
        return ""

    def paused_conditions(self) -> None:
        """``checkPausedConditions``: the Paused and Progressing conditions follow the pause
        and abort state (a patch of its own before the sync; applied to ``prev`` here)."""
        conds = self.prev.conditions
        progressing = next((c for c in conds if c.type == "Progressing"), None)
        is_paused = bool(self.prev.pause_conditions) or self.c.paused
        prog_paused = progressing is not None and progressing.reason == PAUSED_REASON
        abort_cond = progressing is not None and progressing.reason == ABORTED_REASON
        if is_paused != prog_paused and not abort_cond and not self.prev.completed:
            reason = PAUSED_REASON if is_paused else RESUMED_REASON
            message = "Rollout is paused" if is_paused else "Rollout is resumed"
            conds = with_condition(conds, Condition("Progressing", "Unknown", reason, message))
        if not self.prev.abort and abort_cond:
            conds = with_condition(
                conds,
                Condition("Progressing", "Unknown", RETRY_REASON, "Retrying Rollout after abort"),
            )
        paused_cond = next((c for c in conds if c.type == "Paused"), None)
        paused_true = paused_cond is not None and paused_cond.status == "True"
        if is_paused != paused_true and not abort_cond:
            conds = with_condition(
                conds,
                Condition(
                    "Paused", "True" if is_paused else "False", PAUSED_REASON, "Rollout is paused"
                ),
            )
        self.prev = replace(self.prev, conditions=conds)

    # -- the sync ---------------------------------------------------------------------------

    def run(self) -> Reconciled:
        error = ""
        if self.c.problems:
            first = self.c.problems[0]
            conds = with_condition(
                self.prev.conditions, Condition(INVALID_SPEC, "True", INVALID_SPEC, str(first))
            )
            status = replace(self.prev, conditions=conds, step_count=self.c.step_count)
            phase, message = calculate_phase(self.c, status)
            return Reconciled(
                replace(status, phase=phase, message=message), tuple(self.rss.values())
            )
        if self.c.template_hash not in self.rss:
            revision = max((rs.revision for rs in self.rss.values()), default=0) + 1
            self.rss[self.c.template_hash] = ReplicaSetState(
                self.c.template_hash, revision, created=self.now
            )
            self.events.append(
                "NewReplicaSetCreated: Created ReplicaSet "
                f"{self.c.replicaset_name(self.c.template_hash)} (revision {revision})"
            )
        else:
            # syncReplicaSetRevision: the new ReplicaSet's revision is the highest.
            top = (
                max(rs.revision for h, rs in self.rss.items() if h != self.c.template_hash)
                if len(self.rss) > 1
                else 0
            )
            if self.new.revision <= top:
                self.rss[self.c.template_hash] = replace(self.new, revision=top + 1)
        if self.fully_promoted() and self.prev.abort:
            self.remove_abort = True  # newRolloutContext: "Removing abort condition"
        self.paused_conditions()
        changed = (
            not self.prev.current_step_hash
            or self.prev.current_step_hash != self.c.steps_hash
            or (
                bool(self.prev.current_pod_hash)
                and self.prev.current_pod_hash != self.c.template_hash
            )
        )
        try:
            if changed:
                status = self.sync_status(reset=True)
            else:
                self.reconcile_services()
                self.reconcile_traffic()
                if not self.reconcile_replica_sets() and self.reconcile_pause():
                    pass
                status = self.sync_status(reset=False)
        except ReconcileError as exc:
            error = str(exc)
            status = replace(self.prev, error=error)
            self.events.append(f"Error: {error}")
        else:
            status = replace(status, error="")
        future = [t for t in self.requeue if t > self.now]
        return Reconciled(
            status=status,
            replica_sets=tuple(sorted(self.rss.values(), key=lambda rs: rs.created)),
            # Net writes only: on an abort with traffic routing the canary Service is
            # switched to the canary and back to the stable in one sync (see the module
            # docstring); what stays is the last write.
            objects=tuple(o for k, o in self.written.items() if self.original.get(k) != o),
            requeue_at=min(future) if future else None,
            events=tuple(self.events),
        )


def reconcile(
    config: RolloutConfig,
    status: RolloutStatus,
    replica_sets: Sequence[ReplicaSetState],
    objects: Mapping[Key, Mapping[str, Any]],
    now: float,
) -> Reconciled:
    """One sync of the controller (``rolloutCanary``): services, traffic routing, ReplicaSet
    sizes, pause, then the status. Pure: the caller applies the result (scales the
    ReplicaSets, writes the objects) and calls again until nothing changes, and again when a
    pod becomes ready or ``requeue_at`` passes.

    Args:
        config: the Rollout as read by :func:`read_rollout`.
        status: its current status (``RolloutStatus()`` for a new Rollout).
        replica_sets: its ReplicaSets with their pods now.
        objects: the namespace's Services, Ingresses, VirtualServices and DestinationRules,
            by (kind, name).
        now: the time, in seconds (the clock of the caller's timers).
    """
    return _Sync(config, status, replica_sets, objects, now).run()


def settled(
    result: Reconciled, status: RolloutStatus, replica_sets: Sequence[ReplicaSetState]
) -> bool:
    """Whether a sync changed nothing: the controller waits for a pod or a timer."""
    return (
        not result.objects
        and result.status == status
        and tuple(sorted(result.replica_sets, key=lambda rs: rs.created))
        == tuple(sorted(replica_sets, key=lambda rs: rs.created))
    )


# -- what the linter asks ---------------------------------------------------------------------


def routing_problems(config: RolloutConfig, objects: Mapping[Key, Mapping[str, Any]]) -> list[str]:
    """Why the controller's syncs would fail on these objects, before anything runs: a
    Service, stable Ingress, VirtualService or DestinationRule it names is missing, the
    stable Ingress has no rule using the stable Service (``buildCanaryIngress``), or a route
    lacks the canary or stable destination (``ValidateHTTPRoutes``). The messages are the
    controller's own errors."""
    found: list[str] = []
    for name in (config.stable_service, config.canary_service):
        if name and ("Service", name) not in objects:
            found.append(f'services "{name}" not found')
    if config.nginx is not None:
        for name in config.nginx.stable_ingresses:
            stable = objects.get(("Ingress", name))
            if stable is None:
                found.append(
                    f"error retrieving stableIngress `{name}` from cache: ingress "
                    f'"{name}" not found'
                )
                continue
            try:
                canary_ingress(config, stable, 0)
            except ReconcileError as exc:
                found.append(str(exc))
    if config.istio is not None:
        if config.istio.destination_rule and (
            ("DestinationRule", config.istio.destination_rule) not in objects
        ):
            found.append(
                f'destinationrules.networking.istio.io "{config.istio.destination_rule}" not found'
            )
        for ref in config.istio.virtual_services:
            name = ref.name.split(".", 1)[0]
            vs = objects.get(("VirtualService", name))
            if vs is None:
                found.append(f'virtualservices.networking.istio.io "{name}" not found')
                continue
            try:
                virtual_service_with_weight(config, vs, ref, 0)
            except ReconcileError as exc:
                found.append(str(exc))
    return found


# -- a live Rollout's status -----------------------------------------------------------------


def _seconds(stamp: object) -> float:
    """An RFC 3339 time (``metav1.Time``) as epoch seconds; 0 when absent or unreadable."""
    from datetime import datetime

    if not isinstance(stamp, str):
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def read_status(obj: Mapping[str, Any]) -> RolloutStatus:
    """A Rollout object's ``status`` as written by the real controller, as a
    :class:`RolloutStatus` (times in epoch seconds): what cluster waits compare with the
    model's expectations. ``observedGeneration`` is a string in Argo's status."""
    raw = obj.get("status") or {}
    config = read_rollout(obj)
    weights = None
    canary = (raw.get("canary") or {}).get("weights")
    if isinstance(canary, Mapping):
        weights = TrafficWeights(
            canary_weight=int((canary.get("canary") or {}).get("weight") or 0),
            stable_weight=int((canary.get("stable") or {}).get("weight") or 0),
            canary_hash=str((canary.get("canary") or {}).get("podTemplateHash") or ""),
            stable_hash=str((canary.get("stable") or {}).get("podTemplateHash") or ""),
        )
    observed = str(raw.get("observedGeneration") or "0")
    status = RolloutStatus(
        observed_generation=int(observed) if observed.isdigit() else 0,
        current_pod_hash=str(raw.get("currentPodHash") or ""),
        current_step_hash=str(raw.get("currentStepHash") or ""),
        stable_rs=str(raw.get("stableRS") or ""),
        current_step_index=raw.get("currentStepIndex"),
        pause_conditions=tuple(
            PauseCondition(str(p.get("reason", "")), _seconds(p.get("startTime")))
            for p in raw.get("pauseConditions") or []
        ),
        controller_pause=bool(raw.get("controllerPause", False)),
        abort=bool(raw.get("abort", False)),
        aborted_at=_seconds(raw["abortedAt"]) if raw.get("abortedAt") else None,
        promote_full=bool(raw.get("promoteFull", False)),
        weights=weights,
        replicas=int(raw.get("replicas") or 0),
        updated_replicas=int(raw.get("updatedReplicas") or 0),
        ready_replicas=int(raw.get("readyReplicas") or 0),
        available_replicas=int(raw.get("availableReplicas") or 0),
        conditions=tuple(
            Condition(
                str(c.get("type", "")),
                str(c.get("status", "")),
                str(c.get("reason", "")),
                str(c.get("message", "")),
            )
            for c in raw.get("conditions") or []
        ),
        phase=str(raw.get("phase") or ""),
        message=str(raw.get("message") or ""),
        revision=int(((obj.get("metadata") or {}).get("annotations") or {}).get(REVISION, 0) or 0),
        step_count=config.step_count,
    )
    return replace(status, set_weight=current_set_weight(config, status))


def client_phase(generation: int, status: RolloutStatus) -> tuple[str, str]:
    """``utils/rollout`` ``GetRolloutPhase`` (what ``kubectl argo rollouts get`` shows): the
    controller's phase, unless it has not observed the spec yet or an unpause is pending."""
    if status.observed_generation < generation:
        return PROGRESSING, "waiting for rollout spec update to be observed"
    if status.controller_pause and not status.pause_conditions:
        return PROGRESSING, "waiting for rollout to unpause"
    return status.phase, status.message


# -- what a wait expects ---------------------------------------------------------------------


def expected_weight(config: RolloutConfig, step_index: int) -> int:
    """The traffic weight the controller writes once the canary's pods for the step at
    ``step_index`` are available (``reconcileTrafficRouting``); 100 past the last step
    before promotion. For a paused step this is the setWeight before it."""
    if step_index >= config.step_count:
        return MAX_WEIGHT
    return current_set_weight(
        config, RolloutStatus(current_step_index=step_index, stable_rs="s", current_pod_hash="c")
    )


def expected_canary_replicas(config: RolloutConfig, step_index: int) -> int:
    """The canary pods the controller asks for at ``step_index`` (traffic routing: ceil of
    weight x replicas, or setCanaryScale; basic canary: the approximation)."""
    status = RolloutStatus(current_step_index=step_index, stable_rs="s", current_pod_hash="c")
    if config.traffic_routing:
        return traffic_routed_counts(config, status)[0]
    surge, _ = config.fenceposts()
    return approximate_weighted_counts(
        config.replicas, current_set_weight(config, status), MAX_WEIGHT, surge
    )[0]


__all__ = [
    "API_VERSION",
    "POD_TEMPLATE_HASH",
    "Condition",
    "PauseCondition",
    "ReconcileError",
    "Reconciled",
    "ReplicaSetState",
    "RolloutConfig",
    "RolloutStatus",
    "TrafficWeights",
    "abort_patch",
    "apply_status_patch",
    "approximate_weighted_counts",
    "basic_canary_counts",
    "calculate_phase",
    "canary_ingress",
    "canary_ingress_name",
    "client_phase",
    "expected_canary_replicas",
    "expected_weight",
    "pod_template_hash",
    "promote_patch",
    "read_rollout",
    "read_status",
    "reconcile",
    "retry_patch",
    "routing_problems",
    "settled",
    "step_hash",
    "traffic_routed_counts",
    "undo_target",
]
