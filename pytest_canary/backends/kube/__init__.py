"""The ``kube`` backend: releases on any existing cluster, through the ``kubernetes`` client.

One namespace per test, labelled with the run and its owner; server-side apply in
make-before-break order; traffic entering where a user's traffic would; waits that ask the
data-plane models what must be served; diagnostics collected while the namespace exists.
The modules follow the data flow: ``options`` -> ``api`` -> ``apply`` (``ready``) ->
``entry`` (``hosts``) -> ``plan`` -> ``signals`` -> ``converge`` -> ``diagnostics`` ->
``keep`` / ``sweep``; ``environment`` is one test's namespace, ``backend`` the session's.
"""

from pytest_canary.backends.kube.api import KubeApi
from pytest_canary.backends.kube.backend import KubeBackend
from pytest_canary.backends.kube.entry import EntryPoints
from pytest_canary.backends.kube.environment import KubeEnvironment
from pytest_canary.backends.kube.options import KubeOptions

__all__ = ["EntryPoints", "KubeApi", "KubeBackend", "KubeEnvironment", "KubeOptions"]
