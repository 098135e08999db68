"""The ``rollouts`` strategy's manifests: an Argo Rollout and the objects its controller
reads (argoproj/argo-rollouts v1.9.1 types.go)."""

from __future__ import annotations

from typing import Any

from pytest_canary import build_spec
from pytest_canary.dataplane import argo_rollouts
from pytest_canary.manifests import Phase, baseline, render
from pytest_canary.manifests import rollouts as rollouts_manifests

STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "5s"}}]


def by_kind(objects: list[dict[str, Any]]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for obj in objects:
        found.setdefault(obj["kind"], []).append(obj["metadata"]["name"])
    return found


def test_nginx_rollout_names_its_services_and_stable_ingress() -> None:
    spec = build_spec(
        "rollouts",
        "1.0",
        "2.0",
        steps=STEPS,
        traffic="nginx",
        additional_ingress_annotations={"canary-by-header": "X-Canary"},
        canary_ingress_annotations={"nginx.ingress.kubernetes.io/canary-by-cookie": "beta"},
        scale_down_delay=3,
        abort_scale_down_delay=0,
        max_surge=1,
        max_unavailable=0,
    )
    objects = render(spec)
    assert by_kind(objects) == {
        "Rollout": ["kubeapp"],
        "Service": ["kubeapp-stable", "kubeapp-canary"],
        "Ingress": ["kubeapp"],
    }
    canary = objects[0]["spec"]["strategy"]["canary"]
    assert canary == {
        "canaryService": "kubeapp-canary",
        "stableService": "kubeapp-stable",
        "maxSurge": 1,
        "maxUnavailable": 0,
        "scaleDownDelaySeconds": 3,
        "abortScaleDownDelaySeconds": 0,
        "steps": STEPS,
        "trafficRouting": {
            "nginx": {
                "stableIngress": "kubeapp",
                "additionalIngressAnnotations": {"canary-by-header": "X-Canary"},
                "canaryIngressAnnotations": {
                    "nginx.ingress.kubernetes.io/canary-by-cookie": "beta"
                },
            }
        },
    }
    backend = objects[3]["spec"]["rules"][0]["http"]["paths"][0]["backend"]
    assert backend["service"]["name"] == "kubeapp-stable"
    # What the controller reads from it: no problem, nothing unmodelled.
    config = argo_rollouts.read_rollout(objects[0])
    assert config.problems == () and config.unmodelled == ()


def test_the_template_moves_from_stable_to_canary_and_back_on_rollback() -> None:
    spec = build_spec("rollouts", "1.0", "2.0", steps=STEPS, traffic="nginx")

    def version(objects: list[dict[str, Any]]) -> str:
        return str(objects[0]["spec"]["template"]["metadata"]["labels"]["version"])

    assert version(baseline(spec)) == "1.0"
    assert version(render(spec, Phase.CANARY)) == "2.0"
    assert version(render(spec, Phase.ROLLED_BACK)) == "1.0"
    selector = render(spec)[0]["spec"]["selector"]["matchLabels"]
    assert selector == {"app": "kubeapp"}  # the controller adds the pod template hash


def test_istio_subset_split_labels_nothing_but_the_app_before_the_controller() -> None:
    spec = build_spec(
        "rollouts", "1.0", "2.0", steps=STEPS, traffic="istio", managed_routes=["hdr"]
    )
    objects = render(spec)
    assert by_kind(objects) == {
        "Rollout": ["kubeapp"],
        "Service": ["kubeapp"],
        "DestinationRule": ["kubeapp"],
        "Gateway": ["kubeapp-gateway"],
        "VirtualService": ["kubeapp"],
    }
    routing = objects[0]["spec"]["strategy"]["canary"]["trafficRouting"]
    assert routing == {
        "istio": {
            "virtualService": {"name": "kubeapp", "routes": [rollouts_manifests.PRIMARY_ROUTE]},
            "destinationRule": {
                "name": "kubeapp",
                "canarySubsetName": "canary",
                "stableSubsetName": "stable",
            },
        },
        "managedRoutes": [{"name": "hdr"}],
    }
    vs = objects[-1]
    assert [d["weight"] for d in vs["spec"]["http"][0]["route"]] == [100, 0]
    assert "canaryService" not in objects[0]["spec"]["strategy"]["canary"]


def test_istio_host_split_has_a_stable_and_a_canary_service() -> None:
    spec = build_spec("rollouts", "1.0", "2.0", steps=STEPS, traffic="istio", istio_split="host")
    objects = render(spec)
    hosts = [d["destination"]["host"] for d in objects[-1]["spec"]["http"][0]["route"]]
    assert hosts == ["kubeapp-stable", "kubeapp-canary"]
    assert "DestinationRule" not in by_kind(objects)


def test_basic_canary_is_one_service_in_front_of_every_pod() -> None:
    spec = build_spec("rollouts", "1.0", "2.0", steps=STEPS, replicas=5)
    objects = render(spec)
    assert by_kind(objects) == {"Rollout": ["kubeapp"], "Service": ["kubeapp"]}
    assert "trafficRouting" not in objects[0]["spec"]["strategy"]["canary"]
    assert objects[0]["spec"]["replicas"] == 5
