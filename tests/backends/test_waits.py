"""Waits of the cluster backends and the conditions they read, on plain objects (no cluster)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pytest_canary.backends import waits
from pytest_canary.backends.kube.converge import Answer, judge_route
from pytest_canary.backends.kube.plan import Route
from pytest_canary.backends.waits import (
    Check,
    Steady,
    TerminalWatch,
    deployment_check,
    endpoints_check,
    wait_until,
    webhook_unavailable,
)
from pytest_canary.errors import BackendError, ConvergenceTimeout

NS = "canary-t-abcde"


class FakeApiException(Exception):
    """Stands in for kubernetes.client.ApiException (same class name and ``status``)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


FakeApiException.__name__ = "ApiException"


# -- wait_until -------------------------------------------------------------------------------


def test_wait_until_returns_the_check_that_held() -> None:
    seen = iter([Check(False, "1 of 2"), Check(True, "2 of 2")])
    assert wait_until("X", "ready", lambda: next(seen), timeout=5, interval=0.01) == Check(
        True, "2 of 2"
    )


def test_wait_until_times_out_at_its_deadline_naming_object_condition_last_status_and_time() -> (
    None
):
    started = time.monotonic()
    with pytest.raises(ConvergenceTimeout) as caught:
        wait_until(
            "Deployment ns/web", "available", lambda: Check(False, "0 of 3 updated"), timeout=0.3
        )
    elapsed = time.monotonic() - started
    error = caught.value
    assert (error.what, error.condition, error.last_seen) == (
        "Deployment ns/web",
        "available",
        "0 of 3 updated",
    )
    assert 0.3 <= error.waited <= elapsed < 0.8
    assert str(error) == (
        f"timed out after {error.waited:.1f}s waiting for Deployment ns/web to be available; "
        "last seen: 0 of 3 updated"
    )


def test_transient_errors_are_retried_and_become_the_last_status() -> None:
    def probe() -> Check:
        raise FakeApiException(503)

    with pytest.raises(ConvergenceTimeout, match="last seen: ApiException: HTTP 503"):
        wait_until("X", "ready", probe, timeout=0.2, interval=0.05)


def test_other_errors_propagate_at_once() -> None:
    calls = []

    def probe() -> Check:
        calls.append(1)
        raise FakeApiException(403)

    with pytest.raises(FakeApiException):
        wait_until("X", "ready", probe, timeout=5)
    assert calls == [1]


def test_is_transient() -> None:
    assert waits.is_transient(FakeApiException(500))
    assert waits.is_transient(FakeApiException(429))
    assert not waits.is_transient(FakeApiException(404))
    assert waits.is_transient(ConnectionRefusedError())
    assert not waits.is_transient(ValueError())


def test_steady_holds_only_after_a_continuous_duration() -> None:
    now = [0.0]
    steady = Steady(1.0, clock=lambda: now[0])
    assert not steady.held(True)
    now[0] = 0.6
    assert not steady.held(False)  # broken: starts again
    now[0] = 1.0
    assert not steady.held(True)
    now[0] = 2.0
    assert steady.held(True)


# -- workloads ---------------------------------------------------------------------------------


def deployment(
    status: dict[str, Any], *, replicas: int = 3, generation: int = 2, paused: bool = False
) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": NS, "generation": generation},
        "spec": {"replicas": replicas, **({"paused": True} if paused else {})},
        "status": dict(status),
    }


@pytest.mark.parametrize(
    ("status", "done", "text"),
    [
        ({"observedGeneration": 1}, False, "generation 2 not yet observed (observed 1)"),
        (
            {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 4},
            False,
            "1 of 3 replicas updated",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4, "availableReplicas": 3},
            False,
            "1 old replicas pending termination",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2},
            False,
            "2 of 3 updated replicas available",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3},
            True,
            "3 of 3 replicas updated and available",
        ),
    ],
)
def test_deployment_check_follows_kubectl_rollout_status(
    status: dict[str, int], done: bool, text: str
) -> None:
    assert deployment_check(deployment(status)) == Check(done, text)


def test_a_paused_rollout_is_done_when_every_current_pod_is_available() -> None:
    status = {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 5, "availableReplicas": 4}
    assert not deployment_check(deployment(status, replicas=4, paused=True)).done
    status["availableReplicas"] = 5
    assert deployment_check(deployment(status, replicas=4, paused=True)) == Check(
        True, "paused; 1 of 4 replicas updated, all 5 available"
    )


def test_a_progress_deadline_fails_at_once() -> None:
    stuck = deployment({"observedGeneration": 2})
    stuck["status"]["conditions"] = [
        {
            "type": "Progressing",
            "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet x has timed out",
        }
    ]
    with pytest.raises(BackendError, match=f"Deployment {NS}/web exceeded its progress deadline"):
        deployment_check(stuck)


def test_pods_the_replica_set_could_not_create_are_said_in_the_status() -> None:
    """A Pod Security or quota rejection leaves no pod to show why: the Deployment's
    ReplicaFailure condition says it."""
    deployment = {
        "metadata": {"name": "web", "namespace": "ns", "generation": 1},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreate",
                    "message": 'pods "web-7d9f-x" is forbidden: violates PodSecurity '
                    '"restricted:latest": runAsNonRoot != true',
                }
            ],
        },
    }
    check = deployment_check(deployment)
    assert not check.done
    assert check.status == (
        '0 of 2 replicas updated; ReplicaFailure FailedCreate: pods "web-7d9f-x" is forbidden: '
        'violates PodSecurity "restricted:latest": runAsNonRoot != true'
    )


def test_a_timeout_names_the_option_that_sets_its_deadline() -> None:
    with pytest.raises(ConvergenceTimeout) as caught:
        wait_until(
            "Deployment ns/web",
            "available",
            lambda: Check(False, "0 of 2"),
            timeout=0.05,
            setting="--canary-wait-timeout",
        )
    assert str(caught.value).startswith("timed out after ")
    assert "s (--canary-wait-timeout) waiting for Deployment ns/web to be available" in str(
        caught.value
    )


def test_pod_problems_say_why_a_rollout_waits() -> None:
    pod = {
        "metadata": {"name": "web-1"},
        "status": {
            "containerStatuses": [
                {
                    "name": "app",
                    "restartCount": 0,
                    "state": {
                        "waiting": {
                            "reason": "ErrImageNeverPull",
                            "message": 'image "pytest-canary/sample-go:2.0" is not present',
                        }
                    },
                }
            ]
        },
    }
    check = deployment_check(deployment({"observedGeneration": 2, "updatedReplicas": 1}), [pod])
    assert check.status == (
        "1 of 3 replicas updated; pod web-1: app: ErrImageNeverPull "
        '(image "pytest-canary/sample-go:2.0" is not present)'
    )


def test_endpoints_count_ready_and_unset_but_not_terminating_or_unready() -> None:
    slices = [
        {
            "endpoints": [
                {"targetRef": {"name": "a"}, "conditions": {"ready": True}},
                {"targetRef": {"name": "b"}, "conditions": {}},
                {"targetRef": {"name": "c"}, "conditions": {"ready": False}},
                {"targetRef": {"name": "d"}, "conditions": {"ready": True, "terminating": True}},
            ]
        },
        {"endpoints": [{"targetRef": {"name": "a"}, "conditions": {"ready": True}}]},
    ]
    assert endpoints_check("web", slices, 2) == Check(True, "2 of 2 endpoints ready (a, b)")
    assert not endpoints_check("web", slices, 3).done
    assert not endpoints_check("web", slices, 1).done  # an extra pod would skew a split


def test_webhook_unavailable_recognises_only_failures_to_call_the_webhook() -> None:
    refused = (
        'Internal error occurred: failed calling webhook "validate.nginx.ingress.kubernetes.io": '
        "failed to call webhook: Post ...: dial tcp 10.96.0.1:443: connect: connection refused"
    )
    assert webhook_unavailable(500, refused)
    assert not webhook_unavailable(400, 'admission webhook "validate..." denied the request: x')
    assert not webhook_unavailable(500, "etcdserver: request timed out")


# -- judging answers ----------------------------------------------------------------------


def test_judge_route_needs_allowed_versions_from_allowed_pods_without_errors() -> None:
    route = Route("default", {}, ({"app": "kubeapp"},), frozenset({"2.0"}))
    pods = {"web-new-1": "2.0"}
    assert judge_route(route, [Answer("2.0", "web-new-1")] * 3, pods) == Check(
        True, "default: {'2.0': 3}"
    )
    assert not judge_route(route, [Answer("1.0", "web-new-1")], pods).done
    stray = judge_route(route, [Answer("2.0", "web-old-1")], pods)
    assert stray == Check(
        False, "default: {'2.0': 1}, answered by pods outside the route: web-old-1"
    )
    failed = judge_route(route, [Answer(error="HTTP 404 without a version")], pods)
    assert failed == Check(False, "default: {'HTTP 404 without a version': 1}")
    assert not judge_route(route, [], pods).done
    assert judge_route(route, [Answer("2.0", None)], pods).done  # apps that name no pod


def test_judge_route_without_declared_versions_takes_the_pods_versions() -> None:
    route = Route("default", {}, ({"app": "kubeapp"},))
    pods = {"a": "1.0", "b": "2.0"}
    assert judge_route(route, [Answer("1.0", "a"), Answer("2.0", "b")], pods).done
    assert not judge_route(route, [Answer("3.0", "a")], pods).done


# -- failures that will not heal ------------------------------------------------------------


def waiting(name: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "containerStatuses": [
                {"name": "controller", "state": {"waiting": {"reason": reason, "message": message}}}
            ]
        },
    }


def test_configurations_no_retry_fixes_are_terminal_at_once() -> None:
    watch = TerminalWatch(lasting=45, clock=lambda: 0.0)
    pods = [
        waiting("a", "InvalidImageName", 'Failed to apply default image tag "x:"'),
        waiting("b", "ErrImageNeverPull"),
        waiting("c", "ContainerCreating"),
    ]
    assert watch.look(pods) == [
        'pod a: container controller: InvalidImageName (Failed to apply default image tag "x:")',
        "pod b: container controller: ErrImageNeverPull",
    ]


def test_one_failed_pull_is_tolerated_until_pulls_have_failed_for_the_lasting_time() -> None:
    """kubelet image_manager.go: a failed pull is ErrImagePull, then ImagePullBackOff until
    the next try -- within ten seconds of one registry hiccup. The two alternate while pulls
    keep failing; together they are terminal only once they have lasted."""
    now = [0.0]
    watch = TerminalWatch(lasting=45, clock=lambda: now[0])
    assert watch.look([waiting("a", "ErrImagePull", "connection reset by peer")]) == []
    now[0] = 10.0
    assert watch.look([waiting("a", "ImagePullBackOff", 'Back-off pulling image "x:v1"')]) == []
    now[0] = 30.0
    assert watch.look([waiting("a", "ErrImagePull", "connection reset by peer")]) == []
    now[0] = 46.0
    assert watch.look([waiting("a", "ImagePullBackOff", 'Back-off pulling image "x:v1"')]) == [
        'pod a: container controller: ImagePullBackOff (Back-off pulling image "x:v1") (for 46s)'
    ]
    now[0] = 50.0
    assert watch.look([waiting("a", "ContainerCreating")]) == []  # pulled: forgotten
    now[0] = 60.0
    assert watch.look([waiting("a", "ImagePullBackOff")]) == []


def crashing(name: str, restarts: int, *, job: str | None = None) -> dict[str, Any]:
    pod = waiting(name, "CrashLoopBackOff", "back-off 10s restarting failed container")
    pod["status"]["containerStatuses"][0]["restartCount"] = restarts
    if job is not None:
        pod["metadata"]["ownerReferences"] = [
            {"apiVersion": "batch/v1", "kind": "Job", "name": job}
        ]
    return pod


def test_a_crash_loop_is_terminal_after_three_restarts_not_at_the_first_back_off() -> None:
    watch = TerminalWatch(lasting=45, clock=lambda: 0.0)
    assert watch.look([crashing("a", 1)]) == []
    assert watch.look([crashing("a", 3)]) == [
        "pod a: container controller: CrashLoopBackOff (back-off 10s restarting failed "
        "container), 3 restarts"
    ]


def test_a_jobs_pods_are_judged_by_their_job_not_by_their_restarts() -> None:
    """ingress-nginx's admission-patch Job crash-loops until the create Job wrote the secret,
    then completes: only a Failed Job is terminal."""
    now = [0.0]
    watch = TerminalWatch(lasting=45, clock=lambda: now[0])
    pod = crashing("patch-x", 5, job="ingress-nginx-admission-patch")
    running = {"metadata": {"name": "ingress-nginx-admission-patch"}, "status": {"active": 1}}
    assert watch.look([pod], [running]) == []
    now[0] = 100.0
    assert watch.look([pod], [running]) == []
    failed = {
        "metadata": {"name": "ingress-nginx-admission-patch"},
        "status": {
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ]
        },
    }
    assert watch.look([pod], [failed]) == [
        "job ingress-nginx-admission-patch failed: BackoffLimitExceeded: Job has reached the "
        "specified backoff limit"
    ]
    pulling = waiting("patch-y", "ImagePullBackOff")
    pulling["metadata"]["ownerReferences"] = pod["metadata"]["ownerReferences"]
    now[0] = 200.0
    assert watch.look([pulling], [running]) == []
    now[0] = 250.0
    assert len(watch.look([pulling], [running])) == 1  # a Job's pull failures still count


def test_reasons_a_retry_may_clear_are_terminal_only_when_they_last() -> None:
    now = [0.0]
    watch = TerminalWatch(lasting=20, clock=lambda: now[0])
    pull = waiting("a", "ErrImagePull", "connection reset by peer")
    unschedulable = {
        "metadata": {"name": "istiod-1"},
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/1 nodes are available: 1 Insufficient cpu.",
                }
            ]
        },
    }
    assert watch.look([pull, unschedulable]) == []
    now[0] = 10.0
    assert watch.look([unschedulable]) == []  # the pull error cleared: forgotten
    now[0] = 25.0
    assert watch.look([pull, unschedulable]) == [
        "pod istiod-1: Unschedulable: 0/1 nodes are available: 1 Insufficient cpu. (for 25s)"
    ]
    now[0] = 45.0
    assert len(watch.look([pull, unschedulable])) == 2
