"""The local backend's Argo Rollouts controller: the model of
:mod:`pytest_canary.dataplane.argo_rollouts` driven for real.

One :class:`RolloutController` per environment. It owns every Rollout applied there: their
ReplicaSets (real pods per pod template hash, labelled ``rollouts-pod-template-hash``), their
status, and the objects the controller writes (Service selectors, the canary Ingress, the
VirtualService, the DestinationRule), which the routers then serve with the ingress-nginx
and Istio models.

It runs on its own thread, as the real controller runs in its own pod: the test thread
enqueues commands (a new spec, ``kubectl argo rollouts promote`` / ``abort`` / ``retry`` /
``undo``, a deletion) and waits, with a deadline, for the status it expects. The thread
applies each command, then syncs every Rollout until the model changes nothing, letting the
oldest batch of started pods become ready between syncs (a step completes only once the
canary's pods are ready, so the weight advances only then); then it sleeps until the next
command or the earliest time a sync asked for (a timed pause ending, a scale-down
deadline). Its errors are kept and re-raised in the test thread by the waits and
``check_health``; :meth:`RolloutController.close` stops it and its pods.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from pytest_canary.backends.local.runtime import RunningPod, stop_pods, wait_healthy
from pytest_canary.dataplane import argo_rollouts as model
from pytest_canary.errors import BackendError, CanaryConfigError, ConvergenceTimeout
from pytest_canary.spec import ReleaseSpec

if TYPE_CHECKING:
    from pytest_canary.backends.local.cluster import LocalEnvironment

Manifest = dict[str, Any]

# Kinds the controller reads and writes (everything else in the namespace is not its business).
ROUTING_KINDS = ("Service", "Ingress", "VirtualService", "DestinationRule")
COMMANDS = ("promote", "promote-full", "abort", "retry", "undo")
# Bounds: syncs to a fixpoint per wake-up, events kept per Rollout, how long close waits.
MAX_SYNCS = 500
MAX_EVENTS = 200
JOIN_TIMEOUT = 30.0


def entry_model(spec: ReleaseSpec) -> str | None:
    """The data-plane model traffic enters for a ``rollouts`` release (``Snapshot.route``
    kinds), or ``None`` for a basic canary (a plain Service, kube-proxy)."""
    if spec.traffic == "nginx":
        return "nginx"
    if spec.traffic == "istio":
        return f"istio:{spec.name}-gateway"
    return None


@dataclass
class ReplicaSet:
    """One ReplicaSet of a Rollout: its template and its pods."""

    state: model.ReplicaSetState
    template: Manifest
    pods: list[RunningPod] = field(default_factory=list)
    # Pods started and not yet ready, one list per scale-up (they become ready together).
    pending: list[list[RunningPod]] = field(default_factory=list)

    def observed(self) -> model.ReplicaSetState:
        """The model's view: spec size, pods, ready pods."""
        return replace(
            self.state, pods=len(self.pods), available=sum(1 for p in self.pods if p.ready)
        )


@dataclass
class RolloutState:
    """Everything the controller keeps about one Rollout."""

    obj: Manifest
    generation: int = 1
    status: model.RolloutStatus = field(default_factory=model.RolloutStatus)
    replica_sets: dict[str, ReplicaSet] = field(default_factory=dict)
    events: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_EVENTS)
    )
    wake_at: float | None = None
    stuck: str = ""

    @property
    def config(self) -> model.RolloutConfig:
        """The Rollout as the controller reads it."""
        obj = copy.deepcopy(self.obj)
        obj.setdefault("metadata", {})["generation"] = self.generation
        return model.read_rollout(obj)


class RolloutController:
    """Runs the Argo Rollouts model for the Rollouts of one :class:`LocalEnvironment`."""

    def __init__(self, env: LocalEnvironment) -> None:
        self._env = env
        self._rollouts: dict[str, RolloutState] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: collections.deque[tuple[int, Callable[[], None]]] = collections.deque()
        self._sequence = 0
        self._processed = 0
        self._changed = threading.Condition()
        self._error: BaseException | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        # The controller's clock (see hold_timers): wall time minus the time timers were held.
        self._held = 0
        self._held_since = 0.0
        self._held_total = 0.0

    # -- what the environment asks -------------------------------------------------------------

    @property
    def pods(self) -> list[RunningPod]:
        """Every pod of every Rollout."""
        return [
            p
            for st in list(self._rollouts.values())
            for rs in list(st.replica_sets.values())
            for p in list(rs.pods)
        ]

    def names(self) -> list[str]:
        """The Rollouts applied."""
        return list(self._rollouts)

    def status(self, name: str) -> model.RolloutStatus:
        """The last status the controller wrote for Rollout ``name``."""
        self.check_health()
        state = self._rollouts.get(name)
        if state is None:
            raise BackendError(f"no Rollout {name!r} in {self._env.namespace}")
        return state.status

    def events(self, name: str) -> list[str]:
        """What the controller recorded for Rollout ``name`` (oldest first)."""
        state = self._rollouts.get(name)
        return list(state.events) if state is not None else []

    def notes(self, name: str) -> list[str]:
        """What Rollout ``name``'s canary Ingresses route by that it does not ask for
        (``model.retained_annotation_notes``)."""
        state = self._rollouts.get(name)
        if state is None:
            return []
        return model.retained_annotation_notes(state.config, dict(self._env.store_items()))

    def replica_set_versions(self, name: str, label: str = "version") -> dict[str, str]:
        """Pod template hash -> the template's ``label`` value, for Rollout ``name``."""
        state = self._rollouts.get(name)
        if state is None:
            return {}
        return {
            h: str(((rs.template.get("metadata") or {}).get("labels") or {}).get(label, ""))
            for h, rs in list(state.replica_sets.items())
        }

    def check_health(self) -> None:
        """Re-raise in the calling thread what the controller thread met."""
        if self._error is not None:
            raise BackendError(
                f"the Argo Rollouts controller of {self._env.namespace} failed: {self._error!r}"
            ) from self._error

    # -- the controller's clock -------------------------------------------------------------

    def now(self) -> float:
        """The controller's clock: monotonic time that stands still while timers are held."""
        with self._lock:
            return self._now_locked()

    def _now_locked(self) -> float:
        now = time.monotonic() - self._held_total
        return now - (time.monotonic() - self._held_since) if self._held else now

    @contextlib.contextmanager
    def hold_timers(self) -> Iterator[None]:
        """Stop the controller's clock while the block runs: a timed pause or a scale-down
        delay does not run out meanwhile (an expectation samples one step of the Rollout);
        commands and pods becoming ready are still handled."""
        with self._lock:
            if self._held == 0:
                self._held_since = time.monotonic()
            self._held += 1
        try:
            yield
        finally:
            with self._lock:
                self._held -= 1
                if self._held == 0:
                    self._held_total += time.monotonic() - self._held_since
                self._wake.notify_all()

    # -- commands (test thread) ------------------------------------------------------------

    def apply(self, obj: Manifest) -> int:
        """Create or update a Rollout (a spec change bumps its generation); returns the
        command's sequence number for :meth:`wait`."""
        desired = copy.deepcopy(obj)
        config = model.read_rollout(desired)
        name = desired.get("metadata", {}).get("name")
        if config.unmodelled:
            raise CanaryConfigError(
                f"Rollout {name}: the local Argo Rollouts model does not cover:\n  "
                + "\n  ".join(f"{p.path}: {p.message}" for p in config.unmodelled)
            )
        if config.bounds:
            raise CanaryConfigError(
                f"Rollout {name}: beyond pytest-canary's bounds:\n  "
                + "\n  ".join(str(p) for p in config.bounds)
            )

        def command() -> None:
            name = str(desired["metadata"]["name"])
            state = self._rollouts.get(name)
            if state is None:
                self._rollouts[name] = RolloutState(desired)
            elif _spec(state.obj) != _spec(desired):
                state.obj, state.generation = desired, state.generation + 1
            else:
                state.obj = desired

        return self._enqueue(command)

    def command(self, name: str, action: str) -> int:
        """Do what ``kubectl argo rollouts <action>`` does (``promote``, ``promote-full``,
        ``abort``, ``retry``, ``undo``); returns the sequence number for :meth:`wait`."""
        if action not in COMMANDS:
            raise CanaryConfigError(f"action={action!r}: must be one of {', '.join(COMMANDS)}")
        self.status(name)  # it exists

        def command() -> None:
            state = self._rollouts[name]
            config = state.config
            if action == "undo":
                self._undo(state)
                return
            if action in ("promote", "promote-full"):
                if config.paused:  # the plugin's spec patch {"spec": {"paused": false}}
                    state.obj["spec"]["paused"] = False
                    state.generation += 1
                patch = model.promote_patch(config, state.status, full=action == "promote-full")
            elif action == "abort":
                patch = model.abort_patch()
            else:
                patch = model.retry_patch()
            state.status = model.apply_status_patch(state.status, patch)
            state.events.append(f"kubectl argo rollouts {action}: status patch {patch}")

        return self._enqueue(command)

    def delete(self, name: str) -> int:
        """Delete a Rollout: its pods stop, the objects it owns go."""

        def command() -> None:
            state = self._rollouts.pop(name, None)
            if state is None:
                return
            with self._env.store_lock:
                for key, obj in list(self._env.store_items()):
                    if _owned_by(obj, name):
                        self._env.store_delete(key)
            for rs in state.replica_sets.values():
                self._retire(rs, list(rs.pods))

        return self._enqueue(command)

    def resync(self) -> int:
        """Sync every Rollout again (the real controller's informers react to the objects it
        reads changing)."""
        return self._enqueue(lambda: None)

    def flush(self, timeout: float) -> None:
        """Wait until every command sent so far was applied and its syncs done."""
        sequence = self._sequence
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._processed < sequence:
                self.check_health()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ConvergenceTimeout(
                        f"the Rollout controller of {self._env.namespace}",
                        "done with its commands",
                        f"{sequence - self._processed} command(s) pending",
                        timeout,
                    )
                self._changed.wait(min(remaining, 1.0))

    def wait(
        self,
        name: str,
        until: Callable[[model.RolloutStatus], bool],
        *,
        what: str,
        timeout: float,
    ) -> model.RolloutStatus:
        """Wait until every command sent so far was applied and Rollout ``name``'s status
        satisfies ``until``.

        Raises:
            ConvergenceTimeout: after ``timeout`` seconds, with the last status and events.
            BackendError: the controller failed, or cannot go on (its last sync returned an
                error and nothing is left to wake it).
        """
        sequence = self._sequence
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                self.check_health()
                state = self._rollouts.get(name)
                if self._processed >= sequence and state is not None:
                    if until(state.status):
                        return state.status
                    if state.stuck:
                        raise BackendError(
                            f"Rollout {name} cannot become {what}: the controller's last sync "
                            f"failed with {state.stuck!r} and nothing will change it; status: "
                            f"{state.status.describe()}"
                        )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    last = state.status.describe() if state is not None else "no such Rollout"
                    events = "; ".join(list(state.events)[-5:]) if state is not None else ""
                    raise ConvergenceTimeout(
                        f"Rollout {name}", what, f"{last}; last events: {events}", timeout
                    )
                self._changed.wait(min(remaining, 1.0))

    def close(self) -> None:
        """Stop the thread, then every pod of every Rollout (idempotent)."""
        with self._lock:
            self._stopping = True
            self._wake.notify_all()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(JOIN_TIMEOUT)
        stop_pods(self.pods, grace=2.0)  # all at once: one grace period
        self._rollouts.clear()

    # -- the controller thread -------------------------------------------------------------

    def _enqueue(self, command: Callable[[], None]) -> int:
        self.check_health()
        with self._lock:
            if self._stopping:
                raise BackendError(f"environment {self._env.namespace} is closed")
            self._sequence += 1
            self._queue.append((self._sequence, command))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"argo-rollouts-{self._env.namespace}", daemon=True
                )
                self._thread.start()
            self._wake.notify_all()
            return self._sequence

    def _run(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._stopping and not self._due():
                        self._wake.wait(self._sleep_for())
                    if self._stopping:
                        return
                    commands = list(self._queue)
                    self._queue.clear()
                for _, command in commands:
                    command()
                for state in list(self._rollouts.values()):
                    self._drive(state)
                with self._changed:
                    if commands:
                        self._processed = commands[-1][0]
                    self._changed.notify_all()
        except BaseException as exc:
            self._error = exc
            with self._changed:
                self._changed.notify_all()

    def _due(self) -> bool:
        if self._held:
            return False
        now = self._now_locked()
        return any(s.wake_at is not None and s.wake_at <= now for s in self._rollouts.values())

    def _sleep_for(self) -> float | None:
        times = [s.wake_at for s in self._rollouts.values() if s.wake_at is not None]
        if not times or self._held:
            return None  # woken by a command, or when the timers are released
        return max(0.0, min(times) - self._now_locked()) + 0.005

    def _drive(self, state: RolloutState) -> None:
        """Sync until the model changes nothing and no started pod is left to become ready."""
        for _ in range(MAX_SYNCS):
            config = state.config
            observed = tuple(rs.observed() for rs in state.replica_sets.values())
            with self._env.store_lock:
                objects = {
                    key: obj for key, obj in self._env.store_items() if key[0] in ROUTING_KINDS
                }
            result = model.reconcile(config, state.status, observed, objects, self.now())
            state.events.extend(result.events)
            settled = model.settled(result, state.status, observed)
            self._apply(state, config, result)
            if not settled:
                continue
            batch = self._oldest_pending(state)
            if batch is not None:
                self._make_ready(batch)
                continue
            state.wake_at = result.requeue_at
            state.stuck = result.status.error if result.requeue_at is None else ""
            return
        raise BackendError(
            f"Rollout {state.obj['metadata']['name']}: the controller model found no fixpoint "
            f"in {MAX_SYNCS} syncs; last status {state.status.describe()}"
        )

    def _apply(
        self, state: RolloutState, config: model.RolloutConfig, result: model.Reconciled
    ) -> None:
        """Do what the sync decided: ReplicaSets scaled, objects written, status stored."""
        for wanted in result.replica_sets:
            rs = state.replica_sets.get(wanted.hash)
            if rs is None:
                template = copy.deepcopy(dict(config.template))
                labels = template.setdefault("metadata", {}).setdefault("labels", {})
                labels[model.POD_TEMPLATE_HASH] = wanted.hash
                rs = state.replica_sets[wanted.hash] = ReplicaSet(wanted, template)
            rs.state = wanted
            self._scale(state, rs, wanted.replicas)
        if result.objects:
            with self._env.store_lock:
                for obj in result.objects:
                    self._env.store_put(obj)
                self._env.publish()
        state.status = result.status
        with self._changed:
            self._changed.notify_all()

    def _scale(self, state: RolloutState, rs: ReplicaSet, replicas: int) -> None:
        """The ReplicaSet controller: start or stop pods to match ``replicas``."""
        missing = replicas - len(rs.pods)
        if missing > 0:
            owner = {
                "metadata": {"name": str(state.obj["metadata"]["name"])},
                "spec": {"template": rs.template},
            }
            batch = self._env.start_pods_of(owner, rs.state.hash, missing)
            with self._env.store_lock:
                rs.pods.extend(batch)
            rs.pending.append(batch)
        elif missing < 0:
            # ReplicaSet scale-down (controller.ActivePods order): not-ready pods first,
            # then the most recently started.
            ordered = sorted(rs.pods, key=lambda p: (p.ready, p.started_at), reverse=False)
            ready_last = [p for p in ordered if not p.ready] + sorted(
                (p for p in ordered if p.ready), key=lambda p: p.started_at, reverse=True
            )
            self._retire(rs, ready_last[:-missing])

    def _retire(self, rs: ReplicaSet, pods: list[RunningPod]) -> None:
        if not pods:
            return
        with self._env.store_lock:
            for pod in pods:
                pod.ready = False  # out of the endpoints first...
                rs.pods.remove(pod)
            for batch in rs.pending:
                batch[:] = [p for p in batch if p not in pods]
            rs.pending[:] = [b for b in rs.pending if b]
            self._env.publish()
        self._env.stop_pods(pods)  # ...then SIGTERM and drain

    def _oldest_pending(self, state: RolloutState) -> list[RunningPod] | None:
        batches = [
            (b[0].started_at, rs, b) for rs in state.replica_sets.values() for b in rs.pending if b
        ]
        if not batches:
            return None
        _, rs, batch = min(batches, key=lambda item: item[0])
        rs.pending.remove(batch)
        return batch

    def _make_ready(self, batch: list[RunningPod]) -> None:
        try:
            for pod in batch:
                wait_healthy(pod)
        except BaseException:
            for pod in batch:
                pod.stop(grace=1.0)
            raise
        with self._env.store_lock:
            for pod in batch:
                self._env.events.append(f"pod {pod.name} ready on {pod.host}:{pod.port}")
            self._env.publish()

    def _undo(self, state: RolloutState) -> None:
        """``kubectl argo rollouts undo``: the template of the previous revision."""
        target = model.undo_target(rs.observed() for rs in state.replica_sets.values())
        if target is None:
            state.events.append("kubectl argo rollouts undo: no previous revision")
            return
        template = copy.deepcopy(state.replica_sets[target.hash].template)
        template.get("metadata", {}).get("labels", {}).pop(model.POD_TEMPLATE_HASH, None)
        if model.equal_ignore_hash(state.obj["spec"].get("template") or {}, template):
            state.events.append("kubectl argo rollouts undo: skipped (template already matches)")
            return
        state.obj = copy.deepcopy(state.obj)
        state.obj["spec"]["template"] = template
        state.generation += 1
        state.events.append(f"kubectl argo rollouts undo: template of revision {target.revision}")


def _spec(obj: Mapping[str, Any]) -> Any:
    return obj.get("spec")


def _owned_by(obj: Mapping[str, Any], rollout: str) -> bool:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("kind") == model.KIND and r.get("name") == rollout for r in refs)


def owned_by_rollout(obj: Mapping[str, Any]) -> bool:
    """Whether a Rollout owns the object (the controller created it; it goes with it)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("kind") == model.KIND for r in refs)
