"""Pure renderers: ``ReleaseSpec`` + phase -> Kubernetes objects (plain dicts). No I/O."""

from __future__ import annotations

from collections.abc import Callable

from pytest_canary.manifests import bluegreen, gateway, istio, nginx, replicas, rolling, rollouts
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
    "rollouts": rollouts.render,
}


# What must run (and be ready) before the canary phase is applied, where the canary phase
# changes a running workload in place.
BASELINES: dict[str, Renderer] = {
    "rolling": lambda spec, _phase: rolling.baseline(spec),
    "rollouts": lambda spec, _phase: rollouts.baseline(spec),
}


def baseline(spec: ReleaseSpec) -> list[Manifest]:
    """Objects to apply before the canary phase (empty for most strategies)."""
    maker = BASELINES.get(spec.strategy)
    return maker(spec, Phase.ROLLED_BACK) if maker else []


def render(spec: ReleaseSpec, phase: Phase = Phase.CANARY) -> list[Manifest]:
    """The Kubernetes objects of ``spec`` in ``phase``, in apply order."""
    try:
        renderer = RENDERERS[spec.strategy]
    except KeyError:
        raise NotImplementedError(
            f"strategy {spec.strategy!r} has no renderer yet; available: {', '.join(RENDERERS)}"
        ) from None
    return renderer(spec, phase)


__all__ = ["BASELINES", "RENDERERS", "Manifest", "Phase", "baseline", "render"]
