"""How the local backend runs a pod as a Docker container (``--canary-runtime=docker``).

Every pod is a container of the image its Deployment names (``AppImage.image`` for that
version, e.g. ``pytest-canary/sample-go:2.0``), with the Deployment's environment, its
container port published on 127.0.0.1 at a random host port, and readiness checked by the
backend's ``wait_healthy`` like a process pod. Sample images that are missing (or whose
sources changed) are built on demand (``pytest_canary.images``); any other image must
already be on the engine: nothing is pulled.

Ownership: every container carries the labels ``pytest-canary/run=<run id>`` and
``pytest-canary/pid=<pytest pid>`` (plus the pid's start time and the host name, so a
recycled pid is not taken for a live run). The runtime stops (SIGTERM, grace) and removes
each container when its pod stops, and :meth:`DockerRuntime.close` removes whatever of its run
is left, so a failed or interrupted (Ctrl-C) test leaves nothing. A container cannot die with
pytest the way a child process does (``PR_SET_PDEATHSIG``): after a ``kill -9`` the next
session's :func:`sweep_dead_runs` removes the containers of every run whose pytest is gone.

Limit: a container's 127.0.0.1 is its own, so an app cannot reach the local backend's
mesh sidecars (``HTTP_PROXY`` on the host's 127.0.0.1). Scenarios where a frontend pod calls
through the mesh (Istio ``sourceLabels`` via ``/relay``) need the process runtime; every
other suite runs unchanged on containers.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from pytest_canary.backends.local.runtime import (
    START_TIMEOUT,
    PodSpec,
    RunningPod,
    Runtime,
    RuntimeHandle,
)
from pytest_canary.backends.owner import process_start_time
from pytest_canary.errors import BackendError
from pytest_canary.images import build_sample_image, connect, engine, parse_sample_image

RUN_LABEL = "pytest-canary/run"
PID_LABEL = "pytest-canary/pid"
PID_START_LABEL = "pytest-canary/pid-start"
HOST_LABEL = "pytest-canary/host"
POD_LABEL = "pytest-canary/pod"
# Containers created at once by start_many (the engine serialises some of the work anyway).
MAX_PARALLEL_STARTS = 8
# How often alive() asks the engine; wait_healthy polls far more often than that.
ALIVE_CACHE_SECONDS = 0.2

Progress = Callable[[str], None]


def owner_labels(run_id: str, pid: int | None = None) -> dict[str, str]:
    """The labels that tie a container to one run of one pytest process."""
    pid = os.getpid() if pid is None else pid
    return {
        RUN_LABEL: run_id,
        PID_LABEL: str(pid),
        PID_START_LABEL: process_start_time(pid) or "",
        HOST_LABEL: socket.gethostname(),
    }


def owner_alive(labels: dict[str, str]) -> bool:
    """Whether the pytest process that created a container (by its labels) still runs.

    Containers of another host sharing the engine count as alive: their pids mean nothing
    here.
    """
    if labels.get(HOST_LABEL, "") != socket.gethostname():
        return True
    try:
        pid = int(labels.get(PID_LABEL, ""))
    except ValueError:
        return False  # ours (run label) but no owner: nobody will ever remove it
    started = process_start_time(pid)
    if started is None:
        return False
    recorded = labels.get(PID_START_LABEL, "")
    return not recorded or not started or recorded == started


def sweep_dead_runs(client: Any = None, *, progress: Progress | None = None) -> list[str]:
    """Remove the containers of every run whose pytest process is gone; return their names.

    Safe to call at any time from any number of sessions: containers of live runs (and of
    other hosts) are left alone, and a container another sweeper removed first is skipped.
    """
    import docker

    removed: list[str] = []
    with engine(client) as client:
        for container in client.containers.list(all=True, filters={"label": RUN_LABEL}):
            labels = dict(container.labels or {})
            if owner_alive(labels):
                continue
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True, v=True)
                removed.append(str(container.name))
    if removed and progress is not None:
        progress(f"removed {len(removed)} container(s) left by dead pytest runs")
    return removed


def run_containers(client: Any, run_id: str) -> list[Any]:
    """Every container (running or not) of one run."""
    return list(client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={run_id}"}))


class ContainerHandle(RuntimeHandle):
    """A pod that is a container: stop means stop with grace, then remove."""

    def __init__(self, runtime: DockerRuntime, container: Any) -> None:
        self.runtime = runtime
        self.container = container
        self._lock = threading.Lock()
        self._removed = False
        self._last_log = ""
        self._alive = True
        self._alive_checked = 0.0

    @property
    def name(self) -> str:
        """The container's name."""
        return str(self.container.name)

    def terminate(self) -> None:
        import docker

        if self._removed:
            return
        with contextlib.suppress(docker.errors.APIError):
            self.container.kill(signal="SIGTERM")

    def stop(self, grace: float) -> None:
        import docker

        with self._lock:
            if self._removed:
                return
            with contextlib.suppress(docker.errors.APIError):
                self._last_log = self._logs(40)
            try:
                with contextlib.suppress(docker.errors.NotFound):
                    self.container.stop(timeout=max(0, math.ceil(grace)))
            finally:
                # Removed even if stopping failed: the container must not outlive the pod.
                with contextlib.suppress(docker.errors.NotFound):
                    self.container.remove(force=True, v=True)
                self._removed = True
                self._alive = False
                self.runtime._forget(self)

    def alive(self) -> bool:
        import docker

        if self._removed:
            return False
        now = time.monotonic()
        if now - self._alive_checked >= ALIVE_CACHE_SECONDS:
            try:
                self.container.reload()
                self._alive = self.container.status in ("created", "running")
            except docker.errors.NotFound:
                self._alive = False
            self._alive_checked = now
        return self._alive

    def _logs(self, lines: int) -> str:
        raw = self.container.logs(tail=lines, stdout=True, stderr=True)
        return raw.decode(errors="replace").rstrip("\n") if isinstance(raw, bytes) else str(raw)

    def log_tail(self, lines: int) -> str:
        import docker

        if self._removed:
            return "\n".join(self._last_log.splitlines()[-lines:])
        try:
            return self._logs(lines)
        except docker.errors.APIError:
            return self._last_log

    def exit_summary(self) -> str:
        """How the container ended, for error messages."""
        state = self.container.attrs.get("State") or {}
        return f"status {state.get('Status', '?')}, exit code {state.get('ExitCode', '?')}"


class DockerRuntime(Runtime):
    """Runs every pod as a Docker container, published on 127.0.0.1.

    Args:
        client: a ``docker.DockerClient`` (default: the environment's engine, pinged).
        run_id: labels this runtime's containers (default: ``<pid>-<random>``).
        build_missing: build sample images (``pytest-canary/sample-*``) on demand.
        python_base: base image for an on-demand Python sample build (default: see
            ``images.build_sample_image``).
        sweep: remove containers of dead runs first (:func:`sweep_dead_runs`).
        progress: called with a line per image build step.

    Raises:
        BackendError: when no Docker engine answers.

    Example:
        >>> backend = LocalBackend(seed=1, runtime=DockerRuntime())  # doctest: +SKIP
    """

    name = "docker"

    def __init__(
        self,
        client: Any = None,
        *,
        run_id: str | None = None,
        build_missing: bool = True,
        python_base: str | None = None,
        sweep: bool = True,
        progress: Progress = print,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self._owns_client = client is None
        self.client = client if client is not None else connect()
        self.run_id = run_id or f"{os.getpid()}-{secrets.token_hex(3)}"
        self.labels = owner_labels(self.run_id)
        self.build_missing = build_missing
        self.python_base = python_base
        self.progress = progress
        self.start_timeout = start_timeout
        self._owned: dict[str, ContainerHandle] = {}
        self._owned_lock = threading.Lock()
        self._images_ready: set[str] = set()
        if sweep:
            sweep_dead_runs(self.client, progress=progress)

    # -- images ------------------------------------------------------------------------------

    def ensure_image(self, reference: str) -> None:
        """Make sure ``reference`` is on the engine: sample images are built (or rebuilt when
        their sources changed); any other image must be there already.

        Raises:
            BackendError: naming the image and how to get it.
        """
        import docker

        if reference in self._images_ready:
            return
        sample = parse_sample_image(reference)
        if sample is not None and self.build_missing:
            flavor, version = sample
            build_sample_image(
                version,
                flavor,
                base_image=self.python_base if flavor == "python" else None,
                client=self.client,
                progress=self.progress,
            )
        else:
            try:
                self.client.images.get(reference)
            except docker.errors.ImageNotFound:
                raise BackendError(
                    f"image {reference} is not on the Docker engine and the docker runtime "
                    f"pulls nothing: `docker pull {reference}` or build it first"
                ) from None
        self._images_ready.add(reference)

    # -- pods --------------------------------------------------------------------------------

    def start(self, pod: PodSpec) -> RunningPod:
        return self.start_many([pod])[0]

    def start_many(self, pods: list[PodSpec]) -> list[RunningPod]:
        """Create and start every pod's container concurrently; return once each is started
        and its port is published (readiness is checked by the backend).

        If any pod fails, the containers already created are removed before the error
        propagates (KeyboardInterrupt included).
        """
        for image in dict.fromkeys(pod.image for pod in pods):
            self.ensure_image(image)
        if not pods:
            return []
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(MAX_PARALLEL_STARTS, len(pods)),
            thread_name_prefix="pytest-canary-docker",
        )
        futures = [pool.submit(self._run_pod, pod) for pod in pods]
        try:
            return [future.result() for future in futures]
        except BaseException:
            # Let creations in flight finish, so that nothing is created after the cleanup.
            pool.shutdown(wait=True, cancel_futures=True)
            for future in futures:
                if future.done() and not future.cancelled() and future.exception() is None:
                    future.result().stop(grace=0)
            raise
        finally:
            pool.shutdown(wait=True)

    def _run_pod(self, pod: PodSpec) -> RunningPod:
        env = dict(pod.env)
        env.setdefault("POD_NAME", pod.name)
        container = self.client.containers.create(
            image=pod.image,
            name=f"pytest-canary-{self.run_id}-{pod.name}",
            environment=env,
            labels=self.labels | {POD_LABEL: pod.name},
            # A 1-tuple binds the host address only: the engine picks a free port.
            ports={f"{pod.port}/tcp": ("127.0.0.1",)},
            detach=True,
        )
        handle = ContainerHandle(self, container)
        with self._owned_lock:
            self._owned[container.id] = handle
        try:
            container.start()
            port = self._published_port(handle, pod)
        except BaseException:
            handle.stop(grace=0)
            raise
        return RunningPod(spec=pod, host="127.0.0.1", port=port, stopper=handle)

    def _published_port(self, handle: ContainerHandle, pod: PodSpec) -> int:
        deadline = time.monotonic() + self.start_timeout
        key = f"{pod.port}/tcp"
        ports: dict[str, Any] = {}
        while time.monotonic() < deadline:
            handle.container.reload()
            status = handle.container.status
            if status not in ("created", "running"):
                raise BackendError(
                    f"pod {pod.name}: container {handle.name} of {pod.image} stopped right "
                    f"after start ({handle.exit_summary()}); its log:\n{handle.log_tail(20)}"
                )
            ports = (handle.container.attrs.get("NetworkSettings") or {}).get("Ports") or {}
            for binding in ports.get(key) or []:
                if binding.get("HostIp") in ("127.0.0.1", "") and binding.get("HostPort"):
                    return int(binding["HostPort"])
            time.sleep(0.05)
        raise BackendError(
            f"pod {pod.name}: container {handle.name} has no published port for {key} "
            f"after {self.start_timeout:.0f}s (ports: {ports})"
        )

    def _forget(self, handle: ContainerHandle) -> None:
        with self._owned_lock:
            self._owned.pop(handle.container.id, None)

    @property
    def containers(self) -> list[ContainerHandle]:
        """The containers this runtime owns now."""
        with self._owned_lock:
            return list(self._owned.values())

    def close(self) -> None:
        """Remove every container of this run, whether or not a pod still owns it."""
        import docker

        try:
            for handle in self.containers:
                handle.stop(grace=1.0)
            for container in run_containers(self.client, self.run_id):
                with contextlib.suppress(docker.errors.NotFound):
                    container.remove(force=True, v=True)
        finally:
            if self._owns_client:
                self.client.close()
                self._owns_client = False  # idempotent: the next close() finds nothing
