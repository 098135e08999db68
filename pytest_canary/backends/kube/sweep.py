"""Sweep: what runs killed before their teardown left on a cluster is deleted at setup.

A test namespace (and a kind cluster-user record) names the process that created it and holds
a lease (:mod:`pytest_canary.backends.kube.namespace`). The liveness rule, in order:

1. a namespace kept with ``--canary-keep`` (label ``pytest-canary/kept=true``), one of this
   run, or one that names no owner, is never swept;
2. owner whose pids this process sees (same host name, boot id and pid namespace:
   :meth:`~pytest_canary.backends.owner.Owner.same_pid_space`): gone when its pid no longer
   runs, or runs as another process (pid start time differs) -- exact on Linux (``/proc``);
   where the start time is unknown (macOS) a running pid counts as the owner unless its lease
   ran out;
3. any other owner -- another machine, or one that shares the host name but not the pids (a
   container with ``--network=host``, another boot, a record that does not say): gone when
   its lease ran out more than :data:`CLOCK_SKEW` seconds ago. A live run renews the lease
   of each namespace it has open every :data:`RENEW_EVERY` seconds (:class:`LeaseRenewer`);
   the lease holds :data:`LEASE_SECONDS`. The renewal time is the owner's clock: machines
   sharing a cluster must agree on the time within :data:`CLOCK_SKEW`.

A swept namespace loses its routing objects first (synchronously: the ingress-nginx
admission webhook rejects a new Ingress for a host and path another Ingress of *any*
namespace defines, controller.go ``checkOverlap``, and leftover VirtualServices for one host
merge at the shared gateway), then the namespace itself.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from pytest_canary.backends.kube.api import KubeApi, api_error_message, status_of
from pytest_canary.backends.kube.namespace import (
    KEPT_LABEL,
    MANAGED_BY,
    RUN_LABEL,
    lease_expires,
    owner_of,
)
from pytest_canary.errors import BackendError

LEASE_SECONDS = 600.0
"""How long a lease holds after its renewal."""
RENEW_EVERY = 60.0
"""How often a live run renews the leases of its open namespaces."""
CLOCK_SKEW = 60.0
"""Clock difference tolerated between machines sharing a cluster."""

ROUTING_KINDS = (
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.istio.io/v1", "VirtualService"),
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("networking.istio.io/v1", "Gateway"),
    ("gateway.networking.k8s.io/v1", "Gateway"),
)
"""Kinds that claim hosts on shared data planes, deleted before a swept namespace."""

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default progress sink: drop the line."""


def owner_gone(obj: Mapping[str, Any], *, run_id: str, now: float) -> str | None:
    """Why the run that made ``obj`` is gone (None while it may be alive): the liveness rule
    of this module's docstring."""
    meta = obj.get("metadata") or {}
    labels = meta.get("labels") or {}
    if labels.get(KEPT_LABEL) == "true" or labels.get(RUN_LABEL) == run_id:
        return None
    owner = owner_of(obj)
    if owner is None:
        return None
    here = owner.running_here()
    expires = lease_expires(obj)
    expired = expires is not None and now > expires + CLOCK_SKEW
    if here is False:
        return f"its run's process ({owner.describe()}) is gone"
    if here is True:
        if owner.pid_start or not expired:
            return None
        return f"its lease ran out and pid {owner.pid} is not its run's process any more"
    if expired:
        assert expires is not None
        return (
            f"its run ({owner.describe()}) stopped renewing its lease "
            f"{now - expires:.0f}s past its end"
        )
    return None


def sweep_namespaces(
    api: KubeApi,
    *,
    run_id: str,
    progress: Progress = _quiet,
    now: Callable[[], float] = time.time,
) -> list[str]:
    """Delete the namespaces of runs that are gone (routing objects first); returns their
    names.

    Raises:
        BackendError: when namespaces cannot be listed (the message says which permission).
    """
    selector = ",".join(f"{k}={v}" for k, v in MANAGED_BY.items())
    try:
        namespaces = api.list("v1", "Namespace", label_selector=selector)
    except Exception as exc:
        raise BackendError(
            f"cannot list namespaces to sweep what killed runs left "
            f"({api_error_message(exc)}): grant list on namespaces, or delete them yourself: "
            "kubectl delete namespace -l app.kubernetes.io/managed-by=pytest-canary,"
            "pytest-canary/kept!=true"
        ) from exc
    swept: list[str] = []
    for namespace in namespaces:
        meta = namespace.get("metadata") or {}
        name = str(meta.get("name", ""))
        if meta.get("deletionTimestamp"):
            continue  # already going
        reason = owner_gone(namespace, run_id=run_id, now=now())
        if reason is None:
            continue
        run = (meta.get("labels") or {}).get(RUN_LABEL)
        progress(f"deleting namespace {name} left by run {run}: {reason}")
        delete_routing(api, name)
        try:
            api.delete("v1", "Namespace", name)
        except Exception as exc:
            if status_of(exc) != 404:
                raise BackendError(f"deleting namespace {name}: {api_error_message(exc)}") from exc
        swept.append(name)
    return swept


def delete_routing(api: KubeApi, namespace: str) -> None:
    """Delete the routing objects of a namespace (kinds the cluster does not serve skipped)."""
    for api_version, kind in ROUTING_KINDS:
        try:
            objects = api.list(api_version, kind, namespace=namespace)
        except BackendError:
            continue  # not served here (no such CRDs)
        except Exception as exc:
            if status_of(exc) == 404:
                continue
            raise
        for obj in objects:
            try:
                api.delete(api_version, kind, str(obj["metadata"]["name"]), namespace)
            except Exception as exc:
                if status_of(exc) != 404:
                    raise


class LeaseRenewer:
    """Renews the leases of a run's open namespaces in a background thread.

    Errors are kept and re-raised in the test thread by :meth:`check` once the renewal has
    failed for longer than the lease holds (before that, a later renewal repairs it).

    Args:
        renew: renews every open lease (called every ``every`` seconds).
        every: seconds between renewals.
        lease: seconds a lease holds.
        clock: time source.
    """

    def __init__(
        self,
        renew: Callable[[], None],
        *,
        every: float = RENEW_EVERY,
        lease: float = LEASE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.renew = renew
        self.every = every
        self.lease = lease
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start renewing (idempotent)."""
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="canary-lease", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.renew()
            except Exception as exc:  # kept for the test thread (check)
                with self._lock:
                    self._error = exc
                    if self._failing_since is None:
                        self._failing_since = self.clock()
            else:
                with self._lock:
                    self._error, self._failing_since = None, None

    def check(self) -> None:
        """Raise, in the calling thread, a renewal error that outlived a lease.

        Raises:
            BackendError: naming the error: another machine may now sweep this run's
                namespaces.
        """
        with self._lock:
            error, since = self._error, self._failing_since
        if error is not None and since is not None and self.clock() - since > self.lease:
            raise BackendError(
                f"renewing the namespace leases of this run failed for {self.clock() - since:.0f}s "
                f"(lease {self.lease:.0f}s): {error}; another machine's run may sweep them"
            ) from error

    def stop(self) -> None:
        """Stop renewing (idempotent)."""
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout=10)
