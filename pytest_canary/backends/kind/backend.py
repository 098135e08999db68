"""The ``kind`` backend: the ``kube`` backend on a kind cluster it created or reuses.

Traffic enters through the host ports kind maps on 127.0.0.1: ingress-nginx on the mapped port
80, the Istio gateway on its mapped nodePort, Service entries on the mapped nodePort pool --
the same on Linux and on Docker Desktop. Images built here are loaded on first use
(:mod:`~.images`). At the end the process that set the cluster up deletes it if it created it,
unless ``--canary-keep-cluster`` or another live run uses it.

Example:
    >>> options = KindOptions(keep_cluster="always")                      # doctest: +SKIP
    >>> backend = KindBackend.setup(options, run_id="manual", progress=print)  # doctest: +SKIP
    >>> with Harness(backend.environment("smoke")) as canary:           # doctest: +SKIP
    ...     canary.deploy("nginx", stable="1.0", canary="2.0", weight=20).expect_split(0.2)
    >>> backend.close()                                                  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_canary.backends import addons
from pytest_canary.backends.kind.cluster import (
    ClusterHandle,
    ClusterUsers,
    cluster_api,
    delete_cluster,
    setup_cluster,
)
from pytest_canary.backends.kind.config import NODE_PORT_POOL
from pytest_canary.backends.kind.images import ImageLoader, workload_images
from pytest_canary.backends.kind.on_demand import install_on_demand
from pytest_canary.backends.kind.options import KindOptions, default_cache_dir
from pytest_canary.backends.kube.backend import KubeBackend
from pytest_canary.backends.kube.entry import EntryPoints
from pytest_canary.backends.kube.namespace import KEPT_LABEL, RUN_LABEL
from pytest_canary.backends.kube.options import KubeOptions
from pytest_canary.errors import BackendError

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default progress sink: drop the line."""


class KindBackend(KubeBackend):
    """The kube backend on a kind cluster it created or reuses.

    Args:
        handle: the ready cluster.
        options: the kind options (``options.kube`` for environments).
        run_id: labels every namespace of this run.
        owns_cluster: this process set the cluster up and deletes it at :meth:`close` if it
            created it (False in xdist workers: the controller owns it).
        progress: receives progress lines.
    """

    name = "kind"

    def __init__(
        self,
        handle: ClusterHandle,
        options: KindOptions,
        *,
        run_id: str,
        owns_cluster: bool,
        progress: Progress = _quiet,
    ) -> None:
        self.handle = handle
        self.kind_options = options
        self.owns_cluster = owns_cluster
        kube_options = options.kube
        if "istio" in handle.addons and kube_options.gateway is None:
            kube_options = dataclasses.replace(kube_options, gateway=addons.ISTIO_GATEWAY)
        gateway_url = f"http://127.0.0.1:{handle.ports.gateway}"
        points = EntryPoints(
            urls={
                "nginx": f"http://127.0.0.1:{handle.ports.http}",
                "istio": gateway_url,
                "gateway": gateway_url,
            },
            node_address="127.0.0.1",
            node_port_map=dict(handle.ports.node_ports),
            node_port_pool=NODE_PORT_POOL,
        )
        super().__init__(
            cluster_api(handle),
            kube_options,
            points,
            run_id=run_id,
            context=handle.context,
            progress=progress,
            lock_dir=Path(handle.cache_dir) / "locks" / handle.name,
        )
        self.images = ImageLoader(handle, progress=progress)
        self.users = ClusterUsers(self.api, run_id, self.owner) if owns_cluster else None
        self._on_demand_lock = threading.Lock()
        self._on_demand_ready: set[str] = set(handle.addons)  # installed at setup

    @classmethod
    def setup(
        cls, options: KindOptions, *, run_id: str, progress: Progress = _quiet
    ) -> KindBackend:
        """Create or reuse the cluster, check it, install add-ons, and return the owning
        backend."""
        handle = setup_cluster(options, run_id=run_id, progress=progress)
        backend = cls(handle, options, run_id=run_id, owns_cluster=True, progress=progress)
        backend.leases.start()  # the cluster-user record is renewed with the namespaces
        progress(f"ready: {backend.describe()}")
        return backend

    @classmethod
    def attach(
        cls,
        handle: Mapping[str, Any],
        options: KindOptions,
        *,
        run_id: str,
        progress: Progress = _quiet,
    ) -> KindBackend:
        """A backend on a cluster another process set up (an xdist worker)."""
        return cls(
            ClusterHandle.from_dict(handle),
            options,
            run_id=run_id,
            owns_cluster=False,
            progress=progress,
        )

    def describe(self) -> str:
        ports = self.handle.ports
        state = "created by this run" if self.handle.created else "reused"
        kept = (
            ", kept"
            if self.kind_options.keep_cluster == "always" or not self.handle.created
            else ""
        )
        return (
            f"kind cluster {self.handle.name} ({state}{kept}; add-ons "
            f"{', '.join(self.handle.addons) or 'none'}; ingress-nginx 127.0.0.1:{ports.http}, "
            f"Istio gateway 127.0.0.1:{ports.gateway})"
        )

    def _renew_leases(self) -> None:
        super()._renew_leases()
        if self.users is not None:
            self.users.register()

    def prepare(self, objects: Sequence[Mapping[str, Any]]) -> None:
        for image in workload_images(objects):
            self.images.ensure(image)

    def ensure_argo_rollouts(self) -> None:
        """Install the pinned Argo Rollouts add-on the first time a test needs it
        (:func:`~pytest_canary.backends.kind.on_demand.install_on_demand`)."""
        with self._on_demand_lock:
            if "argo-rollouts" in self._on_demand_ready:
                return
            install_on_demand(
                self.handle, self.kind_options, "argo-rollouts", progress=self.progress
            )
            self._on_demand_ready.add("argo-rollouts")

    def handoff(self) -> dict[str, Any]:
        """The cluster as plain data for xdist workers (:meth:`attach`)."""
        return self.handle.as_dict()

    def close(self) -> None:
        """Close environments; then, in the process that set the cluster up, withdraw this
        run's user record and delete the cluster if this run created it -- unless kept, or
        another live run uses it, or namespaces of this run were kept (``--canary-keep``:
        they live in the cluster, so it stays, and a progress line says how to delete it)."""
        users, owns = self.users, self.owns_cluster
        self.users, self.owns_cluster = None, False
        try:
            self.leases.stop()  # no renewal may write the record back
            if users is not None:
                users.unregister()
            super().close()
        finally:
            if owns and self.kind_options.keep_cluster != "always":
                kept = self.kept or self._kept_by_this_run()
                if kept:
                    self.progress(
                        f"kind cluster {self.handle.name} is kept: it holds the namespaces "
                        f"--canary-keep kept ({', '.join(kept[:5])}"
                        f"{', ...' if len(kept) > 5 else ''}); delete it when done: "
                        f"kind delete cluster --name {self.handle.name}"
                    )
                else:
                    delete_cluster(self.handle, run_id=self.run_id, progress=self.progress)

    def _kept_by_this_run(self) -> list[str]:
        """Namespaces of this run marked kept in the cluster (xdist workers kept them: the
        controller's own list does not know them). Empty when the API does not answer."""
        selector = f"{RUN_LABEL}={self.run_id},{KEPT_LABEL}=true"
        try:
            api = cluster_api(self.handle)
        except BackendError:
            return []
        try:
            return [
                str(ns["metadata"]["name"])
                for ns in api.list("v1", "Namespace", label_selector=selector)
            ]
        except Exception:
            return []
        finally:
            api.close()


def make_cluster_backend(
    options: KubeOptions | KindOptions,
    *,
    run_id: str,
    handoff: Mapping[str, Any] | None = None,
    progress: Progress = _quiet,
) -> KubeBackend:
    """The session's backend: ``kube`` on the kubeconfig, or ``kind`` set up here, or (in an
    xdist worker, ``handoff`` given) attached to the controller's kind cluster."""
    if isinstance(options, KubeOptions):
        lock_dir = default_cache_dir() / "locks" / "kube"
        return KubeBackend.from_kubeconfig(
            options, run_id=run_id, progress=progress, lock_dir=lock_dir
        )
    if handoff is not None:
        return KindBackend.attach(handoff, options, run_id=run_id, progress=progress)
    return KindBackend.setup(options, run_id=run_id, progress=progress)
