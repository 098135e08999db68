"""The names every step of the controller model shares: the Rollout's API group and kind,
the labels and annotations the controller writes, the objects' shapes and the error a
sync returns.

Upstream (argoproj/argo-rollouts, tag v1.9.1): ``pkg/apis/rollouts/v1alpha1``
(``DefaultRolloutUniqueLabelKey``, ``ManagedByRolloutsKey``,
``DefaultReplicaSetScaleDownDeadlineAnnotationKey``), ``utils/annotations``
(``RevisionAnnotation``).
"""

from __future__ import annotations

from typing import Any

from pytest_canary.rollout_spec import ARGO_ROLLOUTS

Manifest = dict[str, Any]
Key = tuple[str, str]

GROUP = "argoproj.io"
API_VERSION = "argoproj.io/v1alpha1"
KIND = "Rollout"
# v1alpha1.DefaultRolloutUniqueLabelKey / ManagedByRolloutsKey /
# DefaultReplicaSetScaleDownDeadlineAnnotationKey / annotations.RevisionAnnotation.
POD_TEMPLATE_HASH = "rollouts-pod-template-hash"
MANAGED_BY = "argo-rollouts.argoproj.io/managed-by"
SCALE_DOWN_DEADLINE = "argo-rollouts.argoproj.io/scale-down-deadline"
REVISION = "rollout.argoproj.io/revision"
MAX_WEIGHT = 100

SOURCE = {
    "canary": f"{ARGO_ROLLOUTS} rollout/canary.go",
    "replicas": f"{ARGO_ROLLOUTS} utils/replicaset/canary.go",
    "nginx": f"{ARGO_ROLLOUTS} rollout/trafficrouting/nginx/nginx.go",
    "istio": f"{ARGO_ROLLOUTS} rollout/trafficrouting/istio/istio.go",
    "service": f"{ARGO_ROLLOUTS} rollout/service.go",
    "plugin": f"{ARGO_ROLLOUTS} pkg/kubectl-argo-rollouts/cmd",
}


class ReconcileError(Exception):
    """An error the real controller returns from a sync (it logs it and retries)."""
