"""What every backend offers the harness: isolated environments that realise manifests."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import TracebackType

from pytest_canary.apps import VersionReader
from pytest_canary.dataplane.argo_rollouts import RolloutStatus
from pytest_canary.manifests import Manifest
from pytest_canary.spec import ReleaseSpec
from pytest_canary.traffic import Entry

__all__ = ["Backend", "Diagnostics", "Entry", "Environment"]


@dataclass
class Diagnostics:
    """What a backend can tell about an environment when a test fails: name -> text."""

    sections: dict[str, str] = field(default_factory=dict)

    def add(self, name: str, text: str) -> None:
        """Add one section (empty texts are skipped)."""
        if text.strip():
            self.sections[name] = text

    def render(self) -> str:
        """All sections, each under its name."""
        return "\n\n".join(
            f"--- {name} ---\n{text.rstrip()}" for name, text in self.sections.items()
        )


class Environment(abc.ABC):
    """One test's isolated place on a backend (a namespace), owned by exactly one test."""

    namespace: str

    @abc.abstractmethod
    def apply(self, objects: Sequence[Manifest]) -> None:
        """Make ``objects`` the desired state: create or update each, delete the ones we applied
        before that are no longer listed, and return once the workloads are ready."""

    @abc.abstractmethod
    def entry(self, spec: ReleaseSpec) -> Entry:
        """Where the release's traffic enters."""

    def relay_entry(self, spec: ReleaseSpec, source: str) -> Entry:
        """Traffic entering through the frontend pods of version ``source``, which call the
        release from inside the mesh (Istio ``sourceLabels`` scenarios)."""
        raise NotImplementedError(f"{type(self).__name__} cannot send traffic through a frontend")

    # -- manifests written by the user (``canary.apply``) ------------------------------------

    # Kinds this environment can realise from user manifests; None: any kind, applied as it
    # is (a real cluster). The local backend stands in for workloads and models routing only.
    # ``Harness.apply`` calls, in order: entry_for_objects, apply_manifests, await_manifests.
    understood_kinds: frozenset[str] | None = None

    @property
    def stands_in_for_workloads(self) -> bool:
        """Whether the workloads of user manifests are stood in for by the sample app (which
        answers with ``X-App-Version``, whatever image the manifests name) rather than run as
        they are. True exactly when :attr:`understood_kinds` limits the kinds."""
        return self.understood_kinds is not None

    def apply_manifests(self, objects: Sequence[Manifest], *, version_label: str) -> None:
        """Apply objects written outside pytest-canary (already in this namespace). A backend
        that stands in for workloads runs, for each one, an app answering with its pods'
        ``version_label``; a cluster applies them as they are, replacing the set applied
        before in this test (objects no longer listed are deleted)."""
        self.apply(objects)

    def entry_for_objects(self, objects: Sequence[Manifest], host: str | None) -> Entry:
        """Where traffic enters a set of user manifests: the data plane their routing objects
        configure (Ingress, Istio Gateway, Gateway API Gateway) or a Service, with ``host``.
        Called before :meth:`apply_manifests`, so that a backend that cannot serve the
        objects says so before anything is applied."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot yet send traffic to manifests applied with "
            "canary.apply(); use the local backend"
        )

    def await_manifests(
        self,
        objects: Sequence[Manifest],
        entry: Entry,
        *,
        path: str,
        version_label: str,
        version_from: VersionReader,
    ) -> None:
        """Return once traffic through ``entry`` to ``path`` is answered only by the
        workloads of ``objects`` (versions read from each response with ``version_from``,
        allowed ones from the pods' ``version_label``) and no request fails. No-op where
        applying is synchronous (the local backend)."""

    def ready_pods(self, spec: ReleaseSpec) -> dict[str, int]:
        """Ready pods of the release (label ``app: spec.name``) per ``version`` label."""
        raise NotImplementedError(f"{type(self).__name__} cannot count pods")

    # -- Argo Rollouts (the strategy ``rollouts`` and Rollouts in ``canary.apply``) --------

    @property
    def runs_argo_rollouts(self) -> bool:
        """Whether this environment runs the Argo Rollouts controller (the ``rollout_*``
        methods)."""
        return False

    def argo_rollouts_missing(self) -> str:
        """Why :attr:`runs_argo_rollouts` is False and how to get the controller, for skips
        and errors ("" when it runs)."""
        if self.runs_argo_rollouts:
            return ""
        return (
            f"the {type(self).__name__} does not run Argo Rollouts; the local backend models "
            "the controller (--canary-backend=local), kind installs it "
            "(--canary-backend=kind)"
        )

    @property
    def rollout_settle_timeout(self) -> float:
        """Seconds a Rollout wait gives the controller to act, besides what is left of a
        timed pause."""
        return 60.0

    def rollout_status(self, name: str) -> RolloutStatus:
        """The status the controller last wrote for Rollout ``name``."""
        raise NotImplementedError(f"{type(self).__name__} does not run Argo Rollouts yet")

    def rollout_command(self, name: str, action: str) -> None:
        """What ``kubectl argo rollouts <action> <name>`` does: ``promote``,
        ``promote-full``, ``abort``, ``retry`` or ``undo``."""
        raise NotImplementedError(f"{type(self).__name__} does not run Argo Rollouts yet")

    def await_rollout(
        self,
        name: str,
        until: Callable[[RolloutStatus], bool],
        *,
        what: str,
        timeout: float,
    ) -> RolloutStatus:
        """Return Rollout ``name``'s status once every change made so far was seen by the
        controller and ``until(status)`` holds.

        Raises:
            ConvergenceTimeout: after ``timeout`` seconds, naming ``what`` and the last status.
        """
        raise NotImplementedError(f"{type(self).__name__} does not run Argo Rollouts yet")

    def rollout_versions(self, name: str, version_label: str = "version") -> dict[str, str]:
        """Pod template hash -> the ``version_label`` of that ReplicaSet's pods."""
        raise NotImplementedError(f"{type(self).__name__} does not run Argo Rollouts yet")

    def hold_rollout_timers(self) -> AbstractContextManager[None]:
        """While the block runs, no Rollout timer (timed pause, scale-down delay) runs out,
        where the backend can hold time (the local model); a cluster's clock runs on, so a
        pause may end mid-expectation there (``RolloutMoved``)."""
        return contextlib.nullcontext()

    def rollout_events(self, name: str) -> list[str]:
        """What the controller recorded for Rollout ``name`` (for reports)."""
        return []

    def rollout_notes(self, name: str) -> list[str]:
        """What the routing objects of Rollout ``name`` route by although the Rollout does
        not ask for it (:func:`pytest_canary.dataplane.argo_rollouts.retained_annotation_notes`)."""
        return []

    def await_dataplane(self, spec: ReleaseSpec, objects: Sequence[Manifest]) -> None:
        """Return once the data plane serves the configuration of ``objects`` (no-op where
        applying is synchronous)."""

    def check_health(self) -> None:
        """Re-raise, in the test thread, an error a background thread of the backend met."""

    def diagnostics(self) -> Diagnostics:
        """Evidence for a failure report: objects, pods, logs, data-plane decisions."""
        return Diagnostics()

    @abc.abstractmethod
    def close(self) -> None:
        """Stop and delete everything this environment started. Idempotent."""

    def __enter__(self) -> Environment:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Backend(abc.ABC):
    """A place releases run: the local model, an existing cluster, or a kind cluster."""

    name: str

    @abc.abstractmethod
    def describe(self) -> str:
        """One line for the pytest header: the backend and what it models or targets."""

    @abc.abstractmethod
    def environment(self, test_name: str) -> Environment:
        """A fresh, isolated environment for one test."""

    def close(self) -> None:
        """Release session-wide resources (idempotent)."""
