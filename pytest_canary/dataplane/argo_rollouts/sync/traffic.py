"""Traffic: the weight the sync sends to the canary, and what it writes to the traffic
router to get it (:mod:`pytest_canary.dataplane.argo_rollouts.routers`).

Upstream (argoproj/argo-rollouts, tag v1.9.1):

- **Traffic weight** (``rollout/trafficrouting.go`` ``reconcileTrafficRouting``): fully
  promoted -> 0 (managed routes removed); aborted -> 0 and the canary Service back on the
  stable ReplicaSet; no canary pod available -> 0; ``promoteFull`` -> the weight already
  set; at a step whose replica counts are not reached yet -> the previous step's setWeight
  (the weight advances only once the canary's pods are available); else the current
  setWeight, or 100 after the last step. Written only when the stable ReplicaSet has the
  pods for the rest (``checkReplicasAvailable``); a setHeaderRoute / setMirrorRoute step
  is written first, then ``UpdateHash``, then ``SetWeight``, then
  ``status.canary.weights``.
- **DestinationRule delay** (``rollout/trafficrouting/istio/istio.go``
  ``shouldDelayDestinationRuleUpdate``, subset splitting only): ``UpdateHash`` waits while
  a ReplicaSet that takes traffic is not fully available.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_canary.dataplane.argo_rollouts.api import MAX_WEIGHT, ReconcileError
from pytest_canary.dataplane.argo_rollouts.config import IstioVirtualServiceRef
from pytest_canary.dataplane.argo_rollouts.replicas import at_desired_counts
from pytest_canary.dataplane.argo_rollouts.routers import istio, nginx
from pytest_canary.dataplane.argo_rollouts.status import (
    TrafficWeights,
    current_set_weight,
    current_step,
)
from pytest_canary.dataplane.argo_rollouts.sync.context import SyncContext
from pytest_canary.dataplane.argo_rollouts.sync.services import ensure_service
from pytest_canary.rollout_spec import Step


def desired_weight(ctx: SyncContext) -> tuple[int, bool]:
    """(weight, whether managed routes are removed), the branches of
    ``reconcileTrafficRouting``."""
    _, index = current_step(ctx.config, ctx.prev)
    if ctx.fully_promoted():
        return 0, True
    if ctx.aborted():
        ensure_service(ctx, ctx.config.canary_service, ctx.stable, False)
        return 0, True
    if ctx.new.available == 0:
        return 0, True
    if ctx.prev.promote_full:
        return (ctx.prev.weights.canary_weight if ctx.prev.weights else 0), True
    if index is None:
        return 0, False
    at_desired = at_desired_counts(ctx.config, ctx.prev, ctx.new, ctx.stable, ctx.others)
    if not at_desired:
        # The previous setWeight: the canary is not ready for the next weight yet.
        for i in range(index - 1, -1, -1):
            if ctx.config.steps[i].kind == "setWeight":
                return int(ctx.config.steps[i].weight or 0), False
        return 0, False
    if index != ctx.config.step_count:
        return current_set_weight(ctx.config, ctx.prev), False
    return MAX_WEIGHT, False


def reconcile_traffic(ctx: SyncContext) -> None:
    """``reconcileTrafficRouting``: write the weight (and a header / mirror route step) to
    the traffic router and record it in ``status.canary.weights``."""
    if not ctx.config.traffic_routing:
        ctx.weights = None
        return
    weight, remove_managed = desired_weight(ctx)
    stable_hash = ctx.stable.hash if ctx.stable else ""
    canary_hash = ctx.new.hash
    if remove_managed:
        remove_managed_routes(ctx)
    # checkReplicasAvailable: the stable ReplicaSet can take the rest of the traffic.
    stable = ctx.stable
    needed = (MAX_WEIGHT - weight) * ctx.config.replicas // MAX_WEIGHT
    if stable is None or stable.available < needed:
        return
    step, _ = current_step(ctx.config, ctx.prev)
    if step is not None and ctx.new.revision > 1 and step.kind in _STEP_ROUTES:
        set_step_route(ctx, step)
    update_hash(ctx, canary_hash, stable_hash)
    set_weight(ctx, weight)
    new_weights = TrafficWeights(weight, MAX_WEIGHT - weight, canary_hash, stable_hash)
    if new_weights != ctx.prev.weights:
        before = ctx.prev.weights.canary_weight if ctx.prev.weights else None
        change = f"to {weight}" if before is None else f"from {before} to {weight}"
        if before != weight:
            ctx.events.append(f"TrafficWeightUpdated: Traffic weight updated {change}")
    ctx.weights = new_weights


def _virtual_services(
    ctx: SyncContext,
) -> list[tuple[IstioVirtualServiceRef, Mapping[str, Any]]]:
    assert ctx.config.istio is not None
    return [
        (ref, istio.find_virtual_service(ctx.objects, ref))
        for ref in ctx.config.istio.virtual_services
    ]


def _dr_host(ctx: SyncContext) -> str | None:
    assert ctx.config.istio is not None
    if not ctx.config.istio.destination_rule:
        return None
    dr = istio.find_destination_rule(ctx.objects, ctx.config.istio.destination_rule)
    return str((dr.get("spec") or {}).get("host", "")) or None


def remove_managed_routes(ctx: SyncContext) -> None:
    """``RemoveManagedRoutes``."""
    if ctx.config.istio is None or not ctx.config.managed_routes:
        return  # nginx.go RemoveManagedRoutes: nothing to do
    for _, vs in _virtual_services(ctx):
        ctx.write(istio.virtual_service_without_managed_routes(ctx.config, vs))


# The Istio builders of the routes a step sets (SetHeaderRoute / SetMirrorRoute).
_STEP_ROUTES = {
    "setHeaderRoute": istio.virtual_service_with_header_route,
    "setMirrorRoute": istio.virtual_service_with_mirror_route,
}


def set_step_route(ctx: SyncContext, step: Step) -> None:
    """``SetHeaderRoute`` / ``SetMirrorRoute``: the route a setHeaderRoute or
    setMirrorRoute step asks for."""
    if ctx.config.istio is None:
        return  # nginx.go SetHeaderRoute / SetMirrorRoute: nothing to do
    build = _STEP_ROUTES[step.kind]
    host = _dr_host(ctx)
    for ref, vs in _virtual_services(ctx):
        ctx.write(build(ctx.config, vs, ref, step, host))


def update_hash(ctx: SyncContext, canary_hash: str, stable_hash: str) -> None:
    """``UpdateHash``."""
    config = ctx.config
    if config.istio is None:
        return  # nginx.go UpdateHash: nothing to do
    if not config.canary_service and not config.stable_service:
        # shouldDelayDestinationRuleUpdate
        for rs in ctx.rss.values():
            if rs.replicas == 0 or rs.hash not in (stable_hash, canary_hash):
                continue
            if ctx.aborted() and rs.hash == canary_hash:
                continue
            if not (rs.replicas and rs.available and rs.replicas <= rs.available):
                raise ReconcileError(
                    "delaying destination rule switch: ReplicaSet "
                    f"{config.replicaset_name(rs.hash)} not fully available"
                )
    if not config.istio.destination_rule:
        return
    dr = istio.find_destination_rule(ctx.objects, config.istio.destination_rule)
    ctx.write(istio.destination_rule_with_hashes(config, dr, canary_hash, stable_hash))


def set_weight(ctx: SyncContext, weight: int) -> None:
    """``SetWeight``: the canary Ingresses (nginx), the VirtualServices (Istio)."""
    config = ctx.config
    if config.nginx is not None:
        for stable_name in config.nginx.stable_ingresses:
            stable = nginx.find_stable_ingress(ctx.objects, stable_name)
            name = nginx.canary_ingress_name(config.name, stable_name)
            existing = ctx.objects.get(("Ingress", name))
            ctx.write(nginx.canary_ingress(config, stable, weight, existing))
    if config.istio is not None:
        for ref, vs in _virtual_services(ctx):
            ctx.write(istio.virtual_service_with_weight(config, vs, ref, weight))
