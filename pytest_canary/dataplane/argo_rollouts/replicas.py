"""How many pods each ReplicaSet gets: the canary's and the stable's sizes at a step.

Upstream (argoproj/argo-rollouts, tag v1.9.1), ``utils/replicaset/canary.go``:

- **Without traffic routing** ``CalculateReplicaCountsForBasicCanary``
  (``approximateWeightedCanaryStableReplicaCounts``: floor or ceil of replicas x weight,
  totals ``replicas`` or ``replicas + 1`` when surge is allowed, the closest to the weight,
  ties to the first option; then scale up within ``replicas + maxSurge``, stable first, and
  down within ``replicas - maxUnavailable``: ``GetReplicasForScaleDown``,
  ``calculateScaleDownReplicaCount``, ``adjustReplicaWithinLimits``).
- **With traffic routing** ``CalculateReplicaCountsForTrafficRoutedCanary`` (canary =
  ceil(weight x replicas / 100) (``trafficWeightToReplicas``) or ``setCanaryScale``,
  stable = replicas).
- **setCanaryScale** (``UseSetCanaryScale``, ``GetCanaryReplicasOrWeight``): the last one at
  or before the current step, unless ``matchTrafficWeight`` cancels it, there is no traffic
  routing, or an abort scales down; fully promoted -> weight 100.
- **At the desired counts** (``AtDesiredReplicaCountsForCanary``): the canary's desired pods
  all available, the stable's all created, and (basic canary) no pod of another ReplicaSet
  available. A setWeight / setCanaryScale step completes only then.

The fenceposts (maxSurge / maxUnavailable in pods) are :meth:`RolloutConfig.fenceposts`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_canary.dataplane.argo_rollouts.api import MAX_WEIGHT
from pytest_canary.dataplane.argo_rollouts.config import RolloutConfig
from pytest_canary.dataplane.argo_rollouts.status import (
    ReplicaSetState,
    RolloutStatus,
    current_set_weight,
    current_step,
)
from pytest_canary.rollout_spec import Step


def approximate_weighted_counts(
    replicas: int, weight: int, max_weight: int, max_surge: int
) -> tuple[int, int]:
    """``approximateWeightedCanaryStableReplicaCounts``: (canary, stable) pods closest to
    ``weight``, totalling ``replicas`` or, when surge is allowed, ``replicas + 1``; for a
    weight strictly between 0 and max with 2+ pods possible, the canary is never 0.

    Example:
        >>> approximate_weighted_counts(5, 20, 100, 2), approximate_weighted_counts(10, 24, 100, 1)
        ((1, 4), (3, 8))
    """
    if replicas == 0:
        return 0, 0
    exact = replicas * weight / max_weight
    ceil_count, floor_count = math.ceil(exact), math.floor(exact)
    tied = _floor_ceiling_tied(weight, max_weight, replicas)
    zero_allowed = weight in (max_weight, 0) or (replicas == 1 and max_surge == 0)
    options: list[tuple[int, int]] = []
    if ceil_count < replicas or zero_allowed:
        options.append((ceil_count, replicas))
    if not tied and (floor_count != 0 or zero_allowed):
        options.append((floor_count, replicas))
    if max_surge > 0:
        options.append((ceil_count, replicas + 1))
        surge_tied = _floor_ceiling_tied(weight, max_weight, replicas + 1)
        if not surge_tied and (floor_count != 0 or zero_allowed):
            options.append((floor_count, replicas + 1))
    if not options:
        return 0, replicas  # "should not get here"
    best = options[0]
    best_delta = _weight_delta(weight, max_weight, *best)
    for option in options[1:]:
        delta = _weight_delta(weight, max_weight, *option)
        if delta < best_delta:  # strictly closer: ties keep the earlier option
            best, best_delta = option, delta
    return best[0], best[1] - best[0]


def _floor_ceiling_tied(weight: int, max_weight: int, total: int) -> bool:
    value = float(total) * (float(weight) / float(max_weight))
    return value - math.trunc(value) == 0.5


def _weight_delta(weight: int, max_weight: int, canary: int, total: int) -> float:
    return abs(float(canary * max_weight) / float(total) - float(weight))


def traffic_weight_to_replicas(replicas: int, weight: int, max_weight: int = MAX_WEIGHT) -> int:
    """``trafficWeightToReplicas``: ceil(weight x replicas / max)."""
    return math.ceil(weight * replicas / max_weight)


def set_canary_scale(config: RolloutConfig, status: RolloutStatus) -> Step | None:
    """``UseSetCanaryScale``: the last setCanaryScale at or before the current step, unless
    matchTrafficWeight cancels it, there is no traffic routing, or an abort scales down."""
    if not config.traffic_routing:
        return None
    if status.abort and config.abort_scale_down_delay is not None:
        return None
    step, index = current_step(config, status)
    if step is None or index is None:
        return None
    for i in range(index, -1, -1):
        candidate = config.steps[i]
        if candidate.kind != "setCanaryScale":
            continue
        return None if candidate.match_traffic_weight else candidate
    return None


def canary_replicas_or_weight(
    config: RolloutConfig, status: RolloutStatus
) -> tuple[int | None, int]:
    """``GetCanaryReplicasOrWeight``: (explicit canary replicas, weight)."""
    if status.promote_full or not status.stable_rs or status.current_pod_hash == status.stable_rs:
        return None, MAX_WEIGHT
    scale = set_canary_scale(config, status)
    if scale is not None:
        if scale.canary_replicas is not None:
            return scale.canary_replicas, 0
        if scale.weight is not None:
            return None, scale.weight
    return None, current_set_weight(config, status)


def _scale_down_replicas(rs: ReplicaSetState | None, ignore_availability: bool) -> int:
    """``GetReplicasForScaleDown``."""
    if rs is None:
        return 0
    if rs.replicas < rs.available:
        return rs.replicas
    return rs.replicas if ignore_availability else rs.available


def _calc_scale_down(rs: ReplicaSetState | None, desired: int, scale_down: int, count: int) -> int:
    """``calculateScaleDownReplicaCount``."""
    if rs is not None and rs.replicas > desired:
        return max(desired, rs.replicas - scale_down)
    return count


def _adjust_within_limits(
    drain: ReplicaSetState | None,
    adjust: ReplicaSetState | None,
    drain_count: int,
    adjust_count: int,
    max_allowed: int,
    min_available: int,
) -> tuple[int, int]:
    """``adjustReplicaWithinLimits``: keep maxSurge and maxUnavailable."""
    total_available = 0
    over = max(0, adjust_count + drain_count - max_allowed)
    if drain is not None:
        total_available += min(drain.available, drain_count)
    if adjust is not None:
        adjust_count -= over
        total_available += min(adjust.available, adjust_count)
        extra = max(0, adjust.available - adjust_count)
        needed = max(0, min_available - total_available)
        adjust_count += min(extra, needed)
        over = max(0, adjust_count + drain_count - max_allowed)
        drain_count -= over
    return drain_count, adjust_count


def basic_canary_counts(
    config: RolloutConfig,
    status: RolloutStatus,
    new: ReplicaSetState | None,
    stable: ReplicaSetState | None,
    others: Sequence[ReplicaSetState],
) -> tuple[int, int]:
    """``CalculateReplicaCountsForBasicCanary``: the next (canary, stable) sizes toward the
    weight, within ``replicas + maxSurge`` and ``replicas - maxUnavailable``."""
    replicas = config.replicas
    _, weight = canary_replicas_or_weight(config, status)
    max_surge, max_unavailable = config.fenceposts()
    desired_new, desired_stable = approximate_weighted_counts(
        replicas, weight, MAX_WEIGHT, max_surge
    )
    new_count = new.replicas if new is not None else 0
    scale_stable = stable is not None and (new is None or new.hash != stable.hash)
    stable_count = stable.replicas if scale_stable and stable is not None else 0
    if not scale_stable:
        desired_new, desired_stable = replicas, 0
    max_allowed = replicas + max_surge
    counted = [*others, new] + ([stable] if scale_stable else [])
    scale_up = max_allowed - sum(rs.replicas for rs in counted if rs is not None)
    if scale_stable and stable is not None and stable.replicas < desired_stable and scale_up > 0:
        if stable.replicas + scale_up < desired_stable:
            stable_count, scale_up = stable.replicas + scale_up, 0
        else:
            stable_count = desired_stable
            scale_up -= desired_stable - stable.replicas
    if new is not None and new.replicas < desired_new and scale_up > 0:
        new_count = min(new.replicas + scale_up, desired_new)
    if sum(rs.replicas for rs in others) > 0:
        return new_count, stable_count  # older ReplicaSets are scaled down first
    min_available = replicas - max_unavailable
    increasing = new is None or desired_new >= new.replicas
    to_scale_down = _scale_down_replicas(new, not increasing) + _scale_down_replicas(
        stable, increasing
    )
    if to_scale_down <= min_available:
        return new_count, stable_count
    scale_down = to_scale_down - min_available
    if not increasing:
        new_count = _calc_scale_down(new, desired_new, scale_down, new_count)
        new_count, stable_count = _adjust_within_limits(
            new, stable, new_count, stable_count, max_allowed, min_available
        )
    elif scale_stable:
        stable_count = _calc_scale_down(stable, desired_stable, scale_down, stable_count)
        stable_count, new_count = _adjust_within_limits(
            stable, new, stable_count, new_count, max_allowed, min_available
        )
    return new_count, stable_count


def traffic_routed_counts(config: RolloutConfig, status: RolloutStatus) -> tuple[int, int]:
    """``CalculateReplicaCountsForTrafficRoutedCanary`` (no dynamicStableScale): canary =
    setCanaryScale or ceil(weight x replicas / 100); the stable stays fully scaled."""
    explicit, weight = canary_replicas_or_weight(config, status)
    canary = (
        explicit if explicit is not None else traffic_weight_to_replicas(config.replicas, weight)
    )
    return canary, config.replicas


def desired_counts(
    config: RolloutConfig,
    status: RolloutStatus,
    new: ReplicaSetState | None,
    stable: ReplicaSetState | None,
    others: Sequence[ReplicaSetState],
) -> tuple[int, int]:
    """(canary, stable) sizes the controller asks for next."""
    if config.traffic_routing:
        return traffic_routed_counts(config, status)
    return basic_canary_counts(config, status, new, stable, others)


def at_desired_counts(
    config: RolloutConfig,
    status: RolloutStatus,
    new: ReplicaSetState | None,
    stable: ReplicaSetState | None,
    others: Sequence[ReplicaSetState],
) -> bool:
    """``AtDesiredReplicaCountsForCanary``: the canary's desired pods all available, the
    stable's all created, and (basic canary) no pod of another ReplicaSet available."""
    desired_new, desired_stable = desired_counts(config, status, new, stable, others)
    if new is None or not (desired_new == new.replicas == new.available):
        return False
    if stable is None or not (desired_stable == stable.replicas == stable.pods):
        return False
    return config.traffic_routing or sum(rs.available for rs in others) == 0
