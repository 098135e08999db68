"""Builders shared by every strategy: Deployments, Services and the labels that tie them."""

from __future__ import annotations

from typing import Any

from pytest_canary.spec import ReleaseSpec

Manifest = dict[str, Any]

# Labels every object of a release carries, so a backend can find (and clean up) what it owns.
MANAGED_BY = {"app.kubernetes.io/managed-by": "pytest-canary"}

SAMPLE_UID = 65532
"""The uid of the sample images (``USER 65532:65532`` in sample_app/go/Dockerfile,
Dockerfile.prebuilt and sample_app/python/Dockerfile)."""


def pod_security(spec: ReleaseSpec) -> tuple[Manifest, Manifest]:
    """(pod, container) ``securityContext`` that pass the Pod Security Standards'
    "restricted" profile (kubernetes.io/docs/concepts/security/pod-security-standards):
    ``runAsNonRoot: true`` with a numeric ``runAsUser`` (the sample app's uid, or
    ``app.run_as_user``; else the image's own numeric USER), ``seccompProfile:
    RuntimeDefault``, ``allowPrivilegeEscalation: false`` and every capability dropped."""
    pod: Manifest = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    uid = spec.app.run_as_user or (SAMPLE_UID if spec.app.is_sample else None)
    if uid is not None:
        pod["runAsUser"] = uid
        pod["runAsGroup"] = uid
    container: Manifest = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    return pod, container


def pod_labels(spec: ReleaseSpec, version: str, track: str) -> dict[str, str]:
    """Labels of the pods of one workload: the app, its version and its track."""
    return {"app": spec.name, "version": version, "track": track}


def selector_labels(spec: ReleaseSpec, track: str) -> dict[str, str]:
    """A Deployment's selector: app and track only, because the selector is immutable and
    promotion changes the version of a workload's pods in place."""
    return {"app": spec.name, "track": track}


def deployment(
    spec: ReleaseSpec,
    *,
    name: str,
    version: str,
    track: str,
    replicas: int,
    strategy: Manifest | None = None,
    extra_labels: dict[str, str] | None = None,
) -> Manifest:
    """A Deployment running ``version`` of the release's app."""
    labels = pod_labels(spec, version, track) | (extra_labels or {})
    env: list[Manifest] = [
        {"name": "APP_NAME", "value": spec.name},
        {"name": "APP_VERSION", "value": version},
        {"name": "APP_TRACK", "value": track},
        {"name": "PORT", "value": str(spec.app.port)},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    if spec.canary_error_rate and version == spec.canary:
        env.append({"name": "ERROR_RATE", "value": repr(float(spec.canary_error_rate))})
    if spec.canary_latency_ms and version == spec.canary:
        # A number of milliseconds or "LO-HI" (sample_app/README.md "Faults").
        latency = spec.canary_latency_ms
        env.append(
            {"name": "LATENCY_MS", "value": latency if isinstance(latency, str) else f"{latency:g}"}
        )
    pod_context, container_context = pod_security(spec)
    body: Manifest = {
        "replicas": replicas,
        "selector": {"matchLabels": selector_labels(spec, track)},
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": spec.app.image_for(version),
                        "imagePullPolicy": "IfNotPresent",
                        "ports": [{"name": "http", "containerPort": spec.app.port}],
                        "env": env,
                        "readinessProbe": {
                            "httpGet": {"path": spec.app.health, "port": "http"},
                            "periodSeconds": 1,
                            "failureThreshold": 2,
                        },
                        "securityContext": container_context,
                    }
                ],
                "securityContext": pod_context,
                "terminationGracePeriodSeconds": 10,
            },
        },
    }
    if strategy is not None:
        body["strategy"] = strategy
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels | MANAGED_BY},
        "spec": body,
    }


def service(spec: ReleaseSpec, *, name: str, selector: dict[str, str]) -> Manifest:
    """A ClusterIP Service on port 80 in front of the app's container port."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": spec.name} | MANAGED_BY},
        "spec": {
            "selector": selector,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def stable_name(spec: ReleaseSpec) -> str:
    """Name of the stable workload and its Service."""
    return f"{spec.name}-stable"


def canary_name(spec: ReleaseSpec) -> str:
    """Name of the canary workload and its Service."""
    return f"{spec.name}-canary"
