"""What ``kubectl argo rollouts`` does to a Rollout: the status merge patches of promote,
promote --full, abort and retry (what the plugin sends to the API server; the local
backend applies them to the model's status), and the template undo goes back to.

Upstream (argoproj/argo-rollouts, tag v1.9.1), ``pkg/kubectl-argo-rollouts/cmd``:

- **promote** (``cmd/promote/promote.go`` ``getPatches``): ``--full`` sets ``promoteFull``
  (unless already complete); otherwise clear the pause conditions, or, with none, skip the
  current step (``currentStepIndex`` + 1); ``spec.paused: false`` goes in a separate spec
  patch (:func:`promote_patch`).
- **abort** (``cmd/abort/abort.go``): ``{"abort": true}`` (:func:`abort_patch`).
- **retry** (``cmd/retry``): ``{"abort": false}`` (:func:`retry_patch`).
- **undo** (``cmd/undo/undo.go`` ``rolloutRevision``): the previous revision's template
  (:func:`undo_target`); skipped when the Rollout's template already matches it
  (``equalIgnoreHash``: ``apiequality.Semantic.DeepDerivative`` without the pod template
  hash label, :func:`equal_ignore_hash`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from pytest_canary.dataplane.argo_rollouts.api import POD_TEMPLATE_HASH
from pytest_canary.dataplane.argo_rollouts.config import RolloutConfig
from pytest_canary.dataplane.argo_rollouts.status import (
    ReplicaSetState,
    RolloutStatus,
    current_step,
)


def promote_patch(
    config: RolloutConfig, status: RolloutStatus, *, full: bool = False
) -> dict[str, Any]:
    """The status merge patch of ``kubectl argo rollouts promote [--full]``
    (``cmd/promote/promote.go`` ``getPatches``): ``--full`` sets ``promoteFull`` (unless
    already complete); otherwise clear the pause conditions, or, with none, skip the current
    step (``currentStepIndex`` + 1). ``spec.paused: false`` goes in a separate spec patch."""
    if full:
        return {} if status.completed else {"promoteFull": True}
    if status.pause_conditions:
        return {"pauseConditions": None}
    _, index = current_step(config, status)
    if index is None:
        return {}
    return {"pauseConditions": None, "currentStepIndex": min(index + 1, config.step_count)}


def abort_patch() -> dict[str, Any]:
    """``kubectl argo rollouts abort``: ``{"abort": true}`` (``cmd/abort/abort.go``)."""
    return {"abort": True}


def retry_patch() -> dict[str, Any]:
    """``kubectl argo rollouts retry rollout``: ``{"abort": false}`` (``cmd/retry``)."""
    return {"abort": False}


def apply_status_patch(status: RolloutStatus, patch: Mapping[str, Any]) -> RolloutStatus:
    """A JSON merge patch of the status fields the plugin patches, applied."""
    changes: dict[str, Any] = {}
    if "pauseConditions" in patch:
        changes["pause_conditions"] = ()
    if "currentStepIndex" in patch:
        changes["current_step_index"] = patch["currentStepIndex"]
    if "promoteFull" in patch:
        changes["promote_full"] = bool(patch["promoteFull"])
    if "abort" in patch:
        changes["abort"] = bool(patch["abort"])
    return replace(status, **changes)


def undo_target(replica_sets: Iterable[ReplicaSetState]) -> ReplicaSetState | None:
    """``kubectl argo rollouts undo`` (``cmd/undo/undo.go`` ``rolloutRevision``): the
    ReplicaSet of the second-highest revision, whose template replaces the Rollout's."""
    ordered = sorted(replica_sets, key=lambda rs: rs.revision, reverse=True)
    return ordered[1] if len(ordered) > 1 else None


def _derivative(wanted: Any, actual: Any) -> bool:
    """``apiequality.Semantic.DeepDerivative``: ``wanted`` equals ``actual`` where it is set
    (unset -- None, empty string, map or list -- fields of ``wanted`` are ignored)."""
    if wanted is None or wanted in ("", {}, []):
        return True
    if isinstance(wanted, Mapping):
        return isinstance(actual, Mapping) and all(
            _derivative(v, actual.get(k)) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(actual, list)
            and len(wanted) <= len(actual)
            and all(_derivative(w, a) for w, a in zip(wanted, actual, strict=False))
        )
    return bool(wanted == actual)


def _without_hash(template: Mapping[str, Any]) -> dict[str, Any]:
    meta = dict(template.get("metadata") or {})
    labels = meta.get("labels")
    if isinstance(labels, Mapping):
        meta["labels"] = {k: v for k, v in labels.items() if k != POD_TEMPLATE_HASH}
    return {**template, "metadata": meta}


def equal_ignore_hash(rollout_template: Mapping[str, Any], rs_template: Mapping[str, Any]) -> bool:
    """``undo.go`` ``equalIgnoreHash``: whether the Rollout's template already is the
    ReplicaSet's (``DeepDerivative`` of the Rollout's in the ReplicaSet's, the
    ``rollouts-pod-template-hash`` label left out of both), so undo is skipped."""
    return _derivative(_without_hash(rollout_template), _without_hash(rs_template))
