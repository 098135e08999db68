"""The kind cluster config and its host ports (no cluster needed)."""

from __future__ import annotations

import pytest
import yaml

from pytest_canary.backends.kind.config import (
    GATEWAY_NODE_PORT,
    NODE_PORT_POOL,
    PortMap,
    choose_ports,
    load_kind_template,
    ports_from_docker,
    render_kind_config,
)
from pytest_canary.backends.kind.options import KindOptions
from pytest_canary.errors import BackendError

PORTS = PortMap(
    http=18080,
    https=18443,
    gateway=18081,
    node_ports={p: 19000 + i for i, p in enumerate(NODE_PORT_POOL)},
)


def test_fixture_template_is_a_one_node_cluster_labelled_ingress_ready() -> None:
    template = load_kind_template()
    assert template["kind"] == "Cluster"
    assert template["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in template["nodes"]] == ["control-plane"]
    assert template["nodes"][0]["labels"] == {"ingress-ready": "true"}


def test_rendered_config_maps_80_443_the_gateway_and_the_pool_on_localhost() -> None:
    config = render_kind_config(load_kind_template(), PORTS)
    (node,) = config["nodes"]
    mappings = {m["containerPort"]: m for m in node["extraPortMappings"]}
    assert set(mappings) == {80, 443, GATEWAY_NODE_PORT, *NODE_PORT_POOL}
    assert mappings[80]["hostPort"] == 18080
    assert mappings[443]["hostPort"] == 18443
    assert mappings[GATEWAY_NODE_PORT]["hostPort"] == 18081
    assert all(
        m["listenAddress"] == "127.0.0.1" and m["protocol"] == "TCP" for m in mappings.values()
    )
    host_ports = [m["hostPort"] for m in node["extraPortMappings"]]
    assert len(set(host_ports)) == len(host_ports)
    assert node["labels"]["ingress-ready"] == "true"
    assert yaml.safe_load(yaml.safe_dump(config)) == config  # what kind reads from the file


def test_the_gateway_node_port_is_the_one_the_istio_overlay_sets() -> None:
    from pytest_canary.backends.addons import istio_operator, load_pins

    overlay = istio_operator(load_pins()["istio"], GATEWAY_NODE_PORT)
    service = overlay["spec"]["components"]["ingressGateways"][0]["k8s"]["service"]
    assert service["type"] == "NodePort"
    assert {p["port"]: p.get("nodePort") for p in service["ports"]}[80] == GATEWAY_NODE_PORT
    # istio operator/pkg/render/manifest.go (applyComponentValuesToHelmValues): k8s.service.ports
    # replaces values.gateways.istio-ingressgateway.ports wholesale, so the overlay must keep the
    # chart's status port and targetPorts (manifests/charts/gateways/istio-ingress values).
    assert {p["port"]: p["targetPort"] for p in service["ports"]} == {
        15021: 15021,
        80: 8080,
        443: 8443,
    }


def test_data_plane_pods_are_selected_by_the_labels_upstream_sets() -> None:
    from pytest_canary.backends.kube.signals import INGRESS_NGINX_PODS, ISTIO_GATEWAY_PODS

    # ingress-nginx deploy/static/provider/kind/deploy.yaml: controller pod template labels
    # (app.kubernetes.io/{name: ingress-nginx, component: controller}, container "controller");
    # istio manifests/charts/gateways/istio-ingress: labels {app: istio-ingressgateway,
    # istio: ingressgateway}.
    assert INGRESS_NGINX_PODS == (
        "app.kubernetes.io/name=ingress-nginx,app.kubernetes.io/component=controller"
    )
    assert ISTIO_GATEWAY_PODS == "istio=ingressgateway"


def test_choose_ports_uses_requested_free_ports_and_picks_distinct_free_ones() -> None:
    free = iter(range(40000, 40100))
    ports = choose_ports(
        KindOptions(http_port=8080), free=lambda: next(free), is_free=lambda port: True
    )
    assert ports.http == 8080
    every = [ports.http, ports.https, ports.gateway, *ports.node_ports.values()]
    assert len(set(every)) == len(every) == 3 + len(NODE_PORT_POOL)


def test_a_requested_port_in_use_is_refused_naming_the_option() -> None:
    with pytest.raises(
        BackendError, match=r"host port 8081 \(--canary-kind-gateway-port\) is in use"
    ):
        choose_ports(KindOptions(gateway_port=8081), is_free=lambda port: port != 8081)


def test_ports_of_a_reused_cluster_come_from_docker() -> None:
    published = {
        "6443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "35555"}],
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}],
        "443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18443"}],
        f"{GATEWAY_NODE_PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18081"}],
        **{
            f"{p}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(19000 + i)}]
            for i, p in enumerate(NODE_PORT_POOL)
        },
    }
    assert ports_from_docker(published) == PORTS
    del published["80/tcp"]
    with pytest.raises(
        BackendError, match=r"does not map port\(s\) 80 .* not created by pytest-canary"
    ):
        ports_from_docker(published)
