"""ingress-nginx canary: a main Ingress and a canary Ingress carrying the canary annotations.

Annotation names and semantics: ingress-nginx controller-v1.15.1,
docs/user-guide/nginx-configuration/annotations.md ("Canary").
"""

from __future__ import annotations

from pytest_canary.manifests.common import (
    MANAGED_BY,
    Manifest,
    canary_name,
    deployment,
    selector_labels,
    service,
    stable_name,
)
from pytest_canary.manifests.phase import Phase
from pytest_canary.spec import ReleaseSpec

ANNOTATION_PREFIX = "nginx.ingress.kubernetes.io/"
INGRESS_CLASS = "nginx"


def canary_annotations(spec: ReleaseSpec) -> dict[str, str]:
    """The ``nginx.ingress.kubernetes.io/canary*`` annotations of the canary Ingress.

    Annotation values are strings; weights are rendered as decimal integers.
    """
    notes = {"canary": "true"}
    if spec.weight is not None:
        notes["canary-weight"] = str(spec.weight)
    if spec.weight_total is not None:
        notes["canary-weight-total"] = str(spec.weight_total)
    if spec.header is not None:
        notes["canary-by-header"] = spec.header
    if spec.header_value is not None:
        notes["canary-by-header-value"] = spec.header_value
    if spec.header_pattern is not None:
        notes["canary-by-header-pattern"] = spec.header_pattern
    if spec.cookie is not None:
        notes["canary-by-cookie"] = spec.cookie
    return {ANNOTATION_PREFIX + key: value for key, value in notes.items()}


def ingress(
    spec: ReleaseSpec,
    *,
    name: str,
    host: str,
    service_name: str,
    annotations: dict[str, str] | None = None,
    catch_all: bool = False,
) -> Manifest:
    """An ``ingressClassName: nginx`` Ingress routing ``host`` + the spec's path to a Service.

    With ``catch_all`` a second rule without host sends requests for any other Host to the
    same Service (ingress-nginx puts host-less rules on its catch-all server ``_``).
    """
    backend = {"service": {"name": service_name, "port": {"number": 80}}}
    paths = [{"path": spec.path, "pathType": spec.path_type, "backend": backend}]
    rules: list[Manifest] = [{"host": host, "http": {"paths": paths}}]
    if catch_all:
        rules.append({"http": {"paths": paths}})
    body: Manifest = {"ingressClassName": INGRESS_CLASS, "rules": rules}
    metadata: Manifest = {"name": name, "labels": {"app": spec.name} | MANAGED_BY}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": body,
    }


def render(spec: ReleaseSpec, phase: Phase) -> list[Manifest]:
    """Manifests of an ingress-nginx canary release in ``phase``.

    - canary: stable and canary Deployments + Services, the main Ingress, and either the canary
      Ingress (same host, path and pathType, canary annotations) or, with ``canary_host``, a
      plain Ingress for the canary's own virtual host (the main Ingress then also serves
      requests for any other Host, or none, through a host-less rule).
    - promoted: the stable Deployment runs the canary version; canary objects are gone.
    - rolled back: the stable Deployment on the stable version; canary objects are gone.
    """
    stable = stable_name(spec)
    version = spec.canary if phase is Phase.PROMOTED else spec.stable
    objects = [
        deployment(spec, name=stable, version=version, track="stable", replicas=spec.replicas),
        service(spec, name=stable, selector=selector_labels(spec, "stable")),
        ingress(
            spec,
            name=spec.name,
            host=spec.host,
            service_name=stable,
            catch_all=spec.canary_host is not None,
        ),
    ]
    if phase is not Phase.CANARY:
        return objects
    canary = canary_name(spec)
    objects += [
        deployment(spec, name=canary, version=spec.canary, track="canary", replicas=spec.replicas),
        service(spec, name=canary, selector=selector_labels(spec, "canary")),
    ]
    if spec.canary_host is not None:
        objects.append(ingress(spec, name=canary, host=spec.canary_host, service_name=canary))
    else:
        objects.append(
            ingress(
                spec,
                name=canary,
                host=spec.host,
                service_name=canary,
                annotations=canary_annotations(spec),
            )
        )
    return objects
