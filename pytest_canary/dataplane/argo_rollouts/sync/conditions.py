"""Conditions: the ``Paused``, ``Progressing``, ``Healthy``, ``Available`` and
``Completed`` conditions a sync sets, which the phase is read from.

Upstream (argoproj/argo-rollouts, tag v1.9.1):

- **Paused conditions** (``rollout/sync.go`` ``checkPausedConditions``): the Paused and
  Progressing conditions follow the pause and abort state (``RolloutPaused`` /
  ``RolloutResumed``; ``RolloutRetry`` once an abort is lifted), a patch of its own before
  the sync.
- **Conditions** (``rollout/sync.go`` ``calculateRolloutConditions``, no progress deadline;
  ``utils/conditions`` ``RolloutHealthy`` / ``RolloutProgressing``): Healthy when all
  replicas are updated and available, the spec observed, all steps executed and the
  rollout completed; on an abort ``Progressing=False RolloutAborted`` (phase Degraded);
  else ``NewReplicaSetAvailable`` when healthy, ``ReplicaSetUpdated`` while progressing.
"""

from __future__ import annotations

from dataclasses import replace

from pytest_canary.dataplane.argo_rollouts.status import (
    ABORTED_REASON,
    NEW_RS_AVAILABLE,
    PAUSED_REASON,
    RESUMED_REASON,
    RETRY_REASON,
    RS_UPDATED,
    Condition,
    RolloutStatus,
    with_condition,
)
from pytest_canary.dataplane.argo_rollouts.sync.context import SyncContext


def check_paused_conditions(ctx: SyncContext) -> None:
    """``checkPausedConditions``: the Paused and Progressing conditions follow the pause
    and abort state (a patch of its own before the sync; applied to ``prev`` here)."""
    conds = ctx.prev.conditions
    progressing = next((c for c in conds if c.type == "Progressing"), None)
    is_paused = bool(ctx.prev.pause_conditions) or ctx.config.paused
    prog_paused = progressing is not None and progressing.reason == PAUSED_REASON
    abort_cond = progressing is not None and progressing.reason == ABORTED_REASON
    if is_paused != prog_paused and not abort_cond and not ctx.prev.completed:
        reason = PAUSED_REASON if is_paused else RESUMED_REASON
        message = "Rollout is paused" if is_paused else "Rollout is resumed"
        conds = with_condition(conds, Condition("Progressing", "Unknown", reason, message))
    if not ctx.prev.abort and abort_cond:
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
    ctx.prev = replace(ctx.prev, conditions=conds)


def rollout_healthy(ctx: SyncContext, status: RolloutStatus) -> bool:
    """``conditions.RolloutHealthy``."""
    executed_all = True
    if ctx.config.steps and status.current_step_index is not None:
        executed_all = status.current_step_index == ctx.config.step_count
    return (
        status.updated_replicas == ctx.config.replicas
        and status.available_replicas == ctx.config.replicas
        and ctx.prev.observed_generation == ctx.config.generation
        and executed_all
        and status.completed
        and status.replicas == ctx.config.replicas
    )


def rollout_progressing(ctx: SyncContext, status: RolloutStatus) -> bool:
    """``conditions.RolloutProgressing``."""
    old = ctx.prev
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


def calculate_conditions(ctx: SyncContext, status: RolloutStatus) -> RolloutStatus:
    """``calculateRolloutConditions`` (no progress deadline)."""
    conds = status.conditions
    rs_name = ctx.config.replicaset_name(status.current_pod_hash)
    is_paused = bool(ctx.prev.pause_conditions) or ctx.config.paused
    became_unhealthy = False
    if not is_paused and rollout_healthy(ctx, status):
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
    if ctx.aborted():
        message = f"Rollout aborted update to revision {status.revision}"
        progressing = next((c for c in conds if c.type == "Progressing"), None)
        if progressing is None or progressing.reason != ABORTED_REASON:
            ctx.events.append(f"RolloutAborted: {message}")
        conds = with_condition(conds, Condition("Progressing", "False", ABORTED_REASON, message))
    else:
        if rollout_healthy(ctx, status):
            conds = with_condition(
                conds,
                Condition(
                    "Progressing",
                    "True",
                    NEW_RS_AVAILABLE,
                    f'ReplicaSet "{rs_name}" has successfully progressed.',
                ),
            )
        elif rollout_progressing(ctx, status) or became_unhealthy:
            conds = with_condition(
                conds,
                Condition(
                    "Progressing", "True", RS_UPDATED, f'ReplicaSet "{rs_name}" is progressing.'
                ),
            )
    available = "True" if status.available_replicas >= ctx.config.replicas else "False"
    conds = with_condition(
        conds,
        Condition("Available", available, "AvailableReason", f"Rollout available: {available}"),
    )
    done = "True" if status.completed else "False"
    conds = with_condition(
        conds, Condition("Completed", done, "RolloutCompleted", "RolloutCompleted")
    )
    return replace(status, conditions=conds)
