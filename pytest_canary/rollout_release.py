"""Argo Rollouts handles: a release made with ``canary.deploy("rollouts", ...)`` or your own
Rollout applied with ``canary.apply(...)``, driven the way ``kubectl argo rollouts`` does.

The controller (the real one on a cluster, its model on the local backend) walks the steps;
these handles only do what the kubectl plugin does (status patches: promote, promote
``--full``, abort, retry; undo = the previous template) and wait, with a deadline, for the
state the controller reaches: the next pause, the end (Healthy) or an abort (Degraded).
Expectations (``expect_split``, ``expect_routed``, ``sample``) work at every step; one that
spans a change of the Rollout's traffic (a timed pause ending while sampling) fails and says
so, since its requests saw two splits.

Example:
    >>> STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {"duration": "5s"}}]
    >>> rel = canary.deploy("rollouts", stable="1.0", canary="2.0", steps=STEPS,  # doctest: +SKIP
    ...                     traffic="nginx")
    >>> rel.expect_split(0.20)          # deploy() returns at the first pause  # doctest: +SKIP
    >>> rel.promote()                    # the next pause                      # doctest: +SKIP
    >>> rel.expect_split(0.50)                                                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pytest_canary.byo import RetainedRoutingWarning
from pytest_canary.dataplane import argo_rollouts as model
from pytest_canary.dataplane.argo_rollouts import RolloutStatus
from pytest_canary.errors import BackendError, CanaryConfigError
from pytest_canary.harness import AppliedManifests, Release, TrafficChecks
from pytest_canary.manifests import Phase, render
from pytest_canary.manifests import rollouts as rollout_manifests
from pytest_canary.report import Verdict
from pytest_canary.rollout_spec import MAX_PAUSE_SECONDS

if TYPE_CHECKING:
    from pytest_canary.backends.base import Environment
    from pytest_canary.harness import Harness
    from pytest_canary.spec import ReleaseSpec


class RolloutMoved(AssertionError):
    """The Rollout changed its traffic split while an expectation was sampling."""


def _pause_key(status: RolloutStatus) -> tuple[int | None, float] | None:
    if not status.pause_conditions:
        return None
    return status.current_step_index, status.pause_conditions[0].start_time


def _settled(status: RolloutStatus) -> bool:
    return status.paused or status.phase in (model.HEALTHY, model.DEGRADED)


class RolloutControls(TrafficChecks):
    """What both handles share: the controller's status, the kubectl plugin's commands, and
    expectations that must see one step of the Rollout.

    Subclasses set ``_rollout`` (the Rollout's name) and ``_environment``.
    """

    _rollout: str
    _environment: Environment
    _seen_pause: tuple[int | None, float] | None = None

    # -- facts ---------------------------------------------------------------------------

    @property
    def status(self) -> RolloutStatus:
        """The Rollout's status now: ``phase`` (Healthy, Progressing, Paused, Degraded),
        ``step`` (``currentStepIndex``), ``weight`` (percent to the canary), ``message``,
        ``stable_hash``, ``canary_hash``, and Argo's other fields (``conditions``,
        ``pause_conditions``, ``weights``, replica counts)."""
        return self._environment.rollout_status(self._rollout)

    def _version_of(self, pod_hash: str, fallback: str) -> str:
        versions = self._environment.rollout_versions(self._rollout, self._version_label())
        return versions.get(pod_hash) or fallback

    def _version_label(self) -> str:
        return "version"

    def rollout_events(self) -> list[str]:
        """What the controller recorded (as ``kubectl describe rollout`` events)."""
        return self._environment.rollout_events(self._rollout)

    # -- waits ---------------------------------------------------------------------------

    def _timeout(self) -> float:
        """How long a wait may take: the environment's time for the controller to act (60 s
        locally, ``--canary-wait-timeout`` on a cluster), plus the current step's duration
        when the Rollout stands at a timed pause (the only pause a wait crosses: every wait
        ends at the next pause). A Rollout the controller has not reported on yet gets no
        pause time: its first deploy skips the steps (rollout/sync.go shouldFullPromote
        "Initial deploy"), and a controller that is not running is reported at once."""
        config = self._config()
        if config is None:
            return self._environment.rollout_settle_timeout
        try:
            status = self.status
        except BackendError:
            return self._environment.rollout_settle_timeout  # not seen by the controller yet
        step, _ = model.current_step(config, status)
        if step is None or step.kind != "pause" or step.pause_seconds is None:
            return self._environment.rollout_settle_timeout
        # Our bound on a pause a test waits for: canary.apply and deploy refuse longer ones;
        # a Rollout changed behind the handle's back does not get more.
        pause = float(min(step.pause_seconds, MAX_PAUSE_SECONDS))
        return self._environment.rollout_settle_timeout + pause

    def _config(self) -> model.RolloutConfig | None:
        return None

    def _await_served(self) -> None:
        """Return once the data plane serves what the controller wrote (no-op where routing
        follows the controller's writes at once, the local backend)."""

    def _await(
        self, what: str, until: Callable[[RolloutStatus], bool], *, serve: bool = True
    ) -> RolloutStatus:
        status = self._environment.await_rollout(
            self._rollout, until, what=what, timeout=self._timeout()
        )
        self._seen_pause = _pause_key(status)
        if serve:
            self._await_served()
        return status

    def _await_settled(self, *, serve: bool = True) -> RolloutStatus:
        """The next pause (not the one seen last), the end (Healthy) or Degraded."""
        seen = self._seen_pause
        return self._await(
            "at its next pause, Healthy or Degraded",
            lambda s: (
                (s.paused and _pause_key(s) != seen) or s.phase in (model.HEALTHY, model.DEGRADED)
            ),
            serve=serve,
        )

    def wait_for_pause(self) -> RolloutStatus:
        """Wait until the Rollout pauses again (a timed pause ends by itself; this waits for
        the pause after it) and return its status.

        Raises:
            AssertionError: the Rollout ended (Healthy) or aborted (Degraded) without
                pausing again.
            ConvergenceTimeout: nothing happened within the deadline (the time left of a
                timed pause plus 60 s).
        """
        __tracebackhide__ = True
        status = self._await_settled()
        if not status.paused:
            raise AssertionError(
                f"Rollout {self._rollout} did not pause again: {status.describe()}"
            )
        return status

    # -- kubectl argo rollouts -------------------------------------------------------------

    def _command(self, action: str) -> None:
        self._environment.rollout_command(self._rollout, action)

    def abort(self) -> RolloutStatus:
        """``kubectl argo rollouts abort``: traffic back to the stable version (weight 0, the
        canary Service on the stable ReplicaSet), ``currentStepIndex`` 0, phase Degraded;
        with traffic routing the canary pods stay for ``abortScaleDownDelaySeconds``."""
        self._command("abort")
        return self._await("Degraded (aborted)", lambda s: s.phase == model.DEGRADED)

    def retry(self) -> RolloutStatus:
        """``kubectl argo rollouts retry rollout``: clear the abort; the steps start again
        from the first one; returns at the first pause (or the end)."""
        self._seen_pause = None
        self._command("retry")
        return self._await_settled()

    def _promote(self, full: bool) -> RolloutStatus:
        if full:
            self._command("promote-full")
            return self._await(
                "Healthy (fully promoted)",
                lambda s: s.phase in (model.HEALTHY, model.DEGRADED),
            )
        self._command("promote")
        return self._await_settled()

    def _undo(self) -> RolloutStatus:
        before = self.status
        self._command("undo")
        return self._await(
            "back on the previous template",
            lambda s: s.current_pod_hash != before.current_pod_hash and _settled(s),
        )

    def _rolled_back(self) -> RolloutStatus:
        """abort (unless complete) then undo."""
        if not self.status.completed:
            self.abort()
        return self._undo()

    def promote(
        self, *, full: bool = False, check_errors: bool = False, check_health: bool = False
    ) -> Verdict | None:
        """``kubectl argo rollouts promote``: end the current pause (or skip the current
        step) and return at the next pause or the end. ``full=True`` is ``promote --full``:
        skip the remaining steps, return once Healthy on the new version. With
        ``check_errors=True`` traffic flows meanwhile (and on until 688 requests at alpha
        0.001) and any failed request fails the call. With ``check_health=True`` the canary
        is first compared with the stable version at the current step
        (:meth:`expect_healthy`); nothing is promoted unless it passes.

        Returns:
            The zero-downtime verdict with ``check_errors``, else the health verdict with
            ``check_health``, else None (read :attr:`status` for where the Rollout stands).
        """
        __tracebackhide__ = True
        health = self.expect_healthy() if check_health else None  # raises: no promotion
        switched = self._with_traffic(
            "promote --full" if full else "promote", lambda: self._promote(full), check_errors
        )
        return switched if switched is not None else health

    def rollback(self, *, check_errors: bool = False) -> Verdict | None:
        """Back to the stable version: ``kubectl argo rollouts abort`` then ``undo`` (the
        template of the previous revision, which is the stable ReplicaSet's, so the steps are
        skipped); returns once Healthy. After a completed promotion, ``undo`` starts a new
        update to the previous version, which walks the steps (returns at the first pause).
        With ``check_errors=True`` traffic flows meanwhile and any failed request fails it.
        """
        __tracebackhide__ = True
        return self._with_traffic("abort + undo", self._rolled_back, check_errors)

    def _with_traffic(
        self, action: str, change: Callable[[], RolloutStatus], check_errors: bool
    ) -> Verdict | None:
        __tracebackhide__ = True
        if not check_errors:
            change()
            self._changed()
            return None
        return self._zero_downtime(
            change,
            during=action,
            request=f"{action}(check_errors=True)",
            settle=self._changed,
        )

    def _changed(self) -> None:
        """After a command has taken effect (a handle that tracks a phase reads it here)."""

    # -- expectations that must see one split ----------------------------------------------

    def _traffic_state(self) -> tuple[Any, ...]:
        s = self.status
        return (s.weights, s.set_weight, s.stable_rs, s.current_pod_hash, s.abort, s.step)

    @contextlib.contextmanager
    def _one_split(self) -> Iterator[None]:
        """Run an expectation on one step of the Rollout: the backend's timers are held
        where it can (the local model); a change of the split meanwhile fails it."""
        __tracebackhide__ = True
        with self._environment.hold_rollout_timers():
            before = self._traffic_state()
            try:
                yield
            except AssertionError as exc:
                if self._traffic_state() != before:
                    raise self._moved(before) from exc
                raise
            if self._traffic_state() != before:
                raise self._moved(before)

    def _moved(self, before: tuple[Any, ...]) -> RolloutMoved:
        now = self.status
        return RolloutMoved(
            f"Rollout {self._rollout} changed while sampling (step {before[5]}, weight "
            f"{before[0].canary_weight if before[0] else before[1]} -> {now.describe()}): the "
            "requests saw two splits, so no verdict can be drawn; sample within a pause "
            "(indefinite, or timed long enough), or wait_for_pause() first"
        )


class RolloutRelease(RolloutControls, Release):
    """A release of the strategy ``rollouts``: an Argo Rollouts ``Rollout`` walking its
    ``steps``.

    ``deploy`` returns at the first pause (or Healthy when no step pauses). ``promote()``
    = ``kubectl argo rollouts promote`` (returns at the next pause or the end),
    ``promote(full=True)`` = ``promote --full``, :meth:`abort`, :meth:`retry`,
    ``rollback()`` = abort + ``undo``, :meth:`wait_for_pause`, :attr:`status`.
    """

    def __init__(self, harness: Harness, spec: ReleaseSpec) -> None:
        super().__init__(harness, spec)
        self._rollout = spec.name
        self._environment = harness.environment
        self._seen_pause = None

    def _config(self) -> model.RolloutConfig | None:
        return model.read_rollout(rollout_manifests.rollout(self.spec, self.spec.canary))

    def _await_served(self) -> None:
        self._environment.await_dataplane(self.spec, self.objects)

    # -- facts ---------------------------------------------------------------------------

    @property
    def stable_version(self) -> str:
        """The version the stable ReplicaSet runs now: the stable version while the canary
        runs, the canary's once the Rollout completed (the previous one is
        ``spec.stable``)."""
        status = self._environment.rollout_status(self._rollout)
        return self._version_of(status.stable_rs, self.spec.stable)

    @property
    def canary_version(self) -> str:
        """The version of the template being rolled out (the stable one after undo)."""
        status = self._environment.rollout_status(self._rollout)
        return self._version_of(status.current_pod_hash, self.spec.canary)

    # -- changes -------------------------------------------------------------------------

    def _apply(self, phase: Phase) -> None:
        env = self._environment
        if not env.runs_argo_rollouts:
            raise BackendError(f"deploy('rollouts', ...): {env.argo_rollouts_missing()}")
        if phase is not Phase.CANARY or self.objects:
            raise CanaryConfigError(
                "a Rollout changes through its controller: use promote(), abort(), retry(), "
                "rollback()"
            )
        baseline = rollout_manifests.baseline(self.spec)
        env.apply(baseline)
        self.objects = baseline
        self._await("Healthy on the stable version", lambda s: s.phase == model.HEALTHY)
        objects = render(self.spec, Phase.CANARY)
        env.apply(objects)
        self.objects = objects
        self.phase = Phase.CANARY
        self._seen_pause = None
        self._await_settled()

    def set_weight(self, weight: int) -> None:
        """Not for Rollouts: the steps set the weight.

        Raises:
            CanaryConfigError: always, saying what to do instead.
        """
        raise CanaryConfigError(
            f"set_weight({weight!r}): an Argo Rollout sets weights in its steps; promote() "
            "moves to the next pause"
        )

    def reconfigure(self, **routing: Any) -> None:
        """Not for Rollouts: deploy a new release with other steps.

        Raises:
            CanaryConfigError: always.
        """
        raise CanaryConfigError(
            "reconfigure(): a Rollout's steps are fixed for this release; deploy another "
            "release (name=...) with other knobs"
        )

    def rollback(self, *, check_errors: bool = False) -> Verdict | None:
        __tracebackhide__ = True
        result = super().rollback(check_errors=check_errors)
        if self.status.completed:
            self.phase = Phase.ROLLED_BACK
        return result

    rollback.__doc__ = RolloutControls.rollback.__doc__

    def _changed(self) -> None:
        self._sync_phase()

    def _sync_phase(self) -> None:
        status = self.status
        if status.completed and status.current_pod_hash and self.canary_version == self.spec.canary:
            self.phase = Phase.PROMOTED
        elif status.completed:
            self.phase = Phase.ROLLED_BACK
        else:
            self.phase = Phase.CANARY

    # -- traffic -------------------------------------------------------------------------

    def _served_versions(self) -> tuple[str, ...]:
        status = self.status
        if status.completed:
            return (self.stable_version,)
        return (self.canary_version, self.stable_version)

    def _canary_and_stable(self) -> tuple[str, str] | None:
        return self.canary_version, self.stable_version

    def _label(self) -> str:
        return f"rollouts ({self.spec.traffic or 'basic canary'})"

    def __repr__(self) -> str:
        try:
            where = self.status.describe()
        except (BackendError, NotImplementedError):
            where = "not deployed"
        return f"<RolloutRelease {self.spec.name} {self.spec.stable}->{self.spec.canary} {where}>"


class AppliedRollout(RolloutControls, AppliedManifests):
    """Your own manifests with an Argo ``Rollout``, applied by ``canary.apply``: the
    expectations of :class:`~pytest_canary.harness.AppliedManifests` plus the Rollout's
    :attr:`status` and the kubectl plugin's commands.

    Apply the stable version first, then the manifests with the new template: the second
    ``canary.apply`` returns at the first pause, as on a cluster where the new manifest is
    applied over the running one.
    """

    def __init__(
        self, *args: Any, rollout: str, version_label: str = "version", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._rollout = rollout
        self._environment = self._harness.environment
        self._label_name = version_label
        self._seen_pause = None

    def _version_label(self) -> str:
        return self._label_name

    def _config(self) -> model.RolloutConfig | None:
        obj = next(
            (
                o
                for o in self.objects
                if o["kind"] == model.KIND and o["metadata"]["name"] == self._rollout
            ),
            None,
        )
        return model.read_rollout(obj) if obj is not None else None

    def _after_apply(self) -> None:
        """Wait, like ``deploy``, for the first pause, the end or an abort (the data plane
        was just awaited by ``canary.apply``); warn
        (:class:`~pytest_canary.byo.RetainedRoutingWarning`) when a canary Ingress still
        routes by an annotation the Rollout no longer sets."""
        self._await_settled(serve=False)
        for note in self._environment.rollout_notes(self._rollout):
            warnings.warn(RetainedRoutingWarning(f"Rollout {self._rollout}: {note}"), stacklevel=3)

    def _await_served(self) -> None:
        self._environment.await_manifests(
            self.objects,
            self.entry,
            path=self.path,
            version_label=self._label_name,
            version_from=self.version_from,
        )

    @property
    def canary_version(self) -> str | None:
        """The version of the template being rolled out."""
        status = self.status
        return self._version_of(status.current_pod_hash, "") or None

    @canary_version.setter
    def canary_version(self, value: str | None) -> None:
        pass  # AppliedManifests sets it from the files; the controller's status decides

    @property
    def stable_version(self) -> str:
        """The version of the stable ReplicaSet."""
        status = self.status
        return self._version_of(status.stable_rs, "")

    def _served_versions(self) -> tuple[str, ...]:
        status = self.status
        if status.completed:
            return (self.stable_version,)
        return tuple(v for v in (self.canary_version, self.stable_version) if v)

    def _canary_and_stable(self) -> tuple[str, str] | None:
        canary, stable = self.canary_version, self.stable_version
        if not canary or not stable or canary == stable:
            return None
        return canary, stable

    def _known_versions(self) -> tuple[str, ...]:
        known = dict.fromkeys(
            self._environment.rollout_versions(self._rollout, self._label_name).values()
        )
        return tuple(v for v in known if v) or self.versions

    def undo(self) -> RolloutStatus:
        """``kubectl argo rollouts undo``: the previous revision's template."""
        return self._undo()


__all__ = ["AppliedRollout", "RolloutControls", "RolloutMoved", "RolloutRelease", "RolloutStatus"]
