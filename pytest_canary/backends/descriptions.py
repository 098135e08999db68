"""What each backend and runtime is, in words: for the report header, importable at no cost
(the modules that run them import aiohttp, kubernetes or docker)."""

from __future__ import annotations

MODELS = (
    "ingress-nginx controller-v1.15.1 canary rules, Istio 1.30 VirtualService/DestinationRule "
    "routing (gateway and sidecars), Gateway API v1.6.1 HTTPRoute, kube-proxy per-connection "
    "balancing, the Deployment controller's rolling update, the Argo Rollouts v1.9.1 controller "
    "(canary)"
)
# How pods of the local backend run: name -> what the report header says.
RUNTIMES: dict[str, str] = {
    "process": "processes of the Python sample app",
    "docker": "Docker containers of each version's image",
}
