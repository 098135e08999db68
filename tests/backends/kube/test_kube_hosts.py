"""Virtual hosts a test claims on shared data planes, and the locks between tests."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_canary import manifests
from pytest_canary.backends.kube.hosts import HostLocks, routed_hosts
from pytest_canary.errors import BackendError
from pytest_canary.spec import build_spec


def test_routed_hosts_cover_every_way_a_host_is_claimed() -> None:
    nginx = manifests.render(build_spec("nginx", "1.0", "2.0", canary_host="canary.foo.bar"))
    assert routed_hosts(nginx) == {"foo.bar", "canary.foo.bar", "_"}
    istio = manifests.render(build_spec("istio", "1.0", "2.0"))
    assert routed_hosts(istio) == {"foo.bar"}  # "kubeapp" is an in-mesh short name
    gateway = manifests.render(build_spec("gateway", "1.0", "2.0", host="shop.example"))
    assert routed_hosts(gateway) == {"shop.example"}


def test_host_locks_make_a_second_holder_wait_and_then_fail_with_the_host(tmp_path: Any) -> None:
    first = HostLocks(tmp_path).hold(["foo.bar"], "ns-a")
    waiting: list[str] = []
    second = HostLocks(tmp_path, timeout=0.2, progress=waiting.append)
    with pytest.raises(BackendError, match=r"host foo\.bar stayed in use by another test"):
        second.hold(["a.example", "foo.bar"], "ns-b")
    assert waiting == ["ns-b: waiting for host foo.bar (another test routes it)"]
    for lock in first:
        lock.release()
    held = second.hold(["a.example", "foo.bar"], "ns-b")  # a.example was released on failure
    assert len(held) == 2
    for lock in held:
        lock.release()
