"""Entry points: where a test's traffic enters the cluster from this machine.

Through a data plane's own address (``--canary-entry-url``: the ingress-nginx controller, the
Istio ingress gateway; on kind the mapped host ports), through the address Istio writes into
a Gateway API Gateway's status, or through a NodePort Service created for the test with the
selector of the release's Service -- kube-proxy balances each new connection over the ready
pods, as for in-cluster clients (never a port-forward, which pins one pod). A NodePort is
reached at ``--canary-node-address``, through kind's port mappings, or at a node's address.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_canary.backends import waits
from pytest_canary.backends.kube.api import KubeApi, api_error_message, status_of
from pytest_canary.backends.kube.apply import api_failure
from pytest_canary.backends.kube.namespace import MANAGED_BY
from pytest_canary.backends.kube.ready import Readiness
from pytest_canary.backends.waits import Check
from pytest_canary.errors import BackendError

ENTRY_LABEL = "pytest-canary/entry-for"
DOCKER_DESKTOP_CONTEXTS = ("kind-", "k3d-", "docker-desktop", "minikube")
"""Context names of clusters whose nodes are containers of the local Docker engine."""


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


class NodeAddress:
    """The host and port that reach a nodePort from this machine.

    Args:
        api: the cluster (node addresses are read from it when needed).
        points: the configured entry points.
        context: the kubeconfig context (for the Docker Desktop hint).
        platform: ``sys.platform`` (injectable for tests).
    """

    def __init__(
        self, api: KubeApi, points: EntryPoints, *, context: str = "", platform: str = sys.platform
    ) -> None:
        self.api = api
        self.points = points
        self.context = context
        self.platform = platform
        self._address: str | None = points.node_address

    def endpoint(self, node_port: int) -> tuple[str, int]:
        """(host, port) that reaches ``node_port``."""
        port_map = self.points.node_port_map
        if port_map is not None:
            if node_port not in port_map:
                raise BackendError(f"nodePort {node_port} is not mapped to this machine")
            return self.points.node_address or "127.0.0.1", port_map[node_port]
        if self._address is None:
            self._address = self._discover()
        return self._address, node_port

    def _discover(self) -> str:
        if self.platform in ("darwin", "win32") and self.context.startswith(
            DOCKER_DESKTOP_CONTEXTS
        ):
            # kind known issues ("Docker Desktop for macOS and Windows"): the nodes are
            # containers inside Docker Desktop's VM; their IPs are not routable from the host.
            raise BackendError(
                f"context {self.context!r} runs its nodes in Docker Desktop, whose node IPs "
                "this machine cannot reach, so a NodePort entry (replicas, bluegreen, rolling, "
                "Istio frontends) needs --canary-node-address=HOST where HOST forwards the "
                "NodePorts (e.g. 127.0.0.1 with the ports mapped by the cluster), or run on "
                "the kind backend (--canary-backend=kind), which maps them for you"
            )
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


@dataclass
class EntryService:
    """A NodePort Service created for a test's traffic (not one of the release's objects)."""

    name: str
    target: str | None  # the release Service whose selector it mirrors (None: fixed selector)
    selector: dict[str, str]
    port: int
    target_port: int | str
    node_port: int = 0


def entry_name(target: str) -> str:
    """The entry Service's name for a target Service."""
    return f"{target[:50]}-canary-entry"


class EntryServices:
    """The NodePort entry Services of one test namespace.

    On kind the nodePort comes from the mapped pool; the API server refuses a nodePort
    another test holds, which makes it the lock between tests.
    """

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        ready: Readiness,
        *,
        pool: tuple[int, ...] | None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.ready = ready
        self.pool = pool
        self.claimed: dict[str, EntryService] = {}

    def manifest(self, claimed: EntryService) -> dict[str, Any]:
        """The Service object of an entry."""
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

    def claim(
        self,
        hint: str,
        selector: Mapping[str, str],
        service: Mapping[str, Any],
        target: str | None,
        *,
        wait: bool = True,
    ) -> EntryService:
        """A NodePort Service selecting ``selector`` with the port of ``service``; with
        ``wait``, returned once its endpoints are ready."""
        name = entry_name(hint)
        if name in self.claimed:
            return self.claimed[name]
        ports = (service.get("spec") or {}).get("ports") or [{"port": 80}]
        claimed = EntryService(
            name=name,
            target=target,
            selector=dict(selector),
            port=int(ports[0].get("port", 80)),
            target_port=ports[0].get("targetPort", ports[0].get("port", 80)),
        )
        last_error = ""
        for candidate in list(self.pool) if self.pool else [0]:
            claimed.node_port = candidate
            try:
                created = self.api.apply(self.manifest(claimed), namespace=self.namespace)
            except Exception as exc:
                message = api_error_message(exc)
                if candidate and status_of(exc) == 422 and "allocated" in message:
                    last_error = message
                    continue
                raise api_failure(f"creating entry Service {name}", exc) from exc
            claimed.node_port = candidate or int(created["spec"]["ports"][0]["nodePort"])
            break
        else:
            raise BackendError(
                f"every NodePort this cluster maps ({', '.join(map(str, self.pool or ()))}) is "
                f"taken by other tests' entry Services ({last_error}); run fewer tests at once "
                "or recreate the cluster with more ports"
            )
        self.claimed[name] = claimed
        if wait:
            self.ready.service_endpoints(name, self.ready.counter(claimed.selector))
        return claimed

    def follow(self, services: Mapping[str, Mapping[str, Any]]) -> None:
        """Entry Services follow their target's selector (a blue/green switch flips it)."""
        for claimed in self.claimed.values():
            target = services.get(claimed.target or "")
            if target is None or waits.service_selector(target) == claimed.selector:
                continue
            claimed.selector = waits.service_selector(target)
            try:
                self.api.apply(self.manifest(claimed), namespace=self.namespace)
            except Exception as exc:
                raise api_failure(f"updating entry Service {claimed.name}", exc) from exc

    def drop(self, keep: str | None) -> None:
        """Delete the entry Services of targets other than ``keep`` (frees nodePorts)."""
        for name, claimed in list(self.claimed.items()):
            if claimed.target == keep:
                continue
            try:
                self.api.delete("v1", "Service", name, self.namespace)
            except Exception as exc:
                raise api_failure(f"deleting entry Service {name}", exc) from exc
            del self.claimed[name]

    def release(self) -> list[str]:
        """Delete every entry Service now (frees the nodePorts before the namespace finishes
        terminating); returns the errors."""
        errors = []
        for claimed in self.claimed.values():
            try:
                self.api.delete("v1", "Service", claimed.name, self.namespace)
            except Exception as exc:
                errors.append(f"Service {claimed.name}: {api_error_message(exc)}")
        return errors


def slug(text: str) -> str:
    """Lowercase letters, digits and ``-`` (for names derived from versions)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "v"


def gateway_address(
    api: KubeApi, gateway: Mapping[str, Any], namespace: str, *, timeout: float
) -> str:
    """Where a Gateway API Gateway deployed by its implementation listens: the first of
    ``status.addresses`` (Istio fills it from its LoadBalancer Service) and the listener
    port. Used on clusters where no entry URL and no shared gateway is configured."""
    name = str(gateway["metadata"]["name"])
    listeners = (gateway.get("spec") or {}).get("listeners") or [{"port": 80}]
    port = int(listeners[0].get("port", 80))
    found: list[str] = []

    def probe() -> Check:
        current = api.get(str(gateway["apiVersion"]), "Gateway", name, namespace)
        addresses = ((current or {}).get("status") or {}).get("addresses") or []
        if addresses and addresses[0].get("value"):
            found.append(str(addresses[0]["value"]))
            return Check(True, f"address {found[0]}")
        conditions = ((current or {}).get("status") or {}).get("conditions") or []
        text = ", ".join(f"{c.get('type')}={c.get('status')}" for c in conditions)
        return Check(False, f"no address yet ({text or 'no conditions'})")

    waits.wait_until(
        f"Gateway {namespace}/{name}",
        "given an address by its implementation (status.addresses)",
        probe,
        timeout=timeout,
        setting="--canary-wait-timeout",
    )
    return f"http://{found[0]}:{port}" if port != 80 else f"http://{found[0]}"
