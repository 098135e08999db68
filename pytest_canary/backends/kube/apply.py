"""Apply order: make before break.

Objects are bound to the test namespace and the cluster's entry points (:func:`adapt`), then
applied server-side in :data:`APPLY_RANK` order -- configuration, workloads (waited
available), Services (waited for their endpoints), DestinationRules before the routes naming
their subsets, gateways, then routing objects -- and what is no longer wanted is deleted the
other way round: routing first, then (once the data plane no longer uses them) shrinking
DestinationRules, Services and workloads. Ingresses are retried while the ingress-nginx
admission webhook cannot be called yet; the rolling strategy's canary is a rollout started,
then paused.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_canary.backends import waits
from pytest_canary.backends.kube.api import (
    Key,
    KubeApi,
    api_error_message,
    describe_key,
    key_of,
    status_of,
)
from pytest_canary.backends.kube.options import parse_gateway
from pytest_canary.backends.kube.ready import Readiness
from pytest_canary.backends.waits import Check
from pytest_canary.errors import BackendError, CanaryConfigError
from pytest_canary.manifests.rolling import PAUSE_AFTER

APPLY_RANK: dict[str, float] = {
    "ConfigMap": 0,
    "Secret": 0,
    "ServiceAccount": 0,
    # What pods need to be admitted, scheduled or started (your own manifests).
    "PersistentVolumeClaim": 0,
    "Role": 0,
    "RoleBinding": 0,
    "LimitRange": 0,
    "ResourceQuota": 0,
    "Deployment": 1,
    "StatefulSet": 1,
    "DaemonSet": 1,
    "Rollout": 1,
    "Service": 2,
    "DestinationRule": 3,
    "Gateway": 3.5,
    "ReferenceGrant": 3.5,
    "VirtualService": 4,
    "HTTPRoute": 4,
    "GRPCRoute": 4,
    "Ingress": 4,
}
"""Position of each kind in the apply order (deletion runs the other way)."""
OTHER_RANK = 2.5
ROUTING_RANK = 3
"""Kinds ranked above this claim hosts on shared data planes (routing objects)."""


def rank(obj_or_key: Mapping[str, Any] | Key) -> float:
    """Position of a kind in the apply order."""
    kind = obj_or_key[1] if isinstance(obj_or_key, tuple) else str(obj_or_key.get("kind", ""))
    return APPLY_RANK.get(kind, OTHER_RANK)


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, str]:
    """``metadata.annotations`` (empty when absent)."""
    return (obj.get("metadata") or {}).get("annotations") or {}


def app_label(obj: Mapping[str, Any]) -> str | None:
    """The ``app`` label: which release (of several in one test) an object belongs to."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    value = labels.get("app")
    return str(value) if value is not None else None


def subset_names(obj: Mapping[str, Any] | None) -> set[str]:
    """Names of a DestinationRule's subsets."""
    return {str(s.get("name")) for s in ((obj or {}).get("spec") or {}).get("subsets") or []}


def adapt(
    obj: Mapping[str, Any],
    namespace: str,
    *,
    ingress_class: str | None = None,
    gateway: str | None = None,
    gateway_selector: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A copy of ``obj`` placed in ``namespace`` and bound to this cluster's entry points.

    - every object gets ``metadata.namespace``;
    - Ingress: ``spec.ingressClassName`` becomes ``ingress_class`` when given;
    - Istio Gateway: ``spec.selector`` becomes ``gateway_selector`` (the pods of the ingress
      gateway Service ``gateway``) when given;
    - Gateway API Gateway without ``spec.addresses``: bound to the existing gateway Service
      ``gateway`` (``namespace/name``) by an address of type Hostname, Istio's "manual
      deployment" (istio.io, Kubernetes Gateway API task, "Manual Deployment"), instead of
      Istio deploying a gateway per test whose LoadBalancer stays pending on kind.
    """
    copied = copy.deepcopy(dict(obj))
    copied.setdefault("metadata", {})["namespace"] = namespace
    group, kind, _ = key_of(copied)
    spec = copied.get("spec")
    if not isinstance(spec, dict):
        return copied
    if kind == "Ingress" and group == "networking.k8s.io" and ingress_class:
        spec["ingressClassName"] = ingress_class
    if kind == "Gateway" and group == "networking.istio.io" and gateway_selector:
        spec["selector"] = dict(gateway_selector)
    if (
        kind == "Gateway"
        and group == "gateway.networking.k8s.io"
        and gateway
        and not spec.get("addresses")
    ):
        gw_namespace, gw_name = parse_gateway(gateway)
        spec["addresses"] = [
            {"type": "Hostname", "value": f"{gw_name}.{gw_namespace}.svc.cluster.local"}
        ]
    return copied


def api_failure(action: str, exc: BaseException) -> BackendError:
    """A :class:`BackendError` for a failed API call: the action, the HTTP status and the
    API server's own message, with a hint where a missing CRD is the likely cause."""
    if isinstance(exc, BackendError):
        return exc
    status = status_of(exc)
    where = f"HTTP {status}: " if status else ""
    hint = ""
    if status == 404 and any(
        g in action for g in ("VirtualService", "DestinationRule", "Gateway", "HTTPRoute")
    ):
        hint = (
            " (are the CRDs installed? Istio provides VirtualService, DestinationRule and "
            "Gateway, Gateway API HTTPRoute and Gateway; on kind: --canary-addons must "
            "include istio and gateway-api)"
        )
    return BackendError(f"{action} failed: {where}{api_error_message(exc)}{hint}")


def refuse_unapplicable(api: KubeApi, objects: Sequence[Mapping[str, Any]]) -> None:
    """Every object must be namespaced and served by the cluster: a cluster-scoped one
    (IngressClass, GatewayClass, ClusterRole, ...) would outlive the test's namespace and
    change the cluster for everyone, so it is not applied per test.

    Raises:
        CanaryConfigError: listing every object that cannot be applied, and why.
    """
    problems: list[str] = []
    for obj in objects:
        key = key_of(obj)
        try:
            rtype = api.resource(str(obj.get("apiVersion", "")), key[1])
        except BackendError as exc:
            problems.append(f"  {obj.get('apiVersion')} {describe_key(key)}: {exc}")
            continue
        if not rtype.namespaced:
            problems.append(
                f"  {obj.get('apiVersion')} {describe_key(key)}: cluster-scoped; it would "
                "outlive the test's namespace and change the cluster for every test"
            )
    if problems:
        raise CanaryConfigError(
            f"{len(problems)} object(s) of your manifests cannot be applied per test on "
            f"this cluster:\n" + "\n".join(problems) + "\nInstall cluster-wide objects "
            "once (they are part of the cluster) and remove them from the paths given."
        )


class Applier:
    """Applies and deletes one test namespace's objects in make-before-break order.

    Attributes:
        applied: what was applied (as sent), by (group, kind, name).
    """

    def __init__(self, api: KubeApi, namespace: str, ready: Readiness) -> None:
        self.api = api
        self.namespace = namespace
        self.ready = ready
        self.applied: dict[Key, dict[str, Any]] = {}

    def stale(self, wanted: Mapping[Key, Mapping[str, Any]], *, prune_all: bool) -> list[Key]:
        """Objects applied before that ``wanted`` no longer lists: those of the releases being
        applied (their ``app`` label, so a second release in the test keeps the first), or
        with ``prune_all`` every one (a user's manifest set replaces the previous set)."""
        scope = {app_label(o) for o in wanted.values()}
        return [
            k
            for k, o in self.applied.items()
            if k not in wanted and (prune_all or app_label(o) in scope)
        ]

    def make(self, wanted: Mapping[Key, dict[str, Any]]) -> list[dict[str, Any]]:
        """Apply ``wanted`` in rank order, waiting for workloads before Services and for
        endpoints before anything routes to them. Returns the DestinationRules that drop
        subsets: applied only after the routes stop naming them (:meth:`apply_deferred`)."""
        deferred: list[dict[str, Any]] = []
        waited_workloads = waited_services = False
        for key, obj in sorted(wanted.items(), key=lambda item: rank(item[1])):
            position = rank(obj)
            if position > 1 and not waited_workloads:
                self.ready.workloads(wanted)
                waited_workloads = True
            if position > 2 and not waited_services:
                self.ready.endpoints(wanted)
                waited_services = True
            previous = self.applied.get(key)
            if previous == obj:
                continue  # unchanged: leave the object (and its controllers) alone
            if (
                key[1] == "DestinationRule"
                and previous is not None
                and not subset_names(obj) >= subset_names(previous)
            ):
                deferred.append(obj)  # drops subsets: only after routes stop naming them
                continue
            self.apply_one(key, obj)
        if not waited_workloads:
            self.ready.workloads(wanted)
        if not waited_services:
            self.ready.endpoints(wanted)
        return deferred

    def delete_routing(self, stale: Sequence[Key]) -> None:
        """Delete the stale routing objects (first: the data plane stops using the rest)."""
        for key in sorted((k for k in stale if rank(k) > ROUTING_RANK), key=rank, reverse=True):
            self.delete(key)

    def finish(self, stale: Sequence[Key], deferred: Sequence[dict[str, Any]]) -> None:
        """After the data plane left them: shrink DestinationRules, then delete the stale
        Services and workloads."""
        for obj in deferred:
            self.apply_one(key_of(obj), obj)
        rest = sorted((k for k in stale if rank(k) <= ROUTING_RANK), key=rank, reverse=True)
        for key in rest:
            self.delete(key)

    def apply_one(self, key: Key, obj: dict[str, Any]) -> None:
        """Apply one object the way its kind needs."""
        if key[1] == "Ingress":
            self._apply_admitted(key, obj)
        elif key[:2] == ("apps", "Deployment") and PAUSE_AFTER in annotations_of(obj):
            self._apply_paused(key, obj)
        else:
            self.write(key, obj)
        self.applied[key] = obj

    def write(self, key: Key, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply one object in the namespace."""
        try:
            return self.api.apply(obj, namespace=self.namespace)
        except Exception as exc:
            raise api_failure(
                f"applying {describe_key(key)} in namespace {self.namespace}", exc
            ) from exc

    def delete(self, key: Key) -> None:
        """Delete one applied object."""
        obj = self.applied.pop(key)
        try:
            self.api.delete(str(obj["apiVersion"]), key[1], key[2], self.namespace)
        except Exception as exc:
            raise api_failure(
                f"deleting {describe_key(key)} in namespace {self.namespace}", exc
            ) from exc

    def _apply_paused(self, key: Key, obj: dict[str, Any]) -> None:
        """The rolling strategy's canary: start the rollout to the new template, then pause it
        once the controller created the first ``pytest-canary/pause-after`` new pods
        (``kubectl set image`` + ``kubectl rollout pause``; manifests/rolling.py).

        A Deployment applied already paused never creates its new ReplicaSet (the controller
        only scales a paused Deployment: kubernetes pkg/controller/deployment ``sync``), hence
        the two steps. Pausing before any new pod is ready lands on the controller's first
        fixpoint, the state manifests/rolling.py ``paused_rollout`` predicts.
        """
        if key not in self.applied:
            raise BackendError(
                f"{describe_key(key)} carries {PAUSE_AFTER} but no earlier version of it was "
                "applied in this test: apply the baseline (manifests.rolling.baseline(spec)) "
                "first, so that there is a rollout to pause"
            )
        try:
            count = int(annotations_of(obj)[PAUSE_AFTER])
        except ValueError:
            raise BackendError(
                f"{describe_key(key)}: {PAUSE_AFTER}={annotations_of(obj)[PAUSE_AFTER]!r} is "
                "not a number of pods"
            ) from None
        generation = int((self.write(key, obj).get("metadata") or {}).get("generation") or 0)

        def started() -> Check:
            current = self.api.get(str(obj["apiVersion"]), "Deployment", key[2], self.namespace)
            status = (current or {}).get("status") or {}
            observed = int(status.get("observedGeneration") or 0)
            updated = int(status.get("updatedReplicas") or 0)
            text = f"observed generation {observed} of {generation}, {updated} new pods created"
            return Check(observed >= generation and updated >= count, text)

        waits.wait_until(
            f"Deployment {self.namespace}/{key[2]}",
            f"rolling out ({count} new pods created, so the rollout can be paused)",
            started,
            timeout=self.ready.timeout,
            setting="--canary-wait-timeout",
        )
        paused = copy.deepcopy(obj)
        paused["spec"]["paused"] = True  # the whole object: SSA removes fields we omit
        self.write(key, paused)

    def _apply_admitted(self, key: Key, obj: dict[str, Any]) -> None:
        """Apply an Ingress, retrying while the ingress-nginx admission webhook cannot be
        called yet (UPSTREAM.md: "retry applying Ingresses while the webhook still refuses
        connections")."""

        def attempt() -> Check:
            try:
                self.api.apply(obj, namespace=self.namespace)
            except Exception as exc:
                message = api_error_message(exc)
                if waits.webhook_unavailable(status_of(exc), message):
                    return Check(False, f"webhook unavailable: {message}")
                if waits.is_transient(exc):
                    raise  # retried by wait_until, shown as the last status
                raise api_failure(
                    f"applying {describe_key(key)} in namespace {self.namespace}", exc
                ) from exc
            return Check(True, "accepted")

        waits.wait_until(
            f"{describe_key(key)} in namespace {self.namespace}",
            "accepted by the admission webhook",
            attempt,
            timeout=self.ready.timeout,
            setting="--canary-wait-timeout",
        )
