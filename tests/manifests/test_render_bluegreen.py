"""Blue/green manifests (seed: two Deployments, the Service selector switched on promotion)."""

from __future__ import annotations

from typing import Any

from pytest_canary.manifests import Phase, render
from pytest_canary.spec import build_spec

SPEC = build_spec("bluegreen", "1.0", "2.0", replicas=2)


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = obj["spec"]["template"]["metadata"]["labels"]
    return labels


def served_by(objects: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    """Deployments whose pods the Service selects."""
    selector = objects["Service", "kubeapp"]["spec"]["selector"]
    return [
        name
        for (kind, name), obj in objects.items()
        if kind == "Deployment" and selector.items() <= pod_labels(obj).items()
    ]


def test_canary_phase_runs_blue_and_green_and_serves_blue() -> None:
    objects = by_key(render(SPEC, Phase.CANARY))
    assert list(objects) == [
        ("Deployment", "kubeapp-blue"),
        ("Deployment", "kubeapp-green"),
        ("Service", "kubeapp"),
    ]
    blue, green = objects["Deployment", "kubeapp-blue"], objects["Deployment", "kubeapp-green"]
    assert pod_labels(blue) == {"app": "kubeapp", "version": "1.0", "track": "blue"}
    assert pod_labels(green) == {"app": "kubeapp", "version": "2.0", "track": "green"}
    assert blue["spec"]["replicas"] == green["spec"]["replicas"] == 2
    assert objects["Service", "kubeapp"]["spec"]["selector"] == {"app": "kubeapp", "track": "blue"}
    assert served_by(objects) == ["kubeapp-blue"]


def test_promotion_flips_the_selector_to_green_and_keeps_blue_for_rollback() -> None:
    objects = by_key(render(SPEC, Phase.PROMOTED))
    assert ("Deployment", "kubeapp-blue") in objects
    assert objects["Service", "kubeapp"]["spec"]["selector"] == {"app": "kubeapp", "track": "green"}
    assert served_by(objects) == ["kubeapp-green"]


def test_rollback_flips_back_to_blue_and_deletes_green() -> None:
    objects = by_key(render(SPEC, Phase.ROLLED_BACK))
    assert list(objects) == [("Deployment", "kubeapp-blue"), ("Service", "kubeapp")]
    assert served_by(objects) == ["kubeapp-blue"]


def test_deployments_are_applied_before_the_service_switches() -> None:
    for phase in Phase:
        kinds = [o["kind"] for o in render(SPEC, phase)]
        assert kinds[-1] == "Service" and set(kinds[:-1]) == {"Deployment"}
