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

    def run_tool(args: list[str], *, timeout: float) -> str:
        assert args[1:3] == ["load", "docker-image"] and args[-2:] == ["--name", "c"]
        assert timeout == images.LOAD_TIMEOUT
        log.append(f"load {args[3]}")
        return ""

    monkeypatch.setattr(images, "run_tool", run_tool)
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


def test_kind_load_is_stopped_at_its_deadline_with_its_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    kind = tmp_path / "kind"
    kind.write_text(
        '#!/bin/sh\necho \'Image: "shop:1.6.0" with ID "sha256:ab" not yet present\'\n'
        "exec sleep 60\n"
    )
    kind.chmod(0o755)
    monkeypatch.setattr(images, "LOAD_TIMEOUT", 2.0)
    monkeypatch.setattr(images, "local_image", lambda image: {"RepoDigests": []})
    handle = ClusterHandle("c", "/k", PORTS, True, str(kind), "/bin/kubectl", str(tmp_path), ())
    with pytest.raises(BackendError) as caught:
        ImageLoader(handle).ensure("shop:1.6.0")
    message = str(caught.value)
    assert f"{kind} load docker-image shop:1.6.0 --name c did not finish within 2s" in message
    assert "not yet present" in message


def test_a_lock_another_session_keeps_ends_the_wait_with_the_lock_file_named(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another process holds the image's lock (a stuck build or load): the wait ends at its
    deadline, naming the lock file, instead of waiting forever."""
    import subprocess
    import sys

    lock = tmp_path / "locks" / "image-shop_1.6.0.lock"
    lock.parent.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import filelock, sys, time\n"
            f"with filelock.FileLock({str(lock)!r}):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        monkeypatch.setattr(images.images, "BUILD_LOCK_TIMEOUT", 0.0)
        monkeypatch.setattr(images, "LOAD_TIMEOUT", 1.0)
        monkeypatch.setattr(images, "local_image", lambda image: {"RepoDigests": []})
        handle = ClusterHandle("c", "/k", PORTS, True, "kind", "/bin/kubectl", str(tmp_path), ())
        lines: list[str] = []
        with pytest.raises(BackendError) as caught:
            ImageLoader(handle, progress=lines.append).ensure("shop:1.6.0")
        assert str(caught.value).startswith(
            f"the build and kind load of shop:1.6.0: another session kept the lock {lock} for 1s"
        )
        assert lines == [
            f"waiting for the build and kind load of shop:1.6.0: another session holds {lock}"
        ]
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()


def test_an_unreachable_docker_engine_is_an_error_naming_docker_host(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An engine that does not answer is not "the image is not here": the nodes would try
    to pull an image that only exists on this machine."""
    socket_path = tmp_path / "nothing.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket_path}")
    with pytest.raises(BackendError) as caught:
        images.local_image("shop:1.6.0")
    message = str(caught.value)
    assert message.startswith(
        "cannot tell whether image shop:1.6.0 was built here: no Docker engine answers at "
        f"unix://{socket_path}"
    )
    assert "point DOCKER_HOST at a running engine" in message


def test_an_image_the_engine_does_not_have_is_left_for_the_nodes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import docker

    class Images:
        def get(self, name: str) -> Any:
            raise docker.errors.ImageNotFound(f"No such image: {name}")

    class Client:
        images = Images()

        def close(self) -> None:
            pass

    monkeypatch.setattr(images.images, "connect", lambda **_: Client())
    assert images.local_image("shop:1.6.0") is None
