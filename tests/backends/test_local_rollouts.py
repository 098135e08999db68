"""The local backend's Argo Rollouts controller for real: pods per pod template hash,
Services patched, a background thread that ends timed pauses and scale-down delays, its
errors re-raised in the test thread, and everything stopped at close."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_canary import (
    BackendError,
    CanaryConfigError,
    ConvergenceTimeout,
    Harness,
    RetainedRoutingWarning,
)
from pytest_canary.backends.base import Entry, Environment
from pytest_canary.backends.local import LocalBackend
from pytest_canary.dataplane import argo_rollouts as ar
from pytest_canary.manifests import Manifest
from pytest_canary.spec import ReleaseSpec

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "suites" / "manifests" / "rollouts" / "shop"
STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}]


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    b = LocalBackend(seed=5)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def canary(backend: LocalBackend) -> Iterator[Harness]:
    with Harness(backend.environment("local-rollouts")) as harness:
        yield harness


def test_pods_carry_their_pod_template_hash_and_services_select_it(canary: Harness) -> None:
    rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx")
    status = rel.status
    pods = {p.labels["version"]: p.labels[ar.POD_TEMPLATE_HASH] for p in canary.environment.pods}
    assert pods == {"1.0": status.stable_hash, "2.0": status.canary_hash}
    services = {
        o["metadata"]["name"]: o["spec"]["selector"].get(ar.POD_TEMPLATE_HASH)
        for o in canary.environment.objects()
        if o["kind"] == "Service"
    }
    assert services == {"kubeapp-stable": status.stable_hash, "kubeapp-canary": status.canary_hash}
    ingresses = [
        o["metadata"]["name"] for o in canary.environment.objects() if o["kind"] == "Ingress"
    ]
    assert ingresses == ["kubeapp", "kubeapp-kubeapp-canary"]


def test_abort_events_say_the_canary_service_went_back_to_the_stable_pods_once(
    canary: Harness,
) -> None:
    """After ``abort`` with traffic routing the model keeps the canary Service on the stable
    pods (upstream flaps it, argoproj/argo-rollouts#3078): its events record that one switch,
    in Argo's words, and no switch to the canary pods."""
    rel = canary.deploy(
        "rollouts",
        stable="1.0",
        canary="2.0",
        steps=STEPS,
        traffic="nginx",
        additional_ingress_annotations={"canary-by-header": "X-Canary"},
    )
    stable, new = rel.status.stable_hash, rel.status.canary_hash
    rel.abort()
    events = rel.rollout_events()
    after = events[events.index("kubectl argo rollouts abort: status patch {'abort': True}") :]
    assert [e for e in after if e.startswith("SwitchService")] == [
        f"SwitchService: Switched selector for service 'kubeapp-canary' from '{new}' to '{stable}'"
    ]
    rel.expect_routed("1.0", headers={"X-Canary": "always"})


def test_timed_pause_ends_on_the_controller_thread(canary: Harness) -> None:
    """The pause's timer runs without the test: wait_for_pause returns at the next pause."""
    steps = [{"setWeight": 20}, {"pause": {"duration": 1}}, {"setWeight": 40}, {"pause": {}}]
    rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=steps, traffic="nginx")
    assert rel.status.step == 1
    status = rel.wait_for_pause()
    assert status.step == 3 and status.weight == 40
    started = status.pause_conditions[0].start_time
    assert any("completed (pause: 1s)" in e for e in rel.rollout_events())
    assert started > 0


def test_old_pods_stop_after_the_scale_down_delay(canary: Harness) -> None:
    rel = canary.deploy(
        "rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx", scale_down_delay=1
    )
    rel.promote(full=True)
    assert rel.ready_pods() == {"1.0": 1, "2.0": 1}  # the delay keeps the old pods
    canary.environment.await_rollout(
        "kubeapp", lambda s: s.replicas == 1, what="with the old pods gone", timeout=30
    )
    assert rel.ready_pods() == {"2.0": 1}


def test_controller_thread_errors_are_raised_in_the_test_thread(canary: Harness) -> None:
    """A pod the process runtime cannot start fails in the controller's thread; the next
    wait (or check_health) raises it in the test thread."""
    rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx")
    env = canary.environment
    rollout: Manifest = copy.deepcopy(rel.objects[0])
    rollout["spec"]["template"]["spec"]["containers"][0]["image"] = "registry.example/shop:3"
    env.apply([rollout, *rel.objects[1:]])
    with pytest.raises(BackendError, match=re.escape("registry.example/shop:3")):
        env.await_rollout("kubeapp", lambda s: False, what="never", timeout=30)
    with pytest.raises(BackendError):
        env.check_health()


def test_a_sync_that_cannot_succeed_fails_the_wait_at_once(canary: Harness) -> None:
    """The stable Ingress routes elsewhere: every sync fails with nginx.go's error; the wait
    says so instead of timing out."""
    rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx")
    objects: list[Manifest] = copy.deepcopy(rel.objects)
    ingress = next(o for o in objects if o["kind"] == "Ingress")
    ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "kubeapp-canary"
    objects[0]["spec"]["template"]["metadata"]["labels"]["version"] = "3.0"
    canary.environment.apply(objects)
    with pytest.raises(BackendError, match="has no rules using service kubeapp-stable backend"):
        canary.environment.await_rollout("kubeapp", lambda s: s.paused, what="paused", timeout=30)


def test_close_stops_the_controller_thread_and_every_pod(backend: LocalBackend) -> None:
    env = backend.environment("local-rollouts-close")
    harness = Harness(env)
    harness.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx")
    pods = list(env.pods)
    thread = env._rollouts._thread
    assert len(pods) == 2 and thread is not None and thread.is_alive()
    harness.close()
    assert not thread.is_alive()
    assert not any(p.alive() for p in pods)


def test_own_rollout_applied_twice_runs_the_steps(canary: Harness) -> None:
    """canary.apply of a platform team's Rollout: the first apply runs v1 (initial deploy),
    applying v2 over it starts the canary and returns at the first pause."""
    shop = canary.apply([SHOP / "routing.yaml", SHOP / "v1"])
    assert shop.status.phase == "Healthy"
    shop = canary.apply([SHOP / "routing.yaml", SHOP / "v2"])
    status = shop.status
    assert status.phase == "Paused" and status.step == 1 and status.weight == 10
    assert (shop.canary_version, shop.stable_version) == ("v2", "v1")
    shop.expect_routed("v2", headers={"x-beta-user": "yes"})


def test_own_rollout_promotes_with_the_checks_of_a_deployed_one(canary: Harness) -> None:
    """README: ``promote`` and ``rollback`` take ``check_errors=True`` (and ``promote``
    ``check_health=True``) on the handle of your own Rollout too; they used to raise
    TypeError there. The health check compares v2 with v1 at the current step first; the
    zero-downtime check sends enough requests to mean something (688 at alpha 0.001)."""
    canary.apply([SHOP / "routing.yaml", SHOP / "v1"])
    shop = canary.apply([SHOP / "routing.yaml", SHOP / "v2"])
    switched = shop.promote(check_errors=True)
    assert switched is not None and switched.kind == "zero-downtime"
    assert switched.decision == "PASS" and switched.n >= 688
    assert shop.status.step == 3 and shop.status.weight == 50  # at the timed pause
    health = shop.promote(full=True, check_health=True)
    assert health is not None and health.kind == "health" and health.decision == "PASS"
    assert health.roles == {"v2": "canary", "v1": "stable"}
    assert shop.status.phase == "Healthy" and shop.stable_version == "v2"


def test_promote_check_errors_on_a_quick_step_still_catches_a_faulty_canary(
    canary: Harness,
) -> None:
    """A promote that returns at the next pause takes a round or two: its zero-downtime check
    saw 16 requests and passed a canary failing 5% of them about half the time. The traffic
    now goes on until 688 requests (a 1% failure rate is caught with probability >= 0.999)
    or the first failure: here 2.5-4% of requests fail, so it FAILs (a PASS would need 688
    requests without one: probability below 1e-7)."""
    rel = canary.deploy(
        "rollouts",
        stable="1.0",
        canary="2.0",
        steps=[{"setWeight": 50}, {"pause": {}}, {"setWeight": 80}, {"pause": {}}],
        traffic="nginx",
        canary_error_rate=0.05,
    )
    with pytest.raises(AssertionError, match="requests failed during promote and after it") as info:
        rel.promote(check_errors=True)
    verdict = info.value.verdict  # type: ignore[attr-defined]
    assert verdict.decision == "FAIL" and sum(verdict.errors.values()) >= 1
    assert rel.status.step == 3  # the promotion itself happened: the check watched it


def test_a_basic_canary_without_replicas_gets_pods_enough_for_its_weights(
    canary: Harness,
) -> None:
    """README's STEPS with traffic=None and no replicas: with one replica (Argo's default)
    setWeight 20 is 1 canary pod of 2, 50% of the traffic. A basic canary now defaults to 10
    replicas, so setWeight 20 is 2 canary pods and 8 stable."""
    rel = canary.deploy(
        "rollouts", stable="1.0", canary="2.0", steps=[{"setWeight": 20}, {"pause": {}}]
    )
    assert rel.status.weight == 20 and rel.status.set_weight == 20
    assert rel.ready_pods() == {"2.0": 2, "1.0": 8}


def test_a_header_route_dropped_from_the_rollout_still_routes_and_is_warned(
    canary: Harness, tmp_path: Path
) -> None:
    """v2 of a Rollout without v1's ``additionalIngressAnnotations``: Argo Rollouts never
    removes an annotation from its canary Ingress (nginx.go ``getDesiredAnnotations``), so
    ``x-beta-user: yes`` still reaches the canary, as on a cluster. ``canary.apply`` warns
    with the annotations and how to remove them; the failure report's Rollout section too."""
    import yaml

    v2 = yaml.safe_load((SHOP / "v2" / "rollout.yaml").read_text())
    del v2["spec"]["strategy"]["canary"]["trafficRouting"]["nginx"]["additionalIngressAnnotations"]
    (tmp_path / "rollout.yaml").write_text(yaml.safe_dump(v2))
    canary.apply([SHOP / "routing.yaml", SHOP / "v1"])
    with pytest.warns(RetainedRoutingWarning) as warned:
        shop = canary.apply([SHOP / "routing.yaml", tmp_path])
    (message,) = [str(w.message) for w in warned]
    assert message.startswith(
        "Rollout shop: canary Ingress shop-shop-canary keeps "
        "nginx.ingress.kubernetes.io/canary-by-header: 'x-beta-user', "
        "nginx.ingress.kubernetes.io/canary-by-header-value: 'yes', which the Rollout does "
        "not set"
    )
    assert "kubectl annotate ingress shop-shop-canary " in message
    assert shop.status.step == 1 and shop.status.weight == 10
    shop.expect_routed("v2", headers={"x-beta-user": "yes"})
    report = canary.environment.diagnostics().sections[
        "Rollout shop (Argo Rollouts controller model)"
    ]
    assert "canary Ingress shop-shop-canary keeps nginx.ingress.kubernetes.io/canary-by-header" in (
        report
    )


def test_own_rollout_with_unmodelled_steps_is_refused(canary: Harness, tmp_path: Path) -> None:
    import yaml

    docs = list(yaml.safe_load_all((SHOP / "v2" / "rollout.yaml").read_text()))
    docs[0]["spec"]["strategy"]["canary"]["steps"].insert(
        1, {"analysis": {"templates": [{"templateName": "ok"}]}}
    )
    (tmp_path / "rollout.yaml").write_text(yaml.safe_dump_all(docs))
    with pytest.raises(CanaryConfigError, match=r"steps\[1\]\.analysis: an analysis step"):
        canary.apply([SHOP / "routing.yaml", tmp_path / "rollout.yaml"])


class _NoRollouts(Environment):
    namespace = "elsewhere"

    def __init__(self) -> None:
        self.applied: list[Manifest] = []

    def apply(self, objects: Any) -> None:
        self.applied += list(objects)

    def entry(self, spec: ReleaseSpec) -> Entry:
        raise AssertionError("not reached")

    def close(self) -> None:
        pass


class _Unanswered(_NoRollouts):
    """A cluster with the Rollout CRD whose controller does not answer until ``status`` is
    set: waits record their deadline and run out at once."""

    runs_argo_rollouts = True
    rollout_settle_timeout = 5.0

    def __init__(self) -> None:
        super().__init__()
        self.status: ar.RolloutStatus | None = None
        self.timeouts: list[float] = []

    def rollout_status(self, name: str) -> ar.RolloutStatus:
        if self.status is None:
            raise BackendError(f"no status for Rollout {name}")
        return self.status

    def await_rollout(self, name: str, until: Any, *, what: str, timeout: float) -> Any:
        self.timeouts.append(timeout)
        if self.status is not None and until(self.status):
            return self.status
        raise ConvergenceTimeout(f"Rollout {name}", what, "no status", timeout)

    def rollout_versions(self, name: str, version_label: str = "version") -> dict[str, str]:
        return {}


def test_a_wait_adds_pause_time_only_while_the_rollout_stands_at_a_timed_pause() -> None:
    """The first deploy skips every step (sync.go shouldFullPromote "Initial deploy"): with
    no controller answering, deploy says so after the controller's time alone, not after
    every pause too. At a timed pause, wait_for_pause waits for it."""
    steps = [{"setWeight": 20}, {"pause": {"duration": "1h"}}, {"setWeight": 50}, {"pause": {}}]
    env = _Unanswered()
    with Harness(env) as harness:
        with pytest.raises(ConvergenceTimeout):
            harness.deploy("rollouts", stable="1.0", canary="2.0", steps=steps, traffic="nginx")
        assert env.timeouts == [5.0]
    env = _Unanswered()
    env.status = ar.RolloutStatus(phase=ar.HEALTHY, current_step_index=4, step_count=4)
    with Harness(env) as harness:
        rel = harness.deploy("rollouts", stable="1.0", canary="2.0", steps=steps, traffic="nginx")
        env.status = ar.RolloutStatus(
            phase=ar.PAUSED,
            current_step_index=1,
            step_count=4,
            pause_conditions=(ar.PauseCondition(ar.PAUSE_STEP, 1.0),),
        )
        rel.wait_for_pause()
        assert env.timeouts == [5.0, 5.0, 5.0 + 3600]


def test_a_backend_without_argo_rollouts_says_so_before_applying() -> None:
    env = _NoRollouts()
    with Harness(env) as harness, pytest.raises(BackendError, match="does not run Argo Rollouts"):
        harness.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS, traffic="nginx")
    assert env.applied == []


def test_timed_pause_does_not_end_while_timers_are_held(canary: Harness) -> None:
    """The local controller's clock stands still while an expectation samples
    (``hold_rollout_timers``): a 1 s pause outlasts a 1.5 s hold, then ends right after."""
    steps = [{"setWeight": 20}, {"pause": {"duration": "1s"}}, {"setWeight": 80}, {"pause": {}}]
    rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=steps, traffic="nginx")
    env = canary.environment
    with env.hold_rollout_timers():
        assert set(rel.sample(100).counts) <= {"1.0", "2.0"}
        with pytest.raises(ConvergenceTimeout):
            env.await_rollout("kubeapp", lambda s: s.step != 1, what="past the pause", timeout=1.5)
    assert rel.wait_for_pause().weight == 80


def _shop_rollout(tmp_path: Path, change: Any) -> Path:
    """The shop's v1 Rollout, changed by ``change(rollout)``, written to ``tmp_path``."""
    import yaml

    docs = list(yaml.safe_load_all((SHOP / "v1" / "rollout.yaml").read_text()))
    change(docs[0])
    (tmp_path / "rollout.yaml").write_text(yaml.safe_dump_all(docs))
    return tmp_path / "rollout.yaml"


def test_own_rollout_with_a_pause_longer_than_a_test_waits_is_refused(
    canary: Harness, tmp_path: Path
) -> None:
    """Argo runs a pause of any duration; a test waits for it, so MAX_PAUSE_SECONDS bounds
    it here, named as our bound, before anything is applied."""

    def long_pause(rollout: dict[str, Any]) -> None:
        rollout["spec"]["strategy"]["canary"]["steps"][1] = {"pause": {"duration": "99999h"}}

    path = _shop_rollout(tmp_path, long_pause)
    with pytest.raises(CanaryConfigError) as caught:
        canary.apply([SHOP / "routing.yaml", path])
    message = str(caught.value)
    assert "spec.strategy.canary.steps[1].pause.duration='99999h'" in message
    assert "must be 0 to 3600 s" in message and "pytest-canary's bound" in message
    assert canary.environment.objects() == []


def test_own_rollout_without_a_selector_is_refused_as_the_controller_does(
    canary: Harness, tmp_path: Path
) -> None:
    """validation.go ValidateRolloutSpec: no spec.selector (the CRD does not require one) is
    InvalidSpec -- a lint finding before anything is applied, and applied anyway the
    Rollout is Degraded, never Healthy; an empty selector is refused too."""
    from pytest_canary import lint

    path = _shop_rollout(tmp_path, lambda rollout: rollout["spec"].pop("selector"))
    with pytest.raises(CanaryConfigError) as caught:
        canary.apply([SHOP / "routing.yaml", path])
    assert "Rollout has missing field '.spec.selector'" in str(caught.value)
    assert "validation.go ValidateRolloutSpec" in str(caught.value)
    shop = canary.apply([SHOP / "routing.yaml", path], findings="ignore")
    status = shop.status
    assert status.phase == "Degraded"
    assert "InvalidSpec: spec.selector=None: Rollout has missing field" in status.message

    import yaml

    rollout = yaml.safe_load(path.read_text())
    rollout["spec"]["selector"] = {"matchLabels": {}}
    found = [str(f) for f in lint.lint([rollout]) if "spec.selector" in str(f)]
    assert found and all(
        "spec.selector={'matchLabels': {}}: empty selector is invalid" in f for f in found
    )


@pytest.mark.parametrize(
    ("steps", "named"),
    [
        ([{"setWeight": 10}] * 101, "spec.strategy.canary.steps='<101 steps>': at most 100 steps"),
        (
            [
                {
                    "setHeaderRoute": {
                        "name": "beta",
                        "match": [{"headerName": "x b", "headerValue": {"exact": "1"}}],
                    }
                }
            ],
            "spec.strategy.canary.steps[0].setHeaderRoute.match[0].headerName='x b': must be "
            "an HTTP header name",
        ),
    ],
)
def test_own_rollout_beyond_our_bounds_is_refused_as_ours_not_argos(
    canary: Harness, tmp_path: Path, steps: list[dict[str, Any]], named: str
) -> None:
    """Argo's CRD and validation.go have no such limits: these are pytest-canary's, cited
    as such, and the linter does not claim the controller refuses them."""
    from pytest_canary import lint

    def change(rollout: dict[str, Any]) -> None:
        rollout["spec"]["strategy"]["canary"]["steps"] = steps

    path = _shop_rollout(tmp_path, change)
    with pytest.raises(CanaryConfigError) as caught:
        canary.apply([SHOP / "routing.yaml", path])
    assert named in str(caught.value)
    assert "pytest-canary's bound; Argo Rollouts has none" in str(caught.value)
    assert "rollout-crd.yaml" not in str(caught.value)
    found = lint.lint_paths([SHOP / "routing.yaml", path])
    assert not any(named.split(":")[0] in str(f) for f in found)


def test_status_weight_is_what_kubectl_argo_rollouts_get_shows(canary: Harness) -> None:
    """rollout_info.go ActualWeight: a basic canary's weight is its share of the available
    pods, not the setWeight (replicas 2 at setWeight 10: 1 canary pod and 2 stable, with
    maxSurge 1 -> 1 x 100 / 3 = 33); past the last step it is 100 for every strategy (the
    nginx Healthy status showed 0, the basic canary's 100)."""
    steps = [{"setWeight": 10}, {"pause": {}}]
    basic = canary.deploy(
        "rollouts", stable="1.0", canary="2.0", steps=steps, traffic=None, replicas=2
    )
    assert (basic.status.set_weight, basic.status.weight) == (10, 33)
    basic.promote(full=True)
    assert (basic.status.phase, basic.status.weight) == ("Healthy", 100)
    routed = canary.deploy(
        "rollouts", stable="1.0", canary="2.0", steps=steps, traffic="nginx", name="routed"
    )
    assert routed.status.weight == 10
    routed.promote(full=True)
    status = routed.status
    assert (status.phase, status.weights and status.weights.canary_weight) == ("Healthy", 0)
    assert status.weight == 100


def test_a_canary_ingress_name_taken_by_another_object_stops_the_rollout(
    canary: Harness, tmp_path: Path
) -> None:
    """nginx.go SetWeightPerIngress: an existing `<rollout>-<ingress>-canary` Ingress the
    Rollout does not control is never overwritten; every sync fails saying so. The linter
    finds it before anything is applied; applied anyway, the Rollout does not progress."""
    import yaml

    docs = list(yaml.safe_load_all((SHOP / "routing.yaml").read_text()))
    taken = copy.deepcopy(next(d for d in docs if d["kind"] == "Ingress"))
    taken["metadata"]["name"] = "shop-shop-canary"
    (tmp_path / "taken.yaml").write_text(yaml.safe_dump(taken))
    paths = [SHOP / "routing.yaml", tmp_path / "taken.yaml", SHOP / "v1"]
    message = "canary ingress `shop-shop-canary` controlled by different object"
    with pytest.raises(CanaryConfigError, match=re.escape(message)):
        canary.apply(paths)
    with pytest.raises(BackendError, match=re.escape(message)):
        canary.apply(paths, findings="ignore")
    ingress = next(
        o
        for o in canary.environment.objects()
        if o["kind"] == "Ingress" and o["metadata"]["name"] == "shop-shop-canary"
    )
    assert ingress["spec"] == taken["spec"] and "ownerReferences" not in ingress["metadata"]
    assert message in canary.environment.rollout_status("shop").describe()
