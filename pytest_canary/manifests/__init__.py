"""Pure renderers: ``ReleaseSpec`` + phase -> Kubernetes objects (plain dicts). No I/O."""

from __future__ import annotations

from collections.abc import Callable

from pytest_canary.manifests import bluegreen, gateway, istio, nginx, replicas, rolling
from pytest_canary.manifests.common import Manifest
from pytest_canary.manifests.phase import Phase
from pytest_canary.spec import ReleaseSpec

Renderer = Callable[[ReleaseSpec, Phase], list[Manifest]]

RENDERERS: dict[str, Renderer] = {
    "nginx": nginx.render,
    "replicas": replicas.render,
    "istio": istio.render,
    "gateway": gateway.render,
    "bluegreen": bluegreen.render,
    "rolling": rolling.render,
}


def render(spec: ReleaseSpec, phase: Phase = Phase.CANARY) -> list[Manifest]:
    """The Kubernetes objects of ``spec`` in ``phase``, in apply order."""
    try:
        renderer = RENDERERS[spec.strategy]
    except KeyError:
        raise NotImplementedError(
            f"strategy {spec.strategy!r} has no renderer yet; available: {', '.join(RENDERERS)}"
        ) from None
    return renderer(spec, phase)


__all__ = ["RENDERERS", "Manifest", "Phase", "render"]
