"""Every pod pytest-canary renders passes the Pod Security Standards' "restricted" profile
(kubernetes.io/docs/concepts/security/pod-security-standards, "Restricted"), so a cluster that
enforces it (``pod-security.kubernetes.io/enforce: restricted``) admits the releases."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_canary import manifests
from pytest_canary.errors import CanaryConfigError
from pytest_canary.manifests import Phase
from pytest_canary.spec import STRATEGIES, AppImage, build_spec

ALLOWED_VOLUMES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """The controls of the restricted profile (baseline included) a pod spec breaks."""
    found: list[str] = []
    pod_context = pod.get("securityContext") or {}
    containers = list(pod.get("initContainers") or []) + list(pod.get("containers") or [])
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(key):
            found.append(f"{key} (host namespaces)")
    for volume in pod.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUMES:
            found.append(f"volume {volume['name']} of type {kinds}")
    for container in containers:
        name = container["name"]
        context = container.get("securityContext") or {}
        if context.get("privileged"):
            found.append(f"{name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation must be false")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            found.append(f"{name}: capabilities must drop ALL")
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {capabilities['add']}")
        if not (context.get("runAsNonRoot") or pod_context.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot must be true")
        if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get(
            "type"
        )
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            found.append(f"{name}: hostPort")
    return found


def pods_of(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (o["metadata"]["name"], o["spec"]["template"]["spec"])
        for o in objects
        if o["kind"] in ("Deployment", "StatefulSet", "DaemonSet")
    ]


KNOBS: dict[str, dict[str, Any]] = {"istio": {"source": True}, "nginx": {"weight": 20}}


@pytest.mark.parametrize("phase", list(Phase), ids=lambda p: p.name.lower())
@pytest.mark.parametrize("strategy", [s for s in STRATEGIES if s != "rollouts"])
def test_every_rendered_pod_passes_the_restricted_profile(strategy: str, phase: Phase) -> None:
    spec = build_spec(strategy, "1.0", "2.0", **KNOBS.get(strategy, {}))
    pods = pods_of(manifests.render(spec, phase))
    assert pods
    for name, pod in pods:
        assert restricted_violations(pod) == [], name
        assert pod["securityContext"]["runAsUser"] == 65532  # the sample images' USER


def test_the_checker_catches_what_the_profile_forbids() -> None:
    assert restricted_violations({"containers": [{"name": "app"}]}) == [
        "app: allowPrivilegeEscalation must be false",
        "app: capabilities must drop ALL",
        "app: runAsNonRoot must be true",
        "app: seccompProfile must be RuntimeDefault or Localhost",
    ]


def test_your_image_runs_as_the_uid_you_give_or_its_own_numeric_user() -> None:
    own = AppImage("registry.example/shop:{version}", run_as_user=1000)
    spec = build_spec("nginx", "1.0", "2.0", app=own)
    ((_, pod), *_) = pods_of(manifests.render(spec))
    assert pod["securityContext"]["runAsUser"] == 1000 and restricted_violations(pod) == []
    image_user = build_spec("nginx", "1.0", "2.0", app=AppImage("registry.example/shop:{version}"))
    ((_, pod), *_) = pods_of(manifests.render(image_user))
    assert "runAsUser" not in pod["securityContext"]  # the kubelet checks the image's USER
    assert restricted_violations(pod) == []


@pytest.mark.parametrize("uid", [0, -1, True, "1000"])
def test_a_root_or_malformed_uid_is_refused(uid: Any) -> None:
    with pytest.raises(CanaryConfigError, match=r"app\.run_as_user"):
        build_spec("nginx", "1.0", "2.0", app=AppImage("shop:{version}", run_as_user=uid))
