"""Options: the kind cluster to create or reuse, as plain picklable values, and the function
that builds them (and the ``kube`` backend's) from the plugin's resolved option values."""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_canary.backends import addons
from pytest_canary.backends.kube.options import (
    KubeOptions,
    parse_bool,
    parse_entry_urls,
    parse_gateway,
    parse_keep,
    parse_seconds,
)
from pytest_canary.errors import CanaryConfigError

DEFAULT_CLUSTER = "pytest-canary"
MAX_NAME = 32  # kind cluster names become container and network names
KEEP_CLUSTER_POLICIES = ("never", "failed", "always")
"""``--canary-keep-cluster``: delete a cluster this run created ``never`` (even after a failed
setup), keep it when its setup ``failed`` (the default: the evidence stays), or ``always``."""


def default_cache_dir() -> Path:
    """``$PYTEST_CANARY_CACHE_DIR``, else ``$XDG_CACHE_HOME/pytest-canary``, else
    ``~/.cache/pytest-canary``."""
    explicit = os.environ.get("PYTEST_CANARY_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "pytest-canary"


@dataclass(frozen=True)
class KindOptions:
    """The kind cluster to create or reuse (plain, picklable values).

    Attributes:
        cluster: kind cluster name.
        keep_cluster: when a cluster this run created outlives it: ``always``, ``failed``
            (only when its setup failed; the default) or ``never``.
        node_image: kind node image (None: the pinned one, ``fixtures/addons.yaml``).
        http_port: host port for ingress-nginx (None: a free one).
        gateway_port: host port for the Istio ingress gateway (None: a free one).
        addons: add-ons to install (:data:`~pytest_canary.backends.addons.ADDONS`).
        addon_files: add-on -> local file used instead of downloading.
        cache_dir: downloads, kubeconfigs and lock files.
        setup_timeout: seconds for cluster creation and for each add-on step.
        kind_path: the kind binary (None: ``kind`` on PATH).
        kubectl_path: the kubectl binary (None: ``kubectl`` on PATH).
        kubeconfig: the file the cluster's kubeconfig is written to (None: in the cache).
        kube: namespace, wait and keep settings of the environments.
    """

    cluster: str = DEFAULT_CLUSTER
    keep_cluster: str = "failed"
    node_image: str | None = None
    http_port: int | None = None
    gateway_port: int | None = None
    addons: tuple[str, ...] = addons.ADDONS
    addon_files: Mapping[str, str] = field(default_factory=dict)
    cache_dir: str = field(default_factory=lambda: str(default_cache_dir()))
    setup_timeout: float = 900.0
    kind_path: str | None = None
    kubectl_path: str | None = None
    kubeconfig: str | None = None
    kube: KubeOptions = field(default_factory=KubeOptions)

    def describe(self) -> str:
        """One line for the pytest header."""
        keep = {
            "always": "kept",
            "failed": "deleted at the end if created by this run (kept if its setup fails)",
            "never": "deleted at the end if created by this run",
        }[self.keep_cluster]
        image = (self.node_image or addons.load_kind_pin().node_image).split("@")[0]
        return (
            f"cluster {self.cluster} ({image} if created), {keep}; add-ons "
            f"{', '.join(self.addons) or 'none'}; keep namespaces {self.kube.keep}"
        )


def parse_cluster_name(value: str) -> str:
    """A kind cluster name: lowercase letters, digits and ``-``."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value) or len(value) > MAX_NAME:
        raise CanaryConfigError(
            f"kind cluster name {value!r}: 1-{MAX_NAME} lowercase letters, digits and '-'"
        )
    return value


def parse_port(value: str, what: str) -> int:
    """A TCP port number 1-65535."""
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise CanaryConfigError(f"{what}={value!r}: must be a TCP port from 1 to 65535")
    return port


def parse_keep_cluster(value: Any) -> str:
    """``always`` | ``failed`` | ``never`` (true/yes mean always, false/no mean failed, the
    default)."""
    if isinstance(value, bool):
        return "always" if value else "failed"
    lowered = str(value).strip().lower()
    lowered = {"1": "always", "true": "always", "yes": "always"}.get(lowered, lowered)
    lowered = {"0": "failed", "false": "failed", "no": "failed"}.get(lowered, lowered)
    if lowered not in KEEP_CLUSTER_POLICIES:
        raise CanaryConfigError(
            f"keep cluster={value!r}: must be one of {', '.join(KEEP_CLUSTER_POLICIES)}"
        )
    return lowered


def parse_executable(value: str, what: str) -> str:
    """An executable file."""
    path = Path(value).expanduser()
    if not path.is_file() or not os.access(path, os.X_OK):
        raise CanaryConfigError(f"{what}={value!r}: not an executable file")
    return str(path)


def new_run_id() -> str:
    """An id for this test session's namespaces (a valid label value)."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


Values = Mapping[str, tuple[str, Any]]
"""Option name -> (where the value came from, raw value), as the plugin collected them."""


def _get(values: Values, name: str) -> Any:
    return values[name][1] if name in values else None


def _parsed(values: Values, name: str, parse: Callable[[Any], Any]) -> Any:
    """``parse`` the raw value; errors name the value's origin."""
    if name not in values:
        return None
    origin, raw = values[name]
    try:
        return parse(raw)
    except CanaryConfigError as exc:
        raise CanaryConfigError(f"{exc} (from {origin})") from None


def cluster_options(backend: str, values: Values) -> KubeOptions | KindOptions:
    """Options of the ``kube`` or ``kind`` backend from the plugin's resolved values.

    Raises:
        CanaryConfigError: naming the option, its value, where it came from and what is allowed.
    """

    def seconds(name: str, default: float) -> float:
        value = _parsed(values, name, lambda raw: parse_seconds(str(raw), name))
        return default if value is None else float(value)

    gateway = _parsed(values, "canary_gateway", lambda raw: parse_gateway(str(raw)) and str(raw))
    kubeconfig = _get(values, "canary_kubeconfig")
    kube = KubeOptions(
        kubeconfig=kubeconfig if backend == "kube" else None,
        context=_get(values, "kube_context"),
        context_explicit=_get(values, "kube_context") is not None,
        entry_urls=_parsed(values, "canary_entry_url", lambda raw: parse_entry_urls(list(raw)))
        or {},
        ingress_class=_get(values, "canary_ingress_class"),
        gateway=gateway,
        node_address=_get(values, "canary_node_address"),
        keep=_parsed(values, "canary_keep", lambda raw: parse_keep(str(raw))) or "never",
        wait_timeout=seconds("canary_wait_timeout", 180.0),
        dataplane_timeout=seconds("canary_dataplane_timeout", 60.0),
        any_kubernetes_version=bool(
            _parsed(
                values,
                "canary_any_kubernetes_version",
                lambda raw: parse_bool(raw, "any Kubernetes version"),
            )
        ),
    )
    if backend == "kube":
        return kube

    def port(flag: str) -> Callable[[Any], int]:
        return lambda raw: parse_port(str(raw), flag)

    cache = _get(values, "canary_cache_dir")
    keep_cluster = _parsed(values, "canary_keep_cluster", parse_keep_cluster) or "failed"
    if keep_cluster == "never" and kube.keep != "never":
        raise CanaryConfigError(
            f"--canary-keep={kube.keep} ({values['canary_keep'][0]}) keeps test namespaces in "
            f"the kind cluster, but --canary-keep-cluster=never "
            f"({values['canary_keep_cluster'][0]}) deletes that cluster at the end: drop one "
            "of them"
        )
    return KindOptions(
        cluster=_parsed(values, "canary_kind_cluster", lambda raw: parse_cluster_name(str(raw)))
        or DEFAULT_CLUSTER,
        keep_cluster=keep_cluster,
        node_image=_get(values, "canary_kind_image"),
        http_port=_parsed(values, "canary_kind_http_port", port("--canary-kind-http-port")),
        gateway_port=_parsed(
            values, "canary_kind_gateway_port", port("--canary-kind-gateway-port")
        ),
        addons=_parsed(values, "canary_addons", lambda raw: addons.parse_addons(str(raw)))
        if "canary_addons" in values
        else addons.ADDONS,
        addon_files=_parsed(
            values, "canary_addon_file", lambda raw: addons.parse_addon_files(list(raw))
        )
        or {},
        cache_dir=str(Path(cache).expanduser()) if cache else str(default_cache_dir()),
        setup_timeout=seconds("canary_setup_timeout", 900.0),
        kind_path=_parsed(
            values, "canary_kind_bin", lambda raw: parse_executable(str(raw), "kind binary")
        ),
        kubectl_path=_parsed(
            values, "canary_kubectl_bin", lambda raw: parse_executable(str(raw), "kubectl binary")
        ),
        kubeconfig=str(Path(kubeconfig).expanduser()) if kubeconfig else None,
        kube=kube,
    )
