"""The ``kube`` backend: releases on any existing cluster, through the ``kubernetes`` client.

One namespace per test (``canary-<test>-<random>``, labelled with the run id), server-side
apply with the field manager ``pytest-canary``, make-before-break ordering, waits that name
what they wait for (:mod:`pytest_canary.backends.waits`), traffic entering where a user's
traffic would (the ingress controller, the Istio gateway, or a NodePort Service created for
the test -- never a port-forward, which pins one pod), and diagnostics collected while the
namespace still exists.

Usable without pytest:

Example:
    >>> options = KubeOptions(context="kind-dev", context_explicit=True,
    ...                       entry_urls={"nginx": "http://127.0.0.1:8080"})  # doctest: +SKIP
    >>> backend = KubeBackend.from_kubeconfig(options, run_id="manual")       # doctest: +SKIP
    >>> with Harness(backend.environment("smoke")) as canary:                # doctest: +SKIP
    ...     canary.deploy("nginx", stable="1.0", canary="2.0", weight=20).expect_split(0.2)
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fnmatch
import http.client
import json
import re
import secrets
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pytest_canary.apps import VersionClassifier, VersionReader
from pytest_canary.backends import waits
from pytest_canary.backends.base import Backend, Diagnostics, Entry, Environment
from pytest_canary.backends.waits import Answer, Check, DataplanePlan, Route
from pytest_canary.dataplane import nginx as nginx_model
from pytest_canary.errors import BackendError, CanaryConfigError
from pytest_canary.manifests import Manifest
from pytest_canary.manifests.rolling import PAUSE_AFTER
from pytest_canary.spec import ReleaseSpec

FIELD_MANAGER = "pytest-canary"
APPLY_PATCH = "application/apply-patch+yaml"
MANAGED_BY = {"app.kubernetes.io/managed-by": "pytest-canary"}
RUN_LABEL = "pytest-canary/run"
KEPT_LABEL = "pytest-canary/kept"
KEPT_ROUTING = "pytest-canary-kept-routing"
ENTRY_LABEL = "pytest-canary/entry-for"
INJECTION_LABEL = "istio-injection"
MESH_GROUPS = ("networking.istio.io", "gateway.networking.k8s.io")

TEST_CONTEXTS = ("kind-*", "minikube", "docker-desktop", "k3d-*")
"""Context names accepted without ``--kube-context``: local test clusters."""

KEEP_POLICIES = ("never", "failed", "always")
SERVICE_ENTRY_STRATEGIES = ("replicas", "bluegreen", "rolling")
INGRESS_NGINX_PODS = "app.kubernetes.io/name=ingress-nginx,app.kubernetes.io/component=controller"
ISTIO_GATEWAY_PODS = "istio=ingressgateway"

Progress = Callable[[str], None]
Key = tuple[str, str, str]  # (API group, kind, name)


def _quiet(message: str) -> None:
    """Default progress sink: drop the line."""


# -- options ------------------------------------------------------------------------------


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


# -- the API --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResourceType:
    """Where a kind lives in the API.

    Attributes:
        typed: (client API class, method suffix) for built-in kinds, e.g.
            ``("AppsV1Api", "deployment")``; None for custom resources (``CustomObjectsApi``).
    """

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool = True
    typed: tuple[str, str] | None = None

    @property
    def api_version(self) -> str:
        """``group/version`` (``version`` for the core group)."""
        return f"{self.group}/{self.version}" if self.group else self.version


_BUILTIN: dict[tuple[str, str], tuple[str, str, str, bool]] = {
    # (group, kind): (plural, API class, method suffix, namespaced)
    ("", "Namespace"): ("namespaces", "CoreV1Api", "namespace", False),
    ("", "Service"): ("services", "CoreV1Api", "service", True),
    ("", "ConfigMap"): ("configmaps", "CoreV1Api", "config_map", True),
    ("", "Secret"): ("secrets", "CoreV1Api", "secret", True),
    ("", "ServiceAccount"): ("serviceaccounts", "CoreV1Api", "service_account", True),
    ("", "Pod"): ("pods", "CoreV1Api", "pod", True),
    ("", "Event"): ("events", "CoreV1Api", "event", True),
    ("", "Node"): ("nodes", "CoreV1Api", "node", False),
    ("apps", "Deployment"): ("deployments", "AppsV1Api", "deployment", True),
    ("apps", "StatefulSet"): ("statefulsets", "AppsV1Api", "stateful_set", True),
    ("apps", "DaemonSet"): ("daemonsets", "AppsV1Api", "daemon_set", True),
    ("apps", "ReplicaSet"): ("replicasets", "AppsV1Api", "replica_set", True),
    ("batch", "Job"): ("jobs", "BatchV1Api", "job", True),
    ("networking.k8s.io", "Ingress"): ("ingresses", "NetworkingV1Api", "ingress", True),
    ("discovery.k8s.io", "EndpointSlice"): (
        "endpointslices",
        "DiscoveryV1Api",
        "endpoint_slice",
        True,
    ),
    ("policy", "PodDisruptionBudget"): (
        "poddisruptionbudgets",
        "PolicyV1Api",
        "pod_disruption_budget",
        True,
    ),
    ("autoscaling", "HorizontalPodAutoscaler"): (
        "horizontalpodautoscalers",
        "AutoscalingV2Api",
        "horizontal_pod_autoscaler",
        True,
    ),
}

_CUSTOM: dict[tuple[str, str], str] = {
    # (group, kind): plural -- CRDs we know; others are found by discovery.
    ("networking.istio.io", "VirtualService"): "virtualservices",
    ("networking.istio.io", "DestinationRule"): "destinationrules",
    ("networking.istio.io", "Gateway"): "gateways",
    ("networking.istio.io", "ServiceEntry"): "serviceentries",
    ("gateway.networking.k8s.io", "Gateway"): "gateways",
    ("gateway.networking.k8s.io", "HTTPRoute"): "httproutes",
    ("gateway.networking.k8s.io", "GRPCRoute"): "grpcroutes",
    ("gateway.networking.k8s.io", "ReferenceGrant"): "referencegrants",
    ("argoproj.io", "Rollout"): "rollouts",
}


def _typed_version(api_class: str) -> str:
    """The API version a typed client class serves: ``AutoscalingV2Api`` -> ``v2``."""
    found = re.search(r"V(\d+(?:(?:alpha|beta)\d+)?)Api$", api_class)
    return f"v{found.group(1)}" if found else ""


def split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` -> (``apps``, ``v1``); ``v1`` -> (``""``, ``v1``)."""
    group, _, version = api_version.rpartition("/")
    return group, version


def key_of(obj: Mapping[str, Any]) -> Key:
    """(API group, kind, name) of an object: its identity inside one namespace."""
    group, _ = split_api_version(str(obj.get("apiVersion", "")))
    return group, str(obj.get("kind", "")), str((obj.get("metadata") or {}).get("name", ""))


def describe_key(key: Key) -> str:
    """``Kind/name`` as kubectl prints it."""
    return f"{key[1]}/{key[2]}"


def api_error_message(exc: BaseException) -> str:
    """The API server's own message from an ``ApiException`` body (the Status ``message``)."""
    body = getattr(exc, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body:
        try:
            status = json.loads(body)
        except ValueError:
            return " ".join(body.split())[:500]
        if isinstance(status, dict) and status.get("message"):
            return str(status["message"])
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


def _status(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


class KubeApi:
    """The few Kubernetes operations pytest-canary needs, on raw dicts.

    Built-in kinds go through the typed client APIs (``AppsV1Api.patch_namespaced_deployment``,
    ...), custom resources through ``CustomObjectsApi``; unknown kinds are looked up by API
    discovery. Every write is a server-side apply with field manager ``pytest-canary`` and
    ``force=True`` (we own the test namespace; conflicts are taken over).

    Args:
        api_client: a configured ``kubernetes.client.ApiClient`` (closed by :meth:`close`).
        request_timeout: seconds per API request.
    """

    def __init__(self, api_client: Any, *, request_timeout: float = 30.0) -> None:
        from kubernetes import client

        self.api_client = api_client
        self.request_timeout = request_timeout
        self._client = client
        self._apis: dict[str, Any] = {}
        self._discovered: dict[tuple[str, str], ResourceType] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None, context: str | None) -> KubeApi:
        """A client for ``context`` of ``kubeconfig`` (defaults as kubectl)."""
        from kubernetes import config

        try:
            api_client = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, context=context
            )
        except Exception as exc:
            raise BackendError(
                f"cannot load kubeconfig {kubeconfig or '$KUBECONFIG or ~/.kube/config'} "
                f"(context {context or 'current'}): {exc}"
            ) from exc
        return cls(api_client)

    @property
    def server(self) -> str:
        """The API server URL."""
        return str(getattr(self.api_client.configuration, "host", "?"))

    def _api(self, name: str) -> Any:
        with self._lock:
            if name not in self._apis:
                self._apis[name] = getattr(self._client, name)(self.api_client)
            return self._apis[name]

    # -- resource lookup --------------------------------------------------------------------

    def resource(self, api_version: str, kind: str) -> ResourceType:
        """Where ``kind`` of ``api_version`` is served.

        Raises:
            BackendError: if the cluster does not serve it (e.g. Istio not installed).
        """
        group, version = split_api_version(api_version)
        builtin = _BUILTIN.get((group, kind))
        if builtin is not None:
            plural, api_class, suffix, namespaced = builtin
            typed: tuple[str, str] | None = (api_class, suffix)
            if group and _typed_version(api_class) != version:
                # e.g. autoscaling/v1 in a user's file: the typed client (AutoscalingV2Api)
                # would send it to the v2 URL, which the API server refuses for an apply.
                typed = None
            return ResourceType(group, version, kind, plural, namespaced, typed)
        custom = _CUSTOM.get((group, kind))
        if custom is not None:
            return ResourceType(group, version, kind, custom, True)
        return self._discover(group, version, kind)

    def _discover(self, group: str, version: str, kind: str) -> ResourceType:
        cache_key = (f"{group}/{version}", kind)
        if cache_key in self._discovered:
            return self._discovered[cache_key]
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            data = self._get_path(path)
        except Exception as exc:
            if _status(exc) == 404:
                raise BackendError(
                    f"the cluster does not serve {group or 'core'}/{version} (kind {kind}): "
                    "install the CRDs or controller that provide it"
                ) from None
            raise
        for entry in data.get("resources") or []:
            if entry.get("kind") == kind and "/" not in str(entry.get("name", "")):
                found = ResourceType(
                    group, version, kind, str(entry["name"]), bool(entry.get("namespaced", True))
                )
                self._discovered[cache_key] = found
                return found
        raise BackendError(f"the cluster serves {path} but no kind {kind} there")

    def _get_path(self, path: str) -> dict[str, Any]:
        params = self.api_client.param_serialize(
            method="GET", resource_path=path, auth_settings=["BearerToken"]
        )
        response = self.api_client.call_api(*params, _request_timeout=self.request_timeout)
        response.read()
        if not 200 <= response.status <= 299:
            raise self._client.ApiException(http_resp=response)
        result: dict[str, Any] = json.loads(response.data)
        return result

    # -- calls ------------------------------------------------------------------------------

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        data = response.data
        result: dict[str, Any] = json.loads(data) if data else {}
        return result

    def _typed(self, rtype: ResourceType, verb: str) -> Callable[..., Any]:
        assert rtype.typed is not None
        api_class, suffix = rtype.typed
        scope = "namespaced_" if rtype.namespaced else ""
        return getattr(self._api(api_class), f"{verb}_{scope}{suffix}")  # type: ignore[no-any-return]

    def apply(
        self, obj: Mapping[str, Any], *, namespace: str | None = None, dry_run: bool = False
    ) -> dict[str, Any]:
        """Server-side apply ``obj`` (in ``namespace`` for namespaced kinds); returns the
        server's object. API errors propagate as ``ApiException``."""
        rtype = self.resource(str(obj.get("apiVersion", "")), str(obj.get("kind", "")))
        name = str(obj["metadata"]["name"])
        options: dict[str, Any] = {
            "field_manager": FIELD_MANAGER,
            "force": True,
            "_content_type": APPLY_PATCH,
            "_preload_content": False,
            "_request_timeout": self.request_timeout,
        }
        if dry_run:
            options["dry_run"] = "All"
        body = dict(obj)
        if rtype.typed is not None:
            method = self._typed(rtype, "patch")
            args = (name, namespace, body) if rtype.namespaced else (name, body)
            return self._json(method(*args, **options))
        custom = self._api("CustomObjectsApi")
        if rtype.namespaced:
            response = custom.patch_namespaced_custom_object(
                rtype.group, rtype.version, namespace, rtype.plural, name, body, **options
            )
        else:
            response = custom.patch_cluster_custom_object(
                rtype.group, rtype.version, rtype.plural, name, body, **options
            )
        return self._json(response)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        rtype = self.resource(api_version, kind)
        options = {"_preload_content": False, "_request_timeout": self.request_timeout}
        try:
            if rtype.typed is not None:
                method = self._typed(rtype, "read")
                args = (name, namespace) if rtype.namespaced else (name,)
                return self._json(method(*args, **options))
            custom = self._api("CustomObjectsApi")
            if rtype.namespaced:
                response = custom.get_namespaced_custom_object(
                    rtype.group, rtype.version, namespace, rtype.plural, name, **options
                )
            else:
                response = custom.get_cluster_custom_object(
                    rtype.group, rtype.version, rtype.plural, name, **options
                )
            return self._json(response)
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise

    def list(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Objects of a kind in ``namespace`` (None: every namespace / cluster-scoped)."""
        rtype = self.resource(api_version, kind)
        options: dict[str, Any] = {
            "_preload_content": False,
            "_request_timeout": self.request_timeout,
        }
        if label_selector:
            options["label_selector"] = label_selector
        if rtype.typed is not None:
            _, suffix = rtype.typed
            api = self._api(rtype.typed[0])
            if namespace is not None and rtype.namespaced:
                response = getattr(api, f"list_namespaced_{suffix}")(namespace, **options)
            elif rtype.namespaced:
                response = getattr(api, f"list_{suffix}_for_all_namespaces")(**options)
            else:
                response = getattr(api, f"list_{suffix}")(**options)
        else:
            custom = self._api("CustomObjectsApi")
            if namespace is not None and rtype.namespaced:
                response = custom.list_namespaced_custom_object(
                    rtype.group, rtype.version, namespace, rtype.plural, **options
                )
            else:
                response = custom.list_cluster_custom_object(
                    rtype.group, rtype.version, rtype.plural, **options
                )
        items: list[dict[str, Any]] = list(self._json(response).get("items") or [])
        return items

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete (background propagation); False when it was already gone."""
        rtype = self.resource(api_version, kind)
        options = {
            "propagation_policy": "Background",
            "_preload_content": False,
            "_request_timeout": self.request_timeout,
        }
        try:
            if rtype.typed is not None:
                method = self._typed(rtype, "delete")
                args = (name, namespace) if rtype.namespaced else (name,)
                method(*args, **options)
            elif rtype.namespaced:
                self._api("CustomObjectsApi").delete_namespaced_custom_object(
                    rtype.group, rtype.version, namespace, rtype.plural, name, **options
                )
            else:
                self._api("CustomObjectsApi").delete_cluster_custom_object(
                    rtype.group, rtype.version, rtype.plural, name, **options
                )
        except Exception as exc:
            if _status(exc) == 404:
                return False
            raise
        return True

    def pod_log(
        self, name: str, namespace: str, *, container: str | None = None, tail: int = 20
    ) -> str:
        """The last ``tail`` lines a container logged."""
        core = self._api("CoreV1Api")
        response = core.read_namespaced_pod_log(
            name,
            namespace,
            container=container,
            tail_lines=tail,
            _preload_content=False,
            _request_timeout=self.request_timeout,
        )
        data = response.data
        return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)

    def exec(
        self, pod: str, namespace: str, command: Sequence[str], *, container: str | None = None
    ) -> str:
        """Run ``command`` in a container and return what it printed (stdout and stderr)."""
        from kubernetes.stream import stream

        core = self._api("CoreV1Api")
        output = stream(
            core.connect_get_namespaced_pod_exec,
            pod,
            namespace,
            command=list(command),
            container=container,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _request_timeout=self.request_timeout,
        )
        return str(output)

    def close(self) -> None:
        """Close connection pools."""
        with contextlib.suppress(Exception):
            self.api_client.close()


# -- applying -------------------------------------------------------------------------------

# Apply order (make before break): configuration, workloads (waited available), Services
# (waited for endpoints), other objects, DestinationRules (subsets before the routes naming
# them, UPSTREAM.md Istio), gateways, then routing objects. Deletion runs the other way.
APPLY_RANK: dict[str, float] = {
    "ConfigMap": 0,
    "Secret": 0,
    "ServiceAccount": 0,
    # What pods need to be admitted, scheduled or started (your own manifests).
    "PersistentVolumeClaim": 0,
    "Role": 0,
    "RoleBinding": 0,
    "LimitRange": 0,
    "ResourceQuota": 0,
    "Deployment": 1,
    "StatefulSet": 1,
    "DaemonSet": 1,
    "Rollout": 1,
    "Service": 2,
    "DestinationRule": 3,
    "Gateway": 3.5,
    "ReferenceGrant": 3.5,
    "VirtualService": 4,
    "HTTPRoute": 4,
    "GRPCRoute": 4,
    "Ingress": 4,
}
OTHER_RANK = 2.5
ROUTING_RANK = 3


def rank(obj_or_key: Mapping[str, Any] | Key) -> float:
    """Position of a kind in the apply order."""
    kind = obj_or_key[1] if isinstance(obj_or_key, tuple) else str(obj_or_key.get("kind", ""))
    return APPLY_RANK.get(kind, OTHER_RANK)


def _subset_names(obj: Mapping[str, Any] | None) -> set[str]:
    return {str(s.get("name")) for s in ((obj or {}).get("spec") or {}).get("subsets") or []}


def adapt(
    obj: Mapping[str, Any],
    namespace: str,
    *,
    ingress_class: str | None = None,
    gateway: str | None = None,
    gateway_selector: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A copy of ``obj`` placed in ``namespace`` and bound to this cluster's entry points.

    - every object gets ``metadata.namespace``;
    - Ingress: ``spec.ingressClassName`` becomes ``ingress_class`` when given;
    - Istio Gateway: ``spec.selector`` becomes ``gateway_selector`` (the pods of the ingress
      gateway Service ``gateway``) when given;
    - Gateway API Gateway without ``spec.addresses``: bound to the existing gateway Service
      ``gateway`` (``namespace/name``) by an address of type Hostname, Istio's "manual
      deployment" (istio.io, Kubernetes Gateway API task, "Manual Deployment"), instead of
      Istio deploying a gateway per test whose LoadBalancer stays pending on kind.
    """
    copied = copy.deepcopy(dict(obj))
    copied.setdefault("metadata", {})["namespace"] = namespace
    group, kind, _ = key_of(copied)
    spec = copied.get("spec")
    if not isinstance(spec, dict):
        return copied
    if kind == "Ingress" and group == "networking.k8s.io" and ingress_class:
        spec["ingressClassName"] = ingress_class
    if kind == "Gateway" and group == "networking.istio.io" and gateway_selector:
        spec["selector"] = dict(gateway_selector)
    if (
        kind == "Gateway"
        and group == "gateway.networking.k8s.io"
        and gateway
        and not spec.get("addresses")
    ):
        gw_namespace, gw_name = parse_gateway(gateway)
        spec["addresses"] = [
            {"type": "Hostname", "value": f"{gw_name}.{gw_namespace}.svc.cluster.local"}
        ]
    return copied


def namespace_for(test_name: str) -> str:
    """``canary-<slug of the test>-<5 random hex>``, a valid namespace name (<= 63 chars);
    the run id goes into a label, names must stay short."""
    short = test_name.rsplit("::", 1)[-1] if "::" in test_name else test_name.rsplit("/", 1)[-1]
    slug = re.sub(r"[^a-z0-9-]+", "-", short.lower()).strip("-")
    slug = re.sub(r"-+", "-", slug)[:44].strip("-") or "test"
    return f"canary-{slug}-{secrets.token_hex(3)[:5]}"


# -- traffic probes -------------------------------------------------------------------------


class EntryProbe:
    """Sends small synchronous batches through an entry and reports what answered.

    The version comes from ``classify`` (a :mod:`pytest_canary.apps` reader's classifier),
    else from the response header ``version_header``; the pod from the sample app's JSON
    body (``hostname``), when present. Connections are kept alive unless the entry routes per
    connection (kube-proxy), like the sampler.
    """

    def __init__(
        self,
        entry: Entry,
        *,
        path: str = "/",
        version_header: str | None = "X-App-Version",
        timeout: float = 5.0,
        classify: VersionClassifier | None = None,
    ) -> None:
        self.entry = entry
        self.path = path
        self.version_header = version_header
        self.classify = classify
        self.timeout = timeout
        parts = urlsplit(entry.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._conn: http.client.HTTPConnection | None = None

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(
                    self._host,
                    self._port,
                    timeout=self.timeout,
                    context=ssl.create_default_context(),
                )
            else:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self.timeout
                )
        return self._conn

    def one(self, headers: Mapping[str, str]) -> Answer:
        """Send one request."""
        request_headers = dict(headers)
        if self.entry.host and not any(k.lower() == "host" for k in request_headers):
            request_headers["Host"] = self.entry.host
        if self.entry.per_connection:
            request_headers["Connection"] = "close"
        conn = self._connection()
        try:
            conn.request("GET", self._prefix + self.path, headers=request_headers)
            response = conn.getresponse()
            body = response.read()
        except TimeoutError:
            self.close()
            return Answer(error="timeout")
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            return Answer(error=f"connection error ({type(exc).__name__})")
        if self.entry.per_connection or response.will_close:
            self.close()
        if self.classify is not None:
            version = self.classify(response.status, dict(response.getheaders()), body)
        else:
            version = response.getheader(self.version_header) if self.version_header else None
        if response.status >= 500:
            return Answer(error=f"HTTP {response.status}")
        if (self.classify is not None or self.version_header) and not version:
            return Answer(error=f"HTTP {response.status} without a version")
        return Answer(version=version, pod=_pod_of(body))

    def answers(self, headers: Mapping[str, str], n: int) -> list[Answer]:
        """Send ``n`` requests in a row."""
        return [self.one(headers) for _ in range(n)]

    def close(self) -> None:
        """Drop the connection."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _pod_of(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get("hostname"), str):
        return str(data["hostname"])
    return None


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def allowed_pods(
    route: Route, pods: Iterable[Mapping[str, Any]], version_label: str = waits.VERSION_LABEL
) -> dict[str, str]:
    """Ready pods that may answer ``route``: pod name -> the value of ``version_label``."""
    allowed: dict[str, str] = {}
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        if _pod_ready(pod) and any(waits.labels_match(sel, labels) for sel in route.selectors):
            allowed[str(pod["metadata"]["name"])] = str(labels.get(version_label, ""))
    return allowed


# -- virtual hosts ----------------------------------------------------------------------------


def routed_hosts(objects: Iterable[Mapping[str, Any]]) -> set[str]:
    """Virtual hosts the objects claim on a shared data plane (``_`` for a host-less Ingress
    rule: ingress-nginx's catch-all server). In-mesh short names (no dot) are per namespace
    and left out."""
    hosts: set[str] = set()
    for obj in objects:
        group, kind, _ = key_of(obj)
        spec = obj.get("spec") or {}
        if kind == "Ingress":
            hosts |= {str(rule.get("host") or "_") for rule in spec.get("rules") or []}
        elif kind == "VirtualService":
            hosts |= {str(h) for h in spec.get("hosts") or []}
        elif kind == "Gateway" and group == "networking.istio.io":
            hosts |= {
                str(h).split("/")[-1]
                for srv in spec.get("servers") or []
                for h in srv.get("hosts") or []
            }
        elif kind == "Gateway":
            hosts |= {str(ln.get("hostname") or "*") for ln in spec.get("listeners") or []}
        elif kind == "HTTPRoute":
            hosts |= {str(h) for h in spec.get("hostnames") or []}
    return {h for h in hosts if "." in h or h in ("_", "*")}


class HostLocks:
    """Locks that keep two tests of this machine from routing the same virtual host at once.

    Namespaces separate objects, not hosts: two tests that both deploy host ``foo.bar``
    through the same ingress-nginx or Istio gateway would get each other's traffic (the
    oldest Ingress wins a host+path; VirtualServices for one host at one gateway merge).
    So each test holds a file lock per host it routes, from its first apply to its teardown;
    xdist workers sharing a kind cluster take turns for a host and run in parallel otherwise.
    Tests on other machines against the same cluster are not covered: give them other hosts.
    """

    def __init__(
        self, directory: Path | None, *, timeout: float = 1800.0, progress: Progress = _quiet
    ) -> None:
        self.directory = directory
        self.timeout = timeout
        self.progress = progress

    def hold(self, hosts: Iterable[str], owner: str) -> list[Any]:
        """Acquire the locks of ``hosts`` (sorted, to avoid lock-order deadlocks)."""
        if self.directory is None:
            return []
        import filelock

        self.directory.mkdir(parents=True, exist_ok=True)
        held: list[Any] = []
        try:
            for host in sorted(set(hosts)):
                safe = re.sub(r"[^A-Za-z0-9_.-]", "_", host)
                lock = filelock.FileLock(str(self.directory / f"host-{safe}.lock"))
                try:
                    lock.acquire(timeout=0)
                except filelock.Timeout:
                    self.progress(f"{owner}: waiting for host {host} (another test routes it)")
                    try:
                        lock.acquire(timeout=self.timeout)
                    except filelock.Timeout:
                        raise BackendError(
                            f"host {host} stayed in use by another test for {self.timeout:.0f}s "
                            f"(lock {lock.lock_file})"
                        ) from None
                held.append(lock)
        except BaseException:
            for lock in held:
                lock.release()
            raise
        return held


# -- where traffic enters --------------------------------------------------------------------


@dataclass(frozen=True)
class EntryPoints:
    """Where traffic enters a cluster from this machine.

    Attributes:
        urls: strategy (or ``*``) -> base URL of its data plane (ingress-nginx, Istio gateway).
        node_address: host reaching NodePorts (None: discover a node address).
        node_port_map: nodePort -> port on ``node_address`` (kind's extraPortMappings); None
            when NodePorts are reached directly.
        node_port_pool: nodePorts a test may claim (kind maps only these); None lets the API
            server choose.
    """

    urls: Mapping[str, str] = field(default_factory=dict)
    node_address: str | None = None
    node_port_map: Mapping[int, int] | None = None
    node_port_pool: tuple[int, ...] | None = None

    def has_url(self, strategy: str) -> bool:
        """Whether an entry URL is configured for ``strategy``."""
        return strategy in self.urls or "*" in self.urls

    def url_for(self, strategy: str) -> str:
        """Base URL for ``strategy``'s traffic.

        Raises:
            BackendError: when none is configured.
        """
        url = self.urls.get(strategy) or self.urls.get("*")
        if url is None:
            raise BackendError(
                f"no entry URL for strategy {strategy!r}: pass --canary-entry-url={strategy}="
                "http://<address of the ingress controller or gateway>"
            )
        return url


@dataclass
class EntryService:
    """A NodePort Service created for a test's traffic (not one of the release's objects)."""

    name: str
    target: str | None  # the release Service whose selector it mirrors (None: fixed selector)
    selector: dict[str, str]
    port: int
    target_port: int | str
    node_port: int = 0


class KubeEnvironment(Environment):
    """One test's namespace on a cluster. Created lazily on the first apply."""

    def __init__(self, backend: KubeBackend, test_name: str) -> None:
        self.backend = backend
        self.api = backend.api
        self.options = backend.options
        self.test_name = test_name
        self.namespace = namespace_for(test_name)
        self.failed = False
        self._created = False
        self._closed = False
        self._mesh = False
        self._applied: dict[Key, dict[str, Any]] = {}
        self._entries: dict[str, EntryService] = {}
        self._specs: dict[str, ReleaseSpec] = {}  # by release name (the objects' app label)
        self._history: list[str] = []
        self._hosts: set[str] = set()
        self._locks: list[Any] = []
        # canary.apply: the data plane the entry goes through ("nginx", "istio", "gateway"),
        # or the Service a NodePort entry was created for.
        self._manifest_dataplane_key: str | None = None
        self._manifest_target: str | None = None

    # -- namespace ------------------------------------------------------------------------

    def record_failure(self) -> None:
        """The test failed: ``--canary-keep=failed`` keeps this namespace."""
        self.failed = True

    def _namespace_object(self) -> dict[str, Any]:
        labels = {RUN_LABEL: self.backend.run_id} | MANAGED_BY
        if self._mesh:
            labels[INJECTION_LABEL] = "enabled"
        return {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": self.namespace,
                "labels": labels,
                "annotations": {"pytest-canary/test": self.test_name[:1000]},
            },
        }

    def _ensure_namespace(self, objects: Sequence[Mapping[str, Any]]) -> None:
        mesh = any(key_of(o)[0] in MESH_GROUPS for o in objects)
        if self._created and (self._mesh or not mesh):
            return
        self._mesh = self._mesh or mesh
        try:
            self.api.apply(self._namespace_object())
        except Exception as exc:
            raise self._error(f"creating namespace {self.namespace}", exc) from exc
        self._created = True
        self.backend.opened(self)

    def _error(self, action: str, exc: BaseException) -> BackendError:
        if isinstance(exc, BackendError):
            return exc
        status = _status(exc)
        where = f"HTTP {status}: " if status else ""
        hint = ""
        if status == 404 and any(
            g in action for g in ("VirtualService", "DestinationRule", "Gateway", "HTTPRoute")
        ):
            hint = (
                " (are the CRDs installed? Istio provides VirtualService, DestinationRule and "
                "Gateway, Gateway API HTTPRoute and Gateway; on kind: --canary-addons must "
                "include istio and gateway-api)"
            )
        return BackendError(f"{action} failed: {where}{api_error_message(exc)}{hint}")

    # -- apply ----------------------------------------------------------------------------

    def _adapt(self, objects: Sequence[Manifest]) -> list[dict[str, Any]]:
        istio_gateways = any(key_of(o)[:2] == ("networking.istio.io", "Gateway") for o in objects)
        selector = self.backend.gateway_selector() if istio_gateways else None
        adapted = []
        for obj in objects:
            rtype_group, kind, _ = key_of(obj)
            if kind == "Namespace" or (rtype_group == "" and kind == "Node"):
                raise BackendError(
                    f"{kind}/{key_of(obj)[2]}: cluster-scoped objects are not applied per test"
                )
            adapted.append(
                adapt(
                    obj,
                    self.namespace,
                    ingress_class=self.options.ingress_class,
                    gateway=self.options.gateway,
                    gateway_selector=selector,
                )
            )
        return adapted

    def apply(self, objects: Sequence[Manifest]) -> None:
        self._apply_objects(objects, prune_all=False)

    def _apply_objects(self, objects: Sequence[Manifest], *, prune_all: bool) -> None:
        """Make ``objects`` the desired state. Objects applied before and no longer listed are
        deleted: those of the releases being applied (their ``app`` label), or with
        ``prune_all`` every one (a user's manifest set replaces the previous set)."""
        if self._closed:
            raise BackendError(f"environment {self.namespace} is closed")
        wanted = {key_of(o): o for o in self._adapt(objects)}
        hosts = routed_hosts(wanted.values()) - self._hosts
        self._locks += self.backend.hold_hosts(hosts, f"namespace {self.namespace}")
        self._hosts |= hosts
        self._ensure_namespace(list(wanted.values()))
        self.backend.prepare(list(wanted.values()))
        # Prune only the objects of the releases being applied (by their ``app`` label), so
        # that a second release in the same test keeps the first one.
        scope = {_app_label(o) for o in wanted.values()}
        stale = [
            k
            for k, o in self._applied.items()
            if k not in wanted and (prune_all or _app_label(o) in scope)
        ]
        deferred: list[dict[str, Any]] = []
        ordered = sorted(wanted.items(), key=lambda item: rank(item[1]))
        waited_workloads = waited_services = False
        for key, obj in ordered:
            position = rank(obj)
            if position > 1 and not waited_workloads:
                self._wait_workloads(wanted)
                waited_workloads = True
            if position > 2 and not waited_services:
                self._wait_endpoints(wanted)
                waited_services = True
            previous = self._applied.get(key)
            if previous == obj:
                continue  # unchanged: leave the object (and its controllers) alone
            if (
                key[1] == "DestinationRule"
                and previous is not None
                and not _subset_names(obj) >= _subset_names(previous)
            ):
                deferred.append(obj)  # drops subsets: only after routes stop naming them
                continue
            self._apply_one(key, obj)
        if not waited_workloads:
            self._wait_workloads(wanted)
        if not waited_services:
            self._wait_endpoints(wanted)
        self._sync_entries(wanted)
        self._break(wanted, stale, deferred)

    def _apply_one(self, key: Key, obj: dict[str, Any]) -> None:
        if key[1] == "Ingress":
            self._apply_admitted(key, obj)
        elif key[:2] == ("apps", "Deployment") and PAUSE_AFTER in _annotations(obj):
            self._apply_paused(key, obj)
        else:
            self._write(key, obj)
        self._applied[key] = obj

    def _write(self, key: Key, obj: Mapping[str, Any]) -> dict[str, Any]:
        try:
            return self.api.apply(obj, namespace=self.namespace)
        except Exception as exc:
            raise self._error(
                f"applying {describe_key(key)} in namespace {self.namespace}", exc
            ) from exc

    def _apply_paused(self, key: Key, obj: dict[str, Any]) -> None:
        """The rolling strategy's canary: start the rollout to the new template, then pause it
        once the controller created the first ``pytest-canary/pause-after`` new pods
        (``kubectl set image`` + ``kubectl rollout pause``; manifests/rolling.py).

        A Deployment applied already paused never creates its new ReplicaSet (the controller
        only scales a paused Deployment: kubernetes pkg/controller/deployment ``sync``), hence
        the two steps. Pausing before any new pod is ready lands on the controller's first
        fixpoint, the state manifests/rolling.py ``paused_rollout`` predicts.
        """
        if key not in self._applied:
            raise BackendError(
                f"{describe_key(key)} carries {PAUSE_AFTER} but no earlier version of it was "
                "applied in this test: apply the baseline (manifests.rolling.baseline(spec)) "
                "first, so that there is a rollout to pause"
            )
        try:
            count = int(_annotations(obj)[PAUSE_AFTER])
        except ValueError:
            raise BackendError(
                f"{describe_key(key)}: {PAUSE_AFTER}={_annotations(obj)[PAUSE_AFTER]!r} is not "
                "a number of pods"
            ) from None
        generation = int((self._write(key, obj).get("metadata") or {}).get("generation") or 0)

        def started() -> Check:
            current = self.api.get(str(obj["apiVersion"]), "Deployment", key[2], self.namespace)
            status = (current or {}).get("status") or {}
            observed = int(status.get("observedGeneration") or 0)
            updated = int(status.get("updatedReplicas") or 0)
            text = f"observed generation {observed} of {generation}, {updated} new pods created"
            return Check(observed >= generation and updated >= count, text)

        waits.wait_until(
            f"Deployment {self.namespace}/{key[2]}",
            f"rolling out ({count} new pods created, so the rollout can be paused)",
            started,
            timeout=self.options.wait_timeout,
        )
        paused = copy.deepcopy(obj)
        paused["spec"]["paused"] = True  # the whole object: SSA removes fields we omit
        self._write(key, paused)

    def _apply_admitted(self, key: Key, obj: dict[str, Any]) -> None:
        """Apply an Ingress, retrying while the ingress-nginx admission webhook cannot be
        called yet (UPSTREAM.md: "retry applying Ingresses while the webhook still refuses
        connections")."""

        def attempt() -> Check:
            try:
                self.api.apply(obj, namespace=self.namespace)
            except Exception as exc:
                message = api_error_message(exc)
                if waits.webhook_unavailable(_status(exc), message):
                    return Check(False, f"webhook unavailable: {message}")
                if waits.is_transient(exc):
                    raise  # retried by wait_until, shown as the last status
                raise self._error(
                    f"applying {describe_key(key)} in namespace {self.namespace}", exc
                ) from exc
            return Check(True, "accepted")

        waits.wait_until(
            f"{describe_key(key)} in namespace {self.namespace}",
            "accepted by the admission webhook",
            attempt,
            timeout=self.options.wait_timeout,
        )

    def _break(
        self, wanted: Mapping[Key, dict[str, Any]], stale: list[Key], deferred: list[dict[str, Any]]
    ) -> None:
        """Delete what is no longer wanted: routing first; once the data plane no longer uses
        it, shrinking DestinationRules, then Services, then workloads."""
        routing = [k for k in stale if rank(k) > ROUTING_RANK]
        rest = sorted((k for k in stale if rank(k) <= ROUTING_RANK), key=rank, reverse=True)
        for key in sorted(routing, key=rank, reverse=True):
            self._delete(key)
        releases = {_app_label(o) for o in wanted.values()}
        spec = self._specs.get(next(iter(releases)) or "") if len(releases) == 1 else None
        if (stale or deferred) and spec is not None:
            self._converge(spec, list(wanted.values()))
        for obj in deferred:
            self._apply_one(key_of(obj), obj)
        for key in rest:
            self._delete(key)

    def _delete(self, key: Key) -> None:
        obj = self._applied.pop(key)
        try:
            self.api.delete(str(obj["apiVersion"]), key[1], key[2], self.namespace)
        except Exception as exc:
            raise self._error(
                f"deleting {describe_key(key)} in namespace {self.namespace}", exc
            ) from exc

    # -- waits ----------------------------------------------------------------------------

    def _wait_workloads(self, wanted: Mapping[Key, dict[str, Any]]) -> None:
        for key, obj in wanted.items():
            if key[1] != "Deployment":
                continue
            name = key[2]

            def probe(name: str = name, obj: Mapping[str, Any] = obj) -> Check:
                current = self.api.get(str(obj["apiVersion"]), "Deployment", name, self.namespace)
                if current is None:
                    return Check(False, "not found")
                selector = ((current.get("spec") or {}).get("selector") or {}).get(
                    "matchLabels"
                ) or {}
                pods = self.api.list(
                    "v1", "Pod", namespace=self.namespace, label_selector=_selector(selector)
                )
                return waits.deployment_check(current, pods)

            waits.wait_until(
                f"Deployment {self.namespace}/{name}",
                "available (current generation observed, every replica updated and available, "
                "no old replica left)",
                probe,
                timeout=self.options.wait_timeout,
            )

    def _expected_endpoints(self, selector: Mapping[str, str]) -> int:
        """Pods the Service should have as ready endpoints: every pod of the namespace's
        Deployments whose template the selector matches (``status.replicas`` counts old and
        new ReplicaSets, e.g. a paused rolling update; the workload wait made them available)."""
        total = 0
        for dep in self.api.list("apps/v1", "Deployment", namespace=self.namespace):
            spec = dep.get("spec") or {}
            labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
            if (dep.get("metadata") or {}).get("deletionTimestamp"):
                continue
            if waits.labels_match(selector, labels):
                status = dep.get("status") or {}
                total += int(status.get("replicas", spec.get("replicas", 1)) or 0)
        return total

    def _wait_endpoints(self, wanted: Mapping[Key, dict[str, Any]]) -> None:
        for key, obj in wanted.items():
            if key[1] != "Service" or key[0] != "":
                continue
            selector = waits.service_selector(obj)
            if not selector:
                continue
            self._wait_service_endpoints(key[2], self._counter(selector, wanted.values()))

    def _counter(
        self, selector: Mapping[str, str], objects: Iterable[Mapping[str, Any]] = ()
    ) -> Callable[[], int] | None:
        """How many endpoints a Service selecting ``selector`` must have; None when it selects
        pods of other workloads among ``objects`` (a StatefulSet of your own manifests), whose
        count is not predicted: then at least one."""
        for obj in objects:
            labels = _template_labels(obj)
            if key_of(obj)[1] != "Deployment" and labels and waits.labels_match(selector, labels):
                return None
        return lambda: self._expected_endpoints(selector)

    def _wait_service_endpoints(self, service: str, expected: Callable[[], int] | None) -> None:
        def probe() -> Check:
            slices = self.api.list(
                "discovery.k8s.io/v1",
                "EndpointSlice",
                namespace=self.namespace,
                label_selector=f"kubernetes.io/service-name={service}",
            )
            if expected is None:
                ready = waits.ready_endpoints(slices)
                return Check(bool(ready), f"{len(ready)} endpoints ready")
            return waits.endpoints_check(service, slices, expected())

        waits.wait_until(
            f"Service {self.namespace}/{service}",
            "backed by exactly one ready endpoint per pod of the Deployments it selects"
            if expected is not None
            else "backed by at least one ready endpoint (it selects pods of workloads other "
            "than Deployments)",
            probe,
            timeout=self.options.wait_timeout,
        )

    # -- entry ----------------------------------------------------------------------------

    def entry(self, spec: ReleaseSpec) -> Entry:
        if spec.strategy in SERVICE_ENTRY_STRATEGIES:
            target = self._entry_target(spec)
            service = self._services()[target]
            claimed = self._claim_entry(target, waits.service_selector(service), service, target)
            host, port = self.backend.node_endpoint(claimed.node_port)
            return Entry(
                url=f"http://{host}:{port}",
                per_connection=True,
                description=f"NodePort Service {self.namespace}/{claimed.name} "
                f"({claimed.node_port}, selector of Service {target}) at {host}:{port}",
            )
        points = self.backend.entry_points
        if (
            spec.strategy == "gateway"
            and not points.has_url("gateway")
            and not self.options.gateway
        ):
            url = self._gateway_address()
            return Entry(
                url=url, host=spec.host, description=f"Gateway address {url} (Host: {spec.host})"
            )
        url = points.url_for(spec.strategy)
        what = "ingress-nginx" if spec.strategy == "nginx" else "Istio ingress gateway"
        return Entry(url=url, host=spec.host, description=f"{what} at {url} (Host: {spec.host})")

    def relay_entry(self, spec: ReleaseSpec, source: str) -> Entry:
        """The frontend pods of version ``source`` (``{name}-frontend``, manifests/istio.py),
        reached through a NodePort Service of their own; they call the release in-mesh."""
        frontend = f"{spec.name}-frontend"
        service = self._services().get(frontend)
        if service is None:
            raise BackendError(
                f"no Service {frontend} in {self.namespace}: deploy the release with source=True"
            )
        selector = waits.service_selector(service) | {waits.VERSION_LABEL: source}
        slug = re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-") or "v"
        claimed = self._claim_entry(f"{frontend}-{slug}", selector, service, None)
        host, port = self.backend.node_endpoint(claimed.node_port)
        return Entry(
            url=f"http://{host}:{port}",
            description=f"frontend {source} through NodePort Service {self.namespace}/"
            f"{claimed.name} at {host}:{port}",
            relay=f"http://{spec.name}.{self.namespace}.svc.cluster.local{spec.path}",
        )

    def ready_pods(self, spec: ReleaseSpec) -> dict[str, int]:
        counts: dict[str, int] = {}
        for pod in self.api.list(
            "v1", "Pod", namespace=self.namespace, label_selector=f"app={spec.name}"
        ):
            if _pod_ready(pod):
                version = str(
                    ((pod.get("metadata") or {}).get("labels") or {}).get(waits.VERSION_LABEL, "")
                )
                counts[version] = counts.get(version, 0) + 1
        return counts

    def _gateway_address(self) -> str:
        """Where a Gateway API Gateway deployed by its implementation listens: the first of
        ``status.addresses`` (Istio fills it from its LoadBalancer Service) and the listener
        port. Used on clusters where no entry URL and no shared gateway is configured."""
        gateways = [
            o for k, o in self._applied.items() if k[:2] == ("gateway.networking.k8s.io", "Gateway")
        ]
        if not gateways:
            raise BackendError(
                "no entry URL for strategy 'gateway' and no Gateway among the applied objects: "
                "pass --canary-entry-url=gateway=http://<gateway address> or "
                "--canary-gateway=<namespace>/<gateway Service>"
            )
        gateway = gateways[0]
        name = str(gateway["metadata"]["name"])
        listeners = (gateway.get("spec") or {}).get("listeners") or [{"port": 80}]
        port = int(listeners[0].get("port", 80))
        found: list[str] = []

        def probe() -> Check:
            current = self.api.get(str(gateway["apiVersion"]), "Gateway", name, self.namespace)
            addresses = ((current or {}).get("status") or {}).get("addresses") or []
            if addresses and addresses[0].get("value"):
                found.append(str(addresses[0]["value"]))
                return Check(True, f"address {found[0]}")
            conditions = ((current or {}).get("status") or {}).get("conditions") or []
            text = ", ".join(f"{c.get('type')}={c.get('status')}" for c in conditions)
            return Check(False, f"no address yet ({text or 'no conditions'})")

        waits.wait_until(
            f"Gateway {self.namespace}/{name}",
            "given an address by its implementation (status.addresses)",
            probe,
            timeout=self.options.wait_timeout,
        )
        return f"http://{found[0]}:{port}" if port != 80 else f"http://{found[0]}"

    def _services(self) -> dict[str, dict[str, Any]]:
        return {k[2]: o for k, o in self._applied.items() if k[1] == "Service" and k[0] == ""}

    def _entry_target(self, spec: ReleaseSpec) -> str:
        services = self._services()
        if spec.name in services:
            return spec.name
        if len(services) == 1:
            return next(iter(services))
        raise BackendError(
            f"cannot tell which Service the traffic of {spec.name!r} enters: none is named "
            f"{spec.name!r} among {', '.join(sorted(services)) or 'no Services'}"
        )

    def _entry_manifest(self, claimed: EntryService) -> dict[str, Any]:
        port: dict[str, Any] = {
            "name": "http",
            "port": claimed.port,
            "targetPort": claimed.target_port,
            "protocol": "TCP",
        }
        if claimed.node_port:
            port["nodePort"] = claimed.node_port
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": claimed.name,
                "namespace": self.namespace,
                "labels": {ENTRY_LABEL: claimed.target or "relay"} | MANAGED_BY,
            },
            "spec": {"type": "NodePort", "selector": dict(claimed.selector), "ports": [port]},
        }

    def _claim_entry(
        self,
        hint: str,
        selector: Mapping[str, str],
        service: Mapping[str, Any],
        target: str | None,
    ) -> EntryService:
        """A NodePort Service selecting ``selector``: kube-proxy balances each new connection
        over the ready pods, as for in-cluster clients (UPSTREAM.md; never a port-forward,
        which pins one pod). On kind the nodePort comes from the mapped pool; the API server
        refuses a nodePort another test holds, which makes it the lock between tests."""
        name = _entry_name(hint)
        if name in self._entries:
            return self._entries[name]
        ports = (service.get("spec") or {}).get("ports") or [{"port": 80}]
        claimed = EntryService(
            name=name,
            target=target,
            selector=dict(selector),
            port=int(ports[0].get("port", 80)),
            target_port=ports[0].get("targetPort", ports[0].get("port", 80)),
        )
        pool = self.backend.entry_points.node_port_pool
        last_error = ""
        for candidate in list(pool) if pool else [0]:
            claimed.node_port = candidate
            try:
                created = self.api.apply(self._entry_manifest(claimed), namespace=self.namespace)
            except Exception as exc:
                message = api_error_message(exc)
                if candidate and _status(exc) == 422 and "allocated" in message:
                    last_error = message
                    continue
                raise self._error(f"creating entry Service {name}", exc) from exc
            claimed.node_port = candidate or int(created["spec"]["ports"][0]["nodePort"])
            break
        else:
            raise BackendError(
                f"every NodePort this cluster maps ({', '.join(map(str, pool or ()))}) is taken "
                f"by other tests' entry Services ({last_error}); run fewer tests at once or "
                "recreate the cluster with more ports"
            )
        self._entries[name] = claimed
        self._wait_service_endpoints(name, self._counter(claimed.selector))
        return claimed

    def _sync_entries(self, wanted: Mapping[Key, dict[str, Any]]) -> None:
        """Entry Services follow their target's selector (a blue/green switch flips it)."""
        for claimed in self._entries.values():
            target = wanted.get(("", "Service", claimed.target or ""))
            if target is None or waits.service_selector(target) == claimed.selector:
                continue
            claimed.selector = waits.service_selector(target)
            try:
                self.api.apply(self._entry_manifest(claimed), namespace=self.namespace)
            except Exception as exc:
                raise self._error(f"updating entry Service {claimed.name}", exc) from exc

    # -- manifests written by the user (canary.apply) -------------------------------------

    # Every kind, applied as it is: ConfigMaps, HPAs, NetworkPolicies reach the cluster too.
    understood_kinds = None

    def entry_for_objects(self, objects: Sequence[Manifest], host: str | None) -> Entry:
        """Where traffic enters your manifests, chosen from the objects as the local backend
        does: an Ingress -> ingress-nginx; an Istio Gateway a VirtualService binds -> the
        Istio ingress gateway; a Gateway API Gateway an HTTPRoute names -> the gateway entry
        (both bound to the shared gateway by :func:`adapt` when ``--canary-gateway`` is
        set); otherwise a NodePort Service created for the test with the selector of the
        Service named ``host`` (or the first Service), balanced per connection.

        Called before anything is applied: objects this backend cannot apply per test and
        a missing entry URL are reported first. The NodePort entry Service is created now
        (its nodePort is the URL) and waited for once the workloads run.

        Raises:
            CanaryConfigError: cluster-scoped objects or kinds the cluster does not serve.
            BackendError: no entry URL for the data plane, VirtualServices or HTTPRoutes that
                no Gateway of the set binds (they route in-mesh calls only), nothing to
                send traffic to.
        """
        if self._closed:
            raise BackendError(f"environment {self.namespace} is closed")
        self._check_applicable(objects)
        dataplane = self._manifest_dataplane(objects)
        self._manifest_dataplane_key = dataplane[0] if dataplane is not None else None
        if dataplane is not None:
            self._manifest_target = None
            self._drop_entries(keep=None)
            strategy, what = dataplane
            points = self.backend.entry_points
            if not points.has_url(strategy):
                raise BackendError(
                    f"your manifests route through {what}, but no entry URL is configured for "
                    f"it: pass --canary-entry-url={strategy}=http://<its address, reachable "
                    "from this machine> (the kind backend sets it up)"
                )
            url = points.url_for(strategy)
            sent = f"Host: {host}" if host else "the URL's Host: no host in your manifests"
            return Entry(url=url, host=host, description=f"{what} at {url} ({sent})")
        services = {key_of(o)[2]: o for o in objects if key_of(o)[:2] == ("", "Service")}
        if not services:
            raise BackendError(
                "nothing to send traffic to: the manifests have no Ingress, Gateway or Service"
            )
        target = host if host is not None and host in services else next(iter(services))
        selector = waits.service_selector(services[target])
        if not selector:
            raise BackendError(
                f"Service {target} has no selector: a NodePort entry cannot mirror it; name "
                "a Service with a selector (host=<Service name>)"
            )
        self._manifest_target = target
        self._ensure_namespace(objects)
        self._drop_entries(keep=target)
        claimed = self._claim_entry(target, selector, services[target], target)
        node_host, port = self.backend.node_endpoint(claimed.node_port)
        return Entry(
            url=f"http://{node_host}:{port}",
            per_connection=True,
            description=f"NodePort Service {self.namespace}/{claimed.name} "
            f"({claimed.node_port}, selector of Service {target}) at {node_host}:{port}",
        )

    def apply_manifests(self, objects: Sequence[Manifest], *, version_label: str) -> None:
        """Apply your objects as they are (already moved into this namespace by
        ``byo.rewrite_namespace``), every kind included, with the waits of a rendered
        release: workloads available, Service endpoints ready, Ingresses admitted. A set
        applied before in this test is replaced: what it had and this one lacks is deleted,
        routing first. Pods keep their own ``version_label``; nothing stands in for them.

        Raises:
            CanaryConfigError: cluster-scoped objects or kinds the cluster does not serve.
            BackendError, ConvergenceTimeout: as :meth:`apply`.
        """
        self._check_applicable(objects)
        self._apply_objects(objects, prune_all=True)
        # The NodePort entry was created before its pods existed (entry_for_objects).
        for claimed in self._entries.values():
            self._wait_service_endpoints(claimed.name, self._counter(claimed.selector, objects))

    def await_manifests(
        self,
        objects: Sequence[Manifest],
        entry: Entry,
        *,
        path: str,
        version_label: str,
        version_from: VersionReader,
    ) -> None:
        """Return once the data plane serves your manifests: the routes the objects configure
        (:func:`waits.plan_for`, as for a rendered release; the default route plus forced
        header, cookie and virtual-host routes) are each answered, in a short run through
        ``entry``, only by pods of the workloads behind them -- versions read with
        ``version_from``, allowed ones from the pods' ``version_label`` -- without a failed
        request; the ingress-nginx and Envoy configuration is checked too where readable.

        Raises:
            ConvergenceTimeout: naming the entry, the routes and what was last served.
            BackendError: when the routing objects route nothing for the entry's host.
        """
        plan = self._manifest_plan(objects, entry, path, version_label)
        probe = EntryProbe(entry, path=path, classify=version_from.classifier())
        self._await_plan(
            entry,
            plan,
            probe,
            version_label=version_label,
            own_images=True,
            note=f" (versions read from the {version_from.describe()}, pods' label "
            f"{version_label})",
        )

    def _manifest_plan(
        self, objects: Sequence[Manifest], entry: Entry, path: str, version_label: str
    ) -> DataplanePlan:
        try:
            if self._manifest_target is not None:
                plan = waits.service_plan(objects, self._manifest_target)
            else:
                plan = waits.plan_for(
                    self._routed_by_entry(objects),
                    namespace=self.namespace,
                    host=entry.host,
                    path=path,
                )
        except BackendError as exc:
            raise BackendError(
                f"cannot tell when the data plane serves your manifests: {exc}"
            ) from exc
        # plan_for reads versions from the pod label "version"; yours may be another one.
        routes = tuple(
            dataclasses.replace(
                route,
                versions=frozenset(s[version_label] for s in route.selectors if version_label in s),
            )
            for route in plan.routes
        )
        return dataclasses.replace(plan, routes=routes)

    def _routed_by_entry(self, objects: Sequence[Manifest]) -> list[Manifest]:
        """The objects without the routing objects of data planes other than the entry's
        (and Ingresses ingress-nginx does not watch), so that the wait expects what the
        entry's data plane serves."""
        other = {
            "nginx": ("VirtualService", "HTTPRoute"),
            "istio": ("Ingress", "HTTPRoute"),
            "gateway": ("Ingress", "VirtualService"),
        }.get(self._manifest_dataplane_key or "", ())
        return [
            o
            for o in objects
            if key_of(o)[1] not in other
            and (key_of(o)[1] != "Ingress" or self._watched_by_nginx(o))
        ]

    def _watched_by_nginx(self, obj: Mapping[str, Any]) -> bool:
        """An Ingress ingress-nginx serves: class ``nginx`` or none, or any class when
        ``--canary-ingress-class`` rewrites it (:func:`adapt`)."""
        return key_of(obj)[:2] == ("networking.k8s.io", "Ingress") and bool(
            self.options.ingress_class or nginx_model.is_nginx_ingress(obj)
        )

    def _check_applicable(self, objects: Sequence[Manifest]) -> None:
        """Every object must be namespaced and served by the cluster: a cluster-scoped one
        (IngressClass, GatewayClass, ClusterRole, ...) would outlive the test's namespace and
        change the cluster for everyone, so it is not applied per test."""
        problems: list[str] = []
        for obj in objects:
            key = key_of(obj)
            try:
                rtype = self.api.resource(str(obj.get("apiVersion", "")), key[1])
            except BackendError as exc:
                problems.append(f"  {obj.get('apiVersion')} {describe_key(key)}: {exc}")
                continue
            if not rtype.namespaced:
                problems.append(
                    f"  {obj.get('apiVersion')} {describe_key(key)}: cluster-scoped; it would "
                    "outlive the test's namespace and change the cluster for every test"
                )
        if problems:
            raise CanaryConfigError(
                f"{len(problems)} object(s) of your manifests cannot be applied per test on "
                f"this cluster:\n" + "\n".join(problems) + "\nInstall cluster-wide objects "
                "once (they are part of the cluster) and remove them from the paths given."
            )

    def _manifest_dataplane(self, objects: Sequence[Manifest]) -> tuple[str, str] | None:
        """(entry URL key, what it is) of the data plane the objects configure, or None when
        they configure none and traffic enters through a Service."""
        if any(self._watched_by_nginx(o) for o in objects):
            return "nginx", "ingress-nginx"
        istio_gateways = {
            key_of(o)[2] for o in objects if key_of(o)[:2] == ("networking.istio.io", "Gateway")
        }
        virtual_services = [
            o for o in objects if key_of(o)[:2] == ("networking.istio.io", "VirtualService")
        ]
        for vs in virtual_services:
            for ref in (vs.get("spec") or {}).get("gateways") or []:
                if str(ref).rpartition("/")[2] in istio_gateways:
                    return "istio", "the Istio ingress gateway"
        api_gateways = {
            key_of(o)[2]
            for o in objects
            if key_of(o)[:2] == ("gateway.networking.k8s.io", "Gateway")
        }
        routes = [o for o in objects if key_of(o)[:2] == ("gateway.networking.k8s.io", "HTTPRoute")]
        for route in routes:
            for parent in (route.get("spec") or {}).get("parentRefs") or []:
                if parent.get("kind", "Gateway") == "Gateway" and parent.get("name") in (
                    api_gateways
                ):
                    return "gateway", "the Gateway API gateway (Istio)"
        unbound = [describe_key(key_of(o)) for o in virtual_services + routes]
        if unbound:
            # Sidecars apply these to calls made inside the mesh; a request from this
            # machine through a NodePort never passes a client sidecar, so it would not be
            # routed by them (Istio: VirtualService "gateways", reserved name "mesh").
            raise BackendError(
                f"{', '.join(unbound)}: bound to no Gateway of your manifests, so they route "
                "calls made inside the mesh only and traffic from this machine cannot pass "
                "through them. Bind them to an Istio Gateway (or HTTPRoute parentRefs to a "
                "Gateway) in the same paths, or check this routing on the local backend, "
                "which models a sidecar."
            )
        return None

    def _drop_entries(self, keep: str | None) -> None:
        """Delete the NodePort entry Services of a previous manifest set (frees nodePorts)."""
        for name, claimed in list(self._entries.items()):
            if claimed.target == keep:
                continue
            try:
                self.api.delete("v1", "Service", name, self.namespace)
            except Exception as exc:
                raise self._error(f"deleting entry Service {name}", exc) from exc
            del self._entries[name]

    # -- data plane -----------------------------------------------------------------------

    def _plan(
        self, spec: ReleaseSpec, objects: Sequence[Mapping[str, Any]], entry: Entry
    ) -> DataplanePlan:
        if spec.strategy in SERVICE_ENTRY_STRATEGIES:
            return waits.service_plan(objects, self._entry_target(spec))
        return waits.plan_for(objects, namespace=self.namespace, host=spec.host, path=spec.path)

    def await_dataplane(self, spec: ReleaseSpec, objects: Sequence[Manifest]) -> None:
        self._specs[spec.name] = spec
        self._converge(spec, self._adapt(objects))

    def _converge(self, spec: ReleaseSpec, objects: Sequence[Mapping[str, Any]]) -> None:
        entry = self.entry(spec)
        plan = self._plan(spec, objects, entry)
        self._await_plan(
            entry, plan, EntryProbe(entry, path=spec.path, classify=spec.app.classifier())
        )

    def _await_plan(
        self,
        entry: Entry,
        plan: DataplanePlan,
        probe: EntryProbe,
        *,
        version_label: str = waits.VERSION_LABEL,
        own_images: bool = False,
        note: str = "",
    ) -> None:
        """Wait until the data plane's own configuration (where readable) holds ``plan`` and
        every route is answered as it says, through ``entry``.

        With ``own_images`` (your manifests' images) a response's ``hostname`` counts as the
        answering pod only when a pod of the namespace has that name: your app's JSON may use
        the field for something else.
        """
        signals = self.backend.config_signals(plan)
        steady = waits.Steady(waits.NGINX_SYNC_INTERVAL)
        started = time.monotonic()

        def look() -> Check:
            seen: list[str] = []
            for signal in signals:
                check = signal()
                seen.append(check.status)
                if not check.done:
                    steady.update(False)
                    return Check(False, "; ".join(seen))
            if (
                plan.nginx is not None
                and signals
                and "ingress-nginx" not in self.backend.unavailable_signals
            ):
                held = steady.update(True)
                if held < waits.NGINX_SYNC_INTERVAL:
                    return Check(
                        False,
                        "; ".join(seen) + f" (visible for {held:.1f}s of "
                        f"{waits.NGINX_SYNC_INTERVAL:.0f}s worker sync)",
                    )
            pods = self.api.list("v1", "Pod", namespace=self.namespace)
            names = {str((p.get("metadata") or {}).get("name")) for p in pods}
            for route in plan.routes:
                size = waits.DEFAULT_WINDOW if route.name == "default" else waits.FORCED_WINDOW
                answers = probe.answers(route.headers, size)
                if own_images:
                    answers = [
                        a if a.pod is None or a.pod in names else dataclasses.replace(a, pod=None)
                        for a in answers
                    ]
                check = waits.judge_route(route, answers, allowed_pods(route, pods, version_label))
                seen.append(check.status)
                if not check.done:
                    return Check(False, "; ".join(seen))
            return Check(True, "; ".join(seen))

        try:
            result = waits.wait_until(
                f"the data plane behind {entry.description}",
                plan.describe() + note,
                look,
                timeout=self.options.dataplane_timeout,
                interval=0.2,
                max_interval=0.5,
            )
            self._history.append(f"converged in {time.monotonic() - started:.1f}s: {result.status}")
        except BackendError as exc:
            self._history.append(f"did not converge: {exc}")
            raise
        finally:
            probe.close()

    # -- diagnostics ----------------------------------------------------------------------

    def diagnostics(self) -> Diagnostics:
        diag = Diagnostics()
        if not self._created:
            diag.add("namespace", f"{self.namespace} was never created (nothing applied)")
            return diag
        diag.add("namespace", f"{self.namespace} on {self.api.server} (run {self.backend.run_id})")
        diag.add("data-plane waits", "\n".join(self._history[-10:]))
        diag.add(
            "unavailable data-plane signals",
            "\n".join(
                f"{name}: {reason}" for name, reason in self.backend.unavailable_signals.items()
            ),
        )
        self._section(diag, "objects (as the API server has them)", self._objects_text)
        self._section(diag, "events", self._events_text)
        pods: list[dict[str, Any]] = []

        def pods_text() -> str:
            pods.extend(self.api.list("v1", "Pod", namespace=self.namespace))
            return "\n".join(_pod_line(p) for p in pods)

        self._section(diag, "pods", pods_text)
        for pod in pods[:8]:
            name = str(pod["metadata"]["name"])
            containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
            container = "app" if "app" in containers else (containers[0] if containers else None)
            self._section(
                diag, f"log of pod {name} (last 20 lines)", self._log_reader(name, container)
            )
        self._section(
            diag, f"ingress-nginx controller log lines for {self.namespace}", self._nginx_log_text
        )
        return diag

    def _log_reader(self, pod: str, container: str | None) -> Callable[[], str]:
        return lambda: self.api.pod_log(pod, self.namespace, container=container, tail=20)

    def _section(self, diag: Diagnostics, name: str, read: Callable[[], str]) -> None:
        try:
            diag.add(name, read())
        except Exception as exc:  # diagnostics must never hide the failure
            diag.add(name, f"could not read: {type(exc).__name__}: {api_error_message(exc)}")

    def _objects_text(self) -> str:
        lines: list[str] = []
        for key, obj in self._applied.items():
            current = self.api.get(str(obj["apiVersion"]), key[1], key[2], self.namespace)
            if current is None:
                lines.append(f"{describe_key(key)}: not found")
                continue
            status = current.get("status")
            text = yaml.safe_dump(status, sort_keys=False).strip() if status else "(no status)"
            lines.append(f"{describe_key(key)}:\n  " + text.replace("\n", "\n  "))
        for claimed in self._entries.values():
            lines.append(
                f"Service/{claimed.name}: NodePort {claimed.node_port} entry selecting "
                f"{claimed.selector}"
            )
        return "\n".join(lines)

    def _events_text(self) -> str:
        events = self.api.list("v1", "Event", namespace=self.namespace)

        def when(event: Mapping[str, Any]) -> str:
            return str(
                event.get("lastTimestamp")
                or event.get("eventTime")
                or (event.get("metadata") or {}).get("creationTimestamp")
                or ""
            )

        lines = []
        for event in sorted(events, key=when)[-60:]:
            obj = event.get("involvedObject") or {}
            count = (
                f" (x{event['count']})"
                if event.get("count", 1) and event.get("count", 1) > 1
                else ""
            )
            lines.append(
                f"{when(event)} {event.get('type', '')} {event.get('reason', '')} "
                f"{obj.get('kind', '')}/{obj.get('name', '')}: {event.get('message', '')}{count}"
            )
        return "\n".join(lines)

    def _nginx_log_text(self) -> str:
        # The access log carries [$proxy_upstream_name] [$proxy_alternative_upstream_name],
        # upstreams are named <namespace>-<service>-<port> (UPSTREAM.md).
        if not any(k[1] == "Ingress" for k in self._applied):
            return ""
        lines: list[str] = []
        for pod in self.api.list("v1", "Pod", label_selector=INGRESS_NGINX_PODS):
            meta = pod["metadata"]
            log = self.api.pod_log(
                str(meta["name"]), str(meta["namespace"]), container="controller", tail=3000
            )
            lines += [
                line
                for line in log.splitlines()
                if f"{self.namespace}-" in line or f"{self.namespace}/" in line
            ]
        return "\n".join(lines[-40:])

    # -- cleanup --------------------------------------------------------------------------

    @property
    def kept(self) -> bool:
        """Whether teardown leaves the namespace in place (``--canary-keep``)."""
        return self.options.keep == "always" or (self.options.keep == "failed" and self.failed)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.backend.closed(self)
        try:
            if self._created and self.kept:
                self._keep()
            elif self._created:
                self._delete_namespace()
        finally:
            for lock in self._locks:
                lock.release()
            self._locks.clear()

    def _keep(self) -> None:
        """Leave the namespace for inspection, minus its claim on shared hosts: routing objects
        move into a ConfigMap (re-apply them from there), so later tests can use the hosts."""
        routing = {k: o for k, o in self._applied.items() if rank(k) > ROUTING_RANK}
        if routing:
            saved = yaml.safe_dump_all(list(routing.values()), sort_keys=False)
            self._write(
                ("", "ConfigMap", KEPT_ROUTING),
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": KEPT_ROUTING, "namespace": self.namespace},
                    "data": {"objects.yaml": saved},
                },
            )
            for key in sorted(routing, key=rank, reverse=True):
                self._delete(key)
        marked = self._namespace_object()
        marked["metadata"]["labels"][KEPT_LABEL] = "true"  # the whole object: SSA drops omissions
        self._write(("", "Namespace", self.namespace), marked)
        self.backend.kept.append(self.namespace)

    def _delete_namespace(self) -> None:
        errors: list[str] = []
        # Routing objects first, synchronously: a terminating namespace keeps its Ingress /
        # routes until its pods are gone, and the next test on the same host (the host lock
        # is released right after) would meet them on the shared data plane.
        routing = [k for k in self._applied if rank(k) > ROUTING_RANK]
        for key in sorted(routing, key=rank, reverse=True):
            try:
                self._delete(key)
            except BackendError as exc:
                errors.append(str(exc))
        for claimed in self._entries.values():
            try:  # release the nodePort now, not when the namespace finishes terminating
                self.api.delete("v1", "Service", claimed.name, self.namespace)
            except Exception as exc:
                errors.append(f"Service {claimed.name}: {api_error_message(exc)}")
        try:
            self.api.delete("v1", "Namespace", self.namespace)
        except Exception as exc:
            errors.append(f"Namespace {self.namespace}: {api_error_message(exc)}")
        if errors:
            raise BackendError(f"cleanup of {self.namespace} failed: " + "; ".join(errors))


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return (obj.get("metadata") or {}).get("annotations") or {}


def _template_labels(obj: Mapping[str, Any]) -> dict[str, str]:
    """The pod labels of a workload's template (empty for objects without one)."""
    template = (obj.get("spec") or {}).get("template") or {}
    return dict((template.get("metadata") or {}).get("labels") or {})


def _app_label(obj: Mapping[str, Any]) -> str | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    value = labels.get("app")
    return str(value) if value is not None else None


def _entry_name(target: str) -> str:
    return f"{target[:50]}-canary-entry"


def _selector(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _pod_line(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready = "Ready" if _pod_ready(pod) else "NotReady"
    restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
    version = (meta.get("labels") or {}).get(waits.VERSION_LABEL, "-")
    problems = waits.pod_problems([pod])
    line = (
        f"{meta.get('name')} version={version} {status.get('phase', '?')} {ready} "
        f"restarts={restarts} node={(pod.get('spec') or {}).get('nodeName', '-')} "
        f"ip={status.get('podIP', '-')}"
    )
    if meta.get("deletionTimestamp"):
        line += " terminating"
    return line + (f" -- {problems[0].split(': ', 1)[1]}" if problems else "")


# -- the backend ----------------------------------------------------------------------------


class KubeBackend(Backend):
    """Releases on an existing cluster: one namespace per test.

    Args:
        api: the cluster's API.
        options: how to use it.
        entry_points: where traffic enters (from options, or from the kind cluster).
        run_id: labels every namespace of this run (``pytest-canary/run``).
        context: the kubeconfig context, for the header line.
        progress: receives progress lines of long steps.
        lock_dir: where :class:`HostLocks` keeps its lock files (None: no host locking).
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
    ) -> None:
        self.api = api
        self.options = options
        self.entry_points = entry_points
        self.run_id = run_id
        self.context = context
        self.progress = progress
        self.kept: list[str] = []
        self.unavailable_signals: dict[str, str] = {}
        # Consecutive non-JSON answers per configuration signal (see _exec_signal).
        self._non_json: dict[str, int] = {}
        self._open: dict[str, KubeEnvironment] = {}
        self._lock = threading.Lock()
        self._node_address: str | None = entry_points.node_address
        self._gateway_selector: dict[str, str] | None = None
        self.host_locks = HostLocks(lock_dir, progress=progress)
        self._closed = False

    @classmethod
    def from_kubeconfig(
        cls,
        options: KubeOptions,
        *,
        run_id: str,
        progress: Progress = _quiet,
        lock_dir: Path | None = None,
    ) -> KubeBackend:
        """Connect to the cluster ``options`` name, refusing non-test contexts unless named.

        Raises:
            CanaryConfigError: for a context that needs ``--kube-context``.
            BackendError: when the kubeconfig or context cannot be used.
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
        entry_points = EntryPoints(urls=dict(options.entry_urls), node_address=options.node_address)
        return cls(
            api,
            options,
            entry_points,
            run_id=run_id,
            context=context,
            progress=progress,
            lock_dir=lock_dir,
        )

    def describe(self) -> str:
        urls = ", ".join(f"{k}={v}" for k, v in self.entry_points.urls.items()) or "no entry URLs"
        return f"kube (context {self.context or '?'}, {self.api.server}; entries: {urls})"

    def environment(self, test_name: str) -> KubeEnvironment:
        if self._closed:
            raise BackendError("the kube backend is closed")
        return KubeEnvironment(self, test_name)

    # -- hooks for environments ---------------------------------------------------------------

    def opened(self, env: KubeEnvironment) -> None:
        """An environment created its namespace (closed at the latest with the backend)."""
        with self._lock:
            self._open[env.namespace] = env

    def closed(self, env: KubeEnvironment) -> None:
        """An environment was closed."""
        with self._lock:
            self._open.pop(env.namespace, None)

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
        port_map = self.entry_points.node_port_map
        if port_map is not None:
            if node_port not in port_map:
                raise BackendError(f"nodePort {node_port} is not mapped to this machine")
            return self.entry_points.node_address or "127.0.0.1", port_map[node_port]
        if self._node_address is None:
            self._node_address = self._discover_node_address()
        return self._node_address, node_port

    def _discover_node_address(self) -> str:
        try:
            nodes = self.api.list("v1", "Node")
        except Exception as exc:
            raise BackendError(
                f"cannot list nodes to reach a NodePort ({api_error_message(exc)}): pass "
                "--canary-node-address=<address of any node>"
            ) from exc
        for wanted in ("ExternalIP", "InternalIP"):
            for node in nodes:
                for address in (node.get("status") or {}).get("addresses") or []:
                    if address.get("type") == wanted and address.get("address"):
                        return str(address["address"])
        raise BackendError(
            "no node has an address: pass --canary-node-address=<address of any node>"
        )

    # -- data-plane configuration signals ---------------------------------------------------------

    def config_signals(self, plan: DataplanePlan) -> list[Callable[[], Check]]:
        """Checks of the data plane's own configuration, where this client may read it.

        - ingress-nginx: ``/dbg backends all`` in each ready controller pod (the controller's
          dynamic configuration, ``/configuration/backends``);
        - Istio: the ingress gateway's Envoy routes (``pilot-agent request GET config_dump``).

        A signal that cannot be read (no such pods, exec forbidden) is recorded in
        :attr:`unavailable_signals` and left out; the entry probe still runs.
        """
        signals: list[Callable[[], Check]] = []
        nginx_want, envoy_want = plan.nginx, plan.envoy
        if nginx_want is not None and "ingress-nginx" not in self.unavailable_signals:

            def nginx() -> Check:
                return self._exec_signal(
                    "ingress-nginx",
                    INGRESS_NGINX_PODS,
                    ["/dbg", "backends", "all"],
                    "controller",
                    lambda data: waits.nginx_backends_check(
                        data if isinstance(data, list) else [], nginx_want
                    ),
                )

            signals.append(nginx)
        if envoy_want is not None and "istio-gateway" not in self.unavailable_signals:

            def envoy() -> Check:
                return self._exec_signal(
                    "istio-gateway",
                    self._gateway_pods(),
                    ["pilot-agent", "request", "GET", "config_dump?resource=dynamic_route_configs"],
                    "istio-proxy",
                    lambda data: waits.envoy_route_check(
                        data if isinstance(data, dict) else {}, envoy_want
                    ),
                )

            signals.append(envoy)
        return signals

    def _gateway_pods(self) -> str:
        selector = self.gateway_selector()
        return _selector(selector) if selector else ISTIO_GATEWAY_PODS

    def _exec_signal(
        self,
        name: str,
        selector: str,
        command: Sequence[str],
        container: str,
        judge: Callable[[Any], Check],
    ) -> Check:
        try:
            pods = [p for p in self.api.list("v1", "Pod", label_selector=selector) if _pod_ready(p)]
        except Exception as exc:
            if waits.is_transient(exc):
                raise
            self.unavailable_signals[name] = (
                f"cannot list pods {selector}: {api_error_message(exc)}"
            )
            return Check(True, f"{name}: configuration not readable, skipped")
        if not pods:
            self.unavailable_signals[name] = f"no ready pod matches {selector}"
            return Check(True, f"{name}: configuration not readable, skipped")
        statuses = []
        for pod in pods:
            meta = pod["metadata"]
            try:
                output = self.api.exec(
                    str(meta["name"]), str(meta["namespace"]), command, container=container
                )
            except Exception as exc:  # a missing signal must not fail the run
                if waits.is_transient(exc):
                    return Check(False, f"{name}: {api_error_message(exc)}")
                self.unavailable_signals[name] = (
                    f"exec {' '.join(command)} in {meta['name']}: {exc}"
                )
                return Check(True, f"{name}: configuration not readable, skipped")
            try:
                data = _json_in(output)
                self._non_json[name] = 0
            except Exception as exc:
                # /dbg prints a passing error as plain text (exit 0): retry a few times
                # before giving the signal up for the session.
                self._non_json[name] = self._non_json.get(name, 0) + 1
                if self._non_json[name] < NON_JSON_TOLERATED:
                    return Check(False, f"{name}: answered {output[:80]!r}, not JSON yet")
                self.unavailable_signals[name] = (
                    f"exec {' '.join(command)} in {meta['name']}: {exc}"
                )
                return Check(True, f"{name}: configuration not readable, skipped")
            check = judge(data)
            statuses.append(f"{meta['name']}: {check.status}")
            if not check.done:
                return Check(False, "; ".join(statuses))
        return Check(True, "; ".join(statuses))

    # -- cleanup -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close environments a test left open (interrupted runs), then the client."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for env in list(self._open.values()):
            try:
                env.close()
            except BaseException as exc:  # close everything, raise the first
                errors.append(exc)
        self.api.close()
        if errors:
            raise errors[0]


# Consecutive answers that are not JSON before a configuration signal is given up.
NON_JSON_TOLERATED = 3


def _json_in(output: str) -> Any:
    """The JSON document in a command's output (tools may print a line before it)."""
    starts = [i for i in (output.find("{"), output.find("[")) if i >= 0]
    if not starts:
        raise ValueError(f"no JSON in output: {output[:200]!r}")
    return json.loads(output[min(starts) :])
