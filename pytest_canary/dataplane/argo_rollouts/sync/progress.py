"""Progress: how far the Rollout got after a sync — the next step, a promotion, an abort,
a reset — as the status the sync writes.

Upstream (argoproj/argo-rollouts, tag v1.9.1):

- **Template or steps changed** (``utils/replicaset`` ``PodTemplateOrStepsChanged``,
  ``rollout/sync.go`` ``resetRolloutStatus``): that sync only resets the status (step 0,
  pause and abort cleared); back on the stable template the steps are skipped ("Rollback to
  stable ReplicaSets", ``currentStepIndex`` = number of steps).
- **Status** (``rollout/canary.go`` ``syncRolloutStatusCanary``, ``rollout/sync.go``
  ``calculateBaseStatus``): replica totals from the ReplicaSets; ``promoteFull`` jumps past
  the last step; a completed step advances ``currentStepIndex`` and lifts its pause.
- **Promotion** (``rollout/sync.go`` ``shouldFullPromote`` / ``promoteStable``): the first
  ReplicaSet is stable at once ("Initial deploy"); later the new ReplicaSet becomes stable
  when all its pods are available and all steps completed or ``promoteFull`` was asked.
- **Abort** (``rollout/sync.go`` ``calculateRolloutConditions``): ``currentStepIndex`` 0,
  condition ``Progressing=False RolloutAborted`` (phase Degraded).
- **Persist** (``rollout/sync.go`` ``persistRolloutStatus``, ``rollout/pause.go``
  ``CalculateAbortStatus`` / ``CalculatePauseConditions``): the abort flag and its time, the
  pause conditions added and removed, ``observedGeneration``, the phase
  (``CalculateRolloutPhase``).
- **InvalidSpec** (``rollout/controller.go`` ``newRolloutContext`` /
  ``createInvalidRolloutCondition``): a Rollout that fails
  validation gets the ``InvalidSpec`` condition and nothing else happens.
"""

from __future__ import annotations

from dataclasses import replace

from pytest_canary.dataplane.argo_rollouts.status import (
    INVALID_SPEC,
    PAUSE_STEP,
    Condition,
    PauseCondition,
    RolloutStatus,
    calculate_phase,
    current_set_weight,
    current_step,
    with_condition,
)
from pytest_canary.dataplane.argo_rollouts.sync.conditions import calculate_conditions
from pytest_canary.dataplane.argo_rollouts.sync.context import SyncContext
from pytest_canary.dataplane.argo_rollouts.sync.steps import completed_step


def invalid_spec_status(ctx: SyncContext) -> RolloutStatus:
    """The status of a Rollout that fails validation: the ``InvalidSpec`` condition with
    the first problem, the phase Degraded."""
    first = ctx.config.problems[0]
    conds = with_condition(
        ctx.prev.conditions, Condition(INVALID_SPEC, "True", INVALID_SPEC, str(first))
    )
    status = replace(ctx.prev, conditions=conds, step_count=ctx.config.step_count)
    phase, message = calculate_phase(ctx.config, status)
    return replace(status, phase=phase, message=message)


def template_or_steps_changed(ctx: SyncContext) -> bool:
    """``PodTemplateOrStepsChanged``: the status was for other steps or another template."""
    prev = ctx.prev
    return (
        not prev.current_step_hash
        or prev.current_step_hash != ctx.config.steps_hash
        or (bool(prev.current_pod_hash) and prev.current_pod_hash != ctx.config.template_hash)
    )


def base_status(ctx: SyncContext) -> RolloutStatus:
    """``calculateBaseStatus``."""
    all_rs = list(ctx.rss.values())
    new = ctx.new
    return RolloutStatus(
        observed_generation=ctx.prev.observed_generation,
        current_pod_hash=new.hash,
        current_step_hash=ctx.config.steps_hash,
        stable_rs=ctx.prev.stable_rs,
        replicas=sum(rs.pods for rs in all_rs),
        updated_replicas=new.pods,
        ready_replicas=sum(rs.available for rs in all_rs),
        available_replicas=sum(rs.available for rs in all_rs),
        conditions=ctx.prev.conditions,
        promote_full=new.hash != ctx.prev.stable_rs and ctx.prev.promote_full,
        weights=ctx.weights,
        revision=new.revision,
        step_count=ctx.config.step_count,
        traffic_routing=ctx.config.traffic_routing,
        canary_available=new.available,
    )


def _pause_and_abort(ctx: SyncContext, status: RolloutStatus) -> RolloutStatus:
    """``pauseContext`` ``CalculateAbortStatus``, then (not aborted, pauses not cleared)
    ``CalculatePauseConditions``."""
    if ctx.add_abort or (not ctx.remove_abort and ctx.prev.abort):
        return replace(status, abort=True, aborted_at=ctx.prev.aborted_at or ctx.now)
    status = replace(status, abort=False, aborted_at=None)
    if ctx.clear_pause:
        return status
    kept = tuple(
        p for p in ctx.prev.pause_conditions if not (ctx.remove_pause and p.reason == PAUSE_STEP)
    )
    controller_pause = ctx.prev.controller_pause
    if ctx.add_pause and not any(p.reason == PAUSE_STEP for p in ctx.prev.pause_conditions):
        kept = (*kept, PauseCondition(PAUSE_STEP, ctx.now))
        controller_pause = True
    if kept:
        status = replace(status, pause_conditions=kept, controller_pause=controller_pause)
    return status


def persist(ctx: SyncContext, status: RolloutStatus) -> RolloutStatus:
    """``persistRolloutStatus``: pause / abort status, generation, phase."""
    status = _pause_and_abort(ctx, status)
    status = replace(
        status,
        observed_generation=ctx.config.generation,
        set_weight=current_set_weight(ctx.config, replace(status, abort=status.abort)),
    )
    phase, message = calculate_phase(ctx.config, status)
    if status.pause_conditions and not ctx.prev.pause_conditions:
        ctx.events.append(f"RolloutPaused: Rollout is paused ({status.pause_conditions[0].reason})")
    elif ctx.prev.pause_conditions and not status.pause_conditions and not status.abort:
        ctx.events.append("RolloutResumed: Rollout is resumed")
    return replace(status, phase=phase, message=message)


def _reset(ctx: SyncContext, status: RolloutStatus) -> RolloutStatus:
    """``resetRolloutStatus``: step 0, pause and abort cleared; back on the stable
    template, the steps are skipped."""
    count = ctx.config.step_count
    ctx.clear_pause = True
    ctx.remove_abort = True
    status = replace(status, promote_full=False, current_step_index=0 if count else None)
    if count and ctx.prev.stable_rs == ctx.new.hash:
        ctx.events.append("SkipSteps: Rollback to stable ReplicaSets")
        status = replace(status, current_step_index=count)
    return status


def _promote_stable(ctx: SyncContext, status: RolloutStatus, reason: str) -> RolloutStatus:
    """``promoteStable``: the new ReplicaSet becomes the stable one, past the last step."""
    count = ctx.config.step_count
    ctx.clear_pause = True
    ctx.remove_abort = True
    status = replace(status, promote_full=False, current_step_index=count if count else None)
    if status.stable_rs != status.current_pod_hash:
        status = replace(status, stable_rs=status.current_pod_hash)
        ctx.events.append(
            f"RolloutCompleted: Rollout completed update to revision {status.revision} "
            f"({status.current_pod_hash}): {reason}"
        )
    return status


def sync_status(ctx: SyncContext, reset: bool) -> RolloutStatus:
    """``syncRolloutStatusCanary``: the status after a reset, a promotion, an abort or
    the current step, with its conditions, persisted."""
    status = base_status(ctx)
    step, index = current_step(ctx.config, ctx.prev)
    count = ctx.config.step_count
    if reset:
        return persist(ctx, calculate_conditions(ctx, _reset(ctx, status)))
    if ctx.prev.promote_full:
        ctx.clear_pause = True
        ctx.remove_abort = True
        if count:
            index = count
    reason = should_full_promote(ctx)
    if reason:
        return persist(ctx, calculate_conditions(ctx, _promote_stable(ctx, status, reason)))
    if ctx.aborted():
        if count:
            status = replace(
                status,
                current_step_index=count if status.stable_rs == status.current_pod_hash else 0,
            )
        return persist(ctx, calculate_conditions(ctx, status))
    if step is not None and index is not None and completed_step(ctx):
        index += 1
        ctx.events.append(
            f"RolloutStepCompleted: Rollout step {index}/{count} completed ({step.describe()})"
        )
        ctx.remove_pause = True
    status = replace(status, current_step_index=index)
    return persist(ctx, calculate_conditions(ctx, status))


def should_full_promote(ctx: SyncContext) -> str:
    """``shouldFullPromote`` (canary)."""
    if ctx.stable is None:
        return "Initial deploy"
    if ctx.aborted():
        return ""
    if ctx.new.available < ctx.config.replicas:
        return ""
    if ctx.prev.promote_full:
        return "Full promotion requested"
    _, index = current_step(ctx.config, ctx.prev)
    if not ctx.config.steps or (index is not None and index == ctx.config.step_count):
        return f"Completed all {ctx.config.step_count} canary steps"
    return ""
