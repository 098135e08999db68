"""Argo Rollouts canary: a ``Rollout`` (argoproj.io/v1alpha1) stepping through ``steps``.

The seed scenario ("Argo Rollouts canary"): one Rollout whose template moves from the stable
to the canary version; the Argo Rollouts controller creates a ReplicaSet per template and
walks the steps (setWeight, pause, ...), writing the traffic split into the router:

- ``traffic="nginx"``: the stable Ingress ``{name}`` routes to Service ``{name}-stable``;
  the controller creates the canary Ingress ``{name}-{name}-canary`` (canary Service
  ``{name}-canary``) with ``canary-weight``, plus ``additionalIngressAnnotations`` /
  ``canaryIngressAnnotations`` (e.g. ``canary-by-header``).
- ``traffic="istio"``: a VirtualService ``{name}`` whose route ``primary`` sends to the
  stable and canary destinations, bound to an Istio ``Gateway``; with
  ``istio_split="subset"`` (default) one Service ``{name}`` and a DestinationRule with
  subsets ``stable`` and ``canary`` (labelled with ``rollouts-pod-template-hash`` by the
  controller), with ``"host"`` Services ``{name}-stable`` / ``{name}-canary``.
- ``traffic=None`` (basic canary): one Service ``{name}`` in front of every pod; the weight
  becomes replica counts.

Fields: argoproj/argo-rollouts v1.9.1 ``pkg/apis/rollouts/v1alpha1/types.go``. Like
``rolling``, the Rollout must first run the stable version (:func:`baseline`: its first
template is promoted at once, "Initial deploy") before the canary template starts the steps.
"""

from __future__ import annotations

import copy
from typing import Any

from pytest_canary.manifests import istio as istio_manifests
from pytest_canary.manifests.common import MANAGED_BY, Manifest, deployment, service
from pytest_canary.manifests.nginx import ingress
from pytest_canary.manifests.phase import Phase
from pytest_canary.spec import ReleaseSpec

API_VERSION = "argoproj.io/v1alpha1"
PRIMARY_ROUTE = "primary"
STABLE_SUBSET = "stable"
CANARY_SUBSET = "canary"
# One template whose version changes in place: the selector holds the app only (the
# controller adds rollouts-pod-template-hash to each ReplicaSet's selector).
TRACK = "rollout"


def stable_service(spec: ReleaseSpec) -> str:
    """``canary.stableService``."""
    return f"{spec.name}-stable"


def canary_service(spec: ReleaseSpec) -> str:
    """``canary.canaryService``."""
    return f"{spec.name}-canary"


def uses_services(spec: ReleaseSpec) -> bool:
    """Whether the Rollout names a stable and a canary Service (nginx; Istio host split)."""
    return spec.traffic == "nginx" or (spec.traffic == "istio" and spec.istio_split == "host")


def gateway_name(spec: ReleaseSpec) -> str:
    """The Istio Gateway the VirtualService is bound to."""
    return istio_manifests.gateway_name(spec)


def _template(spec: ReleaseSpec, version: str) -> Manifest:
    pods = deployment(spec, name=spec.name, version=version, track=TRACK, replicas=1)
    template: Manifest = pods["spec"]["template"]
    return template


def _traffic_routing(spec: ReleaseSpec) -> Manifest:
    if spec.traffic == "nginx":
        nginx: Manifest = {"stableIngress": spec.name}
        if spec.additional_ingress_annotations:
            nginx["additionalIngressAnnotations"] = dict(spec.additional_ingress_annotations)
        if spec.canary_ingress_annotations:
            nginx["canaryIngressAnnotations"] = dict(spec.canary_ingress_annotations)
        return {"nginx": nginx}
    istio: Manifest = {"virtualService": {"name": spec.name, "routes": [PRIMARY_ROUTE]}}
    if spec.istio_split == "subset":
        istio["destinationRule"] = {
            "name": spec.name,
            "canarySubsetName": CANARY_SUBSET,
            "stableSubsetName": STABLE_SUBSET,
        }
    routing: Manifest = {"istio": istio}
    if spec.managed_routes:
        routing["managedRoutes"] = [{"name": name} for name in spec.managed_routes]
    return routing


def rollout(spec: ReleaseSpec, version: str) -> Manifest:
    """The Rollout with its template on ``version``."""
    canary: Manifest = {}
    if uses_services(spec):
        canary["canaryService"] = canary_service(spec)
        canary["stableService"] = stable_service(spec)
    canary["maxSurge"] = spec.max_surge
    canary["maxUnavailable"] = spec.max_unavailable
    if spec.scale_down_delay is not None:
        canary["scaleDownDelaySeconds"] = spec.scale_down_delay
    if spec.abort_scale_down_delay is not None:
        canary["abortScaleDownDelaySeconds"] = spec.abort_scale_down_delay
    canary["steps"] = copy.deepcopy([dict(step) for step in spec.steps])
    if spec.traffic is not None:
        canary["trafficRouting"] = _traffic_routing(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "Rollout",
        "metadata": {"name": spec.name, "labels": {"app": spec.name} | MANAGED_BY},
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": {"app": spec.name}},
            "template": _template(spec, version),
            "strategy": {"canary": canary},
        },
    }


def _istio_objects(spec: ReleaseSpec) -> list[Manifest]:
    labels: dict[str, Any] = {"app": spec.name} | MANAGED_BY
    subset = spec.istio_split == "subset"
    objects: list[Manifest] = []
    if subset:
        objects.append(service(spec, name=spec.name, selector={"app": spec.name}))
        objects.append(
            {
                "apiVersion": istio_manifests.API_VERSION,
                "kind": "DestinationRule",
                "metadata": {"name": spec.name, "labels": dict(labels)},
                "spec": {
                    "host": spec.name,
                    # The controller adds rollouts-pod-template-hash to these labels.
                    "subsets": [
                        {"name": CANARY_SUBSET, "labels": {"app": spec.name}},
                        {"name": STABLE_SUBSET, "labels": {"app": spec.name}},
                    ],
                },
            }
        )

        def destination(which: str) -> Manifest:
            return {"host": spec.name, "subset": which, "port": {"number": 80}}

    else:
        for name in (stable_service(spec), canary_service(spec)):
            objects.append(service(spec, name=name, selector={"app": spec.name}))

        def destination(which: str) -> Manifest:
            host = stable_service(spec) if which == STABLE_SUBSET else canary_service(spec)
            return {"host": host, "port": {"number": 80}}

    uri = istio_manifests._uri_match(spec)
    primary: Manifest = {"name": PRIMARY_ROUTE}
    if uri:
        primary["match"] = [uri]
    primary["route"] = [
        {"destination": destination(STABLE_SUBSET), "weight": 100},
        {"destination": destination(CANARY_SUBSET), "weight": 0},
    ]
    objects.append(
        {
            "apiVersion": istio_manifests.API_VERSION,
            "kind": "Gateway",
            "metadata": {"name": gateway_name(spec), "labels": dict(labels)},
            "spec": {
                "selector": dict(istio_manifests.INGRESS_SELECTOR),
                "servers": [
                    {
                        "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                        "hosts": [spec.host],
                    }
                ],
            },
        }
    )
    objects.append(
        {
            "apiVersion": istio_manifests.API_VERSION,
            "kind": "VirtualService",
            "metadata": {"name": spec.name, "labels": dict(labels)},
            "spec": {
                "hosts": [spec.host],
                "gateways": [gateway_name(spec)],
                "http": [primary],
            },
        }
    )
    return objects


def baseline(spec: ReleaseSpec) -> list[Manifest]:
    """What runs before the canary phase: the Rollout on the stable version (the controller
    promotes a Rollout's first template at once) and the routing objects."""
    return render(spec, Phase.ROLLED_BACK)


def render(spec: ReleaseSpec, phase: Phase) -> list[Manifest]:
    """Manifests of an Argo Rollouts canary in ``phase``.

    - canary and promoted: the Rollout's template runs the canary version (the controller
      walks the steps; promotion is the controller's, see ``pytest_canary.rollout_release``);
    - rolled back: the template on the stable version (``kubectl argo rollouts undo``).

    Always: the Rollout first, then its Services and routing objects (nginx: the stable
    Ingress; Istio: DestinationRule, Gateway, VirtualService; basic: one Service).
    """
    version = spec.stable if phase is Phase.ROLLED_BACK else spec.canary
    objects = [rollout(spec, version)]
    if spec.traffic == "nginx":
        objects += [
            service(spec, name=stable_service(spec), selector={"app": spec.name}),
            service(spec, name=canary_service(spec), selector={"app": spec.name}),
            ingress(spec, name=spec.name, host=spec.host, service_name=stable_service(spec)),
        ]
    elif spec.traffic == "istio":
        objects += _istio_objects(spec)
    else:
        objects.append(service(spec, name=spec.name, selector={"app": spec.name}))
    return objects
