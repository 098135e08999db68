"""Services: which ReplicaSet the stable and canary Services select.

Upstream (argoproj/argo-rollouts, tag v1.9.1):

- **Services** (``rollout/service.go`` ``reconcileStableAndCanaryService`` /
  ``ensureSVCTargets``): the stable Service selects the stable ReplicaSet's hash, the canary
  Service the new one's (the stable's when a basic canary aborts); a Service not yet
  managed is switched only to a fully available ReplicaSet (``IsReplicaSetAvailable``), any
  switch needs one available pod (``IsReplicaSetPartiallyAvailable``); the selector gains
  ``rollouts-pod-template-hash`` and the Service is annotated
  ``argo-rollouts.argoproj.io/managed-by`` (``switchServiceSelector``, which records the
  event ``SwitchService`` "Switched selector for service 'S' from 'OLD' to 'NEW'"; OLD is
  empty when the selector had no hash). A missing Service is the controller's ``not found``
  error.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pytest_canary.dataplane.argo_rollouts.api import (
    MANAGED_BY,
    POD_TEMPLATE_HASH,
    Manifest,
    ReconcileError,
)
from pytest_canary.dataplane.argo_rollouts.status import ReplicaSetState
from pytest_canary.dataplane.argo_rollouts.sync.context import SyncContext


def switch_service(service: Mapping[str, Any], pod_hash: str, rollout: str) -> Manifest:
    """``switchServiceSelector``: the selector gains ``rollouts-pod-template-hash``."""
    svc = copy.deepcopy(dict(service))
    meta = svc.setdefault("metadata", {})
    meta.setdefault("annotations", {})[MANAGED_BY] = rollout
    svc.setdefault("spec", {}).setdefault("selector", {})[POD_TEMPLATE_HASH] = pod_hash
    return svc


def ensure_service(ctx: SyncContext, name: str, rs: ReplicaSetState | None, check: bool) -> None:
    """``ensureSVCTargets``."""
    if rs is None or not name:
        return
    svc = ctx.objects.get(("Service", name))
    if svc is None:
        raise ReconcileError(f'services "{name}" not found')
    selector = (svc.get("spec") or {}).get("selector") or {}
    if selector.get(POD_TEMPLATE_HASH) == rs.hash:
        return
    managed = MANAGED_BY in ((svc.get("metadata") or {}).get("annotations") or {})
    if not managed and check and not (rs.replicas and rs.available and rs.replicas <= rs.available):
        return  # adopting: wait for a fully available ReplicaSet (IsReplicaSetAvailable)
    if check and rs.available == 0:
        return  # IsReplicaSetPartiallyAvailable
    ctx.write(switch_service(svc, rs.hash, ctx.config.name))
    # switchServiceSelector records "Switched selector for service '%s' from '%s' to '%s'"
    # per patch. A sync's writes are applied together here (the package docstring), so its
    # events say what the sync did to the Service in the end: after an abort with traffic
    # routing the switch to the canary and back to the stable nets out, and neither is
    # recorded (upstream records both, argoproj/argo-rollouts#3078).
    before = ((ctx.original.get(("Service", name)) or {}).get("spec") or {}).get("selector") or {}
    said = f"SwitchService: Switched selector for service '{name}' from "
    ctx.events[:] = [e for e in ctx.events if not e.startswith(said)]
    if before.get(POD_TEMPLATE_HASH) != rs.hash:
        ctx.events.append(f"{said}'{before.get(POD_TEMPLATE_HASH) or ''}' to '{rs.hash}'")


def reconcile_services(ctx: SyncContext) -> None:
    """``reconcileStableAndCanaryService``."""
    ensure_service(ctx, ctx.config.stable_service, ctx.stable, True)
    if ctx.aborted() and not ctx.config.traffic_routing:
        ensure_service(ctx, ctx.config.canary_service, ctx.stable, True)
        return
    ensure_service(ctx, ctx.config.canary_service, ctx.new, True)
