"""The ``kind`` backend: the ``kube`` backend plus the cluster's life.

The modules follow the cluster's life: ``options`` (what to create or reuse) -> ``tools``
(kind and kubectl, their versions) -> ``config`` (the cluster config and host ports) ->
``cluster`` (create or reuse, check, share, delete) -> ``images`` (load what was built here)
-> ``backend`` (the session's backend). The add-ons it installs are
:mod:`pytest_canary.backends.addons`.
"""

from pytest_canary.backends.kind.backend import KindBackend, make_cluster_backend
from pytest_canary.backends.kind.cluster import ClusterHandle, delete_cluster, setup_cluster
from pytest_canary.backends.kind.options import KindOptions, cluster_options, new_run_id

__all__ = [
    "ClusterHandle",
    "KindBackend",
    "KindOptions",
    "cluster_options",
    "delete_cluster",
    "make_cluster_backend",
    "new_run_id",
    "setup_cluster",
]
