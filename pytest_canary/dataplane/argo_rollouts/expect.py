"""What the model is asked from outside a sync: whether a sync changed anything (the local
backend's loop), why the controller's syncs would fail on the applied objects (the
linter), and what weight and canary pods a step leads to (the cluster waits).

Upstream (argoproj/argo-rollouts, tag v1.9.1): the controller's own errors, from
``rollout/trafficrouting/nginx/nginx.go`` ``buildCanaryIngress``,
``rollout/trafficrouting/istio/istio.go`` ``ValidateHTTPRoutes`` and the informer caches;
the weight of ``rollout/trafficrouting.go`` ``reconcileTrafficRouting``; the replica counts
of ``utils/replicaset/canary.go``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_canary.dataplane.argo_rollouts.api import MAX_WEIGHT, Key, ReconcileError
from pytest_canary.dataplane.argo_rollouts.config import RolloutConfig
from pytest_canary.dataplane.argo_rollouts.replicas import (
    approximate_weighted_counts,
    traffic_routed_counts,
)
from pytest_canary.dataplane.argo_rollouts.routers import istio, nginx
from pytest_canary.dataplane.argo_rollouts.status import (
    ReplicaSetState,
    RolloutStatus,
    current_set_weight,
)
from pytest_canary.dataplane.argo_rollouts.sync import Reconciled


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


def routing_problems(config: RolloutConfig, objects: Mapping[Key, Mapping[str, Any]]) -> list[str]:
    """Why the controller's syncs would fail on these objects, before anything runs: a
    Service, stable Ingress, VirtualService or DestinationRule it names is missing, the
    stable Ingress has no rule using the stable Service (``buildCanaryIngress``), an Ingress
    of the canary Ingress's name belongs to something else (``SetWeightPerIngress``), or a route
    lacks the canary or stable destination (``ValidateHTTPRoutes``). The messages are the
    controller's own errors."""
    found: list[str] = []
    for name in (config.stable_service, config.canary_service):
        if name and ("Service", name) not in objects:
            found.append(f'services "{name}" not found')
    if config.nginx is not None:
        for name in config.nginx.stable_ingresses:
            existing = objects.get(("Ingress", nginx.canary_ingress_name(config.name, name)))
            try:
                stable = nginx.find_stable_ingress(objects, name)
                nginx.canary_ingress(config, stable, 0, existing)
            except ReconcileError as exc:
                found.append(str(exc))
    if config.istio is not None:
        if config.istio.destination_rule:
            try:
                istio.find_destination_rule(objects, config.istio.destination_rule)
            except ReconcileError as exc:
                found.append(str(exc))
        for ref in config.istio.virtual_services:
            try:
                vs = istio.find_virtual_service(objects, ref)
                istio.virtual_service_with_weight(config, vs, ref, 0)
            except ReconcileError as exc:
                found.append(str(exc))
    return found


def retained_annotation_notes(
    config: RolloutConfig, objects: Mapping[Key, Mapping[str, Any]]
) -> list[str]:
    """What the canary Ingresses still route by although the Rollout does not ask for it:
    ingress-nginx canary annotations the controller keeps (``getDesiredAnnotations`` never
    removes one, see :mod:`.routers.nginx`), e.g. the ``canary-by-header`` of a removed
    ``additionalIngressAnnotations``. One sentence per canary Ingress, saying how to remove
    them; empty when there is nothing of the kind."""
    notes: list[str] = []
    if config.nginx is None:
        return notes
    for stable_name in config.nginx.stable_ingresses:
        name = nginx.canary_ingress_name(config.name, stable_name)
        canary = objects.get(("Ingress", name))
        if canary is None:
            continue
        kept = nginx.retained_routing_annotations(config, canary)
        if not kept:
            continue
        listed = ", ".join(f"{key}: {value!r}" for key, value in sorted(kept.items()))
        removal = " ".join(f"{key}-" for key in sorted(kept))
        them = "them" if len(kept) > 1 else "it"
        notes.append(
            f"canary Ingress {name} keeps {listed}, which the Rollout does not set: Argo "
            "Rollouts never removes an annotation from its canary Ingress (nginx.go "
            f"getDesiredAnnotations), so ingress-nginx still routes by {them}; remove {them} "
            f"with kubectl annotate ingress {name} {removal} (or delete the Ingress: the "
            "controller creates it again as the Rollout says)"
        )
    return notes


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
