"""Blue/green: two full Deployments, one Service whose selector picks the live colour.

The seed scenario ("blue/green by Service selector"): blue runs the stable version, green the
new one, each with ``replicas`` pods; the Service selects ``track: blue`` until promotion
switches it to ``track: green``. There is no split: 100% blue, then 100% green.

Phases, and why blue survives promotion: blue/green keeps the previous colour running after
the switch so that going back is one selector change, with warm pods. So PROMOTED keeps both
Deployments (Service on green) and ROLLED_BACK puts the selector back on blue and deletes
green, the release that was rejected. A later clean-up of blue is a new release, not a
phase of this one.
"""

from __future__ import annotations

from pytest_canary.manifests.common import Manifest, deployment, service
from pytest_canary.manifests.phase import Phase
from pytest_canary.spec import ReleaseSpec

BLUE = "blue"
GREEN = "green"


def blue_name(spec: ReleaseSpec) -> str:
    """Name of the blue (stable) Deployment."""
    return f"{spec.name}-{BLUE}"


def green_name(spec: ReleaseSpec) -> str:
    """Name of the green (new version) Deployment."""
    return f"{spec.name}-{GREEN}"


def live_track(phase: Phase) -> str:
    """The colour the Service selects in ``phase``."""
    return GREEN if phase is Phase.PROMOTED else BLUE


def render(spec: ReleaseSpec, phase: Phase) -> list[Manifest]:
    """Manifests of a blue/green release in ``phase`` (seed: "blue/green selector switch").

    - canary: Deployments ``{name}-blue`` (stable version, ``track: blue``) and
      ``{name}-green`` (canary version, ``track: green``), ``replicas`` pods each; Service
      ``{name}`` selecting ``{app, track: blue}``: 100% blue, green warm and unused.
    - promoted: the same Deployments; the Service selects ``track: green`` (100% green,
      blue kept for a fast rollback).
    - rolled back: Service on ``track: blue``; the green Deployment is deleted.

    Deployments come before the Service, so the colour switched to is ready first.
    """
    objects = [
        deployment(
            spec, name=blue_name(spec), version=spec.stable, track=BLUE, replicas=spec.replicas
        ),
    ]
    if phase is not Phase.ROLLED_BACK:
        objects.append(
            deployment(
                spec,
                name=green_name(spec),
                version=spec.canary,
                track=GREEN,
                replicas=spec.replicas,
            )
        )
    objects.append(
        service(spec, name=spec.name, selector={"app": spec.name, "track": live_track(phase)})
    )
    return objects
