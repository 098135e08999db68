"""Binding objects to the test namespace and the cluster's entry points, and the apply order
(the order of requests against the API is proven in test_kube_environment.py)."""

from __future__ import annotations

import copy
import re

from pytest_canary import manifests
from pytest_canary.backends.kube.apply import APPLY_RANK, ROUTING_RANK, adapt, rank
from pytest_canary.backends.kube.namespace import namespace_for
from pytest_canary.manifests import Phase
from pytest_canary.spec import build_spec


def test_namespace_names_are_valid_and_unique() -> None:
    long = "tests/test_x.py::" + "test_" + "a" * 100 + "[Weird Param/ü]"
    names = {namespace_for(long) for _ in range(20)}
    assert len(names) == 20
    for name in names:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63


def test_adapt_binds_objects_to_the_cluster_and_namespace_without_touching_the_input() -> None:
    ingress = manifests.render(build_spec("nginx", "1.0", "2.0"), Phase.CANARY)[2]
    original = copy.deepcopy(ingress)
    adapted = adapt(ingress, "ns", ingress_class="public-nginx")
    assert ingress == original
    assert adapted["metadata"]["namespace"] == "ns"
    assert adapted["spec"]["ingressClassName"] == "public-nginx"
    gateway = next(
        o
        for o in manifests.render(build_spec("gateway", "1.0", "2.0"), Phase.CANARY)
        if o["kind"] == "Gateway"
    )
    bound = adapt(gateway, "ns", gateway="istio-system/istio-ingressgateway")
    assert bound["spec"]["addresses"] == [
        {"type": "Hostname", "value": "istio-ingressgateway.istio-system.svc.cluster.local"}
    ]
    istio_gateway = next(
        o
        for o in manifests.render(build_spec("istio", "1.0", "2.0"), Phase.CANARY)
        if o["kind"] == "Gateway"
    )
    selected = adapt(istio_gateway, "ns", gateway_selector={"app": "public-gw"})
    assert selected["spec"]["selector"] == {"app": "public-gw"}


def test_routing_objects_rank_last_and_configuration_first() -> None:
    routing = {k for k, v in APPLY_RANK.items() if v > ROUTING_RANK}
    assert routing == {
        "VirtualService",
        "HTTPRoute",
        "GRPCRoute",
        "Ingress",
        "Gateway",
        "ReferenceGrant",
    }
    assert rank({"kind": "ConfigMap"}) < rank({"kind": "Deployment"}) < rank({"kind": "Service"})
    assert rank({"kind": "DestinationRule"}) < rank({"kind": "VirtualService"})
