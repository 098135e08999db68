"""How the local backend runs a pod: the sample app as a real process on 127.0.0.1.

Every process is started in its own session (Ctrl-C on the terminal reaches pytest, which
stops them in order) with ``PR_SET_PDEATHSIG`` so the kernel ends it if pytest itself dies.
That signal fires when the *thread* that forked the process ends, so every process is forked
by one long-lived thread the runtime owns (:class:`Spawner`): pods live as long as the test
whatever thread deployed them.

The pods' log folder (``pytest-canary-pods-<pid>-*`` in the temporary directory) records its
owner; a run killed before it could remove its folder (SIGTERM, ``kill -9``) has it removed by
the next run's :func:`sweep_dead_pod_dirs`, as the Docker runtime sweeps its containers.
"""

from __future__ import annotations

import abc
import concurrent.futures
import contextlib
import ctypes
import functools
import http.client
import os
import queue
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pytest_canary.backends.local import fork_server
from pytest_canary.backends.local.fork_server import ForkedProcess
from pytest_canary.backends.owner import process_start_time
from pytest_canary.errors import BackendError

SAMPLE_APP = Path(__file__).resolve().parents[2] / "sample_app.py"
HEALTH_TIMEOUT = 15.0
START_TIMEOUT = 15.0
POD_DIR_PREFIX = "pytest-canary-pods-"
OWNER_FILE = "owner"

T = TypeVar("T")


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


def stop_pods(pods: Sequence[RunningPod], grace: float) -> None:
    """Stop several pods at once: SIGTERM to all, one shared grace period, then SIGKILL to
    those still running. Stopping n pods takes ``grace`` at most, not n times ``grace``."""
    for pod in pods:
        pod.ready = False
        pod.stopper.terminate()
    deadline = time.monotonic() + grace
    for pod in pods:
        pod.stopper.stop(max(0.0, deadline - time.monotonic()))


def _owner_record(pid: int) -> str:
    return f"{pid} {process_start_time(pid) or ''} {socket.gethostname()}\n"


def _owner_gone(record: str) -> bool:
    """Whether the process an owner record names is gone (other hosts' folders: never)."""
    parts = record.split()
    if len(parts) != 3 or parts[2] != socket.gethostname() or not parts[0].isdigit():
        return False
    return process_start_time(int(parts[0])) != parts[1]


def sweep_dead_pod_dirs(root: Path | None = None) -> list[Path]:
    """Remove the pods' log folders of runs whose pytest process is gone; return them.

    Only folders with an owner record are considered, and only those whose owner (pid and
    start time, on this host) no longer runs: folders of live runs, of other hosts and of
    unknown origin are left alone. Safe to call from several sessions at once.
    """
    root = Path(tempfile.gettempdir()) if root is None else root
    removed: list[Path] = []
    for folder in root.glob(f"{POD_DIR_PREFIX}*"):
        try:
            record = (folder / OWNER_FILE).read_text()
        except OSError:
            continue
        if _owner_gone(record):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class Spawner:
    """A long-lived thread that forks every pod process.

    ``PR_SET_PDEATHSIG`` ends a child when the thread that forked it ends, not the process:
    a pod forked by a test's worker thread would die with that thread. Forking here ties
    every pod to this thread, which lives until :meth:`close` (after the pods are stopped).
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[
            tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="pytest-canary-spawner", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._calls.get()) is not None:
            call, future = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(call())
                except BaseException as exc:  # re-raised in the calling thread
                    future.set_exception(exc)

    def call(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the spawner thread and return its result (or raise its error)."""
        if not self._thread.is_alive():
            raise BackendError("the pod spawner is closed")
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._calls.put((function, future))
        return future.result()

    def close(self) -> None:
        """End the thread (idempotent); pods it forked and that still run get SIGTERM."""
        if self._thread.is_alive():
            self._calls.put(None)
            self._thread.join(timeout=10)


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # not glibc Linux: no parent-death signal
        return None


# Resolved once in the parent: the child between fork and exec must not dlopen (the
# parent has threads, and a lock held by one of them at fork time would never be freed).
_PRCTL = _load_prctl()


def _die_with_parent(parent: int, sig: int = signal.SIGTERM) -> None:  # between fork and exec
    if _PRCTL is not None:
        _PRCTL(1, sig)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


_process_spawner: Spawner | None = None
_process_spawner_lock = threading.Lock()


def _fork_on_process_thread(function: Callable[[], T]) -> T:
    """Run ``function`` on a spawner thread that lives as long as this process: the fork
    server, shared by every runtime of the process, must not die with one runtime's thread."""
    global _process_spawner
    with _process_spawner_lock:
        if _process_spawner is None:
            _process_spawner = Spawner()
    return _process_spawner.call(function)


class ProcessHandle(RuntimeHandle):
    """A pod that is a local process."""

    def __init__(self, process: subprocess.Popen[bytes] | ForkedProcess, log_path: Path) -> None:
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
    process: subprocess.Popen[bytes] | ForkedProcess, deadline: float, what: str, log: Path
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
    """Runs the Python sample app (``python -S sample_app.py``) per pod.

    The version, track and fault rate come from the pod's environment exactly as the
    container would get them from the Deployment.

    Args:
        log_dir: where the pods' logs go (default: a folder of this run, removed on close).
        command: the command a pod runs instead of the sample app (always started with
            ``Popen``).
        fork: start sample-app pods by forking them from this process's fork server
            (:mod:`.fork_server`), which has imported the app once, instead of an interpreter
            start each; ``Popen`` whenever the server cannot run here.
        progress: told once, in one line, when the fork server cannot run and pods start
            with ``Popen`` instead (slower, so a user should know why).
    """

    name = "process"

    def __init__(
        self,
        log_dir: Path | None = None,
        command: list[str] | None = None,
        fork: bool = True,
        progress: Callable[[str], None] | None = None,
    ) -> None:
        self._own_log_dir = log_dir is None
        if log_dir is None:
            sweep_dead_pod_dirs()  # folders of runs that were killed before cleaning up
            log_dir = Path(tempfile.mkdtemp(prefix=f"{POD_DIR_PREFIX}{os.getpid()}-"))
            (log_dir / OWNER_FILE).write_text(_owner_record(os.getpid()))
        self.log_dir = log_dir
        # Run the app file itself (stdlib only, -S skips site-packages): importing the
        # package would cost each pod ~0.2 s of start-up.
        self.command = command or [sys.executable, "-S", str(SAMPLE_APP)]
        self.fork = fork and command is None
        self._progress = progress
        self._told_fallback = False
        self._refusal: str | None = None
        self._spawner = Spawner()

    def start(self, pod: PodSpec) -> RunningPod:
        return self.start_many([pod])[0]

    def close(self) -> None:
        """End the spawner thread and remove the pods' log folder it made (diagnostics were
        collected before)."""
        self._spawner.close()
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
        """Spawn every process first (on the spawner thread, so pods outlive the calling
        thread), then wait for each one's listening line."""
        spawned = self._spawner.call(lambda: [self._spawn(pod) for pod in pods])
        if self.fork and any(not isinstance(h.process, ForkedProcess) for _, h in spawned):
            self._tell_fallback()  # on the caller's thread, where progress lines belong
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
            if self.fork and (forked := self._fork(env, log.fileno())) is not None:
                return pod, ProcessHandle(forked, log_path)
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

    def _tell_fallback(self) -> None:
        if self._progress is None or self._told_fallback:
            return
        self._told_fallback = True
        failure = fork_server.failure()
        why = (
            f"the fork server cannot run here: {failure}"
            if failure is not None
            else f"the fork server did not take a pod: {self._refusal or 'no reason given'}"
        )
        self._progress(f"pods start as separate interpreters (about 0.1 s more CPU each): {why}")

    def _fork(self, env: Mapping[str, str], log: int) -> ForkedProcess | None:
        server = fork_server.fork_server(
            SAMPLE_APP,
            _fork_on_process_thread,
            functools.partial(_die_with_parent, os.getpid(), signal.SIGKILL),
        )
        if server is None:
            return None
        forked = server.spawn([], env, os.getcwd(), log)
        if forked is None:
            self._refusal = server.refusal
        return forked


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
