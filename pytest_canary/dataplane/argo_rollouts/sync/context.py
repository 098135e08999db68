"""The state of one sync, shared by its steps: what the controller read (the Rollout, its
status, ReplicaSets and routing objects) and what the sync has changed so far (ReplicaSet
sizes, objects written, events, wake-ups, the pause and abort changes to persist); and
what the sync did, :class:`Reconciled`.

Upstream (argoproj/argo-rollouts, tag v1.9.1): ``rollout/context.go`` ``rolloutContext``
(the new, stable and other ReplicaSets: ``utils/replicaset`` ``GetStableRS``),
``rollout/pause.go`` ``pauseContext`` (``IsAborted``; the pause and abort changes
``persistRolloutStatus`` applies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pytest_canary.dataplane.argo_rollouts.api import Key, Manifest
from pytest_canary.dataplane.argo_rollouts.config import RolloutConfig
from pytest_canary.dataplane.argo_rollouts.status import (
    ReplicaSetState,
    RolloutStatus,
    TrafficWeights,
)


@dataclass(frozen=True)
class Reconciled:
    """What one sync of the controller did.

    Attributes:
        status: the new status.
        replica_sets: every ReplicaSet with its new size and deadline (a new one included).
        objects: the objects written (Services, canary Ingress, VirtualService,
            DestinationRule), each whole.
        requeue_at: when the controller wants the next sync (pause end, deadline), if set.
        events: what it would record as Kubernetes events.
    """

    status: RolloutStatus
    replica_sets: tuple[ReplicaSetState, ...]
    objects: tuple[Manifest, ...] = ()
    requeue_at: float | None = None
    events: tuple[str, ...] = ()


class SyncContext:
    """One sync's ``rolloutContext`` and ``pauseContext``.

    Attributes:
        config: the Rollout as read.
        prev: its status before the sync (its conditions brought up to date by
            ``checkPausedConditions`` first).
        now: the time of the sync.
        rss: every ReplicaSet by hash, as resized so far.
        objects: the routing objects by (kind, name), as written so far.
        written: the objects this sync wrote.
        events: the events it records.
        requeue: when it wants to be woken (pause ends, deadlines).
        weights: the traffic weights it wrote (``status.canary.weights``).
    """

    def __init__(
        self,
        config: RolloutConfig,
        status: RolloutStatus,
        replica_sets: Sequence[ReplicaSetState],
        objects: Mapping[Key, Mapping[str, Any]],
        now: float,
    ) -> None:
        self.config = config
        self.prev = status
        self.now = now
        self.rss: dict[str, ReplicaSetState] = {rs.hash: rs for rs in replica_sets}
        self.original = objects
        self.objects: dict[Key, Manifest] = {k: dict(v) for k, v in objects.items()}
        self.written: dict[Key, Manifest] = {}
        self.events: list[str] = []
        self.requeue: list[float] = []
        # pauseContext
        self.add_pause = False
        self.remove_pause = False
        self.clear_pause = False
        self.add_abort = False
        self.remove_abort = False
        self.weights: TrafficWeights | None = status.weights

    @property
    def new(self) -> ReplicaSetState:
        """The ReplicaSet of the Rollout's template."""
        return self.rss[self.config.template_hash]

    @property
    def stable(self) -> ReplicaSetState | None:
        """The ReplicaSet of ``status.stableRS`` (``GetStableRS``), if any."""
        return self.rss.get(self.prev.stable_rs) if self.prev.stable_rs else None

    @property
    def others(self) -> list[ReplicaSetState]:
        """The ReplicaSets that are neither new nor stable."""
        stable = self.prev.stable_rs
        return [rs for h, rs in self.rss.items() if h != self.config.template_hash and h != stable]

    def aborted(self) -> bool:
        """``pauseContext.IsAborted``."""
        if self.remove_abort:
            return False
        return self.add_abort or self.prev.abort

    def fully_promoted(self) -> bool:
        """Whether the template being rolled out is the stable one."""
        return self.prev.stable_rs == self.prev.current_pod_hash

    def set_deadline(self, rs: ReplicaSetState, deadline: float | None) -> None:
        """Set (or clear) a ReplicaSet's ``scale-down-deadline``."""
        self.rss[rs.hash] = replace(self.rss[rs.hash], scale_down_deadline=deadline)

    def write(self, obj: Manifest) -> None:
        """Write a routing object (kept when it differs from what is there)."""
        key = (str(obj["kind"]), str(obj["metadata"]["name"]))
        if self.objects.get(key) != obj:
            self.objects[key] = obj
            self.written[key] = obj

    def result(self, status: RolloutStatus) -> Reconciled:
        """What the sync did, ending with ``status``."""
        future = [t for t in self.requeue if t > self.now]
        return Reconciled(
            status=status,
            replica_sets=tuple(sorted(self.rss.values(), key=lambda rs: rs.created)),
            # Net writes only: on an abort with traffic routing the canary Service is
            # switched to the canary and back to the stable in one sync (see the package
            # docstring); what stays is the last write.
            objects=tuple(o for k, o in self.written.items() if self.original.get(k) != o),
            requeue_at=min(future) if future else None,
            events=tuple(self.events),
        )
