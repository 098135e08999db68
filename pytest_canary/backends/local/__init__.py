"""The embedded local backend: real processes and real proxies on 127.0.0.1, no cluster."""

from __future__ import annotations

import random
import re
import threading
from typing import Any

from pytest_canary.backends.base import Backend
from pytest_canary.backends.descriptions import MODELS, RUNTIMES
from pytest_canary.backends.local.cluster import LocalEnvironment
from pytest_canary.backends.local.router import LoopThread
from pytest_canary.backends.local.runtime import ProcessRuntime, Runtime
from pytest_canary.errors import CanaryConfigError


def make_runtime(name: str, **options: Any) -> Runtime:
    """The runtime called ``name`` (see :data:`RUNTIMES`); ``options`` go to its constructor.

    Raises:
        CanaryConfigError: for an unknown name.
        BackendError: for ``docker`` when no Docker engine answers.
    """
    if name == "process":
        return ProcessRuntime(**options)
    if name == "docker":
        from pytest_canary.backends.local.docker_runtime import DockerRuntime

        return DockerRuntime(**options)
    raise CanaryConfigError(f"runtime={name!r}: must be one of {', '.join(RUNTIMES)}")


class LocalBackend(Backend):
    """Runs each pod as a local process and routes with the data-plane models.

    Args:
        seed: seeds every routing decision (weights, random endpoints) so a run repeats;
            each environment derives its own stream from the seed and its test name.
        runtime: how pods run: processes of the Python sample app (default) or Docker
            containers (``make_runtime("docker")``).
    """

    name = "local"

    def __init__(self, seed: int, runtime: Runtime | None = None) -> None:
        self.seed = seed
        self.runtime = runtime or ProcessRuntime()
        self._loop: LoopThread | None = None
        self._lock = threading.Lock()
        self._open: list[LocalEnvironment] = []

    def describe(self) -> str:
        pods = RUNTIMES.get(self.runtime.name, f"{self.runtime.name} pods")
        return f"local (models {MODELS}; pods as {pods})"

    @property
    def loop(self) -> LoopThread:
        """The router loop, started on first use."""
        with self._lock:
            if self._loop is None:
                self._loop = LoopThread()
            return self._loop

    def environment(self, test_name: str) -> LocalEnvironment:
        namespace = _namespace_for(test_name)
        rng = random.Random(f"{self.seed}:{test_name}")
        env = LocalEnvironment(namespace, self.runtime, self.loop, rng, on_close=self._release)
        with self._lock:
            self._open.append(env)
        return env

    def _release(self, env: LocalEnvironment) -> None:
        with self._lock:
            if env in self._open:
                self._open.remove(env)

    def close(self) -> None:
        """Close environments a test left open (interrupted runs), then the loop."""
        first_error: BaseException | None = None
        with self._lock:
            still_open = list(self._open)
        for env in still_open:
            try:
                env.close()
            except BaseException as exc:
                first_error = first_error or exc
        self._open.clear()
        self.runtime.close()
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        if first_error is not None:
            raise first_error


def _namespace_for(test_name: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", test_name.lower()).strip("-")[:40].strip("-")
    return f"canary-{slug or 'test'}"
