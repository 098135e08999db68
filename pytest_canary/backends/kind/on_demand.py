"""Add-ons installed when a test first needs them (:attr:`~pytest_canary.backends.addons.
Addon.on_demand`): Argo Rollouts is heavy enough (five CRDs, a controller pod) to be
installed only for the tests that use it, or at setup when ``--canary-addons`` names it.

Once per cluster: under a file lock next to the cluster's setup lock (one place per user,
as cluster names are shared by everything on the Docker engine), so that xdist workers and
concurrent sessions install it once (the others find it at the pinned version and only wait
for its readiness); the cluster's Kubernetes version is checked against the add-on's window
first, as at setup.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pytest_canary.backends import addons
from pytest_canary.backends.kind.cluster import ClusterHandle, cluster_api, cluster_lock
from pytest_canary.backends.kind.config import GATEWAY_NODE_PORT
from pytest_canary.backends.kind.options import KindOptions
from pytest_canary.backends.kube.backend import check_kubernetes_version
from pytest_canary.locks import file_lock

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default progress sink: drop the line."""


def install_on_demand(
    handle: ClusterHandle, options: KindOptions, name: str, *, progress: Progress = _quiet
) -> None:
    """Install add-on ``name`` on the kind cluster of ``handle`` and wait until it is ready
    (kept as it is when already at the pinned version).

    Raises:
        LockTimeout: another session holds the lock past ``--canary-setup-timeout``.
        BackendError: the cluster's Kubernetes version is outside the add-on's window
            (unless ``--canary-any-kubernetes-version``), or the install failed (with its
            evidence).
    """
    lock = cluster_lock(handle.name)
    with file_lock(
        lock.with_name(f"{lock.stem}-addon-{name}.lock"),
        timeout=options.setup_timeout,
        what=f"the install of {name} on kind cluster {handle.name}",
        progress=progress,
    ):
        api = cluster_api(handle)
        try:
            check_kubernetes_version(
                api,
                [name],
                where=f"kind cluster {handle.name}",
                allow_any=options.kube.any_kubernetes_version,
                progress=progress,
            )
        finally:
            api.close()
        progress(f"{name}: a test needs it on kind cluster {handle.name}")
        installer = addons.AddonInstaller(
            handle.kubectl,
            Path(handle.kubeconfig),
            addons.Downloads(
                Path(handle.cache_dir), overrides=options.addon_files, progress=progress
            ),
            timeout=options.setup_timeout,
            progress=progress,
        )
        installer.install([name], addons.load_pins(), gateway_node_port=GATEWAY_NODE_PORT)
