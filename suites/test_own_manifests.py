"""Your own manifests, checked by real traffic: a shop written by a platform team (not by
our renderers) for ingress-nginx, Istio and Gateway API, and a kustomize overlay.

``canary.apply`` loads the YAML, lints it (findings before any traffic), applies it and
returns a handle with the usual expectations. On the local backend every workload is stood
in for by the sample app answering with its ``version`` pod label, so what is tested is the
routing configuration itself: host ``shop.example.com``, path ``/shop`` (Prefix), 10% to v2
and ``x-beta-user: yes`` always to v2.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pytest_canary import Harness
from pytest_canary.byo import ManifestWarning

SHOP = Path(__file__).parent / "manifests" / "shop"


@pytest.fixture(autouse=True)
def _stand_ins_only(canary: Harness) -> None:
    """The example shop names images that exist nowhere (registry.example.com): only a
    backend where the sample app stands in for every workload can run it."""
    if not canary.environment.stands_in_for_workloads:
        pytest.skip(
            "the example manifests' images (registry.example.com/shop) exist nowhere; on a "
            "cluster, point canary.apply at manifests whose images the cluster can pull"
        )


def test_ingress_nginx_canary(canary: Harness) -> None:
    """Main + canary Ingress: weight 10 and canary-by-header x-beta-user=yes."""
    shop = canary.apply(SHOP / "nginx", host="shop.example.com")
    assert shop.versions == ("v1", "v2")
    shop.expect_split({"v2": 0.10})
    shop.expect_routed("v2", headers={"x-beta-user": "yes"})
    # canary-by-header-value set: only "yes" selects the canary, other values fall through
    # to the weight (balancer.lua), so they see the 10% split, not v1 only.
    shop.expect_split(0.10, headers={"x-beta-user": "always"})


def test_istio_gateway_virtual_service(canary: Harness) -> None:
    """Istio Gateway + VirtualService + DestinationRule subsets stable/canary: a header
    route before a 90/10 default route. The ServiceAccount does not affect routing."""
    with pytest.warns(ManifestWarning, match="ServiceAccount/shop left out"):
        shop = canary.apply(SHOP / "istio")
    assert shop.host == "shop.example.com"
    shop.expect_split({"v1": 0.90, "v2": 0.10})
    shop.expect_routed("v2", headers={"x-beta-user": "yes"})


def test_gateway_api_http_route(canary: Harness) -> None:
    """Gateway API Gateway + HTTPRoute: a header rule, then backendRefs weighted 9:1."""
    shop = canary.apply(SHOP / "gateway-api")
    shop.expect_split({"v2": 0.10})
    shop.expect_routed("v2", headers={"x-beta-user": "yes"})


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl is not on PATH: `kubectl kustomize` renders"
)
def test_kustomize_overlay(canary: Harness) -> None:
    """The prod overlay raises the canary weight to 25 and prefixes every name; its
    generated ConfigMap is left out with a warning."""
    with pytest.warns(ManifestWarning, match="ConfigMap/prod-shop-config-.* left out"):
        shop = canary.apply(SHOP / "kustomize" / "overlays" / "prod")
    shop.expect_split(0.25)
    shop.expect_routed("v2", headers={"x-beta-user": "yes"})
