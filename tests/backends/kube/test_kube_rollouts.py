"""Argo Rollouts on the kube backend, against the API emulator with a controller stand-in
(``argo_fakes``): the requests the kubectl plugin's commands become (path, content type,
body), the waits on the controller's status and writes, the data plane planned from what the
controller wrote, and the messages when something does not come.

What these cannot prove: the real controller's timing and its rules -- the stand-in is the
model; the real one runs in the e2e tier (``suites/test_argo_rollouts.py`` on kind).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from argo_fakes import ArgoEmulator, argo_api_server
from test_kube_permissions import allowed, permission, readme_rules

from conftest import ApiServer
from pytest_canary.backends.kube import EntryPoints, KubeBackend, KubeOptions
from pytest_canary.backends.kube.backend import check_kubernetes_version, dataplanes_in
from pytest_canary.backends.kube.rollouts import (
    INSTALL_URL,
    LiveRollout,
    client_status,
    expected_available,
    expected_weight,
    unobserved,
    written_check,
)
from pytest_canary.byo import RetainedRoutingWarning
from pytest_canary.dataplane import argo_rollouts as model
from pytest_canary.errors import BackendError, CanaryConfigError, ConvergenceTimeout
from pytest_canary.harness import Harness
from pytest_canary.manifests import Phase
from pytest_canary.manifests import rollouts as rollout_manifests
from pytest_canary.rollout_release import AppliedRollout
from pytest_canary.spec import build_spec

STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {}},
]
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


@pytest.fixture
def api_server() -> Iterator[ApiServer]:
    """The emulator with Argo Rollouts (overrides conftest's, so every fixture uses it)."""
    server = argo_api_server().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def emulator(api_server: ApiServer) -> ArgoEmulator:
    assert isinstance(api_server.emulator, ArgoEmulator)
    return api_server.emulator


def plugin_calls(api_server: ApiServer, since: int = 0) -> list[tuple[str, str, Any]]:
    """(path suffix, content type, body) of the Rollout patches that are not applies."""
    return [
        (c.path.split("/rollouts/", 1)[1], c.content_type, c.body)
        for c in api_server.calls[since:]
        if c.method == "PATCH" and "/rollouts/" in c.path and "apply-patch" not in c.content_type
    ]


# -- a release's whole life -------------------------------------------------------------------


@pytest.mark.slow
def test_the_seed_steps_with_nginx_promote_then_promote_full(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_argo_nginx")
    with Harness(env) as canary:
        rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx")
        assert rel.status.step == 1 and rel.status.phase == "Paused" and rel.status.weight == 20
        ingress = api_server.emulator.live("ingresses", env.namespace)
        canary_ingress = next(
            i for i in ingress if i["metadata"]["name"] == "kubeapp-kubeapp-canary"
        )
        annotations = canary_ingress["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "20"
        assert canary_ingress["metadata"]["ownerReferences"][0]["kind"] == "Rollout"
        rel.expect_split(0.20, tolerance=0.1)
        mark = len(api_server.calls)
        rel.promote()
        assert rel.status.step == 3 and rel.status.weight == 50
        rel.expect_split(0.50, tolerance=0.1)
        versions = env.rollout_versions("kubeapp")
        assert sorted(versions.values()) == ["1.0", "2.0"]
        assert versions[rel.status.canary_hash] == "2.0"
        assert any("NewReplicaSetCreated" in line for line in rel.rollout_events())
        report = env.diagnostics().sections["Rollout kubeapp"]
        assert "phase Paused" in report and "kubectl argo rollouts promote: PATCH status" in report
        assert "the controller's writes agree with the model" in report
        rel.promote(full=True)
        assert rel.status.phase == "Healthy" and rel.stable_version == "2.0"
        rel.expect_routed("2.0", leak=0.1)
        assert plugin_calls(api_server, mark) == [
            ("kubeapp/status", MERGE, {"status": {"pauseConditions": None}}),
            ("kubeapp/status", MERGE, {"status": {"promoteFull": True}}),
        ]
        mark = len(api_server.calls)
    # The canary Ingress is the controller's (owned by the Rollout): it goes with the
    # namespace, not deleted on its own.
    deletes = [c.path for c in api_server.calls[mark:] if c.method == "DELETE"]
    assert not any("kubeapp-kubeapp-canary" in path for path in deletes)
    assert deletes[-1] == f"/api/v1/namespaces/{env.namespace}"
    assert api_server.emulator.live("ingresses", env.namespace) == []


@pytest.mark.slow
def test_a_timed_pause_ends_by_itself_and_wait_for_pause_returns_at_the_next_one(
    kube_backend: KubeBackend,
) -> None:
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": 1}}]
    steps += [{"setWeight": 70}, {"pause": {}}]
    env = kube_backend.environment("test_argo_timed")
    with Harness(env) as canary:
        rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=steps, traffic="nginx")
        assert rel.promote() is None and rel.status.step == 3  # the timed pause
        started = time.monotonic()
        assert rel.wait_for_pause().step == 5
        assert time.monotonic() - started >= 0.5  # it waited for the pause to run out
        assert rel.status.weight == 70
        rel.expect_split(0.70, tolerance=0.1)


@pytest.mark.slow
def test_abort_retry_and_rollback_send_the_plugins_patches_and_wait_for_their_state(
    api_server: ApiServer, emulator: ArgoEmulator, kube_backend: KubeBackend
) -> None:
    """Also: the controller answers half a second after each write from ``retry`` on. Right
    after ``retry`` the Rollout still says Degraded (its status only lost ``abort``), right
    after ``promote`` it still has ``controllerPause``: neither is taken for the new state.
    And every request of it all is allowed by the README's ClusterRole."""
    env = kube_backend.environment("test_argo_abort")
    with Harness(env) as canary:
        rel = canary.deploy(
            "rollouts",
            stable="1.0",
            canary="2.0",
            steps=STEPS,
            traffic="nginx",
            additional_ingress_annotations={"canary-by-header": "X-Canary"},
        )
        mark = len(api_server.calls)
        status = rel.abort()
        assert (status.phase, status.step, status.weight) == ("Degraded", 0, 0)
        rel.expect_routed("1.0", leak=0.1)
        emulator.lag = 0.5
        started = time.monotonic()
        status = rel.retry()
        assert (status.phase, status.step) == ("Paused", 1)
        assert time.monotonic() - started >= 0.5
        rel.expect_split(0.20, tolerance=0.1)
        started = time.monotonic()
        rel.promote()
        assert (rel.status.phase, rel.status.step, rel.status.weight) == ("Paused", 3, 50)
        assert time.monotonic() - started >= 0.5
        emulator.lag = 0.0
        rel.rollback()
        assert rel.status.phase == "Healthy" and rel.stable_version == "1.0"
        rel.expect_routed("1.0", leak=0.1)
        env.diagnostics()
        calls = plugin_calls(api_server, mark)
        assert calls[:4] == [
            ("kubeapp/status", MERGE, {"status": {"abort": True}}),
            ("kubeapp/status", MERGE, {"status": {"abort": False}}),
            ("kubeapp/status", MERGE, {"status": {"pauseConditions": None}}),
            ("kubeapp/status", MERGE, {"status": {"abort": True}}),
        ]
        path, content_type, body = calls[4]
        assert (path, content_type) == ("kubeapp", JSON_PATCH)
        assert [(op["op"], op["path"]) for op in body] == [("replace", "/spec/template")]
        template = body[0]["value"]
        assert template["metadata"]["labels"]["version"] == "1.0"
        assert model.POD_TEMPLATE_HASH not in template["metadata"]["labels"]
        assert len(calls) == 5
    used = {p for c in api_server.calls if (p := permission(c)) is not None}
    assert {
        ("argoproj.io", "rollouts", "patch"),
        ("argoproj.io", "rollouts/status", "patch"),
        ("apps", "replicasets", "list"),
        ("", "events", "list"),
    } <= used
    assert sorted(p for p in used if not allowed(readme_rules(), *p)) == []


@pytest.mark.slow
def test_a_basic_canary_splits_by_replica_counts_behind_a_node_port_entry(
    kube_backend: KubeBackend,
) -> None:
    env = kube_backend.environment("test_argo_basic")
    with Harness(env) as canary:
        rel = canary.deploy(
            "rollouts", stable="1.0", canary="2.0", steps=STEPS, replicas=5, traffic=None
        )
        assert "NodePort Service" in rel.entry.description and rel.entry.per_connection
        assert rel.ready_pods() == {"1.0": 4, "2.0": 1}
        # One new connection per request (kube-proxy picks a pod per connection): both
        # versions answer. (The split itself is the statistics' job; the stand-in costs
        # a connection per request here.)
        sample = rel.sample(40)
        assert set(sample.counts) == {"1.0", "2.0"} and not sample.errors
        rel.promote(full=True)
        assert rel.ready_pods() == {"2.0": 5}
        rel.expect_routed("2.0", leak=0.1)


# -- exactly what the plugin sends --------------------------------------------------------------

PAUSED_AT_1 = {
    "observedGeneration": "1",
    "phase": "Paused",
    "message": "CanaryPauseStep",
    "currentStepIndex": 1,
    "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-01-01T00:00:00Z"}],
    "controllerPause": True,
    "stableRS": "aaa",
    "currentPodHash": "bbb",
}


def put_rollout(
    api_server: ApiServer,
    namespace: str,
    status: dict[str, Any] | None,
    *,
    paused: bool = False,
    generation: int = 1,
    version: str = "2.0",
    steps: list[dict[str, Any]] | None = None,
    traffic: str | None = "nginx",
) -> dict[str, Any]:
    """A Rollout as the controller left it (the stand-in stopped)."""
    assert isinstance(api_server.emulator, ArgoEmulator)
    api_server.emulator.stopped = True
    spec = build_spec("rollouts", "1.0", "2.0", steps=steps or STEPS, traffic=traffic, replicas=1)
    obj = rollout_manifests.rollout(spec, version)
    obj["metadata"].update(
        namespace=namespace, uid="uid-rollout", generation=generation, resourceVersion="7"
    )
    if paused:
        obj["spec"]["paused"] = True
    if status is not None:
        obj["status"] = copy.deepcopy(status)
    api_server.put(obj, "rollouts")
    return obj


def put_replica_set(
    api_server: ApiServer, namespace: str, rs_hash: str, revision: int, version: str, owner: str
) -> dict[str, Any]:
    spec = build_spec("rollouts", "1.0", "2.0", steps=STEPS, traffic="nginx")
    template = rollout_manifests.rollout(spec, version)["spec"]["template"]
    template["metadata"]["labels"][model.POD_TEMPLATE_HASH] = rs_hash
    rs = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"kubeapp-{rs_hash}",
            "namespace": namespace,
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {model.REVISION: str(revision)},
            "ownerReferences": [
                {"kind": "Rollout", "name": "kubeapp", "uid": owner, "controller": True}
            ],
        },
        "spec": {"replicas": 1, "template": template},
        "status": {"replicas": 1, "availableReplicas": 1},
    }
    api_server.put(rs, "replicasets")
    return rs


@pytest.mark.parametrize(
    ("action", "status", "paused", "sent"),
    [
        pytest.param(
            "promote",
            PAUSED_AT_1,
            False,
            [("kubeapp/status", MERGE, {"status": {"pauseConditions": None}})],
            id="promote-clears-the-pause-conditions",
        ),
        pytest.param(
            "promote",
            PAUSED_AT_1,
            True,
            [
                ("kubeapp/status", MERGE, {"status": {"pauseConditions": None}}),
                ("kubeapp", MERGE, {"spec": {"paused": False}}),
            ],
            id="promote-then-unpauses-the-spec",
        ),
        pytest.param(
            "promote",
            {**PAUSED_AT_1, "currentStepIndex": 2, "pauseConditions": None, "phase": "Progressing"},
            False,
            [
                (
                    "kubeapp/status",
                    MERGE,
                    {"status": {"pauseConditions": None, "currentStepIndex": 3}},
                )
            ],
            id="promote-without-a-pause-skips-the-step",
        ),
        pytest.param(
            "promote-full",
            PAUSED_AT_1,
            False,
            [("kubeapp/status", MERGE, {"status": {"promoteFull": True}})],
            id="promote-full",
        ),
        pytest.param(
            "promote-full",
            {**PAUSED_AT_1, "currentPodHash": "aaa", "pauseConditions": None},
            False,
            [],
            id="promote-full-of-a-promoted-rollout-sends-nothing",
        ),
        pytest.param(
            "abort",
            PAUSED_AT_1,
            False,
            [("kubeapp/status", MERGE, {"status": {"abort": True}})],
            id="abort",
        ),
        pytest.param(
            "retry",
            {**PAUSED_AT_1, "abort": True},
            False,
            [("kubeapp/status", MERGE, {"status": {"abort": False}})],
            id="retry",
        ),
    ],
)
def test_each_command_sends_what_kubectl_argo_rollouts_sends(
    api_server: ApiServer,
    kube_backend: KubeBackend,
    action: str,
    status: dict[str, Any],
    paused: bool,
    sent: list[tuple[str, str, Any]],
) -> None:
    """pkg/kubectl-argo-rollouts/cmd/{promote,abort,retry} of v1.9.1: JSON merge patches of
    the status subresource (and of the Rollout for ``spec.paused``), in that order."""
    env = kube_backend.environment("test_argo_patch")
    put_rollout(api_server, env.namespace, status, paused=paused)
    mark = len(api_server.calls)
    env.rollout_command("kubeapp", action)
    assert plugin_calls(api_server, mark) == sent
    stored = api_server.emulator.live("rollouts", env.namespace)[0]
    if sent and sent[0][0].endswith("/status"):
        for key, value in sent[0][2]["status"].items():
            assert stored["status"].get(key) == value  # merged into the status
        assert stored["status"]["stableRS"] == "aaa"  # the rest kept


def test_undo_replaces_the_template_with_the_previous_revisions_without_its_hash(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    """cmd/undo/undo.go: the ReplicaSets the Rollout controls (owner uid), the second-highest
    revision, its template minus ``rollouts-pod-template-hash``, as a JSON patch."""
    env = kube_backend.environment("test_argo_undo")
    put_rollout(api_server, env.namespace, PAUSED_AT_1)
    stable = put_replica_set(api_server, env.namespace, "aaa", 1, "1.0", "uid-rollout")
    put_replica_set(api_server, env.namespace, "bbb", 2, "2.0", "uid-rollout")
    put_replica_set(api_server, env.namespace, "zzz", 9, "9.9", "uid-another-rollout")
    mark = len(api_server.calls)
    env.rollout_command("kubeapp", "undo")
    wanted = copy.deepcopy(stable["spec"]["template"])
    del wanted["metadata"]["labels"][model.POD_TEMPLATE_HASH]
    assert plugin_calls(api_server, mark) == [
        ("kubeapp", JSON_PATCH, [{"op": "replace", "path": "/spec/template", "value": wanted}])
    ]
    stored = api_server.emulator.live("rollouts", env.namespace)[0]
    assert stored["spec"]["template"] == wanted and stored["metadata"]["generation"] == 2


def test_undo_to_the_same_template_sends_nothing_and_without_history_fails_as_the_plugin(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_argo_undo_noop")
    put_rollout(api_server, env.namespace, PAUSED_AT_1, version="1.0")
    put_replica_set(api_server, env.namespace, "aaa", 1, "1.0", "uid-rollout")
    with pytest.raises(BackendError, match='undo: no revision found for rollout "kubeapp"'):
        env.rollout_command("kubeapp", "undo")
    put_replica_set(api_server, env.namespace, "bbb", 2, "2.0", "uid-rollout")
    mark = len(api_server.calls)
    env.rollout_command("kubeapp", "undo")  # rev 1's template is the Rollout's already
    assert plugin_calls(api_server, mark) == []


# -- waits: their answers and their messages ---------------------------------------------------


def later(seconds: float, change: Callable[[], None]) -> threading.Thread:
    thread = threading.Timer(seconds, change)
    thread.start()
    return thread


def test_a_wait_takes_the_status_once_the_controller_observed_the_generation(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    """``observedGeneration`` is a string in Argo's status; "1" of generation 2 means the
    controller has not seen the change yet (utils/rollout GetRolloutPhase): a Healthy
    status then is the old template's."""
    env = kube_backend.environment("test_argo_generation")
    healthy = {
        "observedGeneration": "1",
        "phase": "Healthy",
        "stableRS": "aaa",
        "currentPodHash": "aaa",
        "currentStepIndex": 4,
    }
    obj = put_rollout(api_server, env.namespace, healthy, generation=2, traffic=None)
    put_replica_set(api_server, env.namespace, "aaa", 1, "2.0", "uid-rollout")
    assert env.rollout_status("kubeapp").phase == "Progressing"
    assert env.rollout_status("kubeapp").message == "waiting for rollout spec update to be observed"
    observed = copy.deepcopy(obj)
    observed["status"]["observedGeneration"] = "2"
    started = time.monotonic()
    timer = later(0.5, lambda: api_server.put(observed, "rollouts"))
    status = env.await_rollout("kubeapp", lambda s: s.phase == "Healthy", what="Healthy", timeout=5)
    timer.join()
    assert status.phase == "Healthy" and status.observed_generation == 2
    assert time.monotonic() - started >= 0.5


def test_a_wait_that_runs_out_names_what_the_deadline_flag_and_the_last_status(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_argo_timeout")
    put_rollout(api_server, env.namespace, None)
    with pytest.raises(ConvergenceTimeout) as caught:
        env.await_rollout(
            "kubeapp",
            lambda s: s.phase == "Healthy",
            what="Healthy on the stable version",
            timeout=0.6,
        )
    message = str(caught.value)
    assert (
        f"waiting for Rollout {env.namespace}/kubeapp to be Healthy on the stable version"
        in message
    )
    assert "--canary-wait-timeout=5s" in message
    assert "waiting for rollout spec update to be observed" in message
    assert "no status from a controller: is Argo Rollouts running" in message


def test_a_wait_holds_while_the_controllers_writes_disagree_with_the_model(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    """Paused at step 1 (after setWeight 20) but the status says the router got 10: not
    the state to sample, and the timeout says what the model expected."""
    env = kube_backend.environment("test_argo_weights")
    status = {
        **PAUSED_AT_1,
        "canary": {
            "weights": {
                "canary": {"weight": 10, "podTemplateHash": "bbb"},
                "stable": {"weight": 90, "podTemplateHash": "aaa"},
            }
        },
    }
    put_rollout(api_server, env.namespace, status)
    with pytest.raises(ConvergenceTimeout) as caught:
        env.await_rollout("kubeapp", lambda s: s.paused, what="paused", timeout=0.6)
    assert "status.canary.weights.canary.weight 10, the model expects 20 (step 1)" in str(
        caught.value
    )


def test_a_spec_the_controller_refuses_fails_the_wait_at_once(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_argo_invalid")
    refused = {
        "observedGeneration": "1",
        "phase": "Degraded",
        "conditions": [
            {
                "type": "InvalidSpec",
                "status": "True",
                "reason": "InvalidSpec",
                "message": 'The Rollout "kubeapp" is invalid: spec.strategy.canary.steps[0]',
            }
        ],
    }
    put_rollout(api_server, env.namespace, refused)
    started = time.monotonic()
    with pytest.raises(BackendError, match=r"refuses its spec \(InvalidSpec: The Rollout"):
        env.await_rollout("kubeapp", lambda s: s.paused, what="paused", timeout=30)
    assert time.monotonic() - started < 5


# -- your own Rollout, and a cluster without the controller -------------------------------------

SHOP = Path(__file__).resolve().parents[3] / "suites" / "manifests" / "rollouts" / "shop"


@pytest.mark.slow
def test_your_own_rollout_through_canary_apply_has_the_same_handle(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_argo_shop")
    with Harness(env) as canary:
        shop = canary.apply([SHOP / "routing.yaml", SHOP / "v1"], host="shop.example.com")
        assert isinstance(shop, AppliedRollout) and shop.status.phase == "Healthy"
        shop = canary.apply([SHOP / "routing.yaml", SHOP / "v2"], host="shop.example.com")
        assert isinstance(shop, AppliedRollout)
        assert shop.status.step == 1 and (shop.canary_version, shop.stable_version) == ("v2", "v1")
        shop.expect_split({"v2": 0.10}, tolerance=0.1)
        shop.expect_routed("v2", headers={"x-beta-user": "yes"}, leak=0.1)
        mark = len(api_server.calls)
        shop.promote()
        assert shop.status.weight == 50
        shop.abort()
        shop.expect_routed("v1", leak=0.1)
        assert [c[2] for c in plugin_calls(api_server, mark)] == [
            {"status": {"pauseConditions": None}},
            {"status": {"abort": True}},
        ]


@pytest.mark.slow
def test_a_header_route_dropped_from_your_rollout_stays_on_the_canary_ingress_and_is_warned(
    api_server: ApiServer, kube_backend: KubeBackend, tmp_path: Path
) -> None:
    """The controller keeps every annotation of its canary Ingress (nginx.go
    ``getDesiredAnnotations``): after v2 drops v1's ``additionalIngressAnnotations`` the
    live Ingress still has them, the waits do not hold for their removal (the controller
    never removes them), the header still reaches the canary, and ``canary.apply`` warns."""
    import yaml

    v2 = yaml.safe_load((SHOP / "v2" / "rollout.yaml").read_text())
    del v2["spec"]["strategy"]["canary"]["trafficRouting"]["nginx"]["additionalIngressAnnotations"]
    (tmp_path / "rollout.yaml").write_text(yaml.safe_dump(v2))
    env = kube_backend.environment("test_argo_dropped_header")
    with Harness(env) as canary:
        canary.apply([SHOP / "routing.yaml", SHOP / "v1"], host="shop.example.com")
        with pytest.warns(RetainedRoutingWarning, match="canary-by-header: 'x-beta-user'"):
            shop = canary.apply([SHOP / "routing.yaml", tmp_path], host="shop.example.com")
        assert shop.status.step == 1 and shop.status.weight == 10
        live = next(
            i
            for i in api_server.emulator.live("ingresses", env.namespace)
            if i["metadata"]["name"] == "shop-shop-canary"
        )
        annotations = live["metadata"]["annotations"]
        assert annotations["nginx.ingress.kubernetes.io/canary-by-header"] == "x-beta-user"
        assert annotations["nginx.ingress.kubernetes.io/canary-weight"] == "10"
        shop.expect_routed("v2", headers={"x-beta-user": "yes"}, leak=0.1)
        report = env.diagnostics().sections["Rollout shop"]
        assert "canary Ingress shop-shop-canary keeps" in report


def test_without_the_crd_rollouts_are_refused_saying_how_to_install_the_controller(
    make_backend: Callable[..., KubeBackend], api_server: ApiServer
) -> None:
    assert isinstance(api_server.emulator, ArgoEmulator)
    api_server.emulator.crd = False
    api_server.emulator.resources.pop("argoproj.io/v1alpha1/rollouts", None)
    env = make_backend().environment("test_no_argo")
    assert env.runs_argo_rollouts is False
    missing = env.argo_rollouts_missing()
    assert "does not serve rollouts.argoproj.io" in missing and INSTALL_URL in missing
    assert "--canary-backend=kind" in missing
    with Harness(env) as canary, pytest.raises(BackendError, match=r"deploy.'rollouts'.*: the"):
        canary.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx")
    other = make_backend().environment("test_no_argo_apply")
    with Harness(other) as canary, pytest.raises(CanaryConfigError, match="Rollout shop in your"):
        canary.apply([SHOP / "routing.yaml", SHOP / "v1"], host="shop.example.com")
    assert not [c for c in api_server.calls if c.method == "PATCH" and "rollouts" in c.path]


# -- the controller's writes, read against the model ---------------------------------------------


def live_rollout(traffic: str | None, status: dict[str, Any], **knobs: Any) -> LiveRollout:
    """A Rollout paused where ``status`` says, with the objects a faithful controller wrote
    for its weights: ReplicaSets aaa (stable, 1.0) and bbb (canary, 2.0)."""
    spec = build_spec(
        "rollouts", "1.0", "2.0", steps=STEPS, traffic=traffic, **({"replicas": 1} | knobs)
    )
    obj = rollout_manifests.rollout(spec, "2.0")
    obj["metadata"].update(uid="uid-rollout", generation=1)
    obj["status"] = copy.deepcopy(status)
    config = model.read_rollout(obj)
    weights = (status.get("canary") or {}).get("weights") or {}
    canary_weight = int((weights.get("canary") or {}).get("weight") or 0)
    replica_sets = []
    for rs_hash, version, available in (
        ("aaa", "1.0", spec.replicas),
        ("bbb", "2.0", status.get("_canary_pods", 1)),
    ):
        template = rollout_manifests.rollout(spec, version)["spec"]["template"]
        template["metadata"]["labels"][model.POD_TEMPLATE_HASH] = rs_hash
        replica_sets.append(
            {
                "metadata": {
                    "name": f"kubeapp-{rs_hash}",
                    "labels": dict(template["metadata"]["labels"]),
                    "ownerReferences": [
                        {"kind": "Rollout", "uid": "uid-rollout", "controller": True}
                    ],
                },
                "spec": {"replicas": available, "template": template},
                "status": {"replicas": available, "availableReplicas": available},
            }
        )
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for rendered in rollout_manifests.render(spec, Phase.CANARY)[1:]:
        objects[(rendered["kind"], rendered["metadata"]["name"])] = rendered
    for service, rs_hash in (("kubeapp-stable", "aaa"), ("kubeapp-canary", "bbb")):
        if ("Service", service) in objects:
            objects[("Service", service)] = model.switch_service(
                objects[("Service", service)], rs_hash, "kubeapp"
            )
    if config.nginx is not None:
        written = model.canary_ingress(config, objects[("Ingress", "kubeapp")], canary_weight)
        objects[("Ingress", written["metadata"]["name"])] = written
    if config.istio is not None:
        ref = config.istio.virtual_services[0]
        vs = objects[("VirtualService", "kubeapp")]
        objects[("VirtualService", "kubeapp")] = model.virtual_service_with_weight(
            config, vs, ref, canary_weight
        )
        dr = objects[("DestinationRule", "kubeapp")]
        objects[("DestinationRule", "kubeapp")] = model.destination_rule_with_hashes(
            config, dr, "bbb", "aaa"
        )
    return LiveRollout(obj, config, client_status(obj), tuple(replica_sets), objects)


def weighted(weight: int) -> dict[str, Any]:
    return {
        "weights": {
            "canary": {"weight": weight, "podTemplateHash": "bbb"},
            "stable": {"weight": 100 - weight, "podTemplateHash": "aaa"},
        }
    }


AT_20 = {**PAUSED_AT_1, "canary": weighted(20)}


def test_a_faithful_controllers_writes_agree_with_the_model() -> None:
    for traffic in ("nginx", "istio"):
        check = written_check(live_rollout(traffic, AT_20))
        assert check.done, (traffic, check.status)


def test_a_canary_ingress_behind_the_status_is_not_the_state_to_sample() -> None:
    live = live_rollout("nginx", AT_20)
    ingress = live.objects[("Ingress", "kubeapp-kubeapp-canary")]
    ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] = "0"
    check = written_check(live)
    assert not check.done
    assert (
        "Ingress kubeapp-kubeapp-canary: nginx.ingress.kubernetes.io/canary-weight is '0', "
        "wanted '20'" in check.status
    )


def test_every_annotation_the_controller_owns_is_read_against_the_model() -> None:
    """``buildCanaryIngress`` writes the additional annotations on every patch: one missing
    from the live canary Ingress is a disagreement; an annotation the Rollout does not set is
    the controller's to keep (``getDesiredAnnotations``), not one to wait for."""
    header = {"canary-by-header": "X-Canary"}
    live = live_rollout("nginx", AT_20, additional_ingress_annotations=header)
    annotations = live.objects[("Ingress", "kubeapp-kubeapp-canary")]["metadata"]["annotations"]
    annotations["nginx.ingress.kubernetes.io/canary-by-cookie"] = "beta"
    annotations["field.cattle.io/publicEndpoints"] = "[]"
    assert written_check(live).done
    del annotations["nginx.ingress.kubernetes.io/canary-by-header"]
    check = written_check(live)
    assert not check.done
    assert (
        "Ingress kubeapp-kubeapp-canary: nginx.ingress.kubernetes.io/canary-by-header is None, "
        "wanted 'X-Canary'" in check.status
    )


def test_a_stable_ingress_the_controller_cannot_use_is_named_not_raised() -> None:
    live = live_rollout("nginx", AT_20)
    stable = live.objects[("Ingress", "kubeapp")]
    stable["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "elsewhere"
    check = written_check(live)
    assert "Ingress kubeapp: ingress `kubeapp` has no rules using service kubeapp-stable" in (
        check.status
    )


def test_istio_routes_and_subsets_are_read_against_the_model() -> None:
    live = live_rollout("istio", AT_20)
    vs = live.objects[("VirtualService", "kubeapp")]
    vs["spec"]["http"][0]["route"][0]["weight"] = 100
    vs["spec"]["http"][0]["route"][1]["weight"] = 0
    dr = live.objects[("DestinationRule", "kubeapp")]
    for subset in dr["spec"]["subsets"]:
        subset["labels"].pop(model.POD_TEMPLATE_HASH)
    check = written_check(live)
    assert "VirtualService kubeapp: routes [('primary', [('kubeapp', 'stable', 100)" in check.status
    assert "DestinationRule kubeapp: subset hashes {'canary': None, 'stable': None}, wanted" in (
        check.status
    )


def test_pods_and_service_selectors_are_part_of_the_state() -> None:
    live = live_rollout("nginx", {**AT_20, "_canary_pods": 0})
    live.objects[("Service", "kubeapp-canary")]["spec"]["selector"][model.POD_TEMPLATE_HASH] = "aaa"
    check = written_check(live)
    assert "canary ReplicaSet bbb: 0 pods available, the model expects 1" in check.status
    assert "Service kubeapp-canary selects rollouts-pod-template-hash=aaa, wanted bbb" in (
        check.status
    )


@pytest.mark.parametrize(
    ("traffic", "status", "weight", "pods"),
    [
        ("nginx", AT_20, 20, (1, 1)),
        ("nginx", {**PAUSED_AT_1, "currentStepIndex": 3}, 50, (1, 1)),
        ("nginx", {**PAUSED_AT_1, "abort": True, "pauseConditions": None}, 0, (None, 1)),
        ("nginx", {**PAUSED_AT_1, "currentPodHash": "aaa", "pauseConditions": None}, 0, (None, 1)),
        (None, {**PAUSED_AT_1, "abort": True, "pauseConditions": None}, 0, (0, 1)),
        (
            "nginx",
            {**PAUSED_AT_1, "pauseConditions": None, "currentStepIndex": 2},
            None,
            (None, None),
        ),
    ],
    ids=["paused-at-20", "paused-at-50", "aborted", "promoted", "basic-aborted", "between-steps"],
)
def test_what_the_model_expects_in_each_settled_state(
    traffic: str | None, status: dict[str, Any], weight: int | None, pods: tuple[int | None, ...]
) -> None:
    live = live_rollout(traffic, status)
    assert expected_weight(live.config, live.status) == weight
    assert expected_available(live.config, live.status) == pods


def test_a_basic_canary_paused_expects_argos_rounding_of_the_replicas() -> None:
    live = live_rollout(None, PAUSED_AT_1, replicas=5)
    assert expected_available(live.config, live.status) == (1, 4)  # replicas 5 at 20%


@pytest.mark.parametrize(
    ("meta", "status", "waiting"),
    [
        (
            {"generation": 2},
            {"observedGeneration": "1", "phase": "Paused"},
            "waiting for rollout spec update to be observed",
        ),
        ({"generation": 2}, {"observedGeneration": "2", "phase": "Paused"}, ""),
        (
            {"generation": 1},
            {"observedGeneration": "1", "phase": "Paused", "controllerPause": True},
            "waiting for rollout to unpause",
        ),
        (
            {"generation": 1},
            {
                "observedGeneration": "1",
                "phase": "Degraded",
                "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "RolloutAborted"}
                ],
            },
            "waiting for the retry to be observed",
        ),
        (
            {"generation": 1},
            {
                "observedGeneration": "1",
                "phase": "Degraded",
                "abort": True,
                "conditions": [
                    {"type": "Progressing", "status": "False", "reason": "RolloutAborted"}
                ],
            },
            "",
        ),
    ],
    ids=["generation-behind", "generation-seen", "unpause-not-seen", "retry-not-seen", "aborted"],
)
def test_a_status_that_has_not_seen_the_last_change(
    meta: dict[str, Any], status: dict[str, Any], waiting: str
) -> None:
    """utils/rollout/rolloututil.go GetRolloutPhase (observedGeneration is a string;
    controllerPause without pause conditions) and rollout/sync.go
    calculateRolloutConditions (RolloutAborted becomes RolloutRetry once abort is false)."""
    rollout = {"metadata": {"name": "r", **meta}, "spec": {}, "status": status}
    assert unobserved(rollout) == waiting
    assert client_status(rollout).phase == ("Progressing" if waiting else status["phase"])


@pytest.mark.parametrize(
    ("urls", "traffic", "url", "what"),
    [
        ({"nginx": "http://n", "istio": "http://i"}, "nginx", "http://n", "ingress-nginx"),
        ({"nginx": "http://n", "istio": "http://i"}, "istio", "http://i", "Istio ingress"),
        ({"istio": "http://i", "rollouts": "http://r"}, "nginx", "http://r", "ingress-nginx"),
    ],
)
def test_a_rollouts_release_enters_where_its_traffic_router_does(
    api_server: ApiServer, urls: dict[str, str], traffic: str, url: str, what: str
) -> None:
    backend = KubeBackend(api_server.api(), KubeOptions(), EntryPoints(urls=urls), run_id="r")
    try:
        spec = build_spec("rollouts", "1.0", "2.0", steps=STEPS, traffic=traffic)
        entry = backend.environment("test_entry").entry(spec)
        assert entry.url == url and entry.host == spec.host
        assert entry.description.startswith(what)
    finally:
        backend.close()


def test_a_cluster_running_argo_rollouts_is_held_to_its_kubernetes_window(
    api_server: ApiServer,
) -> None:
    """Like the data planes: a cluster that serves argoproj.io/v1alpha1 runs the controller
    whose window (1.32-1.35, the e2e matrix of v1.9.1) the server must be in."""
    api = api_server.api()
    try:
        found = dataplanes_in(api)  # the emulator serves the Istio and Gateway API groups too
        assert found["argo-rollouts"] == "argoproj.io/v1alpha1 served"
        api_server.emulator.version = {"major": "1", "minor": "36", "gitVersion": "v1.36.0"}
        with pytest.raises(BackendError, match=r"argo-rollouts v1\.9\.1"):
            check_kubernetes_version(api, list(found), where="context x", allow_any=False)
    finally:
        api.close()
