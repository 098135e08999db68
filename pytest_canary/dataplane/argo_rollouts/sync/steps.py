"""Steps: when the current step is done, and the pause a pause step puts on the Rollout.

Upstream (argoproj/argo-rollouts, tag v1.9.1):

- **Step completion** (``rollout/canary.go`` ``completedCurrentCanaryStep``): setWeight and
  setCanaryScale when ``AtDesiredReplicaCountsForCanary`` (the canary's desired replicas all
  available, the stable's all created, basic canary: no other pod available); a pause when
  promoted or ``startTime + duration`` passed (``rollout/pause.go``
  ``CompletedCanaryPauseStep``); setHeaderRoute / setMirrorRoute at once. Nothing completes
  while the user paused the Rollout.
- **Pauses** (``rollout/canary.go`` ``reconcileCanaryPause``, ``rollout/pause.go``): reaching
  a pause step adds ``PauseCondition{CanaryPauseStep, startTime: now}`` and
  ``controllerPause``; a timed pause requeues at its expiry; ``pause: {}`` waits for promote.
"""

from __future__ import annotations

from pytest_canary.dataplane.argo_rollouts.replicas import at_desired_counts
from pytest_canary.dataplane.argo_rollouts.status import PAUSE_STEP, PauseCondition, current_step
from pytest_canary.dataplane.argo_rollouts.sync.context import SyncContext


def _step_pause(ctx: SyncContext) -> PauseCondition | None:
    """The pause condition a pause step set, if any."""
    return next((p for p in ctx.prev.pause_conditions if p.reason == PAUSE_STEP), None)


def reconcile_pause(ctx: SyncContext) -> bool:
    """``reconcileCanaryPause``: True while at a pause step."""
    if ctx.config.paused or ctx.prev.promote_full or not ctx.config.steps:
        return False
    step, _ = current_step(ctx.config, ctx.prev)
    if step is None or step.kind != "pause":
        return False
    cond = _step_pause(ctx)
    if cond is None:
        if not ctx.prev.controller_pause:
            ctx.add_pause = True
        return True
    if step.pause_seconds is not None:
        ctx.requeue.append(cond.start_time + step.pause_seconds)
    return True


def completed_step(ctx: SyncContext) -> bool:
    """``completedCurrentCanaryStep``."""
    if ctx.config.paused:
        return False
    step, _ = current_step(ctx.config, ctx.prev)
    if step is None:
        return False
    if step.kind == "pause":
        cond = _step_pause(ctx)
        if ctx.prev.controller_pause and cond is None:
            return True  # "Rollout has been unpaused"
        return (
            step.pause_seconds is not None
            and cond is not None
            and ctx.now > cond.start_time + step.pause_seconds
        )
    if step.kind in ("setWeight", "setCanaryScale"):
        return at_desired_counts(ctx.config, ctx.prev, ctx.new, ctx.stable, ctx.others)
    return step.kind in ("setHeaderRoute", "setMirrorRoute")
