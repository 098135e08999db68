"""Keep: a test namespace left for inspection (``--canary-keep``) gives up its hosts.

A kept namespace keeps its pods, Services and logs, but its routing objects (Ingress,
VirtualService, HTTPRoute, Gateway) move into the ConfigMap :data:`KEPT_ROUTING`, so that later
tests can route the same hosts on the shared data planes; re-apply them with
``kubectl get cm pytest-canary-kept-routing -n NS -o jsonpath='{.data.objects\\.yaml}' |
kubectl apply -f -``. The namespace is labelled ``pytest-canary/kept=true`` and the run's
sweep never deletes it.
"""

from __future__ import annotations

import yaml

from pytest_canary.backends.kube.apply import ROUTING_RANK, Applier, rank

KEPT_ROUTING = "pytest-canary-kept-routing"
"""The ConfigMap that holds a kept namespace's routing objects."""


def set_routing_aside(applier: Applier) -> None:
    """Move the applied routing objects into the :data:`KEPT_ROUTING` ConfigMap and delete
    them, routing first."""
    routing = {k: o for k, o in applier.applied.items() if rank(k) > ROUTING_RANK}
    if not routing:
        return
    saved = yaml.safe_dump_all(list(routing.values()), sort_keys=False)
    applier.write(
        ("", "ConfigMap", KEPT_ROUTING),
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": KEPT_ROUTING, "namespace": applier.namespace},
            "data": {"objects.yaml": saved},
        },
    )
    applier.delete_routing(list(routing))
