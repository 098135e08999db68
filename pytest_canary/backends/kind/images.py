"""Images: the workloads' images made available on the kind nodes.

Only images built on this machine are loaded with ``kind load docker-image``: the sample app's
(built on first use by :mod:`pytest_canary.images`) and your own images that Docker built here
(no ``RepoDigests``: they never came from a registry, so the nodes could not pull them). An
image that came from a registry is left for the nodes to pull: Docker engines with the
containerd image store (Docker 29+, recent Docker Desktop) cannot ``kind load`` a pulled
multi-platform image (kubernetes-sigs/kind#3795: "ctr: content digest ... not found"). Images
tagged ``latest`` or untagged are refused: the kubelet would pull them instead.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_canary import images
from pytest_canary.backends.kind.cluster import ClusterHandle
from pytest_canary.backends.kind.tools import run_tool
from pytest_canary.errors import BackendError
from pytest_canary.locks import file_lock

Progress = Callable[[str], None]

LOAD_TIMEOUT = 600.0
"""Seconds ``kind load docker-image`` may take (it streams the image into every node)."""


def _quiet(message: str) -> None:
    """Default progress sink: drop the line."""


def workload_images(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Container images of the workloads among ``objects``, in order, without repeats."""
    seen: dict[str, None] = {}
    for obj in objects:
        template = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in list(template.get("initContainers") or []) + list(
            template.get("containers") or []
        ):
            if container.get("image"):
                seen[str(container["image"])] = None
    return list(seen)


def check_loadable(image: str) -> None:
    """Refuse what ``kind load`` must never get: an image without a tag or tagged ``latest``
    (Kubernetes then defaults to ``imagePullPolicy: Always`` and pulls, which fails)."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return
    tag = last.partition(":")[2]
    if not tag or tag == "latest":
        raise BackendError(
            f"image {image!r}: give it a version tag; kind-loaded images tagged latest (or "
            "untagged) are pulled from a registry instead of used"
        )


def local_image(image: str) -> dict[str, Any] | None:
    """``docker image inspect`` of ``image``; None when the local engine does not have it.

    Raises:
        BackendError: when the Docker engine does not answer (naming ``DOCKER_HOST``): the
            image may well be here, and the kind nodes could not pull it.
    """
    import docker

    try:
        client = images.connect(timeout=10)
    except BackendError as exc:
        raise BackendError(f"cannot tell whether image {image} was built here: {exc}") from exc
    try:
        attrs: dict[str, Any] = dict(client.images.get(image).attrs)
    except docker.errors.ImageNotFound:
        return None
    except Exception as exc:
        raise BackendError(
            f"cannot tell whether image {image} was built here: the Docker engine at "
            f"{os.environ.get('DOCKER_HOST') or 'unix:///var/run/docker.sock'} (DOCKER_HOST) "
            f"answered {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        client.close()
    return attrs


def built_here(attrs: Mapping[str, Any]) -> bool:
    """Whether a local image was built on this machine rather than pulled (a pulled image
    has ``RepoDigests``, the digests of the registry it came from)."""
    return not attrs.get("RepoDigests")


class ImageLoader:
    """Builds sample images and loads images built here into the kind cluster, once each.

    A file lock per tag serialises builds and loads between xdist workers; ``kind load``
    itself skips nodes that already have the image.
    """

    def __init__(self, handle: ClusterHandle, *, progress: Progress = _quiet) -> None:
        self.handle = handle
        self.progress = progress
        self._done: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, image: str) -> None:
        """Make ``image`` available on the nodes (built first if it is a sample image)."""
        with self._lock:
            if image in self._done:
                return
            sample = images.parse_sample_image(image)
            if sample is None:
                attrs = local_image(image)
                if attrs is None:
                    self._done.add(image)  # not here: the nodes pull it
                    return
                if not built_here(attrs):
                    self.progress(
                        f"image {image} came from a registry: the nodes pull it (pulled images "
                        "are not kind-loaded, kubernetes-sigs/kind#3795)"
                    )
                    self._done.add(image)
                    return
            check_loadable(image)
            safe = image.replace("/", "_").replace(":", "_")
            with file_lock(
                Path(self.handle.cache_dir) / "locks" / f"image-{safe}.lock",
                timeout=images.BUILD_LOCK_TIMEOUT + LOAD_TIMEOUT,
                what=f"the build and kind load of {image}",
                progress=self.progress,
            ):
                if sample is not None:
                    built = images.build_sample_image(sample[1], sample[0], progress=self.progress)
                    if built != image:
                        raise BackendError(f"building {image} produced {built}")
                self._load(image)
            self._done.add(image)

    def _load(self, image: str) -> None:
        started = time.monotonic()
        self.progress(f"loading image {image} into kind cluster {self.handle.name}")
        run_tool(
            [self.handle.kind or "kind", "load", "docker-image", image, "--name", self.handle.name],
            timeout=LOAD_TIMEOUT,
        )
        self.progress(f"loaded image {image} in {time.monotonic() - started:.0f}s")
