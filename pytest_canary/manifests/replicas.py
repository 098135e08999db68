"""Replica-ratio canary: stable and canary Deployments behind one Service.

The seed scenario ("canary by replica count", ``app: kubeapp``): both Deployments label
their pods ``app: <name>`` and differ only by ``track``; the Service selects ``app`` alone,
so kube-proxy spreads new connections over every ready pod and the canary's share is
``canary_replicas / (stable_replicas + canary_replicas)`` (3:1 → 25%). UPSTREAM.md
"Plain Kubernetes Service": one random ready endpoint per new connection.
"""

from __future__ import annotations

from pytest_canary.manifests.common import (
    Manifest,
    canary_name,
    deployment,
    service,
    stable_name,
)
from pytest_canary.manifests.phase import Phase
from pytest_canary.spec import ReleaseSpec


def expected_canary_share(spec: ReleaseSpec) -> float:
    """Canary pods / all pods in the CANARY phase (0.0 when no pod runs at all)."""
    total = spec.stable_replicas + spec.canary_replicas
    return spec.canary_replicas / total if total else 0.0


def settled_replicas(spec: ReleaseSpec) -> int:
    """Pods of the one Deployment left after promotion or rollback.

    The stable count, or the canary count when stable was scaled to 0 (the seed's last
    step, "stable scaled to 0 → 100% canary"), and never 0: a release that serves 100% of
    traffic needs at least one pod.
    """
    return spec.stable_replicas or spec.canary_replicas or 1


def render(spec: ReleaseSpec, phase: Phase) -> list[Manifest]:
    """Manifests of a replica-ratio canary in ``phase`` (seed: "canary by replica count").

    - canary: Deployment ``{name}-stable`` (``stable_replicas`` pods, ``track: stable``) and
      Deployment ``{name}-canary`` (``canary_replicas`` pods, ``track: canary``) behind one
      Service ``{name}`` whose selector is only ``app: {name}``.
    - promoted: ``{name}-stable`` runs the canary version (rolling update in place), the
      canary Deployment is gone.
    - rolled back: ``{name}-stable`` on the stable version, the canary Deployment is gone.
    """
    version = spec.canary if phase is Phase.PROMOTED else spec.stable
    replicas = spec.stable_replicas if phase is Phase.CANARY else settled_replicas(spec)
    objects = [
        deployment(
            spec, name=stable_name(spec), version=version, track="stable", replicas=replicas
        ),
    ]
    if phase is Phase.CANARY:
        objects.append(
            deployment(
                spec,
                name=canary_name(spec),
                version=spec.canary,
                track="canary",
                replicas=spec.canary_replicas,
            )
        )
    objects.append(service(spec, name=spec.name, selector={"app": spec.name}))
    return objects
