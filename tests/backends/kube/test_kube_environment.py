"""The kube backend against a Kubernetes API over real HTTP (kmock's emulator, see conftest)
driven by the real ``kubernetes`` client, with traffic through a stand-in data plane.

What these prove: the requests the backend sends (server-side apply, order, deletions), the
objects that end up in the API, the waits and their messages. What they cannot prove: real
controllers, a real ingress-nginx or Envoy -- that is the e2e tier at the bottom.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from conftest import ApiServer, Call, FakeIngress
from pytest_canary import manifests
from pytest_canary.backends.kube import KubeBackend
from pytest_canary.backends.kube.api import FIELD_MANAGER
from pytest_canary.backends.kube.keep import KEPT_ROUTING
from pytest_canary.errors import BackendError, ConvergenceTimeout
from pytest_canary.harness import Harness
from pytest_canary.manifests import Phase
from pytest_canary.manifests.rolling import PAUSE_AFTER, baseline
from pytest_canary.spec import build_spec

WEBHOOK_DOWN = (
    'Internal error occurred: failed calling webhook "validate.nginx.ingress.kubernetes.io": '
    'failed to call webhook: Post "https://ingress-nginx-controller-admission.ingress-nginx.svc:'
    '443/networking/v1/ingresses?timeout=10s": dial tcp 10.96.0.12:443: connect: connection '
    "refused"
)


def stored(api_server: ApiServer, namespace: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Objects in a namespace, minus what the emulated controllers made (pods, slices)."""
    return {
        (obj.raw["kind"], name): obj.raw
        for (res, ns, name), obj in api_server.emulator.objects.items()
        if ns == namespace and not obj.deleted and res.plural not in ("pods", "endpointslices")
    }


def resource_of(path: str) -> str:
    """The plural of a namespaced request path (``.../namespaces/<ns>/<plural>[/<name>]``)."""
    match = re.search(r"/namespaces/[^/]+/([^/]+)", path)
    return match.group(1) if match else "namespaces"


def step(call: Call) -> str:
    """``METHOD plural/name`` of a request."""
    parts = call.path.rstrip("/").split("/")
    return f"{call.method} {parts[-2]}/{parts[-1]}"


def test_deploy_creates_exactly_the_rendered_objects_in_a_fresh_labelled_namespace(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("tests/test_shop.py::test_weighted[eu]")
    with Harness(env) as canary:
        release = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
        namespace = env.namespace
        assert re.fullmatch(r"canary-test-weighted-eu-[0-9a-f]{5}", namespace)
        labels = api_server.emulator.namespaces[namespace]["metadata"]["labels"]
        assert labels == {
            "pytest-canary/run": "run-1",
            "app.kubernetes.io/managed-by": "pytest-canary",
        }
        rendered = manifests.render(release.spec, Phase.CANARY)
        objects = stored(api_server, namespace)
        assert set(objects) == {(o["kind"], o["metadata"]["name"]) for o in rendered}
        for obj in rendered:
            got = objects[(obj["kind"], obj["metadata"]["name"])]
            assert got["spec"] == obj["spec"]
            assert {k: v for k, v in got["metadata"].items() if k in obj["metadata"]} == obj[
                "metadata"
            ]
        writes = api_server.writes()
        assert {(w.method, w.content_type, tuple(sorted(w.params.items()))) for w in writes} == {
            (
                "PATCH",
                "application/apply-patch+yaml",
                (("fieldManager", FIELD_MANAGER), ("force", "true")),
            )
        }
        assert [step(w) for w in writes] == [
            f"PATCH namespaces/{namespace}",
            "PATCH deployments/kubeapp-stable",
            "PATCH deployments/kubeapp-canary",
            "PATCH services/kubeapp-stable",
            "PATCH services/kubeapp-canary",
            "PATCH ingresses/kubeapp",
            "PATCH ingresses/kubeapp-canary",
        ]


def test_deploy_waits_for_workloads_before_services_and_for_endpoints_before_ingresses(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_order")
    with Harness(env) as canary:
        canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
    calls = [f"{c.method} {resource_of(c.path)}" for c in api_server.calls]
    first_service = calls.index("PATCH services")
    first_ingress = calls.index("PATCH ingresses")
    assert "GET deployments" in calls[:first_service]  # Deployment status read before
    assert "GET endpointslices" in calls[first_service:first_ingress]


def test_set_weight_patches_only_the_canary_ingress_weight_annotation(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_set_weight")
    with Harness(env) as canary:
        release = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
        before = copy.deepcopy(stored(api_server, env.namespace))
        mark = len(api_server.calls)
        release.set_weight(50)
        writes = api_server.writes(mark)
        assert [step(w) for w in writes] == ["PATCH ingresses/kubeapp-canary"]
        sent = writes[0].body
        previous = copy.deepcopy(before[("Ingress", "kubeapp-canary")])
        weight = "nginx.ingress.kubernetes.io/canary-weight"
        assert previous["metadata"]["annotations"][weight] == "20"
        assert sent["metadata"]["annotations"][weight] == "50"
        sent["metadata"]["annotations"][weight] = "20"
        for server_field in ("uid", "resourceVersion", "generation", "creationTimestamp"):
            previous["metadata"].pop(server_field)
        assert sent == previous  # nothing else changed
        after = stored(api_server, env.namespace)
        assert after[("Ingress", "kubeapp-canary")]["metadata"]["annotations"][weight] == "50"
        assert {k: v for k, v in after.items() if k != ("Ingress", "kubeapp-canary")} == {
            k: v for k, v in before.items() if k != ("Ingress", "kubeapp-canary")
        }


def test_promote_updates_the_stable_image_and_deletes_the_canary_objects_routing_first(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_promote")
    with Harness(env) as canary:
        release = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
        mark = len(api_server.calls)
        release.promote()
        assert [step(w) for w in api_server.writes(mark)] == [
            "PATCH deployments/kubeapp-stable",
            "DELETE ingresses/kubeapp-canary",
            "DELETE services/kubeapp-canary",
            "DELETE deployments/kubeapp-canary",
        ]
        objects = stored(api_server, env.namespace)
        assert set(objects) == {
            ("Deployment", "kubeapp-stable"),
            ("Service", "kubeapp-stable"),
            ("Ingress", "kubeapp"),
        }
        container = objects[("Deployment", "kubeapp-stable")]["spec"]["template"]["spec"][
            "containers"
        ][0]
        assert container["image"] == "pytest-canary/sample-go:2.0"
        release.expect_routed("2.0", leak=0.1)  # real traffic through the stand-in data plane


def test_promote_returns_only_once_the_data_plane_serves_the_new_version(
    api_server: ApiServer, kube_backend: KubeBackend, fake_ingress: FakeIngress
) -> None:
    env = kube_backend.environment("test_lag")
    with Harness(env) as canary:
        release = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
        fake_ingress.lag = 0.8  # the data plane serves what the API held 0.8 s before
        started = time.monotonic()
        release.promote()
        assert time.monotonic() - started >= 0.8
        sample = release.sample(200)
        assert dict(sample.counts) == {"2.0": 200}
        assert sample.error_count == 0


def test_teardown_deletes_the_namespace(api_server: ApiServer, kube_backend: KubeBackend) -> None:
    env = kube_backend.environment("test_teardown")
    with Harness(env) as canary:
        canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
        namespace = env.namespace
        assert namespace in api_server.emulator.namespaces
    assert namespace not in api_server.emulator.namespaces
    assert stored(api_server, namespace) == {}
    assert step(api_server.writes()[-1]) == f"DELETE namespaces/{namespace}"


def test_keep_failed_keeps_the_namespace_of_a_failed_test_without_its_routing(
    api_server: ApiServer, make_backend: Callable[..., KubeBackend]
) -> None:
    backend = make_backend(keep="failed")
    passed, failed = backend.environment("test_ok"), backend.environment("test_bad")
    for env in (passed, failed):
        Harness(env).deploy("nginx", stable="1.0", canary="2.0", weight=20)
    failed.record_failure()
    passed.close()
    failed.close()
    assert passed.namespace not in api_server.emulator.namespaces
    labels = api_server.emulator.namespaces[failed.namespace]["metadata"]["labels"]
    assert labels["pytest-canary/kept"] == "true"
    assert labels["pytest-canary/run"] == "run-1"  # the whole object was re-applied
    assert backend.kept == [failed.namespace]
    objects = stored(api_server, failed.namespace)
    assert ("Deployment", "kubeapp-canary") in objects
    assert not any(kind == "Ingress" for kind, _ in objects)  # hosts freed for later tests
    saved = objects[("ConfigMap", KEPT_ROUTING)]["data"]["objects.yaml"]
    assert "name: kubeapp-canary" in saved and "canary-weight: '20'" in saved


def test_a_deployment_that_never_becomes_available_times_out_naming_object_condition_status(
    api_server: ApiServer, make_backend: Callable[..., KubeBackend]
) -> None:
    api_server.emulator.stalled.add("kubeapp-stable")
    env = make_backend(wait_timeout=0.5).environment("test_stuck")
    started = time.monotonic()
    with pytest.raises(ConvergenceTimeout) as caught:
        Harness(env).deploy("nginx", stable="1.0", canary="2.0", weight=20)
    assert time.monotonic() - started < 3
    error = caught.value
    assert error.what == f"Deployment {env.namespace}/kubeapp-stable"
    assert error.condition.startswith("available")
    assert error.last_seen == "generation 1 not yet observed (observed 0)"
    assert 0.5 <= error.waited <= 1.5
    assert str(error).startswith(
        f"timed out after {error.waited:.1f}s (--canary-wait-timeout) waiting for Deployment"
    )
    env.close()


def test_a_data_plane_that_never_converges_times_out_with_what_it_served(
    api_server: ApiServer, make_backend: Callable[..., KubeBackend], fake_ingress: FakeIngress
) -> None:
    env = make_backend(dataplane_timeout=10.0).environment("test_frozen")
    release = Harness(env).deploy("nginx", stable="1.0", canary="2.0", weight=100)
    fake_ingress.freeze()  # the data plane never sees the promotion
    env.convergence.timeout = 1.0  # the deploy had time to converge; the promotion will not
    with pytest.raises(ConvergenceTimeout) as caught:
        release.promote()
    error = caught.value
    assert error.setting == "--canary-dataplane-timeout"
    assert error.what.startswith("the data plane behind ingress-nginx at http://127.0.0.1:")
    assert "serving default -> 2.0" in error.condition
    # weight 100 sent everything to the canary pods, which the promotion removes
    assert "answered by pods outside the route: kubeapp-canary-" in error.last_seen
    env.close()


def test_ingress_apply_is_retried_while_the_admission_webhook_refuses_connections(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    api_server.fail_next(r"PATCH .*/ingresses/kubeapp$", 500, WEBHOOK_DOWN, times=2)
    env = kube_backend.environment("test_webhook")
    with Harness(env) as canary:
        canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
        attempts = [c for c in api_server.calls if c.path.endswith("/ingresses/kubeapp")]
        assert len([c for c in attempts if c.method == "PATCH"]) == 3
        assert ("Ingress", "kubeapp") in stored(api_server, env.namespace)


def test_an_ingress_the_webhook_denies_fails_at_once_with_its_message(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    denied = (
        'admission webhook "validate.nginx.ingress.kubernetes.io" denied the request: host '
        '"foo.bar" and path "/" is already defined in ingress other/kubeapp'
    )
    api_server.fail_next(r"PATCH .*/ingresses/kubeapp$", 400, denied)
    env = kube_backend.environment("test_denied")
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"HTTP 400: admission webhook .* denied the request"):
        Harness(env).deploy("nginx", stable="1.0", canary="2.0", weight=20)
    assert time.monotonic() - started < 2
    env.close()


def test_istio_objects_go_through_custom_objects_destination_rule_before_virtual_service(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_istio")
    spec = build_spec("istio", stable="1.0", canary="2.0", weight=10)
    env.apply(manifests.render(spec, Phase.CANARY))
    labels = api_server.emulator.namespaces[env.namespace]["metadata"]["labels"]
    assert labels["istio-injection"] == "enabled"
    paths = [w.path for w in api_server.writes() if "networking.istio.io" in w.path]
    prefix = f"/apis/networking.istio.io/v1/namespaces/{env.namespace}"
    assert paths == [
        f"{prefix}/destinationrules/kubeapp",
        f"{prefix}/gateways/kubeapp-gateway",
        f"{prefix}/virtualservices/kubeapp",
    ]
    env.close()


def test_a_destination_rule_that_drops_subsets_changes_after_the_routes_stop_naming_them(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_subsets")
    spec = build_spec("istio", stable="1.0", canary="2.0", weight=10)
    objects = manifests.render(spec, Phase.CANARY)
    env.apply(objects)
    rolled_back = manifests.render(spec, Phase.ROLLED_BACK)
    for obj in rolled_back:
        if obj["kind"] == "DestinationRule":
            obj["spec"]["subsets"] = obj["spec"]["subsets"][:1]  # drop the canary subset
    mark = len(api_server.calls)
    env.apply(rolled_back)
    order = [step(w) for w in api_server.writes(mark)]
    assert order.index("PATCH virtualservices/kubeapp") < order.index(
        "PATCH destinationrules/kubeapp"
    )
    assert order[-1] == "DELETE deployments/kubeapp-v2-0"
    env.close()


def test_bluegreen_traffic_enters_through_a_node_port_service_that_follows_the_switch(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_bluegreen")
    with Harness(env) as canary:
        release = canary.deploy("bluegreen", stable="1.0", canary="2.0")
        entry = release.entry
        assert entry.per_connection and entry.url.startswith("http://127.0.0.1:")
        entry_service = stored(api_server, env.namespace)[("Service", "kubeapp-canary-entry")]
        assert entry_service["spec"]["type"] == "NodePort"
        assert entry_service["spec"]["ports"][0]["nodePort"] == 30100
        release.expect_routed("1.0", leak=0.1)
        release.promote()
        entry_service = stored(api_server, env.namespace)[("Service", "kubeapp-canary-entry")]
        assert entry_service["spec"]["selector"] == {"app": "kubeapp", "track": "green"}
        release.expect_routed("2.0", leak=0.1)
        namespace = env.namespace
    deletes = [step(w) for w in api_server.writes() if w.method == "DELETE"]
    assert deletes[-2:] == [
        "DELETE services/kubeapp-canary-entry",
        f"DELETE namespaces/{namespace}",
    ]


def test_node_ports_are_claimed_from_the_pool_and_exhaustion_is_explained(
    kube_backend: KubeBackend,
) -> None:
    envs = [kube_backend.environment(f"test_pool_{i}") for i in range(3)]
    try:
        for env in envs[:2]:
            Harness(env).deploy("replicas", stable="1.0", canary="2.0")
        assert sorted(e.node_port for env in envs[:2] for e in env.entries.claimed.values()) == [
            30100,
            30101,
        ]
        with pytest.raises(BackendError, match=r"every NodePort this cluster maps .* is taken"):
            Harness(envs[2]).deploy("replicas", stable="1.0", canary="2.0")
    finally:
        for env in envs:
            env.close()


def test_rolling_canary_starts_the_rollout_then_pauses_it(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    spec = build_spec("rolling", stable="1.0", canary="2.0", replicas=4)
    env = kube_backend.environment("test_rolling")
    with pytest.raises(BackendError, match="apply the baseline"):
        env.apply(manifests.render(spec, Phase.CANARY))
    env.apply(baseline(spec))
    mark = len(api_server.calls)
    env.apply(manifests.render(spec, Phase.CANARY))
    writes = [w for w in api_server.writes(mark) if "deployments" in w.path]
    assert [w.body["spec"].get("paused") for w in writes] == [None, True]
    assert writes[0].body["metadata"]["annotations"] == {PAUSE_AFTER: "1"}
    mark = len(api_server.calls)
    env.apply(manifests.render(spec, Phase.PROMOTED))  # resume: the field is dropped
    (resume,) = [w for w in api_server.writes(mark) if "deployments" in w.path]
    assert "paused" not in resume.body["spec"]
    env.close()


def test_a_second_release_in_the_same_test_keeps_the_first() -> None:
    """Pruning is scoped by the objects' ``app`` label (one per release)."""
    from pytest_canary.backends.kube.apply import app_label as _app_label

    first = manifests.render(build_spec("nginx", "1.0", "2.0", name="shop"), Phase.CANARY)
    second = manifests.render(build_spec("nginx", "1.0", "2.0", name="cart"), Phase.CANARY)
    assert {_app_label(o) for o in first} == {"shop"}
    assert {_app_label(o) for o in second} == {"cart"}
