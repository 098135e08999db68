"""The canary Ingress the controller makes for ingress-nginx, which
:mod:`pytest_canary.dataplane.nginx` then routes.

Upstream (argoproj/argo-rollouts, tag v1.9.1):

- **The desired canary Ingress** (``rollout/trafficrouting/nginx/nginx.go``
  ``buildCanaryIngress``, ``utils/ingress`` ``GetCanaryIngressName``): Ingress
  ``<rollout>-<stableIngress>-canary`` with the stable Ingress's rules that use the stable
  Service, pointed at the canary Service, TLS and class copied (the stable Ingress's
  ``kubernetes.io/ingress.class`` the only annotation copied), ``additionalIngressAnnotations``
  (a key not starting with ``annotationPrefix`` gets ``<annotationPrefix>/``),
  then ``canaryIngressAnnotations`` as written (they win over a colliding additional one),
  then always ``<prefix>/canary: "true"`` and ``<prefix>/canary-weight`` (they win over both);
  no labels. A missing stable Ingress is the cache error of ``SetWeightPerIngress``. The nginx
  router's ``UpdateHash``, ``SetHeaderRoute``, ``SetMirrorRoute`` and ``RemoveManagedRoutes``
  do nothing.
- **Create, then patch** (``SetWeightPerIngress``): no canary Ingress yet -> it is created as
  desired. Otherwise, on every sync, the desired annotations are merged over the current ones
  (``getDesiredAnnotations``, since v1.8.0, PR #3806: "the desired Ingress may not have all
  annotations previously added by other controllers (e.g. Rancher)") and
  ``utils/ingress`` ``BuildIngressPatch(WithAnnotations, WithLabels, WithSpec)`` sends the
  two-way merge patch (``utils/diff`` ``CreateTwoWayMergePatch``) of current vs desired
  annotations, labels and spec. So the controller owns exactly the keys it desires now: it
  overwrites them, and it **never removes an annotation** -- not one a user or another
  controller added by hand, not one an earlier version of the Rollout asked for (a removed
  ``additionalIngressAnnotations: {canary-by-header: ...}`` keeps routing until someone
  deletes it from the canary Ingress). Labels: the desired Ingress has none, so the patch
  removes every label on the canary Ingress. Spec: replaced by the desired one (rules and TLS
  are lists without a merge key). Other metadata (owner references, finalizers) is not in
  the patch and stays.
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
from pytest_canary.dataplane.nginx import CANARY_ANNOTATIONS

CANARY_INGRESS_SUFFIX = "-canary"
# The annotations buildCanaryIngress always writes last, whatever the Rollout's say.
ALWAYS_WRITTEN = ("canary", "canary-weight")
# The canary annotations ingress-nginx routes by (canary/main.go CanaryAnnotations) other
# than the two the controller always writes.
ROUTING_ANNOTATIONS = tuple(n for n in CANARY_ANNOTATIONS if n not in ALWAYS_WRITTEN)


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


def desired_annotations(
    config: RolloutConfig, stable_ingress: Mapping[str, Any], weight: int
) -> dict[str, str]:
    """The annotations ``buildCanaryIngress`` gives the desired canary Ingress: the only
    keys the controller owns on it."""
    assert config.nginx is not None
    prefix = config.nginx.annotation_prefix
    annotations: dict[str, str] = {}
    # "Must preserve ingress.class on canary ingress, no other annotations matter".
    legacy_class = ((stable_ingress.get("metadata") or {}).get("annotations") or {}).get(
        "kubernetes.io/ingress.class"
    )
    if legacy_class is not None:
        annotations["kubernetes.io/ingress.class"] = str(legacy_class)
    for _, _, written, value in copied_annotations(config):
        annotations[written] = value
    # Always set, whatever the annotations above said.
    annotations[f"{prefix}/canary"] = "true"
    annotations[f"{prefix}/canary-weight"] = str(weight)
    return annotations


def canary_ingress(
    config: RolloutConfig,
    stable_ingress: Mapping[str, Any],
    weight: int,
    existing: Mapping[str, Any] | None = None,
) -> Manifest:
    """The canary Ingress after ``SetWeightPerIngress``: the desired one of
    ``buildCanaryIngress`` when there is none yet (``existing`` None), else ``existing`` as
    the controller's patch leaves it (desired annotations merged over the current ones,
    labels removed, spec replaced; see the module docstring).

    Raises:
        ReconcileError: the stable Ingress has no rule using the stable Service, or
            ``existing`` (the Ingress of the canary's name) is not controlled by the Rollout.
    """
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
    annotations = desired_annotations(config, stable_ingress, weight)
    body: Manifest = {"rules": rules}
    if spec.get("tls") is not None:
        body["tls"] = copy.deepcopy(spec["tls"])
    if spec.get("ingressClassName") is not None:
        body["ingressClassName"] = spec["ingressClassName"]
    if existing is None:
        # IngressWrapper.Create of the desired Ingress.
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
    patched: Manifest = copy.deepcopy(dict(existing))
    metadata = patched.setdefault("metadata", {})
    # getDesiredAnnotations: every current annotation the desired Ingress lacks is kept.
    for key, value in (metadata.get("annotations") or {}).items():
        annotations.setdefault(key, value)
    metadata["annotations"] = annotations
    # BuildIngressPatch WithLabels: the desired Ingress has no labels, so the two-way merge
    # patch sets them to null.
    metadata.pop("labels", None)
    # WithSpec: every field of the current spec the desired one lacks is nulled.
    patched["spec"] = body
    return patched


def retained_routing_annotations(
    config: RolloutConfig, canary: Mapping[str, Any]
) -> dict[str, str]:
    """The ingress-nginx canary annotations (``canary-by-header``, ``-value``, ``-pattern``,
    ``canary-by-cookie``, ``canary-weight-total``) on the canary Ingress ``canary`` that the
    Rollout does not ask for: the controller keeps them (``getDesiredAnnotations``), so
    ingress-nginx still routes by them, whoever put them there."""
    assert config.nginx is not None
    prefix = config.nginx.annotation_prefix
    wanted = desired_annotations(config, {}, 0)
    current = (canary.get("metadata") or {}).get("annotations") or {}
    routing = {f"{prefix}/{name}" for name in ROUTING_ANNOTATIONS}
    return {
        str(key): str(value)
        for key, value in current.items()
        if key in routing and key not in wanted
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
