"""One sync of the controller, :func:`reconcile`, in the order the controller runs it
(``rollout/controller.go`` ``syncHandler`` -> ``rollout/canary.go`` ``rolloutCanary``):

1. :mod:`.context`: what the sync reads and has changed so far (``rolloutContext``);
   a Rollout that fails validation stops here (:mod:`.progress`: ``InvalidSpec``);
2. :mod:`.replica_sets`: the new template's ReplicaSet (``getAllReplicaSetsAndSyncRevision``);
   a fully promoted Rollout loses its abort (``newRolloutContext``);
3. :mod:`.conditions`: the Paused / Progressing conditions follow the pause state
   (``checkPausedConditions``);
4. a changed template or steps only resets the status (:mod:`.progress`:
   ``PodTemplateOrStepsChanged``); else
5. :mod:`.services`: the stable and canary Services' selectors;
6. :mod:`.traffic`: the weight, written to the traffic router;
7. :mod:`.replica_sets`: the ReplicaSets' sizes, old ones scaled down; if nothing was
   scaled, :mod:`.steps`: the pause of a pause step;
8. :mod:`.progress`: the new status (next step, promotion, abort, conditions, phase).

An error a step returns (a missing object, a delayed DestinationRule) ends the sync with
the status as it was plus the error, as the controller logs it and retries; what was
written before it stays written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from pytest_canary.dataplane.argo_rollouts.api import Key, ReconcileError
from pytest_canary.dataplane.argo_rollouts.config import RolloutConfig
from pytest_canary.dataplane.argo_rollouts.status import ReplicaSetState, RolloutStatus
from pytest_canary.dataplane.argo_rollouts.sync.conditions import check_paused_conditions
from pytest_canary.dataplane.argo_rollouts.sync.context import Reconciled, SyncContext
from pytest_canary.dataplane.argo_rollouts.sync.progress import (
    invalid_spec_status,
    sync_status,
    template_or_steps_changed,
)
from pytest_canary.dataplane.argo_rollouts.sync.replica_sets import (
    create_new_replica_set,
    reconcile_replica_sets,
)
from pytest_canary.dataplane.argo_rollouts.sync.services import reconcile_services
from pytest_canary.dataplane.argo_rollouts.sync.steps import reconcile_pause
from pytest_canary.dataplane.argo_rollouts.sync.traffic import reconcile_traffic


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
    ctx = SyncContext(config, status, replica_sets, objects, now)
    if config.problems:
        return Reconciled(invalid_spec_status(ctx), tuple(ctx.rss.values()))
    create_new_replica_set(ctx)
    if ctx.fully_promoted() and ctx.prev.abort:
        ctx.remove_abort = True  # newRolloutContext: "Removing abort condition"
    check_paused_conditions(ctx)
    changed = template_or_steps_changed(ctx)
    try:
        if changed:
            new_status = sync_status(ctx, reset=True)
        else:
            reconcile_services(ctx)
            reconcile_traffic(ctx)
            if not reconcile_replica_sets(ctx):
                reconcile_pause(ctx)
            new_status = sync_status(ctx, reset=False)
    except ReconcileError as exc:
        error = str(exc)
        new_status = replace(ctx.prev, error=error)
        ctx.events.append(f"Error: {error}")
    else:
        new_status = replace(new_status, error="")
    return ctx.result(new_status)


__all__ = ["Reconciled", "SyncContext", "reconcile"]
