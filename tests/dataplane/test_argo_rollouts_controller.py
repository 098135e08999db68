"""The Argo Rollouts controller model, one test per upstream rule (argoproj/argo-rollouts
v1.9.1). Replica-count tables are the cases of upstream's own
``utils/replicaset/canary_test.go``; scenarios follow the docs (``docs/features/canary``) and
``rollout/canary.go``. A pure simulator drives :func:`reconcile` on a fake clock: pods become
ready when the model waits for them, as the local backend makes them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from pytest_canary.dataplane import argo_rollouts as ar
from pytest_canary.dataplane import nginx as nginx_model
from pytest_canary.dataplane.request import RoutedRequest

SEED_STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {"duration": "5s"}},
    {"setWeight": 70},
    {"pause": {"duration": "5s"}},
]
PREFIX = "nginx.ingress.kubernetes.io/"


def rollout(
    version: str,
    steps: list[dict[str, Any]],
    *,
    traffic: str | None = "nginx",
    replicas: int = 1,
    **canary: Any,
) -> dict[str, Any]:
    strategy: dict[str, Any] = {"steps": steps, **canary}
    if traffic == "nginx":
        strategy.update(
            canaryService="app-canary",
            stableService="app-stable",
            trafficRouting={"nginx": {"stableIngress": "app", **canary.pop("nginx", {})}},
        )
    elif traffic == "istio":
        istio: dict[str, Any] = {"virtualService": {"name": "app", "routes": ["primary"]}}
        istio["destinationRule"] = {
            "name": "app",
            "canarySubsetName": "canary",
            "stableSubsetName": "stable",
        }
        strategy["trafficRouting"] = {"istio": istio, **canary.pop("routing", {})}
    return {
        "apiVersion": ar.API_VERSION,
        "kind": "Rollout",
        "metadata": {"name": "app"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "app"}},
            "template": {
                "metadata": {"labels": {"app": "app", "version": version}},
                "spec": {"containers": [{"name": "app", "image": f"app:{version}"}]},
            },
            "strategy": {"canary": strategy},
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": "app"}, "ports": [{"port": 80}]},
    }


def nginx_objects() -> dict[ar.Key, dict[str, Any]]:
    backend = {"service": {"name": "app-stable", "port": {"number": 80}}}
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "app"},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [
                {
                    "host": "foo.bar",
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
            ],
        },
    }
    return {
        ("Service", "app-stable"): service("app-stable"),
        ("Service", "app-canary"): service("app-canary"),
        ("Ingress", "app"): ingress,
    }


def istio_objects() -> dict[ar.Key, dict[str, Any]]:
    def dest(subset: str, weight: int) -> dict[str, Any]:
        return {"destination": {"host": "app", "subset": subset}, "weight": weight}

    vs = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": "app"},
        "spec": {
            "hosts": ["foo.bar"],
            "http": [{"name": "primary", "route": [dest("stable", 100), dest("canary", 0)]}],
        },
    }
    dr = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "DestinationRule",
        "metadata": {"name": "app"},
        "spec": {"host": "app", "subsets": [{"name": "stable"}, {"name": "canary"}]},
    }
    return {
        ("Service", "app"): service("app"),
        ("VirtualService", "app"): vs,
        ("DestinationRule", "app"): dr,
    }


class Cluster:
    """The model driven like the local backend drives it, on a fake clock: sync until
    nothing changes, then the oldest started pods become ready (unless held back)."""

    def __init__(self, obj: dict[str, Any], objects: dict[ar.Key, dict[str, Any]]) -> None:
        self.obj = obj
        self.generation = 1
        self.objects = objects
        self.status = ar.RolloutStatus()
        self.replica_sets: tuple[ar.ReplicaSetState, ...] = ()
        self.now = 100.0
        self.events: list[str] = []
        self.requeue_at: float | None = None

    @property
    def config(self) -> ar.RolloutConfig:
        obj = {**self.obj, "metadata": {**self.obj["metadata"], "generation": self.generation}}
        return ar.read_rollout(obj)

    def update(self, obj: dict[str, Any]) -> None:
        self.obj, self.generation = obj, self.generation + 1

    def sync_once(self) -> bool:
        """One sync; True when it changed something."""
        result = ar.reconcile(self.config, self.status, self.replica_sets, self.objects, self.now)
        changed = not ar.settled(result, self.status, self.replica_sets)
        for obj in result.objects:
            self.objects[(obj["kind"], obj["metadata"]["name"])] = obj
        # The ReplicaSet controller: pods follow spec.replicas; new ones are not ready yet.
        self.replica_sets = tuple(
            replace(rs, pods=rs.replicas, available=min(rs.available, rs.replicas))
            for rs in result.replica_sets
        )
        self.status = result.status
        self.events += result.events
        self.requeue_at = result.requeue_at
        return changed

    def settle(self, *, ready: bool = True) -> None:
        """Sync to a fixpoint; pods become ready between syncs unless ``ready=False``."""
        for _ in range(500):
            if self.sync_once():
                continue
            if ready and any(rs.available < rs.pods for rs in self.replica_sets):
                self.replica_sets = tuple(
                    replace(rs, available=rs.pods) for rs in self.replica_sets
                )
                continue
            return
        raise AssertionError("no fixpoint")

    def command(self, patch: dict[str, Any]) -> None:
        self.status = ar.apply_status_patch(self.status, patch)

    def rs(self, version: str) -> ar.ReplicaSetState:
        wanted = ar.pod_template_hash(rollout(version, [])["spec"]["template"])
        return next(rs for rs in self.replica_sets if rs.hash == wanted)

    def canary_weight(self) -> str:
        ingress = self.objects[("Ingress", "app-app-canary")]
        return str(ingress["metadata"]["annotations"][PREFIX + "canary-weight"])

    def selector_hash(self, svc: str) -> str | None:
        return self.objects[("Service", svc)]["spec"]["selector"].get(ar.POD_TEMPLATE_HASH)


def started(steps: list[dict[str, Any]], *, traffic: str | None = "nginx", **kw: Any) -> Cluster:
    """A Rollout running 1.0, then updated to 2.0 and synced to its first wait."""
    objects = {"nginx": nginx_objects, "istio": istio_objects}.get(traffic or "", dict)()
    cluster = Cluster(rollout("1.0", steps, traffic=traffic, **kw), objects)
    cluster.settle()
    cluster.update(rollout("2.0", steps, traffic=traffic, **kw))
    cluster.settle()
    return cluster


# -- utils/replicaset/canary.go ---------------------------------------------------------------

# (replicas, weight, maxSurge) -> (canary, stable): rows of upstream's
# TestApproximateWeightedNewStableReplicaCounts, plus the issue's and docs' examples.
APPROXIMATE = [
    ((5, 20, 2), (1, 4)),
    ((10, 24, 1), (3, 8)),
    ((1, 1, 0), (0, 1)),
    ((1, 50, 0), (1, 0)),
    ((1, 1, 1), (1, 1)),
    ((1, 100, 1), (1, 0)),
    ((2, 1, 0), (1, 1)),
    ((2, 1, 1), (1, 2)),
    ((2, 99, 1), (2, 1)),
    ((3, 10, 0), (1, 2)),
    ((3, 50, 0), (2, 1)),
    ((3, 10, 1), (1, 3)),
    ((3, 33, 1), (1, 2)),
    ((3, 49, 1), (2, 2)),
    ((10, 14, 0), (1, 9)),
    ((10, 15, 0), (2, 8)),
    ((10, 99, 0), (9, 1)),
    ((10, 18, 1), (2, 9)),
    ((10, 23, 1), (2, 8)),
    ((10, 99, 1), (10, 1)),
    ((0, 50, 1), (0, 0)),
]


@pytest.mark.parametrize(("args", "expected"), APPROXIMATE)
def test_approximate_weighted_counts_pick_the_closest_split(
    args: tuple[int, int, int], expected: tuple[int, int]
) -> None:
    """``approximateWeightedCanaryStableReplicaCounts``: floor or ceil, totals replicas or
    replicas + 1 with surge, the closest to the weight; never 0 canary for 1-99 with 2+ pods."""
    replicas, weight, surge = args
    assert ar.approximate_weighted_counts(replicas, weight, 100, surge) == expected


def _rs(name: str, spec: int, available: int) -> ar.ReplicaSetState:
    return ar.ReplicaSetState(name, 1, replicas=spec, pods=spec, available=available)


# Cases of upstream's TestCalculateReplicaCountsForCanary (name, replicas, weight, maxSurge,
# maxUnavailable, stable spec/available, canary spec/available, older RS) -> (canary, stable).
BASIC_CASES = [
    ("Use max surge int to scale up canary", 10, 20, 2, 0, (10, 10), (0, 0), None, (2, 10)),
    ("Use max surge percentage", 10, 20, "20%", 0, (10, 10), (0, 0), None, (2, 10)),
    ("Scale down extra stable replicas", 10, 20, "20%", 0, (10, 10), (2, 2), None, (2, 8)),
    ("Do not go past max surge", 10, 30, 2, 0, (10, 10), (0, 0), None, (2, 10)),
    (
        "Use max unavailable int to scale down stableRS",
        10,
        20,
        0,
        2,
        (10, 10),
        (0, 0),
        None,
        (0, 8),
    ),
    ("Do not go past max unavailable", 10, 30, 0, 2, (10, 10), (0, 0), None, (0, 8)),
    ("Do not add extra RSs in scaleDownCount", 10, 100, 3, 0, (7, 8), (6, 3), None, (6, 7)),
    ("Scale up Stable before canaryRS", 10, 30, 1, 0, (1, 1), (0, 0), (3, 3), (1, 7)),
    (
        "Do not scale down canaryRS or stable when older RS count >= scaleDownCount",
        10,
        30,
        0,
        1,
        (8, 6),
        (4, 2),
        (3, 3),
        (4, 8),
    ),
]


@pytest.mark.parametrize(
    ("name", "replicas", "weight", "surge", "unavailable", "stable", "canary", "older", "expected"),
    BASIC_CASES,
    ids=[case[0] for case in BASIC_CASES],
)
def test_basic_canary_scales_within_max_surge_and_max_unavailable(
    name: str,
    replicas: int,
    weight: int,
    surge: int | str,
    unavailable: int | str,
    stable: tuple[int, int],
    canary: tuple[int, int],
    older: tuple[int, int] | None,
    expected: tuple[int, int],
) -> None:
    """``CalculateReplicaCountsForBasicCanary``: up within replicas + maxSurge (stable
    first), down within replicas - maxUnavailable, older ReplicaSets scaled down first."""
    config = ar.read_rollout(
        rollout(
            "2.0",
            [{"setWeight": weight}],
            traffic=None,
            replicas=replicas,
            maxSurge=surge,
            maxUnavailable=unavailable,
        )
    )
    status = ar.RolloutStatus(current_step_index=0, stable_rs="stable", current_pod_hash="canary")
    others = [_rs("older", *older)] if older else []
    counts = ar.basic_canary_counts(
        config, status, _rs("canary", *canary), _rs("stable", *stable), others
    )
    assert counts == expected, name


def test_traffic_routed_canary_is_ceil_of_weight_times_replicas_and_stable_stays_full() -> None:
    """``CalculateReplicaCountsForTrafficRoutedCanary`` / ``trafficWeightToReplicas``."""
    for replicas, weight, canary in ((10, 5, 1), (10, 20, 2), (3, 50, 2), (1, 1, 1), (4, 0, 0)):
        config = ar.read_rollout(rollout("2.0", [{"setWeight": weight}], replicas=replicas))
        status = ar.RolloutStatus(current_step_index=0, stable_rs="s", current_pod_hash="c")
        assert ar.traffic_routed_counts(config, status) == (canary, replicas)


def test_set_canary_scale_replicas_override_the_weight_with_traffic_routing() -> None:
    """``UseSetCanaryScale``: the last setCanaryScale up to the current step sizes the
    canary; matchTrafficWeight cancels it."""
    steps = [{"setWeight": 10}, {"setCanaryScale": {"replicas": 3}}, {"pause": {}}]
    config = ar.read_rollout(rollout("2.0", steps, replicas=10))
    at_pause = ar.RolloutStatus(current_step_index=2, stable_rs="s", current_pod_hash="c")
    assert ar.traffic_routed_counts(config, at_pause) == (3, 10)
    steps[2] = {"setCanaryScale": {"matchTrafficWeight": True}}
    config = ar.read_rollout(rollout("2.0", steps, replicas=10))
    assert ar.traffic_routed_counts(config, at_pause) == (1, 10)


@pytest.mark.parametrize(
    ("replicas", "surge", "unavailable", "expected"),
    [
        (10, "25%", "25%", (3, 2)),
        (5, "25%", "25%", (2, 1)),
        (4, 0, "10%", (0, 1)),
        (3, 1, 5, (1, 3)),
    ],
)
def test_fenceposts_surge_rounds_up_unavailable_down_both_zero_means_one(
    replicas: int, surge: int | str, unavailable: int | str, expected: tuple[int, int]
) -> None:
    """``resolveFenceposts`` + ``MaxUnavailable`` (capped at replicas); defaults 25% / 25%."""
    config = ar.read_rollout(
        rollout(
            "1.0", [], traffic=None, replicas=replicas, maxSurge=surge, maxUnavailable=unavailable
        )
    )
    assert config.fenceposts() == expected


def test_step_hash_is_argos_current_step_hash() -> None:
    """``ComputeStepHash``: the values recorded in upstream's
    pkg/kubectl-argo-rollouts/info/testdata (rollout-aborted; canary-rollout, recorded when
    durations were integers)."""
    assert ar.step_hash([{"setWeight": 10}, {"pause": {}}]) == "849b756fd4"
    seed: list[dict[str, Any]] = [{"setWeight": 20}, {"pause": {}}]
    for weight in (40, 60, 80):
        seed += [{"setWeight": weight}, {"pause": {"duration": 10}}]
    assert ar.step_hash(seed) == "f64cdc9d"


# -- rollout/sync.go, rollout/canary.go, rollout/pause.go -------------------------------------


def test_initial_deploy_is_stable_at_once_and_skips_the_steps() -> None:
    """``shouldFullPromote``: no stable ReplicaSet yet -> "Initial deploy"."""
    cluster = Cluster(rollout("1.0", SEED_STEPS), nginx_objects())
    cluster.settle()
    status = cluster.status
    assert status.phase == ar.HEALTHY and status.step == 6 and status.completed
    assert cluster.selector_hash("app-stable") == status.stable_hash
    assert cluster.canary_weight() == "0"


def test_set_weight_step_completes_only_once_the_canary_pods_are_available() -> None:
    """``completedCurrentCanaryStep`` / ``reconcileTrafficRouting``: while the canary's pods
    are not ready the weight stays at the previous setWeight and the step does not complete."""
    cluster = Cluster(rollout("1.0", SEED_STEPS, replicas=4), nginx_objects())
    cluster.settle()
    cluster.update(rollout("2.0", SEED_STEPS, replicas=4))
    cluster.settle(ready=False)
    assert cluster.rs("2.0").replicas == 1 and cluster.rs("2.0").available == 0
    assert cluster.status.step == 0 and cluster.canary_weight() == "0"
    cluster.settle()
    assert cluster.status.step == 1 and cluster.canary_weight() == "20"
    cluster.command(ar.promote_patch(cluster.config, cluster.status))
    cluster.settle(ready=False)  # setWeight 50 wants ceil(0.5 x 4) = 2 canary pods
    assert cluster.status.step == 2 and cluster.canary_weight() == "20"
    cluster.settle()
    assert cluster.status.step == 3 and cluster.canary_weight() == "50"


def test_pause_timer_starts_when_the_step_is_reached_and_ends_after_its_duration() -> None:
    """``reconcileCanaryPause`` adds PauseCondition{CanaryPauseStep, now}; the step
    completes once now > startTime + duration (``CompletedCanaryPauseStep``)."""
    cluster = started(SEED_STEPS)
    cluster.now += 100.0  # the indefinite pause lasts: the timer must not start from here
    cluster.command(ar.promote_patch(cluster.config, cluster.status))
    cluster.settle()
    status = cluster.status
    assert status.step == 3 and status.paused
    start = status.pause_conditions[0].start_time
    assert start == cluster.now and cluster.requeue_at == start + 5
    cluster.now = start + 5
    cluster.settle()
    assert cluster.status.step == 3
    cluster.now = start + 5.01
    cluster.settle()
    assert cluster.status.step == 5 and cluster.canary_weight() == "70"


def test_indefinite_pause_waits_for_promote() -> None:
    """``pause: {}`` never ends by itself; promote clears pauseConditions."""
    cluster = started(SEED_STEPS)
    assert cluster.status.phase == ar.PAUSED and cluster.status.message == "CanaryPauseStep"
    cluster.now += 10_000
    cluster.settle()
    assert cluster.status.step == 1 and cluster.requeue_at is None
    assert ar.promote_patch(cluster.config, cluster.status) == {"pauseConditions": None}


def test_promote_without_a_pause_skips_the_current_step() -> None:
    """``kubectl argo rollouts promote`` with no pause condition patches
    currentStepIndex + 1 (promote.go getPatches)."""
    cluster = started(SEED_STEPS)
    status = replace(cluster.status, pause_conditions=(), current_step_index=2)
    assert ar.promote_patch(cluster.config, status) == {
        "pauseConditions": None,
        "currentStepIndex": 3,
    }


def test_end_of_steps_weight_100_until_new_replicaset_available_then_stable_and_weight_0() -> None:
    """After the last step the weight is 100 while the new ReplicaSet scales to all replicas;
    once all are available it becomes stable, the stable Service switches, the weight goes
    back to 0 and the nginx canary Ingress stays, at "0"."""
    steps = [{"setWeight": 50}, {"pause": {}}]
    cluster = started(steps, replicas=4)
    cluster.command(ar.promote_patch(cluster.config, cluster.status))
    cluster.settle(ready=False)
    assert cluster.canary_weight() == "50" and cluster.rs("2.0").replicas == 4
    cluster.replica_sets = tuple(replace(rs, available=rs.pods) for rs in cluster.replica_sets)
    cluster.sync_once()
    assert cluster.canary_weight() == "100" and cluster.status.stable_hash == cluster.rs("2.0").hash
    cluster.settle()
    new = cluster.rs("2.0").hash
    assert cluster.status.phase == ar.HEALTHY and cluster.canary_weight() == "0"
    assert cluster.selector_hash("app-stable") == new == cluster.selector_hash("app-canary")
    assert ("Ingress", "app-app-canary") in cluster.objects


def test_old_replicaset_is_scaled_down_after_scale_down_delay() -> None:
    """``scaleDownDelayHelper``: the old ReplicaSet gets scale-down-deadline = promotion +
    scaleDownDelaySeconds (default 30) and keeps its pods until then."""
    cluster = started(SEED_STEPS, replicas=2)
    cluster.command(ar.promote_patch(cluster.config, cluster.status, full=True))
    cluster.settle()
    old = cluster.rs("1.0")
    assert old.replicas == 2 and old.scale_down_deadline == cluster.now + 30
    assert cluster.requeue_at == cluster.now + 30
    cluster.now += 30.5
    cluster.settle()
    assert cluster.rs("1.0").replicas == 0 and cluster.status.phase == ar.HEALTHY


def test_full_promotion_skips_the_remaining_steps() -> None:
    """``promote --full`` sets promoteFull: the new ReplicaSet scales to all replicas and
    becomes stable without the remaining steps or pauses."""
    cluster = started(SEED_STEPS, replicas=3)
    assert ar.promote_patch(cluster.config, cluster.status, full=True) == {"promoteFull": True}
    cluster.command({"promoteFull": True})
    cluster.settle()
    status = cluster.status
    assert status.phase == ar.HEALTHY and status.step == 6 and not status.promote_full
    assert cluster.rs("2.0").available == 3 and cluster.canary_weight() == "0"
    assert any("Full promotion requested" in e for e in cluster.events)


def test_abort_mid_way_sends_everything_to_stable_and_degrades() -> None:
    """``abort``: weight 0, the canary Service back on the stable ReplicaSet, step 0,
    Progressing=False RolloutAborted (phase Degraded); the canary keeps its pods until the
    abortScaleDownDelaySeconds deadline."""
    cluster = started(SEED_STEPS)
    cluster.command(ar.promote_patch(cluster.config, cluster.status))
    cluster.settle()
    cluster.command(ar.abort_patch())
    cluster.settle()
    status = cluster.status
    stable = cluster.rs("1.0").hash
    assert status.phase == ar.DEGRADED and status.step == 0 and status.weight == 0
    assert status.message == "RolloutAborted: Rollout aborted update to revision 2"
    assert cluster.canary_weight() == "0" and cluster.selector_hash("app-canary") == stable
    assert (
        cluster.rs("2.0").replicas == 1
        and cluster.rs("2.0").scale_down_deadline == cluster.now + 30
    )
    cluster.now += 31
    cluster.settle()
    assert cluster.rs("2.0").replicas == 0 and cluster.status.phase == ar.DEGRADED


def test_basic_canary_abort_scales_the_canary_down() -> None:
    """No traffic router: an abort makes the weight 0, so replica counts go back to stable."""
    cluster = started([{"setWeight": 20}, {"pause": {}}], traffic=None, replicas=5)
    assert (cluster.rs("2.0").available, cluster.rs("1.0").available) == (1, 4)
    cluster.command(ar.abort_patch())
    cluster.settle()
    assert (cluster.rs("2.0").replicas, cluster.rs("1.0").replicas) == (0, 5)
    assert cluster.status.phase == ar.DEGRADED


def test_undo_after_abort_returns_to_the_stable_template_and_is_healthy() -> None:
    """``undo``: the previous revision's template is the stable ReplicaSet's, so the steps
    are skipped ("Rollback to stable ReplicaSets") and the abort is cleared."""
    cluster = started(SEED_STEPS)
    cluster.command(ar.abort_patch())
    cluster.settle()
    target = ar.undo_target(cluster.replica_sets)
    assert target is not None and target.hash == cluster.rs("1.0").hash
    cluster.update(rollout("1.0", SEED_STEPS))
    cluster.settle()
    status = cluster.status
    assert status.phase == ar.HEALTHY and status.step == 6 and not status.abort
    assert any("Rollback to stable ReplicaSets" in e for e in cluster.events)


def test_retry_after_abort_starts_the_steps_again() -> None:
    """``retry rollout``: abort false; currentStepIndex was reset to 0, so setWeight 20 runs
    again and the rollout pauses at step 1."""
    cluster = started(SEED_STEPS)
    cluster.command(ar.abort_patch())
    cluster.settle()
    cluster.command(ar.retry_patch())
    cluster.settle()
    status = cluster.status
    assert status.phase == ar.PAUSED and status.step == 1 and status.weight == 20
    retry = status.condition("Progressing")
    assert retry is not None and retry.reason != ar.ABORTED_REASON


# -- trafficrouting/nginx, trafficrouting/istio, service.go -----------------------------------


def test_services_select_their_replicaset_by_pod_template_hash() -> None:
    """``ensureSVCTargets``: stable Service -> stable hash, canary Service -> new hash, with
    the managed-by annotation."""
    cluster = started(SEED_STEPS)
    assert cluster.selector_hash("app-stable") == cluster.rs("1.0").hash
    assert cluster.selector_hash("app-canary") == cluster.rs("2.0").hash
    meta = cluster.objects[("Service", "app-canary")]["metadata"]
    assert meta["annotations"][ar.MANAGED_BY] == "app"


def test_nginx_canary_ingress_copies_the_stable_rules_and_takes_additional_annotations() -> None:
    """``buildCanaryIngress``: rules using the stable Service, pointed at the canary one;
    additionalIngressAnnotations prefixed, canary-weight always written by the controller;
    ingress-nginx then routes by it (dataplane/nginx.py)."""
    nginx = {
        "additionalIngressAnnotations": {"canary-by-header": "X-Canary", "canary-weight": "99"}
    }
    cluster = started(SEED_STEPS, nginx=nginx)
    ingress = cluster.objects[("Ingress", "app-app-canary")]
    notes = ingress["metadata"]["annotations"]
    assert notes[PREFIX + "canary"] == "true" and notes[PREFIX + "canary-weight"] == "20"
    assert notes[PREFIX + "canary-by-header"] == "X-Canary"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "app-canary" and ingress["spec"]["ingressClassName"] == "nginx"
    config = nginx_model.load(cluster.objects.values())
    forced = config.route(RoutedRequest.build("foo.bar", "/", {"X-Canary": "always"}), rng())
    assert forced.service == "app-canary"  # type: ignore[union-attr]


def rng() -> Any:
    import random

    return random.Random(1)


def test_canary_ingress_annotations_take_canary_annotations_over_additional_ones() -> None:
    """``buildCanaryIngress``: additionalIngressAnnotations get the prefix unless they start
    with it (no double prefix), canaryIngressAnnotations are written as they are and win over
    a colliding additional one, and canary / canary-weight are the controller's whatever
    either says."""
    nginx = {
        "additionalIngressAnnotations": {
            "canary-by-header": "X-Additional",
            PREFIX + "canary-by-cookie": "beta",
        },
        "canaryIngressAnnotations": {
            PREFIX + "canary-by-header": "X-Full",
            PREFIX + "canary-weight": "99",
            "external-dns.alpha.kubernetes.io/exclude": "true",
        },
    }
    config = ar.read_rollout(rollout("1.0", [], nginx=nginx))
    assert ar.desired_annotations(config, nginx_objects()[("Ingress", "app")], 20) == {
        PREFIX + "canary-by-header": "X-Full",
        PREFIX + "canary-by-cookie": "beta",
        PREFIX + "canary-weight": "20",
        PREFIX + "canary": "true",
        "external-dns.alpha.kubernetes.io/exclude": "true",
    }


def test_canary_ingress_patch_keeps_every_current_annotation_drops_labels_replaces_spec() -> None:
    """``SetWeightPerIngress``: ``getDesiredAnnotations`` merges the desired annotations over
    the current ones (a key the controller owns is overwritten, any other kept, whoever set
    it), then ``BuildIngressPatch(WithAnnotations, WithLabels, WithSpec)``'s two-way merge
    patch removes the labels (the desired Ingress has none) and replaces the spec; owner
    references are not in the patch."""
    nginx = {"additionalIngressAnnotations": {"canary-by-header": "X-Canary"}}
    config = ar.read_rollout(rollout("1.0", [], nginx=nginx))
    stable = nginx_objects()[("Ingress", "app")]
    created = ar.canary_ingress(config, stable, 0)
    current = {
        **created,
        "metadata": {
            **created["metadata"],
            "labels": {"team": "shop"},
            "finalizers": ["example.com/keep"],
            "annotations": {
                PREFIX + "canary-by-header": "X-Old",
                PREFIX + "canary-by-cookie": "old-cookie",
                PREFIX + "canary-weight": "40",
                "field.cattle.io/publicEndpoints": "[]",
            },
        },
        "spec": {**created["spec"], "defaultBackend": {"service": {"name": "elsewhere"}}},
    }
    patched = ar.canary_ingress(config, stable, 10, current)
    assert patched["metadata"]["annotations"] == {
        PREFIX + "canary-by-header": "X-Canary",
        PREFIX + "canary-by-cookie": "old-cookie",
        PREFIX + "canary-weight": "10",
        PREFIX + "canary": "true",
        "field.cattle.io/publicEndpoints": "[]",
    }
    assert "labels" not in patched["metadata"]
    assert patched["metadata"]["finalizers"] == ["example.com/keep"]
    assert patched["metadata"]["ownerReferences"] == created["metadata"]["ownerReferences"]
    assert patched["spec"] == created["spec"]
    assert ar.retained_routing_annotations(config, patched) == {
        PREFIX + "canary-by-cookie": "old-cookie"
    }


def test_a_header_annotation_removed_from_the_rollout_still_routes_and_is_noted() -> None:
    """A new template whose Rollout no longer has ``additionalIngressAnnotations``: the
    controller never removes ``canary-by-header`` from its canary Ingress, so ingress-nginx
    keeps forcing that header to the canary Service -- what a cluster does -- and
    :func:`retained_annotation_notes` says so, with the command that removes it."""
    header = {"additionalIngressAnnotations": {"canary-by-header": "X-Beta"}}
    cluster = Cluster(rollout("1.0", SEED_STEPS, nginx=header), nginx_objects())
    cluster.settle()
    assert ar.retained_annotation_notes(cluster.config, cluster.objects) == []
    cluster.update(rollout("2.0", SEED_STEPS))
    cluster.settle()
    assert cluster.status.step == 1 and cluster.canary_weight() == "20"
    ingress = cluster.objects[("Ingress", "app-app-canary")]
    assert ingress["metadata"]["annotations"][PREFIX + "canary-by-header"] == "X-Beta"
    routed = nginx_model.load(cluster.objects.values()).route(
        RoutedRequest.build("foo.bar", "/", {"X-Beta": "always"}), rng()
    )
    assert routed.service == "app-canary"  # type: ignore[union-attr]
    assert ar.retained_annotation_notes(cluster.config, cluster.objects) == [
        "canary Ingress app-app-canary keeps nginx.ingress.kubernetes.io/canary-by-header: "
        "'X-Beta', which the Rollout does not set: Argo Rollouts never removes an annotation "
        "from its canary Ingress (nginx.go getDesiredAnnotations), so ingress-nginx still "
        "routes by it; remove it with kubectl annotate ingress app-app-canary "
        "nginx.ingress.kubernetes.io/canary-by-header- (or delete the Ingress: the controller "
        "creates it again as the Rollout says)"
    ]


def test_switch_service_events_name_the_old_hash_and_an_abort_records_only_the_switch_kept() -> (
    None
):
    """``switchServiceSelector`` records "Switched selector for service 'S' from 'OLD' to
    'NEW'". After an abort with traffic routing upstream switches the canary Service to the
    canary and back every sync (#3078); the model applies a sync's writes together, so it
    records only the switch back to the stable, once, and never one to the canary."""
    cluster = started(SEED_STEPS)
    stable, canary = cluster.rs("1.0").hash, cluster.rs("2.0").hash
    assert (
        f"SwitchService: Switched selector for service 'app-canary' from '{stable}' to "
        f"'{canary}'" in cluster.events
    )
    mark = len(cluster.events)
    cluster.command(ar.abort_patch())
    cluster.settle()
    for _ in range(3):  # later syncs of the aborted Rollout (resyncs) record nothing more
        cluster.sync_once()
    switches = [e for e in cluster.events[mark:] if e.startswith("SwitchService")]
    assert switches == [
        f"SwitchService: Switched selector for service 'app-canary' from '{canary}' to '{stable}'"
    ]
    assert cluster.selector_hash("app-canary") == stable


def test_istio_subset_weights_and_destination_rule_hash_labels() -> None:
    """``SetWeight`` (canary subset = weight, stable = 100 - weight) and ``UpdateHash``
    (subsets labelled with rollouts-pod-template-hash)."""
    cluster = started(SEED_STEPS, traffic="istio")
    route = cluster.objects[("VirtualService", "app")]["spec"]["http"][0]["route"]
    assert [(d["destination"]["subset"], d["weight"]) for d in route] == [
        ("stable", 80),
        ("canary", 20),
    ]
    subsets = {
        s["name"]: s["labels"]
        for s in cluster.objects[("DestinationRule", "app")]["spec"]["subsets"]
    }
    assert subsets["canary"][ar.POD_TEMPLATE_HASH] == cluster.rs("2.0").hash
    assert subsets["stable"][ar.POD_TEMPLATE_HASH] == cluster.rs("1.0").hash


def test_istio_header_route_goes_first_and_is_removed_on_abort() -> None:
    """``SetHeaderRoute`` + ``orderRoutes`` (managed routes first) and
    ``RemoveManagedRoutes`` on abort."""
    header = {"name": "hdr", "match": [{"headerName": "x-canary", "headerValue": {"exact": "yes"}}]}
    steps = [{"setWeight": 20}, {"setHeaderRoute": header}, {"pause": {}}]
    cluster = started(steps, traffic="istio", routing={"managedRoutes": [{"name": "hdr"}]})
    http = cluster.objects[("VirtualService", "app")]["spec"]["http"]
    assert [r["name"] for r in http] == ["hdr", "primary"]
    assert http[0]["match"] == [{"headers": {"x-canary": {"exact": "yes"}}}]
    assert http[0]["route"] == [{"destination": {"host": "app", "subset": "canary"}, "weight": 100}]
    cluster.command(ar.abort_patch())
    cluster.settle()
    assert [r["name"] for r in cluster.objects[("VirtualService", "app")]["spec"]["http"]] == [
        "primary"
    ]


def test_header_route_set_before_any_canary_pod_is_removed_again() -> None:
    """``reconcileTrafficRouting`` removes managed routes while the new ReplicaSet has no
    available pod: a setHeaderRoute before the first setWeight does not last."""
    header = {"name": "hdr", "match": [{"headerName": "x-canary", "headerValue": {"exact": "yes"}}]}
    steps = [{"setHeaderRoute": header}, {"setWeight": 20}, {"pause": {}}]
    cluster = started(steps, traffic="istio", routing={"managedRoutes": [{"name": "hdr"}]})
    assert [r["name"] for r in cluster.objects[("VirtualService", "app")]["spec"]["http"]] == [
        "primary"
    ]


# -- validation, phase, linter ----------------------------------------------------------------


def test_invalid_spec_makes_the_rollout_degraded_and_it_never_starts() -> None:
    """validation.go: the controller sets condition InvalidSpec; CalculateRolloutPhase ->
    Degraded "InvalidSpec: ..."."""
    cluster = Cluster(rollout("1.0", [{"setWeight": 120}]), nginx_objects())
    cluster.settle()
    assert cluster.status.phase == ar.DEGRADED
    assert "SetWeight needs to be between 0 and 100" in cluster.status.message
    assert cluster.replica_sets == ()


def test_routing_problems_are_the_controllers_own_errors() -> None:
    """The errors every sync would return: nginx.go (no rule with the stable Service) and
    istio.go ValidateHTTPRoutes."""
    objects = nginx_objects()
    objects[("Ingress", "app")]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"][
        "name"
    ] = "other"
    config = ar.read_rollout(rollout("1.0", []))
    assert ar.routing_problems(config, objects) == [
        "ingress `app` has no rules using service app-stable backend"
    ]
    istio = istio_objects()
    istio[("VirtualService", "app")]["spec"]["http"][0]["route"].pop()
    config = ar.read_rollout(rollout("1.0", [], traffic="istio"))
    assert ar.routing_problems(config, istio) == [
        "Canary DestinationRule subset 'canary' not found in route"
    ]


@pytest.mark.parametrize(
    ("changes", "phase", "message"),
    [
        ({"updated_replicas": 0}, ar.PROGRESSING, "more replicas need to be updated"),
        (
            {"updated_replicas": 1, "available_replicas": 0},
            ar.PROGRESSING,
            "updated replicas are still becoming available",
        ),
        (
            {"stable_rs": "a", "current_pod_hash": "b"},
            ar.PROGRESSING,
            "waiting for all steps to complete",
        ),
        (
            {"pause_conditions": (ar.PauseCondition("CanaryPauseStep", 0.0),)},
            ar.PAUSED,
            "CanaryPauseStep",
        ),
    ],
)
def test_phase_is_calculated_as_calculate_rollout_phase(
    changes: dict[str, Any], phase: str, message: str
) -> None:
    """utils/rollout ``CalculateRolloutPhase``, in its order of checks."""
    config = ar.read_rollout(rollout("1.0", []))
    healthy = ar.RolloutStatus(
        stable_rs="a", current_pod_hash="a", updated_replicas=1, available_replicas=1, replicas=1
    )
    assert ar.calculate_phase(config, healthy) == (ar.HEALTHY, "")
    assert ar.calculate_phase(config, replace(healthy, **changes)) == (phase, message)


def test_expected_weight_and_canary_replicas_per_step() -> None:
    """What a wait expects at a step: the setWeight in force, 100 past the last step."""
    config = ar.read_rollout(rollout("2.0", SEED_STEPS, replicas=10))
    assert [ar.expected_weight(config, i) for i in range(7)] == [20, 20, 50, 50, 70, 70, 100]
    assert ar.expected_canary_replicas(config, 2) == 5
    basic = ar.read_rollout(
        rollout("2.0", [{"setWeight": 24}], traffic=None, replicas=10, maxSurge=1)
    )
    assert ar.expected_canary_replicas(basic, 0) == 3


def test_a_live_status_reads_as_the_model_writes_it() -> None:
    """What cluster waits read: Argo's status fields (from upstream's
    pkg/kubectl-argo-rollouts/info/testdata/rollout-aborted shape) and GetRolloutPhase."""
    obj = rollout("2.0", [{"setWeight": 10}, {"pause": {}}])
    obj["metadata"]["generation"] = 4
    obj["status"] = {
        "observedGeneration": "4",
        "currentPodHash": "6d8f4f6c8b",
        "stableRS": "7b6df6c8b9",
        "currentStepIndex": 1,
        "currentStepHash": "849b756fd4",
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": "2026-01-02T03:04:05Z"}],
        "controllerPause": True,
        "canary": {
            "weights": {
                "canary": {"weight": 10, "podTemplateHash": "6d8f4f6c8b"},
                "stable": {"weight": 90, "podTemplateHash": "7b6df6c8b9"},
            }
        },
        "phase": "Paused",
        "message": "CanaryPauseStep",
        "availableReplicas": 2,
    }
    status = ar.read_status(obj)
    assert (status.step, status.weight, status.paused, status.step_count) == (1, 10, True, 2)
    assert status.pause_conditions[0].start_time == 1767323045.0
    assert status.current_step_hash == ar.read_rollout(obj).steps_hash
    assert ar.client_phase(4, status) == ("Paused", "CanaryPauseStep")
    assert ar.client_phase(5, status)[1] == "waiting for rollout spec update to be observed"
    unpausing = replace(status, pause_conditions=())
    assert ar.client_phase(4, unpausing) == (ar.PROGRESSING, "waiting for rollout to unpause")


def test_istio_mirror_route_copies_the_weighted_destinations_and_mirrors_to_the_canary() -> None:
    """``SetMirrorRoute`` / ``createMirrorRoute``: a managed route with the step's matches,
    the weighted route's destinations at that moment and ``mirror`` to the canary subset."""
    mirror = {"name": "mirror", "match": [{"path": {"prefix": "/api"}}], "percentage": 40}
    steps = [{"setWeight": 20}, {"setMirrorRoute": mirror}, {"pause": {}}]
    cluster = started(steps, traffic="istio", routing={"managedRoutes": [{"name": "mirror"}]})
    http = cluster.objects[("VirtualService", "app")]["spec"]["http"]
    assert [r["name"] for r in http] == ["mirror", "primary"]
    assert http[0]["match"] == [{"uri": {"prefix": "/api"}}]
    assert http[0]["mirror"] == {"host": "app", "subset": "canary"}
    assert http[0]["mirrorPercentage"] == {"value": 40.0}
    assert [d["weight"] for d in http[0]["route"]] == [80, 20]


def test_undo_is_skipped_when_the_template_already_matches_ignoring_the_hash_and_unset_fields() -> (
    None
):
    """undo.go equalIgnoreHash: DeepDerivative of the Rollout's template in the ReplicaSet's,
    the rollouts-pod-template-hash label left out -- asked by both tiers' undo."""
    rollout_template = {"metadata": {"labels": {"app": "a"}, "annotations": {}}, "spec": {}}
    rs_template = {
        "metadata": {"labels": {"app": "a", ar.POD_TEMPLATE_HASH: "abc"}},
        "spec": {"containers": [{"name": "a"}]},
    }
    assert ar.equal_ignore_hash(rollout_template, rs_template)
    assert not ar.equal_ignore_hash({"metadata": {"labels": {"app": "b"}}}, rs_template)
