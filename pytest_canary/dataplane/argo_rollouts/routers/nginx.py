"""The canary Ingress the controller makes for ingress-nginx, which
:mod:`pytest_canary.dataplane.nginx` then routes.

Upstream (argoproj/argo-rollouts, tag v1.9.1):

- **ingress-nginx** (``rollout/trafficrouting/nginx/nginx.go`` ``buildCanaryIngress``,
  ``utils/ingress`` ``GetCanaryIngressName``): Ingress ``<rollout>-<stableIngress>-canary``
  with the stable Ingress's rules that use the stable Service, pointed at the canary
  Service, TLS and class copied, ``additionalIngressAnnotations`` (prefixed),
  ``canaryIngressAnnotations`` (as written), then always ``canary: "true"`` and
  ``canary-weight``; existing annotations kept (``getDesiredAnnotations``). A missing stable
  Ingress is the cache error of ``SetWeightPerIngress``. The nginx router's ``UpdateHash``,
  ``SetHeaderRoute``, ``SetMirrorRoute`` and ``RemoveManagedRoutes`` do nothing.
- **Ownership** (``buildCanaryIngress``: ``SetOwnerReferences`` with
  ``metav1.NewControllerRef``): the canary Ingress is the Rollout's, garbage-collected with
  it. An Ingress of that name the Rollout does not control (``SetWeightPerIngress``:
  ``metav1.IsControlledBy``) is never touched: every sync fails with "canary ingress `X`
  controlled by different object".
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pytest_canary.dataplane.argo_rollouts.api import (
    API_VERSION,
    KIND,
    Key,
    Manifest,
    ReconcileError,
)
from pytest_canary.dataplane.argo_rollouts.config import RolloutConfig

CANARY_INGRESS_SUFFIX = "-canary"


def find_stable_ingress(objects: Mapping[Key, Mapping[str, Any]], name: str) -> Mapping[str, Any]:
    """The stable Ingress ``name`` from the controller's cache.

    Raises:
        ReconcileError: it is not there (nginx.go ``SetWeightPerIngress``).
    """
    found = objects.get(("Ingress", name))
    if found is None:
        raise ReconcileError(
            f'error retrieving stableIngress `{name}` from cache: ingress "{name}" not found'
        )
    return found


def canary_ingress_name(rollout: str, stable_ingress: str) -> str:
    """``GetCanaryIngressName``: ``<rollout>-<stableIngress>-canary``, the prefix cut to
    fit 253 characters."""
    prefix = f"{rollout}-{stable_ingress}"[: 253 - len(CANARY_INGRESS_SUFFIX)]
    return prefix + CANARY_INGRESS_SUFFIX


# The annotations buildCanaryIngress always writes last, whatever the Rollout's say.
ALWAYS_WRITTEN = ("canary", "canary-weight")


def copied_annotations(config: RolloutConfig) -> list[tuple[str, str, str, str]]:
    """What ``buildCanaryIngress`` copies from the Rollout onto the canary Ingress and keeps:
    ``(field, key as written, key on the canary Ingress, value)`` for
    ``additionalIngressAnnotations`` (prefixed with the annotation prefix unless they carry
    it) then ``canaryIngressAnnotations`` (as written, overwriting a collision); the
    ``canary`` and ``canary-weight`` the controller always sets are left out."""
    if config.nginx is None:
        return []
    prefix = config.nginx.annotation_prefix
    copied: dict[str, tuple[str, str, str, str]] = {}
    for key, value in config.nginx.additional_annotations.items():
        written = key if key.startswith(prefix) else f"{prefix}/{key}"
        copied[written] = ("additionalIngressAnnotations", key, written, value)
    for key, value in config.nginx.canary_annotations.items():
        copied[key] = ("canaryIngressAnnotations", key, key, value)
    always = {f"{prefix}/{name}" for name in ALWAYS_WRITTEN}
    return [entry for written, entry in copied.items() if written not in always]


def canary_ingress(
    config: RolloutConfig,
    stable_ingress: Mapping[str, Any],
    weight: int,
    existing: Mapping[str, Any] | None = None,
) -> Manifest:
    """The canary Ingress ``buildCanaryIngress`` makes from the stable Ingress.

    Raises:
        ReconcileError: the stable Ingress has no rule using the stable Service, or
            ``existing`` (the Ingress of the canary's name) is not controlled by the Rollout.
    """
    assert config.nginx is not None
    prefix = config.nginx.annotation_prefix
    spec = stable_ingress.get("spec") or {}
    meta = stable_ingress.get("metadata") or {}
    rules = []
    for rule in spec.get("rules") or []:
        copied = copy.deepcopy(dict(rule))
        uses_stable = False
        for path in (copied.get("http") or {}).get("paths") or []:
            service = (path.get("backend") or {}).get("service") or {}
            if service.get("name") == config.stable_service:
                uses_stable = True
                service["name"] = config.canary_service
        if uses_stable:
            rules.append(copied)
    if not rules:
        raise ReconcileError(
            f"ingress `{meta.get('name')}` has no rules using service {config.stable_service} "
            "backend"
        )
    name = canary_ingress_name(config.name, str(meta.get("name", "")))
    if existing is not None and not controlled_by_rollout(existing, config):
        # nginx.go SetWeightPerIngress: "Only modify canaryIngress if it is controlled by
        # this Rollout".
        raise ReconcileError(f"canary ingress `{name}` controlled by different object")
    annotations: dict[str, str] = {}
    legacy_class = (meta.get("annotations") or {}).get("kubernetes.io/ingress.class")
    if legacy_class is not None:
        annotations["kubernetes.io/ingress.class"] = str(legacy_class)
    for key, value in config.nginx.additional_annotations.items():
        annotations[key if key.startswith(prefix) else f"{prefix}/{key}"] = value
    annotations.update(config.nginx.canary_annotations)
    # Always set, whatever the annotations above said (nginx.go buildCanaryIngress).
    annotations[f"{prefix}/canary"] = "true"
    annotations[f"{prefix}/canary-weight"] = str(weight)
    for key, value in ((existing or {}).get("metadata") or {}).get("annotations", {}).items():
        annotations.setdefault(key, value)  # getDesiredAnnotations
    body: Manifest = {"rules": rules}
    if spec.get("tls") is not None:
        body["tls"] = copy.deepcopy(spec["tls"])
    if spec.get("ingressClassName") is not None:
        body["ingressClassName"] = spec["ingressClassName"]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "annotations": annotations,
            "ownerReferences": [owner_reference(config)],
        },
        "spec": body,
    }


def owner_reference(config: RolloutConfig) -> Manifest:
    """The controller reference of objects the Rollout owns (garbage-collected with it)."""
    ref: Manifest = {"apiVersion": API_VERSION, "kind": KIND, "name": config.name}
    if config.uid:
        ref["uid"] = config.uid
    return {**ref, "controller": True}


def controlled_by_rollout(obj: Mapping[str, Any], config: RolloutConfig) -> bool:
    """``metav1.IsControlledBy``: the object's controller reference is this Rollout (by
    uid where both have one, else by kind and name: the local backend has no uids)."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if not isinstance(ref, Mapping) or not ref.get("controller"):
            continue
        if config.uid and ref.get("uid"):
            return bool(ref.get("uid") == config.uid)
        return bool(ref.get("kind") == KIND and ref.get("name") == config.name)
    return False
