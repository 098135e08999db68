"""The local backend for real: processes on 127.0.0.1, the router, rollouts and cleanup."""

from __future__ import annotations

import http.client
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_canary import Harness, build_spec
from pytest_canary.backends.local import LocalBackend
from pytest_canary.backends.local.cluster import LocalEnvironment
from pytest_canary.manifests import Phase, render
from pytest_canary.traffic import Entry, Sampler


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    b = LocalBackend(seed=1234)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def env(backend: LocalBackend) -> Iterator[LocalEnvironment]:
    with backend.environment("test-local") as environment:
        assert isinstance(environment, LocalEnvironment)
        yield environment


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose; check /proc state.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def get(
    port: int, path: str = "/", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_pods_are_health_checked_processes_on_loopback(env: LocalEnvironment) -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", replicas=2)
    env.apply(render(spec, Phase.CANARY))
    pods = env.pods
    assert len(pods) == 4
    for pod in pods:
        assert pod.host == "127.0.0.1" and pod.ready and pod.alive()
        status, headers, _ = get(pod.port)
        assert status == 200
        assert headers["X-App-Version"] == pod.labels["version"]


def test_close_stops_every_process_and_frees_every_port(backend: LocalBackend) -> None:
    env = backend.environment("closing")
    spec = build_spec("nginx", stable="1.0", canary="2.0", weight=50)
    env.apply(render(spec, Phase.CANARY))
    entry = env.entry(spec)
    pids = [pod.stopper.process.pid for pod in env.pods]  # type: ignore[attr-defined]
    ports = [pod.port for pod in env.pods] + [int(entry.url.rsplit(":", 1)[1])]
    env.close()
    assert not any(pid_alive(pid) for pid in pids)
    assert all(port_is_free(port) for port in ports)


def test_router_routes_by_host_header(env: LocalEnvironment) -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", weight=0)
    env.apply(render(spec, Phase.CANARY))
    port = int(env.entry(spec).url.rsplit(":", 1)[1])
    assert get(port, headers={"Host": "foo.bar"})[1]["X-App-Version"] == "1.0"
    assert get(port, headers={"Host": "foo.bar", "X-Canary": "always"})[1]["X-App-Version"] == "2.0"
    status, headers, _ = get(port, headers={"Host": "other.host"})
    assert status == 404 and "X-App-Version" not in headers


def test_refusals_are_counted_as_errors_never_as_a_version(env: LocalEnvironment) -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0")
    env.apply(render(spec, Phase.CANARY))
    entry = env.entry(spec)
    with Sampler(Entry(entry.url, host="unknown.host")) as sampler:
        sample = sampler.sample(20)
    assert sample.classified == 0
    assert sample.errors == {"HTTP 404 without a version": 20}


def test_vhost_canary_and_catch_all(env: LocalEnvironment) -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", canary_host="canary.foo.bar")
    env.apply(render(spec, Phase.CANARY))
    port = int(env.entry(spec).url.rsplit(":", 1)[1])
    assert get(port, headers={"Host": "canary.foo.bar"})[1]["X-App-Version"] == "2.0"
    assert get(port, headers={"Host": "foo.bar"})[1]["X-App-Version"] == "1.0"
    assert get(port, headers={"Host": "127.0.0.1"})[1]["X-App-Version"] == "1.0"


def test_rolling_update_replaces_pods_surge_first(env: LocalEnvironment) -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", replicas=3)
    env.apply(render(spec, Phase.ROLLED_BACK))
    old = {pod.name for pod in env.pods}
    env.apply(render(spec, Phase.PROMOTED))
    new = {pod.name for pod in env.pods}
    assert len(new) == 3 and not old & new
    assert {pod.labels["version"] for pod in env.pods} == {"2.0"}
    starts = [i for i, e in enumerate(env.events) if "ready" in e and "kubeapp-stable" in e]
    stops = [i for i, e in enumerate(env.events) if "stopped" in e]
    # maxSurge 25% of 3 rounds up to 1, maxUnavailable rounds down to 0: a new pod is ready
    # before the first old one stops.
    assert starts[3] < stops[0]


def test_promotion_with_traffic_loses_no_request(backend: LocalBackend) -> None:
    with Harness(backend.environment("zero-downtime")) as canary:
        rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50, replicas=2)
        verdict = rel.promote(check_errors=True)
        assert verdict is not None and verdict.passed
        assert verdict.requests > 50, verdict
        assert verdict.counts.keys() <= {"1.0", "2.0"}
        rel.expect_routed("2.0")


def test_deleted_objects_are_gone_from_routing(env: LocalEnvironment) -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0", weight=100)
    env.apply(render(spec, Phase.CANARY))
    port = int(env.entry(spec).url.rsplit(":", 1)[1])
    assert get(port, headers={"Host": "foo.bar"})[1]["X-App-Version"] == "2.0"
    env.apply(render(spec, Phase.ROLLED_BACK))
    kinds = {(o["kind"], o["metadata"]["name"]) for o in env.objects()}
    assert ("Ingress", "kubeapp-canary") not in kinds
    assert {pod.labels["track"] for pod in env.pods} == {"stable"}
    assert get(port, headers={"Host": "foo.bar"})[1]["X-App-Version"] == "1.0"


def test_a_pod_that_cannot_start_fails_with_its_log(env: LocalEnvironment) -> None:
    spec = build_spec("nginx", stable="1.0", canary="2.0")
    objects: list[dict[str, Any]] = render(spec, Phase.ROLLED_BACK)
    container = objects[0]["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [e for e in container["env"] if e["name"] != "APP_VERSION"]
    with pytest.raises(Exception, match="exited with code 2 before listening"):
        env.apply(objects)
    assert env.pods == []


def test_same_seed_same_decisions(backend: LocalBackend) -> None:
    def run(seed: int) -> int:
        b = LocalBackend(seed=seed)
        try:
            with Harness(b.environment("seeded")) as canary:
                rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=30)
                return rel.sample(400).counts["2.0"]
        finally:
            b.close()

    assert run(99) == run(99)


def test_two_releases_in_one_test_keep_each_other(backend: LocalBackend) -> None:
    with Harness(backend.environment("two-releases")) as canary:
        shop = canary.deploy("nginx", stable="1.0", canary="2.0", name="shop", host="shop.bar")
        cart = canary.deploy("nginx", stable="3.0", canary="4.0", name="cart", host="cart.bar")
        shop.promote()
        assert shop.sample(20).counts == {"2.0": 20}
        assert set(cart.sample(200).counts) == {"3.0"}  # weight 0: all stable, still served
        assert cart.sample(20, headers={"X-Canary": "always"}).counts == {"4.0": 20}


def test_own_image_on_the_process_runtime_is_refused_with_the_way_out(
    backend: LocalBackend,
) -> None:
    from pytest_canary import AppImage, CanaryConfigError

    with Harness(backend.environment("own-image")) as canary:
        app = AppImage("registry.example/shop:{version}", port=8080, health="/healthz")
        refusal = r"image 'registry.example/shop:1.0'.*--canary-runtime=docker"
        with pytest.raises(CanaryConfigError, match=refusal):
            canary.deploy("nginx", stable="1.0", canary="2.0", app=app)
