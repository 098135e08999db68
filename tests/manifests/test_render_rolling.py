"""Paused rolling update manifests and the Deployment-controller model behind the share.

Seed: ``kubectl set image`` + ``kubectl rollout pause``; ``resume`` promotes, ``undo`` rolls
back. The expected share follows kubernetes/kubernetes pkg/controller/deployment (see the
docstring of ``pytest_canary.manifests.rolling``).
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pytest_canary.manifests import Phase, render
from pytest_canary.manifests.rolling import (
    PAUSE_AFTER,
    RolloutCounts,
    baseline,
    expected_new_share,
    pause_after,
    paused_rollout,
    reconcile,
    resolve_fenceposts,
    sync,
)
from pytest_canary.spec import build_spec

SPEC = build_spec("rolling", "1.0", "2.0", replicas=4, surge=1, unavailable=0)


def workload(phase: Phase, spec: Any = SPEC) -> dict[str, Any]:
    objects = render(spec, phase)
    assert [(o["kind"], o["metadata"]["name"]) for o in objects] == [
        ("Deployment", "kubeapp"),
        ("Service", "kubeapp"),
    ]
    return objects[0]


def version_of(deployment: dict[str, Any]) -> str:
    version: str = deployment["spec"]["template"]["metadata"]["labels"]["version"]
    return version


def test_canary_phase_is_one_deployment_on_the_canary_version_with_a_pause_note() -> None:
    dep = workload(Phase.CANARY)
    assert version_of(dep) == "2.0"
    assert dep["spec"]["replicas"] == 4
    assert dep["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert dep["metadata"]["annotations"] == {PAUSE_AFTER: "1"}
    # A paused Deployment never starts rolling: the pause is the backend's act, not a field.
    assert "paused" not in dep["spec"]


def test_the_pause_note_is_not_part_of_the_pod_template() -> None:
    # Template changes make a new ReplicaSet; resuming must not restart the rollout.
    dep = workload(Phase.CANARY)
    assert "annotations" not in dep["spec"]["template"]["metadata"]


def test_promotion_resumes_the_same_template_without_the_pause() -> None:
    canary, promoted = workload(Phase.CANARY), workload(Phase.PROMOTED)
    assert promoted["spec"]["template"] == canary["spec"]["template"]
    assert "annotations" not in promoted["metadata"]


def test_rollback_is_rollout_undo_to_the_baseline_template() -> None:
    rolled_back = workload(Phase.ROLLED_BACK)
    assert version_of(rolled_back) == "1.0"
    assert rolled_back["spec"]["template"] == baseline(SPEC)[0]["spec"]["template"]
    assert "annotations" not in rolled_back["metadata"]


def test_the_selector_never_changes_between_versions() -> None:
    selectors = {repr(workload(phase)["spec"]["selector"]) for phase in Phase}
    assert selectors == {repr({"matchLabels": {"app": "kubeapp", "track": "rolling"}})}


def test_percentages_are_passed_through_to_the_deployment() -> None:
    spec = build_spec("rolling", "1.0", "2.0", replicas=4, surge="25%", unavailable="25%")
    assert workload(Phase.CANARY, spec)["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": "25%",
        "maxUnavailable": "25%",
    }


# -- the Deployment controller model ------------------------------------------------------


@pytest.mark.parametrize(
    ("surge", "unavailable", "replicas", "expected"),
    [
        (1, 0, 4, (1, 0)),
        ("25%", "25%", 10, (3, 2)),  # surge rounds up, unavailable rounds down
        ("25%", "25%", 4, (1, 1)),
        (0, "10%", 4, (0, 1)),  # both resolve to 0: maxUnavailable becomes 1
        (1, 9, 4, (1, 4)),  # MaxUnavailable is capped at replicas
    ],
)
def test_resolve_fenceposts_like_the_deployment_controller(
    surge: int | str, unavailable: int | str, replicas: int, expected: tuple[int, int]
) -> None:
    assert resolve_fenceposts(surge, unavailable, replicas) == expected


def test_a_sync_scales_up_before_it_scales_down() -> None:
    # rolloutRolling: reconcileNewReplicaSet first; old pods only go in a later sync.
    start = RolloutCounts(old=4, new=0)
    assert sync(start, replicas=4, max_surge=1, max_unavailable=1) == RolloutCounts(4, 1, 0)


def test_old_pods_stay_while_new_pods_are_unavailable_and_nothing_may_be_unavailable() -> None:
    # reconcileOldReplicaSets: maxScaledDown = 5 - 4 - 1 = 0.
    counts = reconcile(RolloutCounts(4, 0), replicas=4, max_surge=1, max_unavailable=0)
    assert counts == RolloutCounts(old=4, new=1, new_ready=0)


def test_with_max_unavailable_the_controller_removes_old_pods_and_surges_again() -> None:
    counts = reconcile(RolloutCounts(4, 0), replicas=4, max_surge=1, max_unavailable=1)
    assert counts == RolloutCounts(old=3, new=2, new_ready=0)


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "share"),
    [
        (4, 1, 0, 1 / 5),  # 1 new of 5
        (4, 1, 1, 2 / 5),  # surge 1, remove 1 old, surge 1 more: 2 new of 5
        (4, 0, 1, 1 / 4),  # replace one pod: 1 new of 4
        (4, 2, 0, 2 / 6),
        (10, "25%", "25%", 5 / 13),
    ],
)
def test_expected_new_share_is_new_pods_over_ready_pods_once_paused(
    replicas: int, surge: int | str, unavailable: int | str, share: float
) -> None:
    spec = build_spec(
        "rolling", "1.0", "2.0", replicas=replicas, surge=surge, unavailable=unavailable
    )
    assert expected_new_share(spec) == pytest.approx(share)


def test_pause_after_defaults_to_max_surge_at_least_one_pod() -> None:
    def spec(**knobs: Any) -> Any:
        return build_spec("rolling", "1.0", "2.0", **knobs)

    assert pause_after(spec(replicas=4, surge=1)) == 1
    assert pause_after(spec(replicas=4, surge=2)) == 2
    assert pause_after(spec(replicas=4, surge=0, unavailable=1)) == 1
    assert pause_after(spec(replicas=2, surge=5)) == 2  # never more than replicas


def test_later_pauses_wait_for_each_new_pod_to_be_ready() -> None:
    # Each ready new pod lets one old pod go (available 5 > 4) and one more start.
    paused = paused_rollout(4, 1, 0, 3)
    assert paused.settled == RolloutCounts(old=2, new=3, new_ready=3)


def test_pods_created_before_the_pause_still_become_ready() -> None:
    paused = paused_rollout(4, 1, 1, 1)
    assert paused.at_pause == RolloutCounts(old=3, new=2, new_ready=1)
    assert paused.settled == RolloutCounts(old=3, new=2, new_ready=2)


def test_a_saturated_new_replica_set_empties_the_old_one_even_while_paused() -> None:
    # sync.go scale: IsSaturated -> old ReplicaSets scaled to 0, paused or not.
    assert paused_rollout(2, 1, 1, 1).settled == RolloutCounts(old=0, new=2, new_ready=2)
    assert paused_rollout(1, 1, 0, 1).new_share == 1.0


def test_the_model_respects_surge_and_availability_at_every_pause() -> None:
    for replicas, surge, unavailable in itertools.product(range(1, 9), range(4), range(4)):
        if surge == unavailable == 0:
            continue
        max_surge, max_unavailable = resolve_fenceposts(surge, unavailable, replicas)
        for n in range(1, replicas + 1):
            paused = paused_rollout(replicas, surge, unavailable, n)
            at = paused.at_pause
            assert at.old + at.new <= replicas + max_surge
            assert at.ready >= replicas - max_unavailable
            assert at.new_ready >= min(n, replicas)
        finished = paused_rollout(replicas, surge, unavailable, replicas).settled
        assert finished == RolloutCounts(old=0, new=replicas, new_ready=replicas)
