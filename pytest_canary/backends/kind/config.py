"""The kind cluster config and its host ports: one node labelled ``ingress-ready=true``,
ports mapped on 127.0.0.1 only -- 80/443 for ingress-nginx (its controller uses hostPort
80/443), the Istio ingress gateway's fixed nodePort, and a pool of nodePorts for per-test
entry Services. Every NodePort entry goes through these mappings, never a node IP: on Docker
Desktop (macOS, Windows) node IPs are not reachable from the host (kind known issues), the
mappings are."""

from __future__ import annotations

import copy
import socket
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from pytest_canary.backends import addons
from pytest_canary.backends.kind.options import KindOptions
from pytest_canary.errors import BackendError

HTTP_PORT = 80
HTTPS_PORT = 443
GATEWAY_NODE_PORT = 30080
"""The Istio ingress gateway's fixed nodePort (``fixtures/addons.yaml`` overlay)."""
NODE_PORT_POOL: tuple[int, ...] = tuple(range(30100, 30120))
"""NodePorts kind maps for per-test entry Services: at most this many at once."""


@dataclass(frozen=True)
class PortMap:
    """Host ports (on 127.0.0.1) of the cluster's entry points."""

    http: int
    https: int
    gateway: int
    node_ports: Mapping[int, int]

    def as_dict(self) -> dict[str, Any]:
        """Plain data (xdist hands it to workers)."""
        data = asdict(self)
        data["node_ports"] = {str(k): v for k, v in self.node_ports.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PortMap:
        """Inverse of :meth:`as_dict`."""
        return cls(
            http=int(data["http"]),
            https=int(data["https"]),
            gateway=int(data["gateway"]),
            node_ports={int(k): int(v) for k, v in dict(data["node_ports"]).items()},
        )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def choose_ports(
    options: KindOptions,
    *,
    free: Callable[[], int] = free_port,
    is_free: Callable[[int], bool] = port_is_free,
) -> PortMap:
    """Host ports for a new cluster: the ones asked for (checked free), the rest free ones.

    Raises:
        BackendError: when a requested port is taken.
    """
    taken: set[int] = set()

    def pick(requested: int | None, flag: str) -> int:
        if requested is not None:
            if requested in taken or not is_free(requested):
                raise BackendError(
                    f"host port {requested} ({flag}) is in use on 127.0.0.1: choose another "
                    "or leave the option out for a free port"
                )
            taken.add(requested)
            return requested
        for _ in range(100):
            port = free()
            if port not in taken:
                taken.add(port)
                return port
        raise BackendError("could not find free host ports on 127.0.0.1")

    http = pick(options.http_port, "--canary-kind-http-port")
    gateway = pick(options.gateway_port, "--canary-kind-gateway-port")
    https = pick(None, "https")
    node_ports = {node_port: pick(None, f"nodePort {node_port}") for node_port in NODE_PORT_POOL}
    return PortMap(http=http, https=https, gateway=gateway, node_ports=node_ports)


def load_kind_template(path: Path | None = None) -> dict[str, Any]:
    """``fixtures/kind-config.yaml`` as a dict."""
    source = path or addons.fixtures_dir() / "kind-config.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not data.get("nodes"):
        raise BackendError(f"{source}: not a kind Cluster config with nodes")
    return data


def render_kind_config(template: Mapping[str, Any], ports: PortMap) -> dict[str, Any]:
    """The template with the control-plane's ``extraPortMappings`` (all on 127.0.0.1)."""
    config = copy.deepcopy(dict(template))
    control_plane = next(
        (n for n in config["nodes"] if n.get("role") == "control-plane"), config["nodes"][0]
    )
    labels = control_plane.setdefault("labels", {})
    labels.setdefault("ingress-ready", "true")
    mappings = [
        (HTTP_PORT, ports.http),
        (HTTPS_PORT, ports.https),
        (GATEWAY_NODE_PORT, ports.gateway),
    ]
    mappings += sorted(ports.node_ports.items())
    control_plane["extraPortMappings"] = [
        {
            "containerPort": container,
            "hostPort": host,
            "listenAddress": "127.0.0.1",
            "protocol": "TCP",
        }
        for container, host in mappings
    ]
    return config


def ports_from_docker(published: Mapping[str, Any]) -> PortMap:
    """The port map of an existing node container (``HostConfig.PortBindings`` or
    ``NetworkSettings.Ports`` of ``docker inspect``: ``{"80/tcp": [{"HostIp": "127.0.0.1",
    "HostPort": "41234"}], ...}``; a binding without a fixed host port is left out).

    Raises:
        BackendError: when a port pytest-canary needs is not mapped (a cluster not made by
            pytest-canary).
    """
    found: dict[int, int] = {}
    for key, bindings in published.items():
        container, _, proto = key.partition("/")
        host_port = str((bindings or [{}])[0].get("HostPort") or "")
        if proto == "tcp" and container.isdigit() and host_port.isdigit():
            found[int(container)] = int(host_port)
    needed = [HTTP_PORT, GATEWAY_NODE_PORT, *NODE_PORT_POOL]
    missing = [p for p in needed if p not in found]
    if missing:
        raise BackendError(
            f"the cluster's node does not map port(s) {', '.join(map(str, missing[:5]))}"
            f"{' ...' if len(missing) > 5 else ''} to this machine: it was not created by "
            "pytest-canary. Delete it (kind delete cluster --name NAME) or pick another name "
            "with --canary-kind-cluster"
        )
    return PortMap(
        http=found[HTTP_PORT],
        https=found.get(HTTPS_PORT, 0),
        gateway=found[GATEWAY_NODE_PORT],
        node_ports={p: found[p] for p in NODE_PORT_POOL},
    )


FAIL_CGROUP_V1_FROM = (1, 35)
"""From Kubernetes 1.35 the kubelet refuses to start on a cgroup v1 host unless its
configuration says ``failCgroupV1: false`` (kubernetes/kubernetes#134298, KEP-5573: the
KubeletConfiguration default turned true). kind v0.31/v0.32 set no override."""

CGROUP_V1_PATCH = (
    "kind: KubeletConfiguration\napiVersion: kubelet.config.k8s.io/v1beta1\nfailCgroupV1: false\n"
)
"""A kind ``kubeadmConfigPatches`` entry (merged into the KubeletConfiguration kind hands
kubeadm; kind docs "Kubeadm Config Patches": kubeadm reads the kubelet configuration of the
first node for all). kind runs kubeadm with its preflight phase skipped, so kubeadm's
cgroup v1 validation does not stop it either."""


def allow_cgroup_v1(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with :data:`CGROUP_V1_PATCH` added to its cluster-wide
    ``kubeadmConfigPatches``: a 1.35+ node starts on a cgroup v1 host."""
    patched = copy.deepcopy(dict(config))
    patches = list(patched.get("kubeadmConfigPatches") or [])
    if CGROUP_V1_PATCH not in patches:
        patches.append(CGROUP_V1_PATCH)
    patched["kubeadmConfigPatches"] = patches
    return patched
