"""The embedded local backend: real processes and real proxies on 127.0.0.1, no cluster."""

from __future__ import annotations

import random
import re
import threading

from pytest_canary.backends.base import Backend
from pytest_canary.backends.local.cluster import LocalEnvironment
from pytest_canary.backends.local.router import LoopThread
from pytest_canary.backends.local.runtime import ProcessRuntime, Runtime

MODELS = "ingress-nginx controller-v1.15.1 canary rules, kube-proxy per-connection balancing"


class LocalBackend(Backend):
    """Runs each pod as a local process and routes with the data-plane models.

    Args:
        seed: seeds every routing decision (weights, random endpoints) so a run repeats;
            each environment derives its own stream from the seed and its test name.
        runtime: how pods run (processes of the Python sample app by default).
    """

    name = "local"

    def __init__(self, seed: int, runtime: Runtime | None = None) -> None:
        self.seed = seed
        self.runtime = runtime or ProcessRuntime()
        self._loop: LoopThread | None = None
        self._lock = threading.Lock()
        self._open: list[LocalEnvironment] = []

    def describe(self) -> str:
        return f"local (models {MODELS}; pods as {self.runtime.name}es)"

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
        env = LocalEnvironment(namespace, self.runtime, self.loop, rng)
        self._open.append(env)
        return env

    def close(self) -> None:
        """Close environments a test left open (interrupted runs), then the loop."""
        first_error: BaseException | None = None
        for env in self._open:
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
