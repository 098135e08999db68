"""API access: the few Kubernetes operations pytest-canary needs, on plain dicts.

Built-in kinds go through the typed ``kubernetes`` client APIs, custom resources through
``CustomObjectsApi``, unknown kinds are found by API discovery. Every write is a server-side
apply with the field manager ``pytest-canary``. Everything above this module talks to the
cluster through :class:`KubeApi` only, so the contract tests can put an emulator behind it.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_canary.errors import BackendError

FIELD_MANAGER = "pytest-canary"
APPLY_PATCH = "application/apply-patch+yaml"
STDOUT_CHANNEL, STDERR_CHANNEL = 1, 2  # the exec stream's channels (remotecommand)
EXEC_OUTPUT_LIMIT = 32 * 1024 * 1024
"""Bytes an ``exec`` may print before it is cut off (an Envoy config_dump of a busy gateway
runs to a few MB; nothing we read is larger)."""

Key = tuple[str, str, str]  # (API group, kind, name)


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


@dataclass(frozen=True)
class ExecOutput:
    """What a command run with :meth:`KubeApi.exec` printed, per stream."""

    stdout: str
    stderr: str = ""


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


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of an API error (None for errors that are not API answers)."""
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
        self._exec_core: Any = None
        self._exec_lock = threading.Lock()

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
            if status_of(exc) == 404:
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
            if status_of(exc) == 404:
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
            if status_of(exc) == 404:
                return False
            raise
        return True

    def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str,
        body: Any,
        *,
        content_type: str,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """A patch that is not an apply: ``content_type`` says which
        (``application/merge-patch+json``, ``application/json-patch+json``), ``subresource``
        where it goes (``status`` for a custom resource with the status subresource).
        Returns the server's object; API errors propagate as ``ApiException``.

        Raises:
            BackendError: for a subresource of a built-in kind (not needed, not offered).
        """
        rtype = self.resource(api_version, kind)
        options: dict[str, Any] = {
            "_content_type": content_type,
            "_preload_content": False,
            "_request_timeout": self.request_timeout,
        }
        if rtype.typed is not None:
            if subresource is not None:
                raise BackendError(f"patching {kind}/{name}/{subresource} is not offered")
            method = self._typed(rtype, "patch")
            args = (name, namespace, body) if rtype.namespaced else (name, body)
            return self._json(method(*args, **options))
        custom = self._api("CustomObjectsApi")
        suffix = f"_{subresource}" if subresource else ""
        verb = getattr(custom, f"patch_namespaced_custom_object{suffix}")
        return self._json(
            verb(rtype.group, rtype.version, namespace, rtype.plural, name, body, **options)
        )

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
        self,
        pod: str,
        namespace: str,
        command: Sequence[str],
        *,
        container: str | None = None,
        limit: int = EXEC_OUTPUT_LIMIT,
    ) -> ExecOutput:
        """Run ``command`` in a container and return what it printed, stdout and stderr
        apart (a tool's warning on stderr must not end up in the JSON it prints).

        Raises:
            BackendError: when it prints more than ``limit`` bytes.
        """
        from kubernetes.stream import stream

        # kubernetes/stream/stream.py _websocket_request swaps api_client.call_api for a
        # websocket call while it opens the stream: on the shared client, a call of another
        # thread (the lease renewal) would go through the websocket. So exec has a client of
        # its own, and one exec opens its stream at a time.
        with self._exec_lock:
            if self._exec_core is None:
                self._exec_core = self._client.CoreV1Api(
                    self._client.ApiClient(self.api_client.configuration)
                )
            client = stream(
                self._exec_core.connect_get_namespaced_pod_exec,
                pod,
                namespace,
                command=list(command),
                container=container,
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
                _request_timeout=self.request_timeout,
            )
        chunks: dict[int, list[str]] = {STDOUT_CHANNEL: [], STDERR_CHANNEL: []}
        size = 0
        deadline = time.monotonic() + self.request_timeout
        try:
            while True:
                client.update(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
                for channel in (STDOUT_CHANNEL, STDERR_CHANNEL):
                    text = client.read_channel(channel, timeout=0)
                    chunks[channel].append(text)
                    size += len(text)
                if size > limit:
                    raise BackendError(
                        f"exec {' '.join(command)} in {namespace}/{pod} printed more than "
                        f"{limit} bytes; not read further"
                    )
                if not client.is_open():
                    return ExecOutput(
                        "".join(chunks[STDOUT_CHANNEL]), "".join(chunks[STDERR_CHANNEL])
                    )
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"exec {' '.join(command)} in {namespace}/{pod} did not finish within "
                        f"{self.request_timeout:.0f}s"
                    )
        finally:
            client.close()

    def serves(self, api_version: str) -> bool:
        """Whether the cluster serves ``api_version`` (``networking.istio.io/v1``): API
        discovery, 404 meaning no. Other API errors propagate."""
        group, version = split_api_version(api_version)
        try:
            self._get_path(f"/apis/{group}/{version}" if group else f"/api/{version}")
        except Exception as exc:
            if status_of(exc) == 404:
                return False
            raise
        return True

    def server_version(self) -> dict[str, Any]:
        """The API server's ``/version`` (``gitVersion``, ``major``, ``minor``, ...)."""
        return self._get_path("/version")

    def close(self) -> None:
        """Close connection pools."""
        with contextlib.suppress(Exception):
            self.api_client.close()
        if self._exec_core is not None:
            with contextlib.suppress(Exception):
                self._exec_core.api_client.close()
