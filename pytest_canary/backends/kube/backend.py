"""The ``kube`` backend: releases on an existing cluster, one namespace per test.

At setup, before anything is applied: the context guard, the server's Kubernetes version
checked against the window of the pinned data planes (:mod:`pytest_canary.backends.versions`),
and the sweep of namespaces that killed runs left (:mod:`~.sweep`). During the session: the
environments (:class:`~.environment.KubeEnvironment`), the leases of their namespaces renewed
in the background, host locks, entry points and the data-plane signals they share.

Usable without pytest:

Example:
    >>> options = KubeOptions(context="kind-dev", context_explicit=True,
    ...                       entry_urls={"nginx": "http://127.0.0.1:8080"})  # doctest: +SKIP
    >>> backend = KubeBackend.from_kubeconfig(options, run_id="manual")       # doctest: +SKIP
    >>> with Harness(backend.environment("smoke")) as canary:                # doctest: +SKIP
    ...     canary.deploy("nginx", stable="1.0", canary="2.0", weight=20).expect_split(0.2)
"""

from __future__ import annotations

import hashlib
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_canary.backends import addons, versions, waits
from pytest_canary.backends.base import Backend
from pytest_canary.backends.kube.api import KubeApi, api_error_message
from pytest_canary.backends.kube.entry import EntryPoints, NodeAddress
from pytest_canary.backends.kube.environment import KubeEnvironment
from pytest_canary.backends.kube.hosts import HostLocks
from pytest_canary.backends.kube.options import KubeOptions, check_context, parse_gateway
from pytest_canary.backends.kube.signals import DEFAULT_CONTROLLER_CLASS, ConfigSignals
from pytest_canary.backends.kube.sweep import LEASE_SECONDS, LeaseRenewer, sweep_namespaces
from pytest_canary.backends.owner import Owner
from pytest_canary.errors import BackendError, CanaryConfigError

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default progress sink: drop the line."""


def check_kubernetes_version(
    api: KubeApi,
    names: Sequence[str],
    *,
    where: str,
    allow_any: bool,
    progress: Progress = _quiet,
    found: Mapping[str, str] | None = None,
) -> str:
    """Read the server's ``/version`` and refuse one outside the windows of the add-ons
    ``names`` (unless ``allow_any``); returns the version as the server wrote it. ``found``
    says, per add-on, what showed that the cluster runs it (for the message).

    Raises:
        BackendError: outside a window (naming the version, the window and the add-ons), or
            when the version cannot be read.
    """
    try:
        info = api.server_version()
    except Exception as exc:
        if isinstance(exc, BackendError):
            raise
        raise BackendError(
            f"cannot read the Kubernetes version of {where} ({api.server}/version): "
            f"{api_error_message(exc)}"
        ) from exc
    minor, text = versions.server_minor(info)
    pins = addons.load_pins()
    windows = [w for name in names if (w := pins[name].kubernetes) is not None]
    if found:
        where += "; it runs " + ", ".join(f"{name} ({why})" for name, why in found.items())
    try:
        versions.check(minor, text, windows, where=where)
    except BackendError as exc:
        if not allow_any:
            raise
        progress(f"{exc} -- going on: {versions.OPT_OUT} was given")
    return text


def cluster_key(server: str) -> str:
    """A directory name for one cluster, from its API server URL (two contexts of one cluster
    share it): ``203.0.113.7-6443-<hash>``."""
    readable = re.sub(r"[^A-Za-z0-9.]+", "-", server.split("://", 1)[-1]).strip("-")[:40]
    return f"{readable}-{hashlib.sha256(server.encode()).hexdigest()[:12]}"


SERVED_DATAPLANES = (
    ("istio", "networking.istio.io/v1", "networking.istio.io/v1 served"),
    ("gateway-api", "gateway.networking.k8s.io/v1", "gateway.networking.k8s.io/v1 served"),
    ("argo-rollouts", "argoproj.io/v1alpha1", "argoproj.io/v1alpha1 served"),
)
"""Add-ons a cluster runs when it serves their API (CRDs installed)."""


def dataplanes_in(
    api: KubeApi, *, ingress_class: str | None = None, progress: Progress = _quiet
) -> dict[str, str]:
    """The pinned data planes this cluster runs, each with what showed it: ingress-nginx by an
    IngressClass whose ``spec.controller`` is ingress-nginx's default ``k8s.io/ingress-nginx``
    (or the class ``--canary-ingress-class`` names), Istio, Gateway API and Argo Rollouts by
    their served API groups. What cannot be told (no permission) is said in a progress line
    and left out: only the windows of data planes the cluster has are checked."""
    found: dict[str, str] = {}
    try:
        classes = api.list("networking.k8s.io/v1", "IngressClass")
    except Exception as exc:
        if waits.is_transient(exc):
            raise
        progress(
            f"cannot list IngressClasses ({api_error_message(exc)}): the Kubernetes window of "
            "ingress-nginx is not checked"
        )
        classes = []
    for ingress_class_object in classes:
        name = str((ingress_class_object.get("metadata") or {}).get("name", ""))
        controller = str((ingress_class_object.get("spec") or {}).get("controller", ""))
        if controller == DEFAULT_CONTROLLER_CLASS or (ingress_class and name == ingress_class):
            found["ingress-nginx"] = f"IngressClass {name}, controller {controller}"
            break
    for name, api_version, why in SERVED_DATAPLANES:
        try:
            served = api.serves(api_version)
        except Exception as exc:
            if waits.is_transient(exc):
                raise
            progress(
                f"cannot tell whether the cluster serves {api_version} "
                f"({api_error_message(exc)}): the Kubernetes window of {name} is not checked"
            )
            continue
        if served:
            found[name] = why
    return {name: found[name] for name in addons.ALL_ADDONS if name in found}


class KubeBackend(Backend):
    """Releases on an existing cluster: one namespace per test.

    Args:
        api: the cluster's API.
        options: how to use it.
        entry_points: where traffic enters (from options, or from the kind cluster).
        run_id: labels every namespace of this run (``pytest-canary/run``).
        context: the kubeconfig context, for the header line.
        progress: receives progress lines of long steps.
        lock_dir: where :class:`HostLocks` keeps its lock files (None: no host locking);
            :meth:`from_kubeconfig` takes it as the root of one directory per cluster.
        platform: ``sys.platform`` (the Docker Desktop hint depends on it).
    """

    name = "kube"

    def __init__(
        self,
        api: KubeApi,
        options: KubeOptions,
        entry_points: EntryPoints,
        *,
        run_id: str,
        context: str = "",
        progress: Progress = _quiet,
        lock_dir: Path | None = None,
        platform: str = sys.platform,
    ) -> None:
        self.api = api
        self.options = options
        self.entry_points = entry_points
        self.run_id = run_id
        self.context = context
        self.progress = progress
        self.kept: list[str] = []
        self.owner = Owner.this_process()
        self.lease_seconds = LEASE_SECONDS
        self.signals = ConfigSignals(api)
        self.leases = LeaseRenewer(self._renew_leases, lease=self.lease_seconds)
        self.node_address = NodeAddress(api, entry_points, context=context, platform=platform)
        self._open: dict[str, KubeEnvironment] = {}
        self._lock = threading.Lock()
        self._gateway_selector: dict[str, str] | None = None
        self.host_locks = HostLocks(lock_dir, progress=progress)
        self._closed = False

    @property
    def unavailable_signals(self) -> dict[str, str]:
        """Data-plane signals this client cannot read, and why."""
        return self.signals.unavailable

    @classmethod
    def from_kubeconfig(
        cls,
        options: KubeOptions,
        *,
        run_id: str,
        progress: Progress = _quiet,
        lock_dir: Path | None = None,
    ) -> KubeBackend:
        """Connect to the cluster ``options`` name, refusing non-test contexts unless named,
        and servers outside the Kubernetes window of the pinned data planes; then sweep what
        killed runs left.

        Raises:
            CanaryConfigError: for a context that needs ``--kube-context``.
            BackendError: when the kubeconfig or context cannot be used, or the version is
                outside the window.
        """
        from kubernetes import config

        try:
            contexts, current = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                config_file=options.kubeconfig
            )
        except Exception as exc:
            raise BackendError(
                f"cannot read kubeconfig "
                f"{options.kubeconfig or '$KUBECONFIG or ~/.kube/config'}: {exc}"
            ) from exc
        names = [c["name"] for c in contexts or []]
        context = options.context or (current or {}).get("name")
        if not context or context not in names:
            raise CanaryConfigError(
                f"kube context {context!r} is not in the kubeconfig "
                f"(contexts: {', '.join(names) or 'none'})"
            )
        check_context(context, explicit=options.context_explicit)
        api = KubeApi.from_kubeconfig(options.kubeconfig, context)
        try:
            # Only the windows of the data planes this cluster runs: a cluster without Istio
            # is not refused for Istio's.
            found = dataplanes_in(api, ingress_class=options.ingress_class, progress=progress)
            check_kubernetes_version(
                api,
                list(found),
                where=f"context {context}",
                allow_any=options.any_kubernetes_version,
                progress=progress,
                found=found,
            )
        except BaseException:
            api.close()
            raise
        entry_points = EntryPoints(urls=dict(options.entry_urls), node_address=options.node_address)
        backend = cls(
            api,
            options,
            entry_points,
            run_id=run_id,
            context=context,
            progress=progress,
            # Hosts are taken in turns per cluster: runs against other clusters never wait.
            lock_dir=None if lock_dir is None else lock_dir / cluster_key(api.server),
        )
        backend.sweep()
        return backend

    def sweep(self) -> list[str]:
        """Delete the namespaces of runs that are gone (see :mod:`~.sweep`); a cluster that
        does not let this client list namespaces is noted and left alone."""
        try:
            return sweep_namespaces(self.api, run_id=self.run_id, progress=self.progress)
        except BackendError as exc:
            self.progress(f"not swept: {exc}")
            return []

    def describe(self) -> str:
        urls = ", ".join(f"{k}={v}" for k, v in self.entry_points.urls.items()) or "no entry URLs"
        return f"kube (context {self.context or '?'}, {self.api.server}; entries: {urls})"

    def environment(self, test_name: str) -> KubeEnvironment:
        if self._closed:
            raise BackendError("the kube backend is closed")
        return KubeEnvironment(self, test_name)

    # -- hooks for environments ---------------------------------------------------------------

    def opened(self, env: KubeEnvironment) -> None:
        """An environment created its namespace (closed at the latest with the backend); its
        lease is renewed from now on."""
        with self._lock:
            self._open[env.namespace] = env
        self.leases.start()

    def closed(self, env: KubeEnvironment) -> None:
        """An environment was closed."""
        with self._lock:
            self._open.pop(env.namespace, None)

    def _renew_leases(self) -> None:
        with self._lock:
            open_now = list(self._open.values())
        for env in open_now:
            env.renew_lease()

    def prepare(self, objects: Sequence[Mapping[str, Any]]) -> None:
        """Called before objects are applied (the kind backend loads their images here)."""

    def gateway_selector(self) -> dict[str, str] | None:
        """Pod selector of the ``--canary-gateway`` Service (None when not configured)."""
        if not self.options.gateway:
            return None
        if self._gateway_selector is None:
            namespace, name = parse_gateway(self.options.gateway)
            service = self.api.get("v1", "Service", name, namespace)
            if service is None:
                raise BackendError(
                    f"gateway Service {namespace}/{name} (--canary-gateway) does not exist: "
                    "is Istio's ingress gateway installed there?"
                )
            self._gateway_selector = waits.service_selector(service)
        return self._gateway_selector

    def hold_hosts(self, hosts: Iterable[str], owner: str) -> list[Any]:
        """Inter-process locks on virtual hosts (see :class:`HostLocks`)."""
        return self.host_locks.hold(hosts, owner)

    def node_endpoint(self, node_port: int) -> tuple[str, int]:
        """(host, port) that reaches ``node_port`` from this machine."""
        return self.node_address.endpoint(node_port)

    def ensure_argo_rollouts(self) -> None:
        """Nothing is installed on your cluster: a test that needs Argo Rollouts finds the
        controller there or is told how to install it (the kind backend installs it)."""

    # -- cleanup -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close environments a test left open (interrupted runs), then the client."""
        if self._closed:
            return
        self._closed = True
        self.leases.stop()
        errors: list[BaseException] = []
        for env in list(self._open.values()):
            try:
                env.close()
            except BaseException as exc:  # close everything, raise the first
                errors.append(exc)
        self.api.close()
        if errors:
            raise errors[0]
