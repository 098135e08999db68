"""Images on the kind nodes: only images built on this machine are kind-loaded (pulled ones
fail to load on containerd-store Docker engines, kubernetes-sigs/kind#3795)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_canary import manifests
from pytest_canary.backends.addons import ADDONS
from pytest_canary.backends.kind import images
from pytest_canary.backends.kind.cluster import ClusterHandle
from pytest_canary.backends.kind.config import NODE_PORT_POOL, PortMap
from pytest_canary.backends.kind.images import ImageLoader, check_loadable, workload_images
from pytest_canary.errors import BackendError
from pytest_canary.spec import build_spec

PORTS = PortMap(18080, 18443, 18081, {p: 19000 + i for i, p in enumerate(NODE_PORT_POOL)})


class Loads:
    """pytest-kind's KindCluster, recording loads."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def load_docker_image(self, image: str) -> None:
        self.log.append(f"load {image}")


def test_workload_images_and_what_may_be_loaded() -> None:
    objects = manifests.render(build_spec("nginx", "1.0", "2.0"))
    assert workload_images(objects) == [
        "pytest-canary/sample-go:1.0",
        "pytest-canary/sample-go:2.0",
    ]
    for bad in ("shop:latest", "registry.example/shop", "localhost:5000/shop"):
        with pytest.raises(BackendError, match="give it a version tag"):
            check_loadable(bad)
    check_loadable("localhost:5000/shop:2.0")
    check_loadable("shop@sha256:" + "a" * 64)


@pytest.fixture
def loader(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[ImageLoader, list[str]]:
    import pytest_canary.images as sample_images

    log: list[str] = []
    monkeypatch.setattr(images, "kind_cluster", lambda handle: Loads(log))
    monkeypatch.setattr(
        sample_images,
        "build_sample_image",
        lambda version, flavor, **_: (
            log.append(f"build {flavor} {version}") or f"pytest-canary/sample-{flavor}:{version}"
        ),
    )
    local: dict[str, dict[str, Any]] = {
        # docker image inspect: a pulled image has the digests of the registry it came from.
        "registry.example/shop:1.5.0": {
            "RepoTags": ["registry.example/shop:1.5.0"],
            "RepoDigests": ["registry.example/shop@sha256:" + "b" * 64],
        },
        "shop:1.6.0": {"RepoTags": ["shop:1.6.0"], "RepoDigests": []},
    }
    monkeypatch.setattr(images, "local_image", local.get)
    handle = ClusterHandle("c", "/k", PORTS, True, None, "/bin/kubectl", str(tmp_path), ADDONS)
    return ImageLoader(handle), log


def test_sample_images_are_built_and_loaded_once(loader: tuple[ImageLoader, list[str]]) -> None:
    made, log = loader
    made.ensure("pytest-canary/sample-go:2.0")
    made.ensure("pytest-canary/sample-go:2.0")
    assert log == ["build go 2.0", "load pytest-canary/sample-go:2.0"]


def test_images_built_here_are_loaded_and_pulled_or_absent_ones_are_left_to_the_nodes(
    loader: tuple[ImageLoader, list[str]],
) -> None:
    made, log = loader
    lines: list[str] = []
    made.progress = lines.append
    made.ensure("registry.example/shop:1.5.0")  # pulled: the nodes pull it too
    made.ensure("registry.example/other:1.0")  # not here at all
    made.ensure("shop:1.6.0")  # docker build on this machine: only the nodes' copy can run
    assert log == ["load shop:1.6.0"]
    assert lines[0] == (
        "image registry.example/shop:1.5.0 came from a registry: the nodes pull it (pulled "
        "images are not kind-loaded, kubernetes-sigs/kind#3795)"
    )
