"""The Rollout's state: its ReplicaSets, its status (pause conditions, conditions, the
weights last written), where it stands in its steps and the phase shown to users; and the
status of a live Rollout, read off a cluster.

Upstream (argoproj/argo-rollouts, tag v1.9.1):

- **Status** (``pkg/apis/rollouts/v1alpha1`` ``RolloutStatus``, ``PauseCondition``,
  ``RolloutCondition``, ``TrafficWeights``): the fields the controller writes, snake_case.
- **Conditions** (``utils/conditions`` ``SetRolloutCondition``): a new condition replaces
  the one of the same type.
- **Current step** (``utils/replicaset/canary.go`` ``GetCurrentCanaryStep``,
  ``GetCurrentSetWeight``): the step at ``currentStepIndex`` (0 when unset); the setWeight
  in effect is 0 when aborted, 100 past the last step, else the last setWeight at or before
  the current step.
- **Weight shown** (``pkg/kubectl-argo-rollouts/info/rollout_info.go`` ``NewRolloutInfo``
  ``ActualWeight``, what ``kubectl argo rollouts get`` shows): 100 (the max traffic weight)
  past the last step or without steps; 0 with no available pod; with traffic routing the
  weight in ``status.canary.weights`` (the setWeight in effect before any is written); a
  basic canary the canary ReplicaSet's available pods x 100 / all available pods, rounded
  down.
- **Phase** (``utils/rollout/rolloututil.go`` ``CalculateRolloutPhase``): Degraded on an
  aborted / timed-out / InvalidSpec condition, Paused with pause conditions, Progressing
  while replicas are being updated or steps remain, else Healthy. What
  ``kubectl argo rollouts get`` shows (``GetRolloutPhase``): Progressing until the
  controller has observed the spec and an unpause is done, else the controller's phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pytest_canary.dataplane.argo_rollouts.api import MAX_WEIGHT, REVISION
from pytest_canary.dataplane.argo_rollouts.config import RolloutConfig, read_rollout
from pytest_canary.rollout_spec import Step

# Phases (v1alpha1.RolloutPhase*), condition reasons (utils/conditions) and the pause
# reason of a pause step (v1alpha1.PauseReasonCanaryPauseStep).
HEALTHY, PROGRESSING, PAUSED, DEGRADED = "Healthy", "Progressing", "Paused", "Degraded"
ABORTED_REASON = "RolloutAborted"
RETRY_REASON = "RolloutRetry"
PAUSED_REASON = "RolloutPaused"
RESUMED_REASON = "RolloutResumed"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
RS_UPDATED = "ReplicaSetUpdated"
INVALID_SPEC = "InvalidSpec"
PAUSE_STEP = "CanaryPauseStep"


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
        traffic_routing: whether a traffic router splits the traffic (not an Argo field).
        canary_available: available pods of the ReplicaSet of ``currentPodHash`` (read off
            that ReplicaSet's status; not an Argo field).
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
    traffic_routing: bool = False
    canary_available: int = 0

    # -- what a test reads ------------------------------------------------------------------

    @property
    def step(self) -> int | None:
        """``currentStepIndex``: the step being run (== ``step_count`` once all are done)."""
        return self.current_step_index

    @property
    def weight(self) -> int:
        """Percent of traffic to the canary as ``kubectl argo rollouts get`` shows it
        (``rollout_info.go`` ``ActualWeight``): 100 once past the last step (Healthy on the
        new version, whatever the strategy); with traffic routing what the controller wrote
        to the router (``status.canary.weights.canary.weight``); for a basic canary the
        canary's share of the available pods (1 of 5 -> 20), rounded down; 0 with no
        available pod."""
        index = self.current_step_index or 0
        if self.step_count == 0 or index >= self.step_count:
            return MAX_WEIGHT
        if self.available_replicas <= 0:
            return 0
        if not self.traffic_routing:
            canary = self.canary_available if self.current_pod_hash != self.stable_rs else 0
            return canary * MAX_WEIGHT // self.available_replicas
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


# -- where it stands in its steps ------------------------------------------------------------


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


# -- a live Rollout's status -----------------------------------------------------------------


def _seconds(stamp: object) -> float:
    """An RFC 3339 time (``metav1.Time``) as epoch seconds; 0 when absent or unreadable."""
    if not isinstance(stamp, str):
        return 0.0
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def read_status(
    obj: Mapping[str, Any], replica_sets: Sequence[ReplicaSetState] = ()
) -> RolloutStatus:
    """A Rollout object's ``status`` as written by the real controller, as a
    :class:`RolloutStatus` (times in epoch seconds): what cluster waits compare with the
    model's expectations. ``observedGeneration`` is a string in Argo's status.
    ``replica_sets`` (those it controls) give a basic canary's shown weight."""
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
        traffic_routing=config.traffic_routing,
        canary_available=sum(
            rs.available for rs in replica_sets if rs.hash == raw.get("currentPodHash")
        ),
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
