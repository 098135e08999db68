"""Waits and convergence rules of the cluster backends, on plain objects (no cluster)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from pytest_canary import manifests
from pytest_canary.backends import waits
from pytest_canary.backends.waits import (
    Answer,
    Check,
    EnvoyWant,
    NginxWant,
    Route,
    Steady,
    deployment_check,
    endpoints_check,
    envoy_route_check,
    judge_route,
    nginx_backends_check,
    plan_for,
    service_plan,
    wait_until,
    webhook_unavailable,
)
from pytest_canary.errors import BackendError, ConvergenceTimeout
from pytest_canary.manifests import Phase
from pytest_canary.spec import build_spec

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


# -- what convergence means ---------------------------------------------------------------------


def routes_of(plan: waits.DataplanePlan) -> dict[str, tuple[dict[str, str], set[str]]]:
    return {r.name: (dict(r.headers), set(r.versions)) for r in plan.routes}


def nginx_objects(phase: Phase = Phase.CANARY, **knobs: Any) -> list[dict[str, Any]]:
    return manifests.render(build_spec("nginx", "1.0", "2.0", **knobs), phase)


def test_nginx_weighted_canary_plan() -> None:
    plan = plan_for(nginx_objects(weight=20), namespace=NS, host="foo.bar")
    assert routes_of(plan) == {
        "default": ({}, {"1.0", "2.0"}),
        "X-Canary: always": ({"X-Canary": "always"}, {"2.0"}),
        "X-Canary: never": ({"X-Canary": "never"}, {"1.0"}),
    }
    assert plan.nginx == NginxWant(
        main=f"{NS}-kubeapp-stable-80",
        canary=f"{NS}-kubeapp-canary-80",
        policy={
            "weight": 20,
            "weightTotal": 100,
            "header": "X-Canary",
            "headerValue": "",
            "headerPattern": "",
            "cookie": "",
        },
    )


def test_nginx_policy_is_what_the_controller_reports_for_hand_written_annotations() -> None:
    # ingress-nginx internal/ingress/annotations/canary/main.go: canary-weight-total is reported
    # as written (balancer.lua then ignores a total <= 100) and a header/cookie that fails
    # BasicCharsRegex becomes "", so /dbg backends all never shows the raw values.
    objects = nginx_objects(weight=20)
    canary = next(
        o
        for o in objects
        if o["kind"] == "Ingress"
        and (o["metadata"].get("annotations") or {}).get("nginx.ingress.kubernetes.io/canary")
        == "true"
    )
    notes = canary["metadata"]["annotations"]
    notes["nginx.ingress.kubernetes.io/canary-weight-total"] = "50"
    notes["nginx.ingress.kubernetes.io/canary-by-header"] = "X Canary"
    notes["nginx.ingress.kubernetes.io/canary-by-cookie"] = "bad;cookie"
    plan = plan_for(objects, namespace=NS, host="foo.bar")
    assert plan.nginx is not None
    assert plan.nginx.policy["weightTotal"] == 50
    assert (plan.nginx.policy["header"], plan.nginx.policy["cookie"]) == ("", "")
    assert routes_of(plan) == {"default": ({}, {"1.0", "2.0"})}  # 20 of 100, no forced route
    backends = nginx_backends(20)
    backends[1]["trafficShapingPolicy"].update(weightTotal=50, header="")
    assert nginx_backends_check(backends, plan.nginx).done


def test_nginx_weight_zero_and_full_weight_allow_one_version() -> None:
    assert routes_of(plan_for(nginx_objects(weight=0), namespace=NS, host="foo.bar"))[
        "default"
    ] == ({}, {"1.0"})
    assert routes_of(plan_for(nginx_objects(weight=100), namespace=NS, host="foo.bar"))[
        "default"
    ] == ({}, {"2.0"})


def test_nginx_header_value_pattern_and_cookie_routes() -> None:
    plan = plan_for(
        nginx_objects(header="Region", header_value="cd", cookie="user_from_cd"),
        namespace=NS,
        host="foo.bar",
    )
    assert routes_of(plan) == {
        "default": ({}, {"1.0"}),
        "Region: cd": ({"Region": "cd"}, {"2.0"}),
        "cookie user_from_cd=always": ({"Cookie": "user_from_cd=always"}, {"2.0"}),
    }
    patterned = plan_for(
        nginx_objects(header="Region", header_pattern="cd|sz"), namespace=NS, host="foo.bar"
    )
    assert set(routes_of(patterned)) == {"default"}  # a pattern gives no value to force


def test_nginx_promoted_plan_has_one_version_and_no_alternative() -> None:
    plan = plan_for(nginx_objects(Phase.PROMOTED, weight=20), namespace=NS, host="foo.bar")
    assert routes_of(plan) == {"default": ({}, {"2.0"})}
    assert plan.nginx == NginxWant(main=f"{NS}-kubeapp-stable-80")
    assert "without alternative backends" in plan.describe()


def test_nginx_virtual_host_canary_is_a_host_route() -> None:
    plan = plan_for(nginx_objects(canary_host="canary.foo.bar"), namespace=NS, host="foo.bar")
    assert routes_of(plan)["Host: canary.foo.bar"] == ({"Host": "canary.foo.bar"}, {"2.0"})
    assert routes_of(plan)["default"] == ({}, {"1.0"})


def test_a_plan_without_a_main_ingress_for_the_host_is_an_error() -> None:
    with pytest.raises(BackendError, match=r"no non-canary Ingress routes host 'other\.host'"):
        plan_for(nginx_objects(weight=20), namespace=NS, host="other.host")


def test_istio_plan_default_route_header_route_and_envoy_clusters() -> None:
    objects = manifests.render(
        build_spec("istio", "1.0", "2.0", weight=10, header="canary", header_value="tester")
    )
    plan = plan_for(objects, namespace=NS, host="foo.bar")
    assert routes_of(plan) == {
        "default": ({}, {"1.0", "2.0"}),
        "canary: tester": ({"canary": "tester"}, {"2.0"}),
    }
    fqdn = f"kubeapp.{NS}.svc.cluster.local"
    assert plan.envoy == EnvoyWant(
        host="foo.bar",
        clusters={f"outbound|80|v1-0|{fqdn}": 0.9, f"outbound|80|v2-0|{fqdn}": 0.1},
    )


def test_istio_presence_match_and_promotion() -> None:
    presence = manifests.render(build_spec("istio", "1.0", "2.0", weight=0, header="x-beta"))
    assert routes_of(plan_for(presence, namespace=NS, host="foo.bar")) == {
        "default": ({}, {"1.0"}),  # weight 0 gets nothing
        "x-beta: always": ({"x-beta": "always"}, {"2.0"}),
    }
    promoted = manifests.render(build_spec("istio", "1.0", "2.0", weight=10), Phase.PROMOTED)
    plan = plan_for(promoted, namespace=NS, host="foo.bar")
    assert routes_of(plan) == {"default": ({}, {"2.0"})}
    assert plan.envoy is not None
    assert plan.envoy.clusters == {f"outbound|80|v2-0|kubeapp.{NS}.svc.cluster.local": 1.0}


def test_gateway_plan_weights_and_any_value_header() -> None:
    objects = manifests.render(build_spec("gateway", "1.0", "2.0", weight=25, header="X-Canary"))
    plan = plan_for(objects, namespace=NS, host="foo.bar")
    assert routes_of(plan) == {
        "default": ({}, {"1.0", "2.0"}),
        "X-Canary: always": ({"X-Canary": "always"}, {"2.0"}),
    }
    assert plan.envoy is not None
    assert plan.envoy.clusters == {
        f"outbound|80||kubeapp-v1-0.{NS}.svc.cluster.local": 0.75,
        f"outbound|80||kubeapp-v2-0.{NS}.svc.cluster.local": 0.25,
    }


def test_service_plan_lets_any_selected_pod_answer() -> None:
    objects = manifests.render(build_spec("replicas", "1.0", "2.0"))
    plan = service_plan(objects, "kubeapp")
    assert plan.routes == (Route("default", {}, ({"app": "kubeapp"},)),)


# -- data-plane configuration ----------------------------------------------------------------------


def nginx_backends(weight: int, *, alternative: bool = True) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": f"{NS}-kubeapp-stable-80",
        "endpoints": [{"address": "10.0.0.1"}],
    }
    canary = {
        "name": f"{NS}-kubeapp-canary-80",
        "noServer": True,
        "endpoints": [{"address": "10.0.0.2"}],
        "trafficShapingPolicy": {
            "weight": weight,
            "weightTotal": 100,
            "header": "X-Canary",
            "headerValue": "",
            "headerPattern": "",
            "cookie": "",
        },
    }
    if alternative:
        main["alternativeBackends"] = [canary["name"]]
    return [main, canary]


def test_nginx_backends_check_compares_the_traffic_shaping_policy() -> None:
    want = plan_for(nginx_objects(weight=50), namespace=NS, host="foo.bar").nginx
    assert want is not None
    assert nginx_backends_check(nginx_backends(50), want).done
    stale = nginx_backends_check(nginx_backends(20), want)
    assert stale == Check(False, f"alternative {NS}-kubeapp-canary-80 has weight=20 (want 50)")
    assert not nginx_backends_check(nginx_backends(50, alternative=False), want).done
    assert nginx_backends_check([], want) == Check(False, f"no backend {NS}-kubeapp-stable-80 yet")


def test_nginx_backends_check_after_promotion_wants_no_alternative() -> None:
    want = NginxWant(main=f"{NS}-kubeapp-stable-80")
    assert not nginx_backends_check(nginx_backends(20), want).done
    assert nginx_backends_check(nginx_backends(20, alternative=False), want).done


def envoy_dump(clusters: dict[str, int] | str) -> dict[str, Any]:
    action: dict[str, Any] = (
        {"cluster": clusters}
        if isinstance(clusters, str)
        else {
            "weighted_clusters": {
                "clusters": [{"name": k, "weight": w} for k, w in clusters.items()]
            }
        }
    )
    return {
        "configs": [
            {
                "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump.DynamicRouteConfig",
                "route_config": {
                    "name": "http.8080",
                    "virtual_hosts": [
                        {"name": "other:80", "domains": ["other"], "routes": []},
                        {
                            "name": "foo.bar:80",
                            "domains": ["foo.bar", "foo.bar:*"],
                            "routes": [
                                {
                                    "match": {"prefix": "/", "headers": [{"name": "canary"}]},
                                    "route": {"cluster": "outbound|80|v2|x"},
                                },
                                {"match": {"prefix": "/"}, "route": action},
                            ],
                        },
                    ],
                },
            }
        ]
    }


def test_envoy_route_check_compares_default_route_shares() -> None:
    want = EnvoyWant("foo.bar", {"outbound|80|v1|x": 0.9, "outbound|80|v2|x": 0.1})
    assert envoy_route_check(
        envoy_dump({"outbound|80|v1|x": 90, "outbound|80|v2|x": 10}), want
    ).done
    stale = envoy_route_check(envoy_dump({"outbound|80|v1|x": 50, "outbound|80|v2|x": 50}), want)
    assert not stale.done and "0.5" in stale.status
    single = EnvoyWant("foo.bar", {"outbound|80|v2|x": 1.0})
    assert envoy_route_check(envoy_dump("outbound|80|v2|x"), single).done
    zero = envoy_dump({"outbound|80|v1|x": 0, "outbound|80|v2|x": 100})
    assert envoy_route_check(zero, single).done  # weight 0 gets nothing
    assert envoy_route_check({}, want) == Check(False, "no Envoy virtual host for foo.bar yet")


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


def test_a_configuration_signal_survives_a_passing_non_json_answer() -> None:
    """/dbg prints a passing error as plain text and exits 0: the ingress-nginx signal is
    retried, and given up for the session only after NON_JSON_TOLERATED such answers."""
    from pytest_canary.backends import kube

    answers = ["error: dial tcp 127.0.0.1:10246: connection refused", "[]"]

    class FakeApi:
        def list(self, *args: object, **kwargs: object) -> list[dict[str, object]]:
            pod = {
                "metadata": {"name": "controller-0", "namespace": "ingress-nginx"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}]},
            }
            return [pod]

        def exec(self, *args: object, **kwargs: object) -> str:
            return answers.pop(0) if answers else "not json"

    backend = kube.KubeBackend(
        FakeApi(),  # type: ignore[arg-type]
        kube.KubeOptions(),
        kube.EntryPoints(),
        run_id="r1",
    )

    def signal() -> waits.Check:
        return backend._exec_signal(
            "ingress-nginx",
            "app=x",
            ["/dbg", "backends", "all"],
            "controller",
            lambda data: waits.Check(True, f"{len(data)} backends"),
        )

    first = signal()
    assert not first.done and "not JSON yet" in first.status
    assert signal() == waits.Check(True, "controller-0: 0 backends")
    for _ in range(kube.NON_JSON_TOLERATED - 1):
        assert not signal().done
    given_up = signal()
    assert given_up.done and "configuration not readable, skipped" in given_up.status
    assert "ingress-nginx" in backend.unavailable_signals
