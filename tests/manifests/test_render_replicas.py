"""Replica-ratio canary manifests (seed: stable and canary Deployments behind ``app: kubeapp``)."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_canary.manifests import Phase, render
from pytest_canary.manifests.replicas import expected_canary_share
from pytest_canary.spec import build_spec

SPEC = build_spec("replicas", "1.0", "2.0")  # 3 stable : 1 canary


def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def env(deployment: dict[str, Any]) -> dict[str, str]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_canary_phase_is_two_deployments_behind_one_service() -> None:
    objects = by_key(render(SPEC, Phase.CANARY))
    assert list(objects) == [
        ("Deployment", "kubeapp-stable"),
        ("Deployment", "kubeapp-canary"),
        ("Service", "kubeapp"),
    ]
    stable, canary = (
        objects["Deployment", "kubeapp-stable"],
        objects["Deployment", "kubeapp-canary"],
    )
    assert stable["spec"]["replicas"] == 3 and canary["spec"]["replicas"] == 1
    assert stable["spec"]["template"]["metadata"]["labels"] == {
        "app": "kubeapp",
        "version": "1.0",
        "track": "stable",
    }
    assert canary["spec"]["template"]["metadata"]["labels"] == {
        "app": "kubeapp",
        "version": "2.0",
        "track": "canary",
    }


def test_the_service_selects_only_the_shared_app_label_so_both_tracks_serve() -> None:
    objects = by_key(render(SPEC, Phase.CANARY))
    selector = objects["Service", "kubeapp"]["spec"]["selector"]
    assert selector == {"app": "kubeapp"}
    for name in ("kubeapp-stable", "kubeapp-canary"):
        labels = objects["Deployment", name]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()


@pytest.mark.parametrize(
    ("stable", "canary", "share"), [(3, 1, 0.25), (3, 3, 0.5), (0, 3, 1.0), (1, 0, 0.0)]
)
def test_expected_canary_share_is_the_replica_ratio(stable: int, canary: int, share: float) -> None:
    spec = build_spec("replicas", "1.0", "2.0", stable_replicas=stable, canary_replicas=canary)
    assert expected_canary_share(spec) == share


def test_promoted_runs_the_canary_version_in_the_stable_deployment() -> None:
    objects = by_key(render(SPEC, Phase.PROMOTED))
    assert list(objects) == [("Deployment", "kubeapp-stable"), ("Service", "kubeapp")]
    stable = objects["Deployment", "kubeapp-stable"]
    assert stable["spec"]["template"]["metadata"]["labels"]["version"] == "2.0"
    assert env(stable)["APP_VERSION"] == "2.0"
    assert stable["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":2.0")
    assert stable["spec"]["replicas"] == 3


def test_rolled_back_deletes_the_canary_and_keeps_the_stable_version() -> None:
    objects = by_key(render(SPEC, Phase.ROLLED_BACK))
    assert list(objects) == [("Deployment", "kubeapp-stable"), ("Service", "kubeapp")]
    assert env(objects["Deployment", "kubeapp-stable"])["APP_VERSION"] == "1.0"


def test_a_stable_scaled_to_zero_is_promoted_with_the_canary_capacity() -> None:
    spec = build_spec("replicas", "1.0", "2.0", stable_replicas=0, canary_replicas=3)
    assert render(spec, Phase.CANARY)[0]["spec"]["replicas"] == 0
    assert render(spec, Phase.PROMOTED)[0]["spec"]["replicas"] == 3
    assert render(spec, Phase.ROLLED_BACK)[0]["spec"]["replicas"] == 3


def test_deployment_selectors_stay_the_same_across_phases() -> None:
    # A Deployment's selector is immutable: promotion must change the version in place.
    selectors = {phase: render(SPEC, phase)[0]["spec"]["selector"] for phase in Phase}
    assert len({repr(s) for s in selectors.values()}) == 1
