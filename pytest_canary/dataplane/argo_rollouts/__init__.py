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

The modules follow the controller's data flow; each one's docstring lists the upstream
rules it reproduces (repository argoproj/argo-rollouts, tag v1.9.1) with the file and
function they come from:

- :mod:`.api`: the API group and kind, the labels and annotations the controller writes,
  :class:`ReconcileError`;
- :mod:`.hashes`: the pod template hash and the step hash;
- :mod:`.config`: reading the Rollout (:func:`read_rollout` -> :class:`RolloutConfig`);
- :mod:`.status`: its ReplicaSets and status, the current step, the phase, a live
  Rollout's status (:func:`read_status`, :func:`client_phase`);
- :mod:`.replicas`: the canary's and the stable's replica counts
  (``utils/replicaset/canary.go``);
- :mod:`.routers`: what it writes to the traffic router (the nginx canary Ingress, Istio
  VirtualService routes and DestinationRule subsets);
- :mod:`.sync`: one sync, :func:`reconcile`, in its steps: context, services, traffic,
  ReplicaSets, steps and pauses, conditions, progress;
- :mod:`.commands`: what ``kubectl argo rollouts`` promote / abort / retry / undo patch;
- :mod:`.expect`: what the local backend's loop, the linter and the cluster waits ask.

Stated simplification: after an abort with traffic routing, each upstream sync switches the
canary Service to the canary ReplicaSet (``reconcileStableAndCanaryService``) and back to the
stable one (``reconcileTrafficRouting``), reading a cached Service in between, so its
selector flaps from sync to sync while the canary has pods (argoproj/argo-rollouts#3078,
open), recording a ``SwitchService`` event for each switch. Here a sync's writes are applied
together, so the canary Service stays on the stable ReplicaSet, as PR #2540 intended, and
the events say so: a sync records one ``SwitchService`` per Service whose selector it
changed in the end, none for a switch it undid; only traffic forced to the canary Service
(e.g. ``canary-by-header``) would see the difference.

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

from pytest_canary.dataplane.argo_rollouts.api import (
    API_VERSION,
    GROUP,
    KIND,
    MANAGED_BY,
    MAX_WEIGHT,
    POD_TEMPLATE_HASH,
    REVISION,
    SCALE_DOWN_DEADLINE,
    SOURCE,
    Key,
    Manifest,
    ReconcileError,
)
from pytest_canary.dataplane.argo_rollouts.commands import (
    abort_patch,
    apply_status_patch,
    equal_ignore_hash,
    promote_patch,
    retry_patch,
    undo_target,
)
from pytest_canary.dataplane.argo_rollouts.config import (
    DEFAULT_ABORT_SCALE_DOWN_DELAY,
    DEFAULT_SCALE_DOWN_DELAY,
    DEFAULT_SURGE,
    DEFAULT_UNAVAILABLE,
    NGINX_PREFIX,
    IstioRouting,
    IstioVirtualServiceRef,
    NginxRouting,
    RolloutConfig,
    read_rollout,
)
from pytest_canary.dataplane.argo_rollouts.expect import (
    expected_canary_replicas,
    expected_weight,
    retained_annotation_notes,
    routing_problems,
    settled,
)
from pytest_canary.dataplane.argo_rollouts.hashes import (
    pod_template_hash,
    step_hash,
)
from pytest_canary.dataplane.argo_rollouts.replicas import (
    approximate_weighted_counts,
    at_desired_counts,
    basic_canary_counts,
    canary_replicas_or_weight,
    desired_counts,
    set_canary_scale,
    traffic_routed_counts,
    traffic_weight_to_replicas,
)
from pytest_canary.dataplane.argo_rollouts.routers.istio import (
    destination_rule_with_hashes,
    virtual_service_with_header_route,
    virtual_service_with_mirror_route,
    virtual_service_with_weight,
    virtual_service_without_managed_routes,
)
from pytest_canary.dataplane.argo_rollouts.routers.nginx import (
    CANARY_INGRESS_SUFFIX,
    ROUTING_ANNOTATIONS,
    canary_ingress,
    canary_ingress_name,
    desired_annotations,
    owner_reference,
    retained_routing_annotations,
)
from pytest_canary.dataplane.argo_rollouts.status import (
    ABORTED_REASON,
    DEGRADED,
    HEALTHY,
    INVALID_SPEC,
    NEW_RS_AVAILABLE,
    PAUSE_STEP,
    PAUSED,
    PAUSED_REASON,
    PROGRESSING,
    RESUMED_REASON,
    RETRY_REASON,
    RS_UPDATED,
    Condition,
    PauseCondition,
    ReplicaSetState,
    RolloutStatus,
    TrafficWeights,
    calculate_phase,
    client_phase,
    current_set_weight,
    current_step,
    read_status,
    with_condition,
)
from pytest_canary.dataplane.argo_rollouts.sync import Reconciled, reconcile
from pytest_canary.dataplane.argo_rollouts.sync.services import (
    switch_service,
)

__all__ = [
    "ABORTED_REASON",
    "API_VERSION",
    "CANARY_INGRESS_SUFFIX",
    "DEFAULT_ABORT_SCALE_DOWN_DELAY",
    "DEFAULT_SCALE_DOWN_DELAY",
    "DEFAULT_SURGE",
    "DEFAULT_UNAVAILABLE",
    "DEGRADED",
    "GROUP",
    "HEALTHY",
    "INVALID_SPEC",
    "KIND",
    "MANAGED_BY",
    "MAX_WEIGHT",
    "NEW_RS_AVAILABLE",
    "NGINX_PREFIX",
    "PAUSED",
    "PAUSED_REASON",
    "PAUSE_STEP",
    "POD_TEMPLATE_HASH",
    "PROGRESSING",
    "RESUMED_REASON",
    "RETRY_REASON",
    "REVISION",
    "ROUTING_ANNOTATIONS",
    "RS_UPDATED",
    "SCALE_DOWN_DEADLINE",
    "SOURCE",
    "Condition",
    "IstioRouting",
    "IstioVirtualServiceRef",
    "Key",
    "Manifest",
    "NginxRouting",
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
    "at_desired_counts",
    "basic_canary_counts",
    "calculate_phase",
    "canary_ingress",
    "canary_ingress_name",
    "canary_replicas_or_weight",
    "client_phase",
    "current_set_weight",
    "current_step",
    "desired_annotations",
    "desired_counts",
    "destination_rule_with_hashes",
    "equal_ignore_hash",
    "expected_canary_replicas",
    "expected_weight",
    "owner_reference",
    "pod_template_hash",
    "promote_patch",
    "read_rollout",
    "read_status",
    "reconcile",
    "retained_annotation_notes",
    "retained_routing_annotations",
    "retry_patch",
    "routing_problems",
    "set_canary_scale",
    "settled",
    "step_hash",
    "switch_service",
    "traffic_routed_counts",
    "traffic_weight_to_replicas",
    "undo_target",
    "virtual_service_with_header_route",
    "virtual_service_with_mirror_route",
    "virtual_service_with_weight",
    "virtual_service_without_managed_routes",
    "with_condition",
]
