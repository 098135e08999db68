"""The host name index answers exactly what the pairwise rules of the models answer."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from pytest_canary.dataplane import gateway, istio, nginx
from pytest_canary.dataplane.hostnames import (
    GATEWAY_API_WILDCARDS,
    ISTIO_WILDCARDS,
    HostIndex,
    WildcardRule,
)

# Few short labels, so that random names often equal, end or cover one another.
LABELS = ("a", "b", "ab", "ba", "")
PREFIXES = ("", "", "*", "*.", "*a")


def random_host(rng: random.Random) -> str:
    labels = ".".join(rng.choice(LABELS) for _ in range(rng.randint(0, 3)))
    return rng.choice(PREFIXES) + labels


RULES: list[tuple[WildcardRule, Callable[[str, str], bool]]] = [
    (ISTIO_WILDCARDS, istio.hosts_overlap),
    (GATEWAY_API_WILDCARDS, gateway.hostnames_intersect),
]


@pytest.mark.parametrize(("rule", "pairwise"), RULES, ids=["istio", "gateway-api"])
def test_the_index_agrees_with_the_pairwise_rule_on_random_pairs(
    rule: WildcardRule, pairwise: Callable[[str, str], bool]
) -> None:
    """400 seeded random pairs, both ways round, and as many random sets: the index says
    overlap exactly when istio.hosts_overlap (pkg/config/host/name.go Name.Matches) or
    gateway.hostnames_intersect (HTTPRouteSpec.hostnames) does."""
    rng = random.Random(20_250_101)
    overlapping = 0
    for _ in range(400):
        a, b = random_host(rng), random_host(rng)
        expected = pairwise(a, b)
        overlapping += expected
        assert HostIndex([a], rule).overlaps(b) is expected, (a, b)
        assert HostIndex([b], rule).overlaps(a) is expected, (b, a)
    assert 20 < overlapping < 380  # both answers are exercised
    for _ in range(400):
        left = [random_host(rng) for _ in range(rng.randint(0, 6))]
        right = [random_host(rng) for _ in range(rng.randint(0, 6))]
        expected = any(pairwise(x, y) for x in left for y in right)
        assert HostIndex(left, rule).overlaps_any(right) is expected, (left, right)


def test_the_service_port_index_agrees_with_matching_service_port() -> None:
    """controller.go serviceEndpoints: the first port whose number, targetPort or name
    equals the backend's, looked up in the index as by the scan."""
    rng = random.Random(7)
    values = ["80", "8080", "http", "web", ""]
    for _ in range(300):
        ports = tuple(
            nginx.ServicePort(
                int(rng.choice(["80", "8080", "9090"])), rng.choice(values), rng.choice(values)
            )
            for _ in range(rng.randint(0, 4))
        )
        index = nginx.service_port_index(ports)
        for wanted in [*values, "9090", "1"]:
            assert index.get(wanted) == nginx.matching_service_port(ports, wanted)
