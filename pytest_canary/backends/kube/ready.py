"""Readiness of what was applied: Deployments rolled out, Services backed by their pods.

The conditions themselves are plain functions of objects in
:mod:`pytest_canary.backends.waits` (``kubectl rollout status`` rules, EndpointSlice counts);
this module reads the objects from the cluster and waits with a deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pytest_canary.backends import waits
from pytest_canary.backends.kube.api import Key, KubeApi, key_of
from pytest_canary.backends.waits import Check
from pytest_canary.dataplane import argo_rollouts as rollout_model


def template_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    """The pod labels of a workload's template (empty for objects without one)."""
    template = (obj.get("spec") or {}).get("template") or {}
    return dict((template.get("metadata") or {}).get("labels") or {})


def label_selector(labels: Mapping[str, str]) -> str:
    """``a=1,b=2``: equality terms of a label selector."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


class Readiness:
    """Waits until a test namespace's workloads and Services are ready.

    Args:
        api: the cluster.
        namespace: the test namespace.
        timeout: seconds per wait (``--canary-wait-timeout``).
    """

    def __init__(self, api: KubeApi, namespace: str, *, timeout: float) -> None:
        self.api = api
        self.namespace = namespace
        self.timeout = timeout
        # Argo Rollouts run in the namespace: their pods belong to the ReplicaSets their
        # controller made, which the endpoint counts include from then on.
        self.rollout_pods = False

    def workloads(self, wanted: Mapping[Key, Mapping[str, Any]]) -> None:
        """Every Deployment among ``wanted`` rolled out (``kubectl rollout status``)."""
        for key, obj in wanted.items():
            if key[1] != "Deployment":
                continue
            name = key[2]

            def probe(name: str = name, obj: Mapping[str, Any] = obj) -> Check:
                current = self.api.get(str(obj["apiVersion"]), "Deployment", name, self.namespace)
                if current is None:
                    return Check(False, "not found")
                selector = ((current.get("spec") or {}).get("selector") or {}).get(
                    "matchLabels"
                ) or {}
                pods = self.api.list(
                    "v1", "Pod", namespace=self.namespace, label_selector=label_selector(selector)
                )
                return waits.deployment_check(current, pods)

            waits.wait_until(
                f"Deployment {self.namespace}/{name}",
                "available (current generation observed, every replica updated and available, "
                "no old replica left)",
                probe,
                timeout=self.timeout,
                setting="--canary-wait-timeout",
            )

    def endpoints(self, wanted: Mapping[Key, Mapping[str, Any]]) -> None:
        """Every Service among ``wanted`` backed by the pods it selects."""
        for key, obj in wanted.items():
            if key[1] != "Service" or key[0] != "":
                continue
            selector = waits.service_selector(obj)
            if not selector:
                continue
            if self.rollout_pods:
                selector = self._rollout_selector(key[2], selector)
            self.service_endpoints(key[2], self.counter(selector, wanted.values()))

    def _rollout_selector(self, service: str, applied: dict[str, str]) -> dict[str, str]:
        """The selector a Service has now where an Argo Rollouts controller manages it (it
        adds ``rollouts-pod-template-hash``: rollout/service.go ``switchServiceSelector``),
        else the applied one."""
        live = self.api.get("v1", "Service", service, self.namespace)
        annotations = ((live or {}).get("metadata") or {}).get("annotations") or {}
        if live is not None and rollout_model.MANAGED_BY in annotations:
            return waits.service_selector(live)
        return applied

    def expected_endpoints(self, selector: Mapping[str, str]) -> int:
        """Pods the Service should have as ready endpoints: every pod of the namespace's
        Deployments whose template the selector matches (``status.replicas`` counts old and
        new ReplicaSets, e.g. a paused rolling update; the workload wait made them available)."""
        total = 0
        for dep in self.api.list("apps/v1", "Deployment", namespace=self.namespace):
            spec = dep.get("spec") or {}
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if (dep.get("metadata") or {}).get("deletionTimestamp"):
                continue
            if waits.labels_match(selector, labels):
                status = dep.get("status") or {}
                total += int(status.get("replicas", spec.get("replicas", 1)) or 0)
        if self.rollout_pods:
            # A Rollout is not a Deployment: its pods are those of the ReplicaSets its
            # controller owns (one per template, sized by the steps), counted as they are.
            for rs in self.api.list("apps/v1", "ReplicaSet", namespace=self.namespace):
                owners = (rs.get("metadata") or {}).get("ownerReferences") or []
                if not any(o.get("kind") == "Rollout" and o.get("controller") for o in owners):
                    continue
                if waits.labels_match(selector, template_labels(rs)):
                    total += int((rs.get("status") or {}).get("replicas") or 0)
        return total

    def counter(
        self, selector: Mapping[str, str], objects: Iterable[Mapping[str, Any]] = ()
    ) -> Callable[[], int] | None:
        """How many endpoints a Service selecting ``selector`` must have; None when it selects
        pods of other workloads among ``objects`` (a StatefulSet of your own manifests), whose
        count is not predicted: then at least one. Deployments count their pods, Argo
        Rollouts their ReplicaSets' (with :attr:`rollout_pods`)."""
        for obj in objects:
            labels = template_labels(obj)
            if (
                key_of(obj)[1] not in ("Deployment", "Rollout")
                and labels
                and waits.labels_match(selector, labels)
            ):
                return None
        return lambda: self.expected_endpoints(selector)

    def service_endpoints(self, service: str, expected: Callable[[], int] | None) -> None:
        """Service ``service`` backed by exactly ``expected()`` ready endpoints (at least one
        when ``expected`` is None)."""

        def probe() -> Check:
            slices = self.api.list(
                "discovery.k8s.io/v1",
                "EndpointSlice",
                namespace=self.namespace,
                label_selector=f"kubernetes.io/service-name={service}",
            )
            if expected is None:
                ready = waits.ready_endpoints(slices)
                return Check(bool(ready), f"{len(ready)} endpoints ready")
            return waits.endpoints_check(service, slices, expected())

        waits.wait_until(
            f"Service {self.namespace}/{service}",
            "backed by exactly one ready endpoint per pod of the Deployments it selects"
            if expected is not None
            else "backed by at least one ready endpoint (it selects pods of workloads other "
            "than Deployments)",
            probe,
            timeout=self.timeout,
            setting="--canary-wait-timeout",
        )
