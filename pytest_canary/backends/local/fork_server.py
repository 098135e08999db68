"""Starting sample-app pods without an interpreter start each: the client of ``zygote.py``.

One fork server per pytest process, started on the first pod and stopped at exit. It has
imported the sample app once and forks a pod per request; the pod's pid, pidfd (signals that
cannot hit a recycled pid), exit status (the server reaps its children and reports them) and
log file are known here, so a forked pod is stopped, diagnosed and waited for as a ``Popen`` one.

Lifetime: the server has ``PR_SET_PDEATHSIG`` on this process (it is forked by a thread that
lives as long as the process) and each pod has it on the server, so pods die with pytest
whatever way it ends. If the server cannot start (no pidfd, no descriptor passing, a failed
warm-up), :func:`fork_server` answers ``None`` and the runtime starts pods with ``Popen``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from pytest_canary.errors import BackendError

ZYGOTE = Path(__file__).resolve().with_name("zygote.py")
READY_TIMEOUT = 15.0
MAX_MESSAGE = 1 << 20
LOST_POD_TIMEOUT = 10.0  # a pod's own shutdown grace is 5 s


class ForkedProcess:
    """A pod forked by the fork server: the part of ``subprocess.Popen`` the runtime uses.

    Its exit status comes from the server (its parent), so :meth:`wait` and :meth:`poll`
    answer once the server has reaped it; signals go through a pidfd.
    """

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.args: Sequence[str] = ()
        self.stdout: BinaryIO | None = None
        self.returncode: int | None = None
        self._pidfd: int | None = pidfd
        self._exited = threading.Event()
        self._lock = threading.Lock()  # a pidfd is never closed while a signal uses it

    def _exit(self, code: int) -> None:
        with self._lock:
            self.returncode = code
            if self._pidfd is not None:
                os.close(self._pidfd)
                self._pidfd = None
        self._exited.set()

    def poll(self) -> int | None:
        """The exit status, ``None`` while it runs (or is not reaped yet)."""
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit status.

        Raises:
            subprocess.TimeoutExpired: still running after ``timeout`` seconds.
        """
        if not self._exited.wait(timeout):
            raise subprocess.TimeoutExpired(list(self.args), timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` unless it has exited (``ProcessLookupError`` if it just did)."""
        with self._lock:
            if self._pidfd is not None:
                signal.pidfd_send_signal(self._pidfd, sig)

    def terminate(self) -> None:
        """SIGTERM."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL."""
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """A running fork server and the thread that reads what it reports.

    Args:
        app: the app file each pod runs.
        fork: runs a function on a thread that lives as long as this process (the server's
            parent-death signal fires when the thread that forked it ends).
        preexec: runs in the server between fork and exec (the parent-death signal).
    """

    def __init__(
        self, app: Path, fork: Callable[[Callable[[], Any]], Any], preexec: Callable[[], None]
    ) -> None:
        self.owner = os.getpid()
        self._control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._replies: queue.SimpleQueue[dict[str, Any] | ForkedProcess] = queue.SimpleQueue()
        self._children: dict[int, ForkedProcess] = {}
        self._spawn_lock = threading.Lock()
        self._closed = False
        self.failure: str | None = None
        #: Why the last :meth:`spawn` returned ``None`` (the caller says so to the user).
        self.refusal: str | None = None
        with theirs:
            self.process: subprocess.Popen[bytes] = fork(
                lambda: subprocess.Popen(
                    [sys.executable, "-S", str(ZYGOTE), str(theirs.fileno()), str(app)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    pass_fds=[theirs.fileno()],
                    start_new_session=True,
                    preexec_fn=preexec,
                )
            )
        self._reader = threading.Thread(
            target=self._read, name="pytest-canary-fork-server", daemon=True
        )
        self._reader.start()
        try:
            ready = self._replies.get(timeout=READY_TIMEOUT)
        except queue.Empty:
            ready = {"fatal": f"no 'ready' within {READY_TIMEOUT:.0f}s"}
        if not isinstance(ready, dict) or "ready" not in ready:
            if isinstance(ready, dict) and "error" in ready:  # it closed its end: exiting
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(timeout=5)
            code = self.process.poll()  # before close(), whose kill would be reported instead
            self.close()
            reason = ready.get("fatal") or ready.get("error") if isinstance(ready, dict) else None
            raise BackendError(
                f"the pods' fork server did not start: {reason or ready}"
                + (f" (exit code {code})" if code is not None else "")
            )

    def _read(self) -> None:
        try:
            while True:
                data, fds, _, _ = socket.recv_fds(self._control, MAX_MESSAGE, 1)
                if not data:
                    break
                message = json.loads(data)
                if "exit" in message:
                    child = self._children.pop(message["exit"], None)
                    if child is not None:
                        child._exit(int(message["code"]))
                elif "pid" in message and len(fds) == 1:
                    child = ForkedProcess(int(message["pid"]), fds[0])
                    self._children[child.pid] = child
                    self._replies.put(child)
                else:
                    for fd in fds:
                        os.close(fd)
                    if "fatal" in message:
                        self.failure = str(message["fatal"])
                    self._replies.put(message)
        except OSError as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
        finally:
            self._lost()

    def _lost(self) -> None:
        """The server is gone: its pods got SIGTERM from their parent-death signal, and no
        one is left to report their exit status; report that signal once each has gone."""
        self._closed = True
        self._replies.put({"error": "the fork server exited"})
        for child in list(self._children.values()):
            with contextlib.suppress(OSError), child._lock:
                if child._pidfd is not None:  # readable once the pod has exited
                    select.select([child._pidfd], [], [], LOST_POD_TIMEOUT)
            child._exit(-signal.SIGTERM)
        self._children.clear()

    def alive(self) -> bool:
        """Whether the server still takes requests."""
        return not self._closed and self.process.poll() is None

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, stderr: int
    ) -> ForkedProcess | None:
        """Fork a pod running the app with ``argv``, ``env`` and ``cwd``, its stderr on
        ``stderr`` and its stdout on a new pipe (``process.stdout``); ``None`` if the server
        could not (the caller starts the pod itself)."""
        message = json.dumps({"argv": list(argv), "env": dict(env), "cwd": cwd}).encode()
        if len(message) > MAX_MESSAGE:
            self.refusal = (
                f"a pod's environment of {len(message)} bytes is over the {MAX_MESSAGE} bytes "
                "a message to the fork server takes"
            )
            return None
        reader, writer = os.pipe()
        try:
            with self._spawn_lock:
                if not self.alive():
                    self.refusal = f"the fork server stopped: {self.failure or 'it exited'}"
                    return None
                try:
                    socket.send_fds(self._control, [message], [writer, stderr])
                except OSError as exc:  # e.g. an environment larger than a message may be
                    self.refusal = f"passing a pod to the fork server failed: {exc}"
                    return None
                reply = self._replies.get(timeout=READY_TIMEOUT)
        except queue.Empty:  # a late reply would answer the next request: no more requests
            self._closed = True
            self.refusal = f"the fork server did not answer within {READY_TIMEOUT:.0f}s"
            return None
        finally:
            os.close(writer)
        if not isinstance(reply, ForkedProcess):
            os.close(reader)
            detail = reply.get("error") or reply.get("fatal") or reply
            self.refusal = f"the fork server could not fork a pod: {detail}"
            return None
        reply.args = [sys.executable, str(ZYGOTE), *argv]
        reply.stdout = open(reader, "rb")  # noqa: SIM115 -- the pod's handle closes it
        return reply

    def close(self) -> None:
        """Stop the server (idempotent): closing the socket ends it, and its pods with it."""
        if os.getpid() != self.owner:  # a forked copy of the owner: not its server
            return
        self._closed = True
        with contextlib.suppress(OSError):
            self._control.shutdown(socket.SHUT_RDWR)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self._reader.join(timeout=5)
        self._control.close()


_server: ForkServer | None = None
_failure: str | None = None
_lock = threading.Lock()


def fork_server(
    app: Path, fork: Callable[[Callable[[], Any]], Any], preexec: Callable[[], None]
) -> ForkServer | None:
    """This process's fork server for ``app``, started on first use; ``None`` (and
    :func:`failure` says why) when it cannot run here."""
    global _server, _failure
    with _lock:
        if _server is not None and _server.owner == os.getpid() and _server.alive():
            return _server
        if _failure is not None:
            return None
        if not (hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")):
            _failure = "this platform has no pidfd_open or descriptor passing"
            return None
        try:
            _server = ForkServer(app, fork, preexec)
        except (OSError, BackendError) as exc:
            _failure = str(exc)
            return None
        atexit.register(_server.close)
        return _server


def current() -> ForkServer | None:
    """This process's running fork server, if one has been started."""
    server = _server
    return server if server is not None and server.owner == os.getpid() else None


def failure() -> str | None:
    """Why pods are started with ``Popen`` in this process (``None``: they are forked)."""
    return _failure
