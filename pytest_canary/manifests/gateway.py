"""Gateway API canary: one Service per version and an HTTPRoute with weighted backendRefs.

The seed scenario ("Gateway API traffic splitting"): Gateway API has no subsets, so every
version gets its own Deployment and Service; an ``HTTPRoute`` attached to a ``Gateway``
sends requests carrying the canary header to the canary Service and splits the rest by
relative ``backendRefs[].weight``.

API: ``gateway.networking.k8s.io/v1`` (Gateway API v1.6.1 standard channel), fields from
kubernetes-sigs/gateway-api ``apis/v1/httproute_types.go`` and ``gateway_types.go``. The
Gateway uses class ``istio`` (Istio implements Gateway API; UPSTREAM.md "Gateway API").
"""

from __future__ import annotations

from pytest_canary.manifests.common import MANAGED_BY, Manifest, service
from pytest_canary.manifests.istio import (
    canary_weights,
    phase_versions,
    version_deployment,
    version_slugs,
    versioned_name,
)
from pytest_canary.manifests.phase import Phase
from pytest_canary.spec import ReleaseSpec

API_VERSION = "gateway.networking.k8s.io/v1"
GATEWAY_CLASS = "istio"
LISTENER = "http"
# Ingress pathType -> Gateway API PathMatchType ("PathPrefix" is "semantically equivalent
# to the Prefix path type in the Kubernetes Ingress API", httproute_types.go).
PATH_TYPES = {"Prefix": "PathPrefix", "Exact": "Exact", "ImplementationSpecific": "PathPrefix"}
# spec.header_match -> HeaderMatchType (Gateway API has no prefix match).
HEADER_TYPES = {"exact": "Exact", "regex": "RegularExpression"}
# Gateway API has no presence match: a regular expression matching any value checks that
# the header is there (Envoy matches a header value only when the header is present).
ANY_VALUE = ".*"


def gateway_name(spec: ReleaseSpec) -> str:
    """Name of the Gateway the HTTPRoute attaches to."""
    return f"{spec.name}-gateway"


def service_names(spec: ReleaseSpec) -> dict[str, str]:
    """The Service (and Deployment) name of every version: ``{name}-{version-slug}``."""
    slugs = version_slugs(spec.versions)
    return {v: versioned_name(spec.name, slugs[v]) for v in spec.versions}


def _backend(name: str, weight: int | None = None) -> Manifest:
    ref: Manifest = {"name": name, "port": 80}
    if weight is not None:
        ref["weight"] = weight
    return ref


def _path_match(spec: ReleaseSpec) -> Manifest:
    return {"type": PATH_TYPES[spec.path_type], "value": spec.path}


def http_route_rules(spec: ReleaseSpec, phase: Phase) -> list[Manifest]:
    """The HTTPRoute rules of ``phase``.

    Precedence between rules is the Gateway API's, not list order: the header rule has the
    same path match as the default rule plus one header match, so it wins
    (httproute_types.go ``HTTPRouteRule.Matches``: "Largest number of header matches").
    """
    names = service_names(spec)
    path = _path_match(spec)
    if phase is not Phase.CANARY:
        target = spec.canary if phase is Phase.PROMOTED else spec.stable
        return [
            {
                "name": phase.name.lower().replace("_", "-"),
                "matches": [{"path": dict(path)}],
                "backendRefs": [_backend(names[target])],
            }
        ]
    rules: list[Manifest] = []
    if spec.header is not None:
        header: Manifest = {
            "type": HEADER_TYPES[spec.header_match],
            "name": spec.header,
            "value": spec.header_value if spec.header_value is not None else ANY_VALUE,
        }
        if spec.header_value is None:
            header["type"] = "RegularExpression"
        rules.append(
            {
                "name": "canary-by-header",
                "matches": [{"path": dict(path), "headers": [header]}],
                "backendRefs": [_backend(names[spec.canary])],
            }
        )
    rules.append(
        {
            "name": "weighted",
            "matches": [{"path": dict(path)}],
            "backendRefs": [_backend(names[v], w) for v, w in canary_weights(spec).items()],
        }
    )
    return rules


def render(spec: ReleaseSpec, phase: Phase) -> list[Manifest]:
    """Manifests of a Gateway API canary release in ``phase`` (seed: "HTTPRoute weights").

    - canary: per version a Deployment and a Service ``{name}-{version-slug}``; Gateway
      ``{name}-gateway`` (class ``istio``, HTTP listener on port 80 for ``host``); HTTPRoute
      ``{name}`` for ``host``: header match (``Exact`` or ``RegularExpression``, the header
      name as given) → canary Service; default rule with weighted backendRefs (relative
      weights, 0 allowed and listed).
    - promoted: only the canary version's Deployment and Service; one backendRef.
    - rolled back: only the stable version's Deployment and Service; one backendRef.

    Apply order: workloads, Services, Gateway, HTTPRoute; a backend deletes what is no
    longer rendered after applying the rest (the route stops naming a Service first).
    """
    names = service_names(spec)
    versions = phase_versions(spec, phase)
    objects: list[Manifest] = [
        version_deployment(spec, name=names[v], version=v, replicas=spec.replicas) for v in versions
    ]
    objects += [
        service(spec, name=names[v], selector={"app": spec.name, "version": v}) for v in versions
    ]
    labels = {"app": spec.name} | MANAGED_BY
    objects.append(
        {
            "apiVersion": API_VERSION,
            "kind": "Gateway",
            "metadata": {"name": gateway_name(spec), "labels": dict(labels)},
            "spec": {
                "gatewayClassName": GATEWAY_CLASS,
                "listeners": [
                    {
                        "name": LISTENER,
                        "hostname": spec.host,
                        "port": 80,
                        "protocol": "HTTP",
                        "allowedRoutes": {"namespaces": {"from": "Same"}},
                    }
                ],
            },
        }
    )
    objects.append(
        {
            "apiVersion": API_VERSION,
            "kind": "HTTPRoute",
            "metadata": {"name": spec.name, "labels": dict(labels)},
            "spec": {
                "parentRefs": [{"name": gateway_name(spec)}],
                "hostnames": [spec.host],
                "rules": http_route_rules(spec, phase),
            },
        }
    )
    return objects
