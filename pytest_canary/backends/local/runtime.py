"""How the local backend runs a pod: the sample app as a real process on 127.0.0.1.

Every process is started in its own session (Ctrl-C on the terminal reaches pytest, which
stops them in order) with ``PR_SET_PDEATHSIG`` so the kernel ends it if pytest itself dies.
"""

from __future__ import annotations

import abc
import contextlib
import ctypes
import functools
import http.client
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_canary.errors import BackendError

SAMPLE_APP = Path(__file__).resolve().parents[2] / "sample_app.py"
HEALTH_TIMEOUT = 15.0
START_TIMEOUT = 15.0


@dataclass(frozen=True)
class PodSpec:
    """What the local backend needs to run one pod."""

    name: str
    labels: Mapping[str, str]
    image: str
    env: Mapping[str, str]
    port: int
    health: str = "/health"


@dataclass
class RunningPod:
    """A pod that is running: where it listens and how to stop it."""

    spec: PodSpec
    host: str
    port: int
    stopper: RuntimeHandle
    ready: bool = False
    started_at: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        """The pod's name."""
        return self.spec.name

    @property
    def labels(self) -> Mapping[str, str]:
        """The pod's labels."""
        return self.spec.labels

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) the pod listens on."""
        return self.host, self.port

    def stop(self, grace: float = 5.0) -> None:
        """Stop the pod: SIGTERM, wait up to ``grace`` seconds, then SIGKILL."""
        self.ready = False
        self.stopper.stop(grace)

    def alive(self) -> bool:
        """Whether the pod is still running."""
        return self.stopper.alive()

    def log_tail(self, lines: int = 20) -> str:
        """The last lines the pod wrote."""
        return self.stopper.log_tail(lines)


class RuntimeHandle(abc.ABC):
    """One started pod's lifecycle."""

    def terminate(self) -> None:
        """Ask it to stop without waiting (SIGTERM); ``stop`` then waits."""

    @abc.abstractmethod
    def stop(self, grace: float) -> None:
        """Stop it (idempotent)."""

    @abc.abstractmethod
    def alive(self) -> bool:
        """Whether it still runs."""

    @abc.abstractmethod
    def log_tail(self, lines: int) -> str:
        """Its last log lines."""


class Runtime(abc.ABC):
    """Starts pods for the local backend."""

    name: str

    @abc.abstractmethod
    def start(self, pod: PodSpec) -> RunningPod:
        """Start ``pod`` and return once it listens (readiness is checked separately)."""

    def can_run(self, image: str) -> str | None:
        """``None`` when this runtime can run ``image``, else why not (for the error)."""
        return None

    def start_many(self, pods: list[PodSpec]) -> list[RunningPod]:
        """Start several pods; runtimes that can overlap their start-up override this."""
        return [self.start(pod) for pod in pods]

    def close(self) -> None:
        """Stop whatever the runtime still owns (idempotent)."""


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # not glibc Linux: no parent-death signal
        return None


# Resolved once in the parent: the child between fork and exec must not dlopen (the
# parent has threads, and a lock held by one of them at fork time would never be freed).
_PRCTL = _load_prctl()


def _die_with_parent(parent: int) -> None:  # runs in the child between fork and exec
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


class ProcessHandle(RuntimeHandle):
    """A pod that is a local process."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self._lock = threading.Lock()

    def terminate(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)

    def stop(self, grace: float) -> None:
        with self._lock:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        self.process.kill()
                    self.process.wait(timeout=5)
            if self.process.stdout is not None:
                self.process.stdout.close()

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def read_listening_line(
    process: subprocess.Popen[bytes], deadline: float, what: str, log: Path
) -> tuple[str, int]:
    """Wait for the app's ``listening on HOST:PORT`` line and return (host, port)."""
    assert process.stdout is not None
    buffer = b""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BackendError(
                f"{what} exited with code {process.returncode} before listening; its log "
                f"({log}):\n{_tail(log)}"
            )
        ready, _, _ = select.select([process.stdout], [], [], 0.05)
        if ready:
            chunk = os.read(process.stdout.fileno(), 4096)
            buffer += chunk
            if b"\n" in buffer:
                line = buffer.split(b"\n", 1)[0].decode(errors="replace").strip()
                if not line.startswith("listening on "):
                    raise BackendError(
                        f"{what} printed {line!r} instead of 'listening on HOST:PORT'"
                    )
                host, _, port = line.removeprefix("listening on ").rpartition(":")
                return host, int(port)
    raise BackendError(
        f"{what} did not report 'listening on HOST:PORT' within {START_TIMEOUT:.0f}s; its log "
        f"({log}):\n{_tail(log)}"
    )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class ProcessRuntime(Runtime):
    """Runs the Python sample app (``python -m pytest_canary.sample_app``) per pod.

    The version, track and fault rate come from the pod's environment exactly as the
    container would get them from the Deployment.
    """

    name = "process"

    def __init__(self, log_dir: Path | None = None, command: list[str] | None = None) -> None:
        self._own_log_dir = log_dir is None
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="pytest-canary-pods-"))
        # Run the app file itself (stdlib only, -S skips site-packages): importing the
        # package would cost each pod ~0.2 s of start-up.
        self.command = command or [sys.executable, "-S", str(SAMPLE_APP)]

    def start(self, pod: PodSpec) -> RunningPod:
        return self.start_many([pod])[0]

    def close(self) -> None:
        """Remove the pods' log folder it made (diagnostics were collected before)."""
        if self._own_log_dir:
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def can_run(self, image: str) -> str | None:
        if image.startswith("pytest-canary/sample-"):
            return None
        return (
            "the process runtime runs only the bundled sample app; run your own image with "
            "--canary-runtime=docker (or check your manifests' routing with canary.apply, "
            "where the sample app stands in for every workload)"
        )

    def start_many(self, pods: list[PodSpec]) -> list[RunningPod]:
        """Spawn every process first, then wait for each one's listening line.

        Must run on a thread that outlives the pods (``PR_SET_PDEATHSIG`` fires when the
        spawning thread ends): the harness calls it from the test's thread.
        """
        spawned = [self._spawn(pod) for pod in pods]
        running: list[RunningPod] = []
        try:
            deadline = time.monotonic() + START_TIMEOUT
            for pod, handle in spawned:
                host, port = read_listening_line(
                    handle.process, deadline, f"pod {pod.name}", handle.log_path
                )
                running.append(RunningPod(spec=pod, host=host, port=port, stopper=handle))
        except BaseException:
            for _, handle in spawned:
                handle.stop(grace=1.0)
            raise
        return running

    def _spawn(self, pod: PodSpec) -> tuple[PodSpec, ProcessHandle]:
        log_path = self.log_dir / f"{pod.name}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("APP_", "ERROR_"))}
        env.update(pod.env)
        env.update({"PORT": "0", "HOST": "127.0.0.1", "POD_NAME": pod.name})
        env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                env=env,
                start_new_session=True,
                preexec_fn=functools.partial(_die_with_parent, os.getpid()),
            )
        return pod, ProcessHandle(process, log_path)


def wait_healthy(pod: RunningPod, timeout: float = HEALTH_TIMEOUT) -> None:
    """Poll the pod's health path until it answers 200 (the readiness probe)."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not pod.alive():
            raise BackendError(
                f"pod {pod.name} exited while waiting for readiness; last log lines:\n"
                f"{pod.log_tail()}"
            )
        conn = http.client.HTTPConnection(pod.host, pod.port, timeout=1.0)
        try:
            conn.request("GET", pod.spec.health)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                pod.ready = True
                return
            last = f"HTTP {response.status}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        time.sleep(0.02)
    raise BackendError(
        f"pod {pod.name} not ready after {timeout:.0f}s: GET {pod.spec.health} on "
        f"{pod.host}:{pod.port} last gave {last}; last log lines:\n{pod.log_tail()}"
    )
