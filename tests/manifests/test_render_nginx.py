"""The nginx renderer: the objects of each phase, valid for Kubernetes, annotations exact."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from pytest_canary import build_spec
from pytest_canary.manifests import Phase, render


def by_kind_name(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize(
    "knobs",
    [
        {"weight": 20},
        {"weight": 150, "weight_total": 1000, "header": "Region", "header_pattern": "cd|sz"},
        {"cookie": "user_from_cd", "header_value": "beta"},
        {"canary_host": "canary.foo.bar"},
        {"host": "shop.example.com", "path": "/shop", "path_type": "Exact", "replicas": 3},
    ],
)
def test_every_object_validates_against_the_kubernetes_schema(
    knobs: dict[str, Any], phase: Phase
) -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", **knobs)
    for obj in render(spec, phase):
        kubernetes_validate.validate(obj, "1.34", strict=True)


def test_canary_phase_objects() -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", weight=20)
    objects = by_kind_name(render(spec, Phase.CANARY))
    assert set(objects) == {
        ("Deployment", "kubeapp-stable"),
        ("Service", "kubeapp-stable"),
        ("Ingress", "kubeapp"),
        ("Deployment", "kubeapp-canary"),
        ("Service", "kubeapp-canary"),
        ("Ingress", "kubeapp-canary"),
    }
    main, canary = objects[("Ingress", "kubeapp")], objects[("Ingress", "kubeapp-canary")]
    assert main["spec"]["ingressClassName"] == canary["spec"]["ingressClassName"] == "nginx"
    # ingress-nginx merges a canary only into a main Ingress with the same host, path, pathType.
    assert main["spec"]["rules"][0]["host"] == canary["spec"]["rules"][0]["host"] == "foo.bar"
    main_path, canary_path = (i["spec"]["rules"][0]["http"]["paths"][0] for i in (main, canary))
    assert (main_path["path"], main_path["pathType"]) == (
        canary_path["path"],
        canary_path["pathType"],
    )
    assert main_path["backend"]["service"]["name"] == "kubeapp-stable"
    assert canary_path["backend"]["service"]["name"] == "kubeapp-canary"
    assert "annotations" not in main["metadata"]
    image = objects[("Deployment", "kubeapp-canary")]["spec"]["template"]["spec"]["containers"][0]
    assert image["image"] == "pytest-canary/sample-go:2.0"


def test_annotations_byte_for_byte() -> None:
    spec = build_spec(
        "nginx",
        stable="1.0",
        canary="2.0",
        weight=150,
        weight_total=1000,
        header="Region",
        header_pattern="cd|sz",
        cookie="user_from_cd",
    )
    canary = by_kind_name(render(spec, Phase.CANARY))[("Ingress", "kubeapp-canary")]
    assert canary["metadata"]["annotations"] == {
        "nginx.ingress.kubernetes.io/canary": "true",
        "nginx.ingress.kubernetes.io/canary-weight": "150",
        "nginx.ingress.kubernetes.io/canary-weight-total": "1000",
        "nginx.ingress.kubernetes.io/canary-by-header": "Region",
        "nginx.ingress.kubernetes.io/canary-by-header-pattern": "cd|sz",
        "nginx.ingress.kubernetes.io/canary-by-cookie": "user_from_cd",
    }


def test_header_value_annotation() -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", header="X-Canary", header_value="beta")
    notes = by_kind_name(render(spec, Phase.CANARY))[("Ingress", "kubeapp-canary")]["metadata"][
        "annotations"
    ]
    assert notes["nginx.ingress.kubernetes.io/canary-by-header"] == "X-Canary"
    assert notes["nginx.ingress.kubernetes.io/canary-by-header-value"] == "beta"
    assert "nginx.ingress.kubernetes.io/canary-weight" not in notes


def test_promoted_runs_the_canary_version_on_the_stable_workload_only() -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", weight=20)
    objects = by_kind_name(render(spec, Phase.PROMOTED))
    assert set(objects) == {
        ("Deployment", "kubeapp-stable"),
        ("Service", "kubeapp-stable"),
        ("Ingress", "kubeapp"),
    }
    template = objects[("Deployment", "kubeapp-stable")]["spec"]["template"]
    assert template["metadata"]["labels"]["version"] == "2.0"
    assert template["spec"]["containers"][0]["image"] == "pytest-canary/sample-go:2.0"
    # The selector is immutable: promotion must not change it.
    assert objects[("Deployment", "kubeapp-stable")]["spec"]["selector"] == {
        "matchLabels": {"app": "kubeapp", "track": "stable"}
    }


def test_rolled_back_keeps_the_stable_version() -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", weight=20)
    objects = by_kind_name(render(spec, Phase.ROLLED_BACK))
    assert ("Ingress", "kubeapp-canary") not in objects
    template = objects[("Deployment", "kubeapp-stable")]["spec"]["template"]
    assert template["metadata"]["labels"]["version"] == "1.0"


def test_canary_host_is_a_plain_ingress_on_its_own_host() -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", canary_host="canary.foo.bar")
    objects = by_kind_name(render(spec, Phase.CANARY))
    canary = objects[("Ingress", "kubeapp-canary")]
    assert "annotations" not in canary["metadata"]
    assert canary["spec"]["rules"][0]["host"] == "canary.foo.bar"
    main_rules = objects[("Ingress", "kubeapp")]["spec"]["rules"]
    assert [r.get("host") for r in main_rules] == ["foo.bar", None]


def test_fault_injection_only_on_the_canary() -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", canary_error_rate=0.25)
    objects = by_kind_name(render(spec, Phase.CANARY))

    def env(name: str) -> dict[str, str]:
        container = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    assert env("kubeapp-canary")["ERROR_RATE"] == "0.25"
    assert "ERROR_RATE" not in env("kubeapp-stable")


@pytest.mark.parametrize(
    ("latency", "value"), [(100, "100"), (12.5, "12.5"), ("50-150", "50-150"), ("80-80", "80")]
)
def test_latency_injection_only_on_the_canary(latency: float | str, value: str) -> None:
    """canary_latency_ms becomes the sample app's LATENCY_MS (a number or LO-HI) on the
    canary's pods only; a new weight keeps it."""
    spec = build_spec("nginx", stable="1.0", canary="2.0", canary_latency_ms=latency, weight=10)
    spec = spec.with_knobs(weight=20)

    def env(name: str) -> dict[str, str]:
        objects = by_kind_name(render(spec, Phase.CANARY))
        container = objects[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]
        return {e["name"]: e.get("value") for e in container["env"]}

    assert env("kubeapp-canary")["LATENCY_MS"] == value
    assert "LATENCY_MS" not in env("kubeapp-stable")
