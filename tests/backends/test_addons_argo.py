"""The Argo Rollouts add-on: its pin, and its install against a fake kubectl (the commands,
the readiness waits, a controller that cannot start)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from test_addons import EVENTS, FakeKubectl, installer, stuck_controller

from pytest_canary.backends.addons import (
    ADDONS,
    ALL_ADDONS,
    AddonFailure,
    load_pins,
    parse_addon_files,
    parse_addons,
)
from pytest_canary.backends.kind.options import KindOptions, cluster_options

CRDS = (
    "crd/rollouts.argoproj.io crd/analysisruns.argoproj.io crd/analysistemplates.argoproj.io "
    "crd/clusteranalysistemplates.argoproj.io crd/experiments.argoproj.io"
)


@pytest.fixture
def kubectl(tmp_path: Path) -> FakeKubectl:
    return FakeKubectl(tmp_path)


def commands(kubectl: FakeKubectl) -> list[str]:
    """What the installer ran, without the pod watch's looks."""
    return [line for line in kubectl.log if not line.startswith(("get pods", "get events"))]


def test_the_pin_is_the_release_asset_of_v1_9_1_with_its_kubernetes_window() -> None:
    pin = load_pins()["argo-rollouts"]
    assert pin.version == "v1.9.1"
    assert pin.resolve("linux/arm64")[:2] == (
        "https://github.com/argoproj/argo-rollouts/releases/download/v1.9.1/install.yaml",
        "argo-rollouts-v1.9.1-install.yaml",
    )
    assert pin.sha256 == ""  # no published digest: the first download's is recorded
    assert pin.kubernetes is not None
    assert (pin.kubernetes.low.minor, pin.kubernetes.high.minor) == (32, 35)  # e2e matrix


def test_it_is_installed_only_when_asked_for_or_needed() -> None:
    assert "argo-rollouts" not in ADDONS and "argo-rollouts" in ALL_ADDONS
    assert KindOptions().addons == ADDONS
    assert parse_addons("argo-rollouts, istio") == ("istio", "argo-rollouts")
    options = cluster_options("kind", {"canary_addons": ("--canary-addons", "argo-rollouts")})
    assert isinstance(options, KindOptions) and options.addons == ("argo-rollouts",)


def test_a_local_file_can_stand_in_for_the_download(tmp_path: Path) -> None:
    local = tmp_path / "install.yaml"
    local.write_text("kind: List\n")
    assert parse_addon_files([f"argo-rollouts={local}"]) == {"argo-rollouts": str(local)}


def test_install_creates_the_namespace_applies_server_side_and_waits_for_crds_and_controller(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    manifest = tmp_path / "install.yaml"
    manifest.write_text("kind: List\n")
    inst = installer(kubectl, tmp_path, **{"argo-rollouts": str(manifest)})
    lines: list[str] = []
    inst.progress = lines.append
    inst.install(["argo-rollouts"], load_pins(), gateway_node_port=30080)
    assert commands(kubectl) == [
        "get deployment -n argo-rollouts argo-rollouts -o json --ignore-not-found",
        "apply -f -",  # the Namespace argo-rollouts, from stdin
        f"apply --server-side --force-conflicts -n argo-rollouts -f {manifest}",
        f"wait --for=condition=Established --timeout=5s {CRDS}",
        "rollout status -n argo-rollouts deployment/argo-rollouts --timeout=5s",
        "wait -n argo-rollouts --for=condition=ready pod -l "
        "app.kubernetes.io/name=argo-rollouts --timeout=5s",
    ]
    assert lines[0] == "installing argo-rollouts v1.9.1"
    assert lines[-1].startswith("argo-rollouts v1.9.1 ready (")


def controller(image: str) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [{"image": image}]}}}}


def test_the_controller_at_the_pinned_version_is_kept_and_only_waited_for(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    kubectl.rule(
        "get deployment -n argo-rollouts argo-rollouts",
        out=controller("quay.io/argoproj/argo-rollouts:v1.9.1"),
    )
    installer(kubectl, tmp_path).argo_rollouts(load_pins()["argo-rollouts"])
    assert not any(line.startswith("apply") for line in kubectl.log)
    assert commands(kubectl)[-3].startswith("wait --for=condition=Established")


def test_another_version_is_upgraded_in_place(kubectl: FakeKubectl, tmp_path: Path) -> None:
    manifest = tmp_path / "install.yaml"
    manifest.write_text("kind: List\n")
    kubectl.rule(
        "get deployment -n argo-rollouts argo-rollouts",
        out=controller("quay.io/argoproj/argo-rollouts:v1.8.3"),
    )
    inst = installer(kubectl, tmp_path, **{"argo-rollouts": str(manifest)})
    lines: list[str] = []
    inst.progress = lines.append
    inst.argo_rollouts(load_pins()["argo-rollouts"])
    assert "installing argo-rollouts v1.9.1 (replacing v1.8.3)" in lines
    assert f"apply --server-side --force-conflicts -n argo-rollouts -f {manifest}" in kubectl.log


def test_a_controller_pod_that_cannot_pull_its_image_fails_the_install_in_seconds(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    manifest = tmp_path / "install.yaml"
    manifest.write_text("kind: List\n")
    stuck = stuck_controller()
    pod = stuck["items"][0]
    pod["metadata"] = {"name": "argo-rollouts-5f6c9d-abcde", "namespace": "argo-rollouts"}
    pod["status"]["containerStatuses"][0]["name"] = "argo-rollouts"
    kubectl.rule("rollout status", out="Waiting for deployment rollout to finish\n", sleep=600)
    kubectl.rule("get pods -n argo-rollouts", out=stuck, after="rollout status")
    kubectl.rule("get pods -n argo-rollouts", out={"items": []})
    kubectl.rule("get events -n argo-rollouts", out=EVENTS)
    inst = installer(kubectl, tmp_path, timeout=600, **{"argo-rollouts": str(manifest)})
    started = time.monotonic()
    with pytest.raises(AddonFailure) as caught:
        inst.install(["argo-rollouts"], load_pins(), gateway_node_port=30080)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith("installing argo-rollouts: ")
    assert "stopped: a pod of the add-on will not become ready" in message
    assert "pod argo-rollouts-5f6c9d-abcde: container argo-rollouts: ImagePullBackOff" in message
    assert "pods in argo-rollouts:" in message
