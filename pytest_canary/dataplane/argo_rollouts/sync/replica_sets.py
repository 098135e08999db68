"""ReplicaSets: the new one for the template, then each ReplicaSet's size, and when old
ones go.

Upstream (argoproj/argo-rollouts, tag v1.9.1):

- **ReplicaSets per pod template** (``rollout/controller.go`` ``newRolloutContext``,
  ``rollout/sync.go`` ``createDesiredReplicaSet``): a template no ReplicaSet runs gets a new
  one, revision = highest + 1, 0 replicas, pods labelled ``rollouts-pod-template-hash``
  (``syncReplicaSetRevision``: the new ReplicaSet's revision stays the highest). The stable
  ReplicaSet is the one whose hash is ``status.stableRS`` (``utils/replicaset``
  ``GetStableRS``); the others are "other" ReplicaSets.
- **Sizes** (``rollout/canary.go`` ``reconcileCanaryReplicaSets``): nothing while the user
  paused the Rollout; the stable ReplicaSet first
  (``reconcileCanaryStableReplicaSet``), then the new one (``rollout/replicaset.go``
  ``reconcileNewReplicaSet``), then the others, each to
  :mod:`pytest_canary.dataplane.argo_rollouts.replicas`' counts
  (``scaleReplicaSetAndRecordEvent``); a sync that scales one stops there.
- **Old ReplicaSets** (``rollout/canary.go`` ``scaleDownOldReplicaSetsForCanary``,
  ``rollout/replicaset.go`` ``scaleDownDelayHelper`` / ``isReplicaSetReferenced``): basic
  canary: scaled down within maxUnavailable; traffic routing: once fully promoted an
  unreferenced old ReplicaSet gets ``scale-down-deadline`` = now + ``scaleDownDelaySeconds``
  (default 30) and is scaled to 0 after it.
- **Abort** (``rollout/replicaset.go`` ``reconcileNewReplicaSet`` /
  ``shouldDelayScaleDownOnAbort``): with traffic routing the canary ReplicaSet keeps its
  pods until the stable one is fully available, then for ``abortScaleDownDelaySeconds``
  (default 30; 0 = keep them).
"""

from __future__ import annotations

from dataclasses import replace

from pytest_canary.dataplane.argo_rollouts.api import POD_TEMPLATE_HASH
from pytest_canary.dataplane.argo_rollouts.replicas import desired_counts
from pytest_canary.dataplane.argo_rollouts.status import ReplicaSetState
from pytest_canary.dataplane.argo_rollouts.sync.context import SyncContext


def create_new_replica_set(ctx: SyncContext) -> None:
    """``createDesiredReplicaSet`` for a template no ReplicaSet runs, else
    ``syncReplicaSetRevision``."""
    config = ctx.config
    if config.template_hash not in ctx.rss:
        revision = max((rs.revision for rs in ctx.rss.values()), default=0) + 1
        ctx.rss[config.template_hash] = ReplicaSetState(
            config.template_hash, revision, created=ctx.now
        )
        ctx.events.append(
            "NewReplicaSetCreated: Created ReplicaSet "
            f"{config.replicaset_name(config.template_hash)} (revision {revision})"
        )
    else:
        # syncReplicaSetRevision: the new ReplicaSet's revision is the highest.
        top = (
            max(rs.revision for h, rs in ctx.rss.items() if h != config.template_hash)
            if len(ctx.rss) > 1
            else 0
        )
        if ctx.new.revision <= top:
            ctx.rss[config.template_hash] = replace(ctx.new, revision=top + 1)


def delay_scale_down_on_abort(ctx: SyncContext) -> bool:
    """``shouldDelayScaleDownOnAbort``."""
    return (
        ctx.aborted()
        and ctx.stable is not None
        and ctx.config.traffic_routing
        and ctx.config.abort_scale_down_delay is not None
    )


def scale(ctx: SyncContext, rs: ReplicaSetState, count: int) -> bool:
    """``scaleReplicaSetAndRecordEvent``: True when the size changed."""
    if rs.replicas == count:
        return False
    deadline = rs.scale_down_deadline
    if count == 0 and not delay_scale_down_on_abort(ctx):
        deadline = None
    direction = "up" if count > rs.replicas else "down"
    ctx.events.append(
        f"ScalingReplicaSet: Scaled {direction} ReplicaSet {ctx.config.replicaset_name(rs.hash)} "
        f"(revision {rs.revision}) from {rs.replicas} to {count}"
    )
    ctx.rss[rs.hash] = replace(rs, replicas=count, scale_down_deadline=deadline)
    return True


def reconcile_replica_sets(ctx: SyncContext) -> bool:
    """``reconcileCanaryReplicaSets``: True when something was scaled."""
    if ctx.config.paused:
        return False  # haltProgress: user paused
    if not delay_scale_down_on_abort(ctx):
        ctx.set_deadline(ctx.new, None)  # removeScaleDownDeadlines
    if ctx.stable is not None:
        ctx.set_deadline(ctx.stable, None)
    # reconcileCanaryStableReplicaSet
    stable = ctx.stable
    if stable is not None and stable.hash != ctx.new.hash:
        # With traffic routing this uses the weights of the previous status on purpose
        # (canary.go comment).
        _, desired_stable = desired_counts(ctx.config, ctx.prev, ctx.new, stable, ctx.others)
        if scale(ctx, stable, desired_stable):
            return True
    if reconcile_new_replica_set(ctx):
        return True
    return scale_down_others(ctx)


def reconcile_new_replica_set(ctx: SyncContext) -> bool:
    """``reconcileNewReplicaSet``: True when it was scaled."""
    new = ctx.new
    count, _ = desired_counts(ctx.config, ctx.prev, new, ctx.stable, ctx.others)
    if delay_scale_down_on_abort(ctx):
        assert ctx.config.abort_scale_down_delay is not None and ctx.stable is not None
        if new.scale_down_deadline is not None:
            if new.scale_down_deadline > ctx.now:
                ctx.requeue.append(new.scale_down_deadline)
                return False
            count = 0
        else:
            if ctx.stable.available == ctx.config.replicas:
                ctx.set_deadline(new, ctx.now + ctx.config.abort_scale_down_delay)
                ctx.requeue.append(ctx.now + ctx.config.abort_scale_down_delay)
            return False  # leave the canary up until annotated
    return scale(ctx, ctx.new, count)


def referenced(ctx: SyncContext, rs: ReplicaSetState) -> bool:
    """``isReplicaSetReferenced``."""
    refs = {ctx.prev.stable_rs, ctx.prev.current_pod_hash}
    if ctx.prev.weights is not None:
        refs |= {ctx.prev.weights.canary_hash, ctx.prev.weights.stable_hash}
    if rs.hash in refs:
        return True
    for name in (ctx.config.canary_service, ctx.config.stable_service):
        svc = ctx.objects.get(("Service", name)) if name else None
        if (
            svc
            and ((svc.get("spec") or {}).get("selector") or {}).get(POD_TEMPLATE_HASH) == rs.hash
        ):
            return True
    if ctx.config.istio is not None and ctx.config.istio.destination_rule:
        dr = ctx.objects.get(("DestinationRule", ctx.config.istio.destination_rule)) or {}
        for subset in (dr.get("spec") or {}).get("subsets") or []:
            if (subset.get("labels") or {}).get(POD_TEMPLATE_HASH) == rs.hash:
                return True
    return False


def scale_down_others(ctx: SyncContext) -> bool:
    """``reconcileOtherReplicaSets`` / ``scaleDownOldReplicaSetsForCanary``."""
    others = [rs for rs in ctx.others if rs.replicas > 0]
    if not others:
        return False
    scaled = 0
    # cleanupUnhealthyReplicas, oldest first
    for rs in sorted(others, key=lambda r: r.created):
        if rs.replicas != rs.available:
            scaled += rs.replicas - rs.available
            scale(ctx, rs, rs.available)
    others = [ctx.rss[rs.hash] for rs in others]
    available = sum(rs.available for rs in ctx.rss.values())
    _, max_unavailable = ctx.config.fenceposts()
    max_scale_down = available - (ctx.config.replicas - max_unavailable)
    if max_scale_down <= 0:
        return scaled > 0
    for rs in sorted(others, key=lambda r: r.revision, reverse=True):
        rs = ctx.rss[rs.hash]
        if ctx.config.traffic_routing and referenced(ctx, rs):
            continue
        if max_scale_down <= 0:
            break
        if rs.replicas == 0:
            continue
        desired = 0
        if not ctx.config.traffic_routing:
            if rs.replicas > max_scale_down:
                desired = rs.replicas - max_scale_down
        elif ctx.fully_promoted() or rs.scale_down_deadline is not None:
            desired = scale_down_delay(ctx, rs)
        if rs.replicas == desired:
            continue
        scale(ctx, rs, desired)
        max_scale_down -= rs.replicas - desired
        scaled += rs.replicas - desired
    return scaled > 0


def scale_down_delay(ctx: SyncContext, rs: ReplicaSetState) -> int:
    """``scaleDownDelayHelper`` (no revision limit): annotate a deadline, keep the pods
    until it passes. With scaleDownDelaySeconds 0 nothing is annotated and the pods stay
    (addScaleDownDelay removes the annotation; the size is kept)."""
    if rs.scale_down_deadline is None:
        if ctx.config.scale_down_delay > 0:
            deadline = ctx.now + ctx.config.scale_down_delay
            ctx.set_deadline(rs, deadline)
            ctx.requeue.append(deadline)
        return rs.replicas
    if rs.scale_down_deadline > ctx.now:
        ctx.requeue.append(rs.scale_down_deadline)
        return rs.replicas
    return 0
