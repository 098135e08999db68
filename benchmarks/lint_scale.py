"""What linting costs on large (hostile) manifests: time and size of the findings.

``lint_paths`` runs in a CI lint step and inside ``canary.apply``, on manifests anyone may
have written. Each scenario below writes one manifest file built so that a pairwise check
would compare every element of one long list with every element of another, then times
``lint_paths`` on it and prints the number of findings and the bytes of their text:

* ``istio-gateway-hosts``: an Istio Gateway with N server hosts and a VirtualService bound
  to it with N hosts, none overlapping (istio-host-not-in-gateway);
* ``gateway-api-hostnames``: a Gateway API Gateway with L listeners, each with a hostname,
  and an HTTPRoute with N hostnames, none intersecting (gateway-route-not-accepted);
* ``nginx-service-ports``: a Service with P ports and an Ingress with P backends on ports
  it lacks (service-port-not-found, one finding per backend);
* ``istio-subsets``: a DestinationRule with S subsets that select no pod, routed to by
  ten VirtualServices (istio-subset-selects-nothing).

Usage::

    python benchmarks/lint_scale.py              # the sizes of benchmarks/README.md
    python benchmarks/lint_scale.py --scale 0.1  # every size a tenth
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_canary.lint import lint_paths

Manifest = dict[str, Any]
ISTIO = "networking.istio.io/v1"
GATEWAY_API = "gateway.networking.k8s.io/v1"


def deployment(name: str, labels: dict[str, str]) -> Manifest:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
        },
    }


def service(name: str, ports: list[Manifest]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"selector": {"app": name}, "ports": ports},
    }


def istio_gateway_hosts(n: int) -> list[Manifest]:
    gateway = {
        "apiVersion": ISTIO,
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [
                {
                    "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                    "hosts": [f"g{i}.example.org" for i in range(n)],
                }
            ],
        },
    }
    vs = {
        "apiVersion": ISTIO,
        "kind": "VirtualService",
        "metadata": {"name": "app"},
        "spec": {
            "hosts": [f"v{i}.example.com" for i in range(n)],
            "gateways": ["gw"],
            "http": [{"route": [{"destination": {"host": "app"}}]}],
        },
    }
    return [deployment("app", {"app": "app"}), service("app", [{"port": 80}]), gateway, vs]


def gateway_api_hostnames(listeners: int, n: int) -> list[Manifest]:
    gateway = {
        "apiVersion": GATEWAY_API,
        "kind": "Gateway",
        "metadata": {"name": "gw"},
        "spec": {
            "gatewayClassName": "istio",
            "listeners": [
                {"name": f"l{i}", "port": 80, "protocol": "HTTP", "hostname": f"l{i}.example.org"}
                for i in range(listeners)
            ],
        },
    }
    route = {
        "apiVersion": GATEWAY_API,
        "kind": "HTTPRoute",
        "metadata": {"name": "app"},
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": [f"r{i}.example.com" for i in range(n)],
            "rules": [{"backendRefs": [{"name": "app", "port": 80}]}],
        },
    }
    return [deployment("app", {"app": "app"}), service("app", [{"port": 80}]), gateway, route]


def nginx_service_ports(p: int) -> list[Manifest]:
    ports = [{"name": f"p{i}", "port": 10_000 + i} for i in range(p)]
    paths = [
        {
            "path": f"/p{i}",
            "pathType": "Prefix",
            "backend": {"service": {"name": "app", "port": {"number": 40_000 + i}}},
        }
        for i in range(p)
    ]
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "app"},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "app.example.com", "http": {"paths": paths}}],
        },
    }
    return [deployment("app", {"app": "app"}), service("app", ports), ingress]


def istio_subsets(s: int) -> list[Manifest]:
    rule = {
        "apiVersion": ISTIO,
        "kind": "DestinationRule",
        "metadata": {"name": "app"},
        "spec": {
            "host": "app",
            "subsets": [{"name": f"s{i}", "labels": {"version": f"s{i}"}} for i in range(s)],
        },
    }
    # Ten VirtualServices, each one weighted route to a tenth of the subsets (the YAML
    # loader bounds the nodes of each document and the documents of each file).
    tenth = max(1, s // 10)
    routes = [
        {
            "apiVersion": ISTIO,
            "kind": "VirtualService",
            "metadata": {"name": f"app-{k}"},
            "spec": {
                "hosts": [f"app-{k}.example.com"],
                "http": [
                    {
                        "route": [
                            {"destination": {"host": "app", "subset": f"s{i}"}, "weight": 1}
                            for i in range(k * tenth, min(s, (k + 1) * tenth))
                        ]
                    }
                ],
            },
        }
        for k in range(10)
    ]
    return [deployment("app", {"app": "app"}), service("app", [{"port": 80}]), rule, *routes]


def measure(name: str, build: Callable[[], list[Manifest]], folder: Path) -> None:
    path = folder / f"{name}.yaml"
    # JSON is YAML: one document per object, written fast.
    path.write_text("\n---\n".join(json.dumps(o) for o in build()))
    started = time.perf_counter()
    findings = lint_paths(path)
    seconds = time.perf_counter() - started
    text = sum(len(str(f)) for f in findings)
    print(
        f"{name:24} {seconds:8.2f} s  {len(findings):6,} findings  {text:>13,} bytes of text",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every size")
    parser.add_argument("--only", default="", help="run only the scenario of this name")
    args = parser.parse_args()

    def size(n: int) -> int:
        return max(1, int(n * args.scale))

    scenarios: dict[str, Callable[[], list[Manifest]]] = {
        "istio-gateway-hosts": lambda: istio_gateway_hosts(size(20_000)),
        "gateway-api-hostnames": lambda: gateway_api_hostnames(size(3_000), size(20_000)),
        "nginx-service-ports": lambda: nginx_service_ports(size(2_000)),
        "istio-subsets": lambda: istio_subsets(size(2_000)),
    }
    print(f"lint_paths, sizes x{args.scale:g}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, build in scenarios.items():
            if not args.only or args.only == name:
                measure(name, build, Path(tmp))


if __name__ == "__main__":
    main()
