"""Istio canary: Deployments labelled by version, DestinationRule subsets, a VirtualService.

The seed scenario ("Istio canary with subsets"): every version runs as its own Deployment
whose pods carry ``version: <v>``; one Service selects them all; a DestinationRule names one
subset per version and a VirtualService splits traffic between the subsets, after an optional
header match and an optional ``sourceLabels`` match (a frontend calling the app from inside
the mesh). Traffic enters through an Istio ingress ``Gateway`` bound to the VirtualService.

API: ``networking.istio.io/v1`` (Istio 1.30), fields from istio/api
``networking/v1/virtual_service.proto``, ``destination_rule.proto`` and ``gateway.proto``.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Sequence

from pytest_canary.manifests.common import MANAGED_BY, Manifest, deployment, service
from pytest_canary.manifests.phase import Phase
from pytest_canary.spec import ReleaseSpec

API_VERSION = "networking.istio.io/v1"
# The label the default Istio install puts on its ingress gateway pods
# (manifests/charts/gateway: `istio: ingressgateway`).
INGRESS_SELECTOR = {"istio": "ingressgateway"}
# VirtualService.gateways: the reserved name for every sidecar in the mesh.
MESH = "mesh"
MAX_NAME = 63  # DNS-1123 label (object names built here, subset names)

_NOT_DNS = re.compile(r"[^a-z0-9]+")


def version_slug(version: str) -> str:
    """A DNS-1123 label naming ``version``: lowercase, runs of other characters become ``-``,
    and a leading ``v`` when the version does not start with a letter.

    Example:
        >>> version_slug("v1"), version_slug("2.0"), version_slug("1.0_RC1")
        ('v1', 'v2-0', 'v1-0-rc1')
    """
    slug = _NOT_DNS.sub("-", version.lower()).strip("-") or "v"
    if not slug[0].isalpha():
        slug = "v" + slug
    return _fit(slug, version, MAX_NAME)


def version_slugs(versions: Sequence[str]) -> dict[str, str]:
    """:func:`version_slug` of every version, made unique: two versions with the same slug
    ("1.0" and "1-0") each get a short hash of the exact version appended."""
    plain = {v: version_slug(v) for v in versions}
    counts: dict[str, int] = {}
    for slug in plain.values():
        counts[slug] = counts.get(slug, 0) + 1
    return {
        v: slug if counts[slug] == 1 else _fit(f"{slug}-{_digest(v)}", v, MAX_NAME)
        for v, slug in plain.items()
    }


def versioned_name(prefix: str, slug: str) -> str:
    """``{prefix}-{slug}``, shortened (with a hash of the slug) to fit a 63-character name."""
    return _fit(f"{prefix}-{slug}", slug, MAX_NAME)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def _fit(name: str, identity: str, limit: int) -> str:
    """``name`` if it fits ``limit``; else cut and suffixed by a hash of ``identity`` so two
    long names that share a prefix stay distinct."""
    if len(name) <= limit:
        return name
    head = name[: limit - 7].rstrip("-")
    return f"{head}-{_digest(identity)}"


def frontend_name(spec: ReleaseSpec) -> str:
    """Name of the frontend Service (and the ``app`` label of frontend pods)."""
    return f"{spec.name}-frontend"


def gateway_name(spec: ReleaseSpec) -> str:
    """Name of the Istio ingress ``Gateway`` bound to the VirtualService."""
    return f"{spec.name}-gateway"


def track_of(spec: ReleaseSpec, version: str) -> str:
    """The ``track`` label of a version's pods: stable, canary, or extra (``weights``)."""
    if version == spec.stable:
        return "stable"
    if version == spec.canary:
        return "canary"
    return "extra"


def version_deployment(
    spec: ReleaseSpec,
    *,
    name: str,
    version: str,
    replicas: int,
    app: str | None = None,
) -> Manifest:
    """A Deployment of one version whose selector is ``{app, version}``.

    Versions get their own Deployment here and never change version in place, so the
    (immutable) selector may include the version; ``track`` alone would not be unique once
    several extra versions run side by side. With ``app`` the pods belong to another app
    (the frontend): labels, selector and ``APP_NAME`` say so and no fault injection applies.
    """
    obj = deployment(
        spec, name=name, version=version, track=track_of(spec, version), replicas=replicas
    )
    app_label = app or spec.name
    labels = {"app": app_label, "version": version, "track": track_of(spec, version)}
    obj["metadata"]["labels"] = labels | MANAGED_BY
    obj["spec"]["selector"] = {"matchLabels": {"app": app_label, "version": version}}
    obj["spec"]["template"]["metadata"]["labels"] = dict(labels)
    if app is not None:
        container = obj["spec"]["template"]["spec"]["containers"][0]
        env = [e for e in container["env"] if e["name"] not in ("ERROR_RATE", "LATENCY_MS")]
        for item in env:
            if item["name"] == "APP_NAME":
                item["value"] = app
        container["env"] = env
    return obj


def canary_weights(spec: ReleaseSpec) -> dict[str, int]:
    """Relative weight of every version in the default route (CANARY phase).

    ``weights`` as given (versions left out get 0); else ``weight`` percent to the canary
    and the rest to stable; with neither, everything to stable. Istio route weights are
    int32 (virtual_service.proto ``HTTPRouteDestination.weight``), so they stay integers.
    """
    if spec.weights is not None:
        return {v: int(spec.weights.get(v, 0)) for v in spec.versions}
    to_canary = spec.weight if spec.weight is not None else 0
    return {spec.stable: 100 - to_canary, spec.canary: to_canary}


def phase_versions(spec: ReleaseSpec, phase: Phase) -> tuple[str, ...]:
    """The versions that keep a Deployment in ``phase``."""
    if phase is Phase.PROMOTED:
        return (spec.canary,)
    if phase is Phase.ROLLED_BACK:
        return (spec.stable,)
    return spec.versions


def _header_match(spec: ReleaseSpec, header: str) -> dict[str, dict[str, str]]:
    # virtual_service.proto HTTPMatchRequest.headers: "The header keys must be lowercase";
    # an empty StringMatch checks presence only.
    value: dict[str, str] = {}
    if spec.header_value is not None:
        value = {spec.header_match: spec.header_value}
    return {header.lower(): value}


def _uri_match(spec: ReleaseSpec) -> dict[str, dict[str, str]]:
    if spec.path == "/" and spec.path_type != "Exact":
        return {}
    kind = "exact" if spec.path_type == "Exact" else "prefix"
    return {"uri": {kind: spec.path}}


def _destination(spec: ReleaseSpec, slug: str, weight: int | None = None) -> Manifest:
    route: Manifest = {"destination": {"host": spec.name, "subset": slug, "port": {"number": 80}}}
    if weight is not None:
        route["weight"] = weight
    return route


def http_routes(spec: ReleaseSpec, phase: Phase) -> list[Manifest]:
    """The VirtualService ``http`` routes, in evaluation order (first match wins)."""
    slugs = version_slugs(spec.versions)
    uri = _uri_match(spec)
    default_match = {"match": [uri]} if uri else {}
    if phase is not Phase.CANARY:
        target = spec.canary if phase is Phase.PROMOTED else spec.stable
        return [
            {
                "name": phase.name.lower().replace("_", "-"),
                **default_match,
                "route": [_destination(spec, slugs[target], 100)],
            }
        ]
    routes: list[Manifest] = []
    if spec.header is not None:
        routes.append(
            {
                "name": "canary-by-header",
                "match": [{"headers": _header_match(spec, spec.header), **uri}],
                "route": [_destination(spec, slugs[spec.canary])],
            }
        )
    if spec.source:
        labels = {"app": frontend_name(spec), "version": spec.canary}
        routes.append(
            {
                "name": "canary-by-source",
                "match": [{"sourceLabels": labels, **uri}],
                "route": [_destination(spec, slugs[spec.canary])],
            }
        )
    weights = canary_weights(spec)
    routes.append(
        {
            "name": "weighted",
            **default_match,
            "route": [_destination(spec, slugs[v], w) for v, w in weights.items()],
        }
    )
    return routes


def render(spec: ReleaseSpec, phase: Phase) -> list[Manifest]:
    """Manifests of an Istio canary release in ``phase`` (seed: "Istio subsets canary").

    - canary: one Deployment ``{name}-{version}`` per version (pods labelled
      ``version: <v>``), Service ``{name}`` selecting ``app`` only, DestinationRule
      ``{name}`` with one subset per version, Gateway ``{name}-gateway`` and VirtualService
      ``{name}`` whose routes are: header match → canary; ``sourceLabels`` of the canary
      frontend → canary; the weighted default. With ``source=True`` also frontend
      Deployments ``{name}-frontend-<v>`` (stable and canary versions of the same image,
      calling the app through ``/relay``) behind Service ``{name}-frontend``.
    - promoted: the canary Deployment only, one route to the canary subset (weight 100).
    - rolled back: the stable Deployment only, one route to the stable subset.

    The DestinationRule keeps every version's subset in all phases: a subset without pods
    is harmless, and a VirtualService must never name a subset the DestinationRule dropped
    first (Istio answers 503 for it; UPSTREAM.md "apply the DestinationRule first"). Objects
    come in apply order: workloads, Services, DestinationRule, Gateway, VirtualService.
    """
    slugs = version_slugs(spec.versions)
    objects: list[Manifest] = [
        version_deployment(
            spec, name=versioned_name(spec.name, slugs[v]), version=v, replicas=spec.replicas
        )
        for v in phase_versions(spec, phase)
    ]
    if spec.source:
        for v in (spec.stable, spec.canary):
            objects.append(
                version_deployment(
                    spec,
                    name=versioned_name(frontend_name(spec), slugs[v]),
                    version=v,
                    replicas=1,
                    app=frontend_name(spec),
                )
            )
    objects.append(service(spec, name=spec.name, selector={"app": spec.name}))
    if spec.source:
        objects.append(
            service(spec, name=frontend_name(spec), selector={"app": frontend_name(spec)})
        )
    labels = {"app": spec.name} | MANAGED_BY
    objects.append(
        {
            "apiVersion": API_VERSION,
            "kind": "DestinationRule",
            "metadata": {"name": spec.name, "labels": dict(labels)},
            "spec": {
                "host": spec.name,
                "subsets": [{"name": slugs[v], "labels": {"version": v}} for v in spec.versions],
            },
        }
    )
    objects.append(
        {
            "apiVersion": API_VERSION,
            "kind": "Gateway",
            "metadata": {"name": gateway_name(spec), "labels": dict(labels)},
            "spec": {
                "selector": dict(INGRESS_SELECTOR),
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
            "apiVersion": API_VERSION,
            "kind": "VirtualService",
            "metadata": {"name": spec.name, "labels": dict(labels)},
            "spec": {
                "hosts": [spec.host, spec.name],
                # sourceLabels only apply where the VirtualService reaches sidecars: with a
                # gateways list it must include "mesh" (virtual_service.proto source_labels).
                "gateways": [gateway_name(spec), MESH],
                "http": copy.deepcopy(http_routes(spec, phase)),
            },
        }
    )
    return objects
