"""Options: how the ``kube`` backend reaches a cluster and what it may do there.

Plain, picklable values (xdist ships them to workers) and the parsers the plugin feeds
them through; every parser raises :class:`~pytest_canary.errors.CanaryConfigError` naming the
value and what is allowed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pytest_canary.errors import CanaryConfigError

TEST_CONTEXTS = ("kind-*", "minikube", "docker-desktop", "k3d-*")
"""Context names accepted without ``--kube-context``: local test clusters."""

KEEP_POLICIES = ("never", "failed", "always")


@dataclass(frozen=True)
class KubeOptions:
    """How the ``kube`` backend reaches and uses a cluster (plain, picklable values).

    Attributes:
        kubeconfig: kubeconfig file (None: ``$KUBECONFIG`` or ``~/.kube/config``).
        context: context to use (None: the kubeconfig's current context).
        context_explicit: the user named the context (``--kube-context``); only then may it
            be something other than a local test cluster (:data:`TEST_CONTEXTS`).
        entry_urls: strategy (or ``*``) -> base URL where that strategy's traffic enters
            (the ingress controller, the Istio ingress gateway).
        ingress_class: ``spec.ingressClassName`` to set on every Ingress (None: as rendered).
        gateway: ``namespace/name`` of the gateway VirtualServices and HTTPRoutes attach to.
        node_address: host that reaches NodePorts (None: a node's ExternalIP/InternalIP).
        keep: delete the test namespace at teardown ``never`` kept, kept when the test
            ``failed``, or ``always`` kept.
        wait_timeout: seconds for workloads, endpoints and admission.
        dataplane_timeout: seconds for the data plane to serve a change.
        any_kubernetes_version: run on a server outside the Kubernetes window of the pinned
            data planes (``--canary-any-kubernetes-version``).
    """

    kubeconfig: str | None = None
    context: str | None = None
    context_explicit: bool = False
    entry_urls: Mapping[str, str] = field(default_factory=dict)
    ingress_class: str | None = None
    gateway: str | None = None
    node_address: str | None = None
    keep: str = "never"
    wait_timeout: float = 180.0
    dataplane_timeout: float = 60.0
    any_kubernetes_version: bool = False

    def describe(self) -> str:
        """One line for the pytest header."""
        context = self.context or "current context"
        urls = ", ".join(f"{k}={v}" for k, v in self.entry_urls.items()) or "no entry URLs"
        return f"context {context}; entries {urls}; keep namespaces {self.keep}"


def parse_entry_urls(values: Iterable[str]) -> dict[str, str]:
    """``[STRATEGY=]URL`` items -> {strategy or ``*``: URL}.

    Raises:
        CanaryConfigError: naming the bad item.

    Example:
        >>> parse_entry_urls(["http://10.0.0.5", "istio=http://10.0.0.6:8080"])
        {'*': 'http://10.0.0.5', 'istio': 'http://10.0.0.6:8080'}
    """
    from pytest_canary.spec import STRATEGIES

    urls: dict[str, str] = {}
    for item in values:
        strategy, sep, url = item.partition("=")
        if not sep or "://" in strategy:
            strategy, url = "*", item
        if strategy != "*" and strategy not in STRATEGIES:
            raise CanaryConfigError(
                f"entry URL {item!r}: {strategy!r} is not a strategy ({', '.join(STRATEGIES)})"
            )
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CanaryConfigError(
                f"entry URL {item!r}: must be [STRATEGY=]http(s)://HOST[:PORT], e.g. "
                "nginx=http://203.0.113.10"
            )
        urls[strategy] = url.rstrip("/")
    return urls


def parse_keep(value: str) -> str:
    """``never`` | ``failed`` | ``always`` (``true``/``yes`` mean always)."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "all"):
        lowered = "always"
    if lowered in ("0", "false", "no", "none"):
        lowered = "never"
    if lowered not in KEEP_POLICIES:
        raise CanaryConfigError(f"keep={value!r}: must be one of {', '.join(KEEP_POLICIES)}")
    return lowered


TRUE_WORDS = ("y", "yes", "t", "true", "on", "1")
FALSE_WORDS = ("n", "no", "f", "false", "off", "0")
"""The words pytest's ini ``bool`` type takes (``_pytest.config._strtobool``)."""


def parse_bool(value: Any, what: str) -> bool:
    """A yes/no setting as pytest's ini ``bool`` type reads it (``false`` is False).

    Raises:
        CanaryConfigError: for anything else.
    """
    if isinstance(value, bool):
        return value
    lowered = str(value).strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    raise CanaryConfigError(
        f"{what}={value!r}: must be true or false ({', '.join(TRUE_WORDS)} / "
        f"{', '.join(FALSE_WORDS)})"
    )


def parse_gateway(value: str) -> tuple[str, str]:
    """``namespace/name`` -> (namespace, name)."""
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name:
        raise CanaryConfigError(
            f"gateway={value!r}: must be NAMESPACE/NAME, e.g. istio-system/public"
        )
    return namespace, name


def parse_seconds(value: str, what: str) -> float:
    """A positive number of seconds."""
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise CanaryConfigError(f"{what}={value!r}: must be a number of seconds above 0")
    return seconds


def check_context(context: str, *, explicit: bool) -> None:
    """Refuse a context that does not look like a test cluster unless the user named it.

    Raises:
        CanaryConfigError: saying how to allow it.
    """
    if explicit or any(fnmatch.fnmatchcase(context, p) for p in TEST_CONTEXTS):
        return
    raise CanaryConfigError(
        f"kube context {context!r} (the kubeconfig's current context) does not look like a test "
        f"cluster ({', '.join(TEST_CONTEXTS)}); pytest-canary creates and deletes namespaces "
        f"there. Pass --kube-context={context} to confirm you mean this cluster."
    )
