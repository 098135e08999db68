"""Checks every strategy's manifests share: schemas, names, selectors, purity.

Each strategy also has its own file (``test_render_<strategy>.py``) for what its phases
contain; here every spec below is rendered in every phase and the generic promises hold.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping

import kubernetes_validate
import pytest

from pytest_canary.manifests import RENDERERS, Manifest, Phase, render
from pytest_canary.spec import STRATEGIES, ReleaseSpec, build_spec

LONG_NAME = "a" + "b" * 41  # the longest name the spec accepts (42)
LONG_VERSION = "1." + "9" * 61  # a 63-character version, the longest label value

SPECS: dict[str, ReleaseSpec] = {
    "replicas-3-1": build_spec("replicas", "1.0", "2.0"),
    "replicas-0-3": build_spec("replicas", "1.0", "2.0", stable_replicas=0, canary_replicas=3),
    "bluegreen": build_spec("bluegreen", "1.0", "2.0", replicas=2),
    "rolling-1-1": build_spec("rolling", "1.0", "2.0", replicas=4, surge=1, unavailable=1),
    "rolling-percent": build_spec(
        "rolling", "1.0", "2.0", replicas=4, surge="25%", unavailable="25%"
    ),
    "istio-seed": build_spec(
        "istio", "v1", "v2", weight=10, header="canary", header_value="canary-tester", source=True
    ),
    "istio-three": build_spec(
        "istio",
        "v1",
        "v2",
        weights={"v1": 50, "v2": 25, "v3": 25},
        header="X-User",
        header_value="^a.*",
        header_match="regex",
        canary_error_rate=0.1,
    ),
    "istio-long": build_spec(
        "istio", "1.0", LONG_VERSION, name=LONG_NAME, source=True, path="/api", header="x-a"
    ),
    "gateway-seed": build_spec(
        "gateway", "v1", "v2", weight=20, header="X-Canary", header_value="always"
    ),
    "gateway-regex": build_spec(
        "gateway",
        "v1",
        "2.0",
        weights={"v1": 2, "2.0": 1, "v3": 0},
        header="Cookie",
        header_value=".*canary=always.*",
        header_match="regex",
        path="/shop",
        path_type="Exact",
    ),
    "gateway-long": build_spec("gateway", "1.0", LONG_VERSION, name=LONG_NAME),
    "rollouts-nginx": build_spec(
        "rollouts",
        "1.0",
        "2.0",
        steps=[{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "5s"}}],
        traffic="nginx",
        additional_ingress_annotations={"canary-by-header": "X-Canary"},
        scale_down_delay=2,
    ),
    "rollouts-istio": build_spec(
        "rollouts",
        "v1",
        LONG_VERSION,
        name=LONG_NAME,
        steps=[
            {"setWeight": 10},
            {
                "setHeaderRoute": {
                    "name": "hdr",
                    "match": [{"headerName": "x-canary", "headerValue": {"exact": "yes"}}],
                }
            },
            {"pause": {}},
        ],
        traffic="istio",
        managed_routes=["hdr"],
        path="/api",
    ),
    "rollouts-istio-host": build_spec(
        "rollouts", "1.0", "2.0", steps=[{"setWeight": 30}], traffic="istio", istio_split="host"
    ),
    "rollouts-basic": build_spec(
        "rollouts", "1.0", "2.0", steps=[{"setWeight": 20}, {"pause": {}}], replicas=5
    ),
}

CASES = [
    pytest.param(spec, phase, id=f"{key}-{phase.name.lower()}")
    for key, spec in SPECS.items()
    for phase in Phase
]
CORE_API_VERSIONS = ("v1", "apps/v1")
DNS_1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def kinds(objects: Iterable[Manifest], kind: str) -> list[Manifest]:
    """The objects of one kind."""
    return [o for o in objects if o["kind"] == kind]


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A Kubernetes equality selector: every pair present in ``labels``."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def services_without_pods(objects: list[Manifest]) -> list[str]:
    """Names of Services whose selector matches no Deployment's pod template."""
    templates = [
        d["spec"]["template"]["metadata"]["labels"]
        for d in kinds(objects, "Deployment") + kinds(objects, "Rollout")
    ]
    return [
        svc["metadata"]["name"]
        for svc in kinds(objects, "Service")
        if not any(selects(svc["spec"]["selector"], labels) for labels in templates)
    ]


@pytest.mark.parametrize(("spec", "phase"), CASES)
def test_every_core_object_is_valid_for_kubernetes_1_34(spec: ReleaseSpec, phase: Phase) -> None:
    for obj in render(spec, phase):
        if obj["apiVersion"] in CORE_API_VERSIONS:
            # Raises ValidationError naming the field; strict rejects unknown fields.
            kubernetes_validate.validate(obj, "1.34", strict=True)


@pytest.mark.parametrize(("spec", "phase"), CASES)
def test_every_service_selector_matches_some_deployment_template(
    spec: ReleaseSpec, phase: Phase
) -> None:
    assert services_without_pods(render(spec, phase)) == []


@pytest.mark.parametrize(("spec", "phase"), CASES)
def test_every_deployment_selects_its_own_pods(spec: ReleaseSpec, phase: Phase) -> None:
    for dep in kinds(render(spec, phase), "Deployment"):
        labels = dep["spec"]["template"]["metadata"]["labels"]
        assert selects(dep["spec"]["selector"]["matchLabels"], labels), dep["metadata"]["name"]


@pytest.mark.parametrize(("spec", "phase"), CASES)
def test_deployment_selectors_do_not_overlap(spec: ReleaseSpec, phase: Phase) -> None:
    deployments = kinds(render(spec, phase), "Deployment")
    for dep in deployments:
        selector = dep["spec"]["selector"]["matchLabels"]
        owners = [
            d["metadata"]["name"]
            for d in deployments
            if selects(selector, d["spec"]["template"]["metadata"]["labels"])
        ]
        assert owners == [dep["metadata"]["name"]]


@pytest.mark.parametrize(("spec", "phase"), CASES)
def test_names_are_dns_1123_labels_of_at_most_63_characters(
    spec: ReleaseSpec, phase: Phase
) -> None:
    for obj in render(spec, phase):
        name = obj["metadata"]["name"]
        assert len(name) <= 63 and DNS_1123_LABEL.match(name), name


@pytest.mark.parametrize(("spec", "phase"), CASES)
def test_names_are_unique_per_kind(spec: ReleaseSpec, phase: Phase) -> None:
    keys = [(o["kind"], o["metadata"]["name"]) for o in render(spec, phase)]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize(("spec", "phase"), CASES)
def test_rendering_is_pure(spec: ReleaseSpec, phase: Phase) -> None:
    first = render(spec, phase)
    snapshot = copy.deepcopy(first)
    first[0]["metadata"]["name"] = "mutated"
    assert render(spec, phase) == snapshot


def test_every_strategy_has_a_renderer() -> None:
    assert set(RENDERERS) == set(STRATEGIES)


ISTIO_GATEWAY = "networking.istio.io/v1"


@pytest.mark.parametrize(("spec", "phase"), CASES)
def test_validate_objects_accepts_every_rendered_object(spec: ReleaseSpec, phase: Phase) -> None:
    from pytest_canary.validate import validate_objects

    assert [str(p) for p in validate_objects(render(spec, phase))] == []


def test_validate_objects_checks_the_istio_gateway() -> None:
    from pytest_canary.validate import validate_objects

    gateways = [o for o in render(SPECS["istio-seed"]) if o["apiVersion"] == ISTIO_GATEWAY]
    assert [o["kind"] for o in gateways].count("Gateway") == 1
    assert validate_objects(gateways) == []
    (gateway,) = [o for o in gateways if o["kind"] == "Gateway"]
    broken = dict(gateway, spec={"servers": [{"port": {"number": 80}, "hosts": []}]})
    assert {p.path for p in validate_objects([broken])} >= {
        "spec.servers[0].port.protocol",
        "spec.servers[0].hosts",
    }
