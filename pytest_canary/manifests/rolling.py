"""Rolling-update canary: one Deployment, new image, rollout paused after the first new pods.

The seed scenario ("kubectl set image" + "kubectl rollout pause"): the Deployment's template
moves to the canary version and the rollout is paused once the first new pods are ready;
old and new pods then serve side by side behind one Service, in proportion to their
numbers. ``kubectl rollout resume`` completes the update (promotion), ``kubectl rollout
undo`` goes back to the previous template (rollback).

A Deployment created with ``spec.paused: true`` never starts rolling, so the pause is not
part of the object: the CANARY manifest carries the annotation :data:`PAUSE_AFTER` with the
number of new pods after which a backend pauses the rollout (the kube backend patches
``spec.paused: true``; the local model stops its controller loop). Before the CANARY phase a
backend applies :func:`baseline` (the stable version) and waits for it.

What the share is while paused (:func:`paused_rollout`) follows the Deployment controller,
kubernetes/kubernetes ``pkg/controller/deployment``:

- ``rolling.go`` ``rolloutRolling``: each sync first scales the new ReplicaSet up
  (``reconcileNewReplicaSet``) and only when that changed nothing scales old ones down
  (``reconcileOldReplicaSets``). Syncs repeat on every ReplicaSet change, within
  milliseconds, so the controller reaches a fixpoint long before a pod becomes ready.
- ``util/deployment_util.go`` ``NewRSNewReplicas``: scale up to ``replicas + maxSurge`` pods
  in total, never beyond ``replicas`` new ones. ``ResolveFenceposts``: maxSurge rounds up,
  maxUnavailable rounds down, both 0 → maxUnavailable = 1; ``MaxUnavailable`` is capped at
  ``replicas``.
- ``reconcileOldReplicaSets``: nothing while ``all - minAvailable - newUnavailable <= 0``
  (minAvailable = replicas - maxUnavailable, newUnavailable = new pods not yet available);
  else ``scaleDownOldReplicaSetsForRollingUpdate`` removes ``available - minAvailable`` old
  pods. Pods scaled down leave the Service endpoints at once (they are terminating).
- ``sync.go`` ``scale``, which a *paused* Deployment still runs: a new ReplicaSet that is
  saturated (``replicas`` pods, all available) makes every old ReplicaSet scale to 0; with a
  single active ReplicaSet it is scaled to ``replicas``; a total off ``replicas + maxSurge``
  is corrected on the largest ReplicaSet (newer first when adding, older when removing).

Model assumptions (documented, and the same in the local backend): old pods are all ready;
``minReadySeconds`` is 0 (available = ready); the pods created by one scale-up become ready
together, batches in creation order; the pause lands before the controller reacts to the
readiness that triggered it. Pods created before the pause still start afterwards (a paused
controller does not delete them), so the share a test observes is the *settled* one. For
the default ``pause-after`` (maxSurge, at least 1) the pause state is the controller's first
fixpoint, reached before any new pod is ready: no race with the pause at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from pytest_canary.manifests.common import Manifest, deployment, service
from pytest_canary.manifests.phase import Phase
from pytest_canary.spec import ReleaseSpec

PAUSE_AFTER = "pytest-canary/pause-after"
# One workload whose version changes in place: the (immutable) selector holds app + track,
# so the track must not change between versions.
TRACK = "rolling"
# Deployment defaults (apps/v1 RollingUpdateDeployment): 25% / 25%.
DEFAULT_SURGE = "25%"
DEFAULT_UNAVAILABLE = "25%"


def scaled_value(value: int | str, replicas: int, *, round_up: bool) -> int:
    """apimachinery ``intstr.GetScaledValueFromIntOrPercent``: an int as is, a percentage
    of ``replicas`` rounded up or down."""
    if isinstance(value, str):
        percent = int(value.rstrip("%"))
        exact = percent * replicas / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return value


def resolve_fenceposts(surge: int | str, unavailable: int | str, replicas: int) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) in pods, as the Deployment controller resolves them.

    ``ResolveFenceposts``: surge rounds up, unavailable down, and when both come out 0
    maxUnavailable becomes 1; ``MaxUnavailable`` caps it at ``replicas``.

    Example:
        >>> resolve_fenceposts("25%", "25%", 10)
        (3, 2)
        >>> resolve_fenceposts(0, "10%", 4)
        (0, 1)
    """
    max_surge = scaled_value(surge, replicas, round_up=True)
    max_unavailable = scaled_value(unavailable, replicas, round_up=False)
    if max_surge == 0 and max_unavailable == 0:
        max_unavailable = 1
    return max_surge, min(max_unavailable, replicas)


@dataclass(frozen=True)
class RolloutCounts:
    """Pods of one Deployment during a rolling update.

    Attributes:
        old: pods of the previous template (all ready; scaled-down ones have left).
        new: pods of the new template the controller created (new ReplicaSet size).
        new_ready: how many of the new pods are ready.
    """

    old: int
    new: int
    new_ready: int = 0

    @property
    def ready(self) -> int:
        """Pods that receive traffic."""
        return self.old + self.new_ready

    @property
    def new_share(self) -> float:
        """Share of traffic on the new version: ready new pods / ready pods."""
        return self.new_ready / self.ready if self.ready else 0.0


def sync(
    counts: RolloutCounts, *, replicas: int, max_surge: int, max_unavailable: int
) -> RolloutCounts:
    """One ``rolloutRolling`` sync: scale the new ReplicaSet up if possible, else scale old
    pods down if possible; ``counts`` unchanged when neither applies."""
    # reconcileNewReplicaSet / NewRSNewReplicas
    if counts.new < replicas:
        total = counts.old + counts.new
        max_total = replicas + max_surge
        if total < max_total:
            up = min(max_total - total, replicas - counts.new)
            if up > 0:
                return replace(counts, new=counts.new + up)
    elif counts.new > replicas:
        return replace(counts, new=replicas, new_ready=min(counts.new_ready, replicas))
    # reconcileOldReplicaSets
    if counts.old == 0:
        return counts
    min_available = replicas - max_unavailable
    new_unavailable = counts.new - counts.new_ready
    if counts.old + counts.new - min_available - new_unavailable <= 0:
        return counts
    # scaleDownOldReplicaSetsForRollingUpdate (old pods are all available: no cleanup step)
    available = counts.old + counts.new_ready
    if available <= min_available:
        return counts
    down = min(counts.old, available - min_available)
    return replace(counts, old=counts.old - down)


def reconcile(
    counts: RolloutCounts, *, replicas: int, max_surge: int, max_unavailable: int
) -> RolloutCounts:
    """Run controller syncs until one changes nothing (what happens between two readiness
    events). A local backend starts ``result.new - counts.new`` pods and stops
    ``counts.old - result.old`` old ones."""
    for _ in range(4 * (replicas + max_surge) + 4):  # each sync moves one pod count monotonically
        nxt = sync(counts, replicas=replicas, max_surge=max_surge, max_unavailable=max_unavailable)
        if nxt == counts:
            return counts
        counts = nxt
    raise RuntimeError(f"Deployment controller model did not converge from {counts}")


@dataclass(frozen=True)
class PausedRollout:
    """Where a rolling update paused after ``pause_after`` new pods were ready.

    Attributes:
        pause_after: the pause trigger, in new ready pods.
        at_pause: counts at the moment the trigger fired.
        settled: counts once every pod created before the pause is ready and the paused
            controller's ``scale`` ran; what a test observes.
    """

    pause_after: int
    at_pause: RolloutCounts
    settled: RolloutCounts

    @property
    def new_share(self) -> float:
        """The settled share of the new version."""
        return self.settled.new_share


def paused_rollout(
    replicas: int, surge: int | str, unavailable: int | str, pause_after: int
) -> PausedRollout:
    """Simulate the Deployment controller from ``replicas`` old pods until ``pause_after``
    new pods are ready, then settle the paused Deployment (see the module docstring).

    Example:
        >>> paused_rollout(4, 1, 0, 1).new_share  # 1 new of 5 ready pods
        0.2
        >>> paused_rollout(4, 1, 1, 1).settled  # surge 1, drop 1 old, surge again
        RolloutCounts(old=3, new=2, new_ready=2)
    """
    max_surge, max_unavailable = resolve_fenceposts(surge, unavailable, replicas)
    knobs = {"replicas": replicas, "max_surge": max_surge, "max_unavailable": max_unavailable}
    target = max(1, min(pause_after, replicas))
    counts = RolloutCounts(old=replicas, new=0)
    batches: list[int] = []  # new pods not ready yet, one entry per scale-up
    for _ in range(4 * (replicas + max_surge) + 4):
        # The controller's syncs, each scale-up a batch of pods starting together.
        nxt = sync(counts, **knobs)
        if nxt.new > counts.new:
            batches.append(nxt.new - counts.new)
        if nxt != counts:
            counts = nxt
            continue
        # Fixpoint: nothing moves until the oldest batch of new pods is ready.
        if not batches:
            # Nothing left to become ready: the rollout finished before the trigger.
            return PausedRollout(target, counts, settle(counts, **knobs))
        counts = replace(counts, new_ready=counts.new_ready + batches.pop(0))
        if counts.new_ready >= target:
            return PausedRollout(target, counts, settle(counts, **knobs))
    raise RuntimeError(f"Deployment controller model did not converge from {counts}")


def settle(
    counts: RolloutCounts, *, replicas: int, max_surge: int, max_unavailable: int
) -> RolloutCounts:
    """sync.go ``scale`` on the paused Deployment, then every created pod ready."""
    old, new = counts.old, counts.new
    if old == 0 or new == 0:
        # FindActiveOrLatest: a single active ReplicaSet is scaled to replicas.
        old, new = (0, replicas) if old == 0 else (replicas, 0)
    elif new == replicas and counts.new_ready == replicas:
        # IsSaturated (checked before proportional scaling): old ReplicaSets go to 0.
        old = 0
    else:
        add = replicas + max_surge - (old + new)
        if add > 0:  # ReplicaSetsBySizeNewer: the largest, the newer on ties
            if new >= old:
                new += add
            else:
                old += add
        elif add < 0:  # ReplicaSetsBySizeOlder: the largest, the older on ties
            if old >= new:
                old = max(0, old + add)
            else:
                new = max(0, new + add)
    if new == replicas:
        # Saturated once the remaining new pods are available: old ReplicaSets go to 0.
        old = 0
    return RolloutCounts(old=old, new=new, new_ready=new)


def pause_after(spec: ReleaseSpec) -> int:
    """New pods after which the rollout pauses: ``pause_after`` when given, else maxSurge
    resolved against ``replicas``, at least 1 (a rollout with maxSurge 0 starts by
    replacing pods) and at most ``replicas``."""
    if spec.pause_after is not None:
        return spec.pause_after
    max_surge, _ = resolve_fenceposts(spec.surge, spec.unavailable, spec.replicas)
    return max(1, min(max_surge, spec.replicas))


def expected_paused_rollout(spec: ReleaseSpec) -> PausedRollout:
    """:func:`paused_rollout` for the spec's replicas, surge, unavailable and pause."""
    return paused_rollout(spec.replicas, spec.surge, spec.unavailable, pause_after(spec))


def expected_new_share(spec: ReleaseSpec) -> float:
    """Share of traffic the canary version gets while the rollout is paused: new pods /
    ready pods once the paused Deployment settled.

    Example (replicas=4): surge 1, unavailable 0 → 1 new of 5 = 0.2; surge 1,
    unavailable 1 → the controller surges 1, removes 1 old (4 available > 3 needed),
    surges 1 more, then waits: 2 new of 5 = 0.4; surge 0, unavailable 1 → 1 new of 4.
    """
    return expected_paused_rollout(spec).new_share


def _rolling_deployment(spec: ReleaseSpec, version: str) -> Manifest:
    strategy = {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": spec.surge, "maxUnavailable": spec.unavailable},
    }
    return deployment(
        spec,
        name=spec.name,
        version=version,
        track=TRACK,
        replicas=spec.replicas,
        strategy=strategy,
    )


def baseline(spec: ReleaseSpec) -> list[Manifest]:
    """What runs before the canary phase: the Deployment on the stable version."""
    return render(spec, Phase.ROLLED_BACK)


def render(spec: ReleaseSpec, phase: Phase) -> list[Manifest]:
    """Manifests of a paused rolling update in ``phase`` (seed: "set image + rollout pause").

    - canary: Deployment ``{name}`` (``replicas`` pods, RollingUpdate with ``maxSurge:
      surge`` and ``maxUnavailable: unavailable``) whose template runs the canary version,
      annotated ``pytest-canary/pause-after: "<n>"`` (on the Deployment, not the template:
      the template hash must not change when the annotation goes); Service ``{name}``.
    - promoted: the same template without the annotation: the rollout resumes and ends.
    - rolled back: the template back on the stable version (``rollout undo``).
    """
    version = spec.stable if phase is Phase.ROLLED_BACK else spec.canary
    workload = _rolling_deployment(spec, version)
    if phase is Phase.CANARY:
        workload["metadata"]["annotations"] = {PAUSE_AFTER: str(pause_after(spec))}
    return [workload, service(spec, name=spec.name, selector={"app": spec.name})]
