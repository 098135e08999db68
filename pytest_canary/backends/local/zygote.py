"""The fork server of the process runtime: imports the sample app once, forks a pod per request.

Run as a file with the interpreter's ``-S`` (stdlib only, like the app itself)::

    python -S zygote.py CONTROL_FD APP_PATH

A pod started with ``python -S sample_app.py`` pays an interpreter start and the app's
imports (``http.server``, ``email``, ``ssl``, ...), ~0.1 s of CPU each. This process pays them
once; each pod is then a ``fork`` of it that runs the app's ``__main__`` as a fresh interpreter
would, and exits through the interpreter's own shutdown.

The protocol on ``CONTROL_FD`` (a ``SOCK_SEQPACKET`` Unix socket, one JSON object a message):

- to the client once: ``{"ready": PID}`` after the warm-up, or ``{"fatal": TEXT}``;
- from the client: ``{"argv": [...], "env": {...}, "cwd": DIR}`` with two descriptors attached
  (the pod's stdout and stderr); stdin is ``/dev/null``;
- to the client: ``{"pid": PID}`` with the pod's pidfd attached, or ``{"error": TEXT}``;
- to the client, whenever a pod exits: ``{"exit": PID, "code": CODE}`` (``-N``: signal N), the
  pod reaped here, its parent.

The client closing its end ends this process. Every pod is in its own session and has
``PR_SET_PDEATHSIG`` (SIGTERM) on this process, which has it on the client: pods never outlive
the client, however it ends.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import select
import signal
import socket
import sys
import traceback
import types
from typing import Any

MAX_MESSAGE = 1 << 20
PR_SET_PDEATHSIG = 1


def _load_prctl() -> Any:
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # not glibc Linux: no parent-death signal
        return None


def _send(control: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    socket.send_fds(control, [json.dumps(message).encode()], fds or [])


class Pod:
    """What a forked child needs to become a pod."""

    def __init__(self, request: dict[str, Any], stdout: int, stderr: int) -> None:
        self.argv: list[str] = [str(arg) for arg in request["argv"]]
        self.env: dict[str, str] = {str(k): str(v) for k, v in request["env"].items()}
        self.cwd = str(request["cwd"])
        self.stdout = stdout
        self.stderr = stderr


def serve(control: socket.socket, prctl: Any) -> Pod | None:
    """Answer requests until the client closes its end (``None``); in a forked child, return
    the pod it is to become (the caller runs it, outside every frame of this loop)."""
    me = os.getpid()
    children: dict[int, int] = {}  # pidfd -> pid
    while True:
        waiting: list[int] = [control.fileno(), *children]
        ready, _, _ = select.select(waiting, [], [])
        for fd in ready:
            if fd in children:
                pid = children.pop(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                _send(control, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})
                continue
            data, fds, _, _ = socket.recv_fds(control, MAX_MESSAGE, 2)
            if not data:
                return None
            try:
                request = json.loads(data)
                if len(fds) != 2:
                    raise ValueError(f"expected 2 descriptors, got {len(fds)}")
                pod = Pod(request, fds[0], fds[1])
                pid = os.fork()
            except Exception as exc:  # the client falls back to starting this pod itself
                for received in fds:
                    os.close(received)
                _send(control, {"error": f"{type(exc).__name__}: {exc}"})
                continue
            if pid == 0:
                os.setsid()
                if prctl is not None:
                    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
                if os.getppid() != me:  # this server died before prctl took effect
                    os._exit(1)
                control.close()
                for pidfd in children:
                    os.close(pidfd)
                return pod
            for received in fds:
                os.close(received)
            pidfd = os.pidfd_open(pid)  # a child not reaped yet: valid even if it exited
            children[pidfd] = pid
            _send(control, {"pid": pid}, [pidfd])


def become(pod: Pod, app: str, code: types.CodeType) -> None:
    """Turn this forked child into the pod: descriptors, environment, argv, cwd, then the
    app's ``__main__`` (its ``SystemExit`` ends the interpreter as a fresh one would end)."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(pod.stdout, 1)
    os.dup2(pod.stderr, 2)
    for fd in {devnull, pod.stdout, pod.stderr} - {0, 1, 2}:
        os.close(fd)
    os.chdir(pod.cwd)
    os.environ.clear()
    os.environ.update(pod.env)
    sys.argv = [app, *pod.argv]
    sys.path[0] = os.path.dirname(app)
    sys.dont_write_bytecode = bool(pod.env.get("PYTHONDONTWRITEBYTECODE"))
    main = types.ModuleType("__main__")
    main.__file__ = app
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


def main(argv: list[str]) -> int:
    """Warm up, serve, and in each forked child run the app."""
    control = socket.socket(fileno=int(argv[1]))
    app = argv[2]
    try:
        with open(app, encoding="utf-8") as source:
            code = compile(source.read(), app, "exec", dont_inherit=True)
        # Run the app's module body once under another name: its imports land in
        # sys.modules, so a pod's own run of the body finds them there.
        warm = types.ModuleType("_sample_app_warm")
        warm.__file__ = app
        sys.modules[warm.__name__] = warm
        exec(code, warm.__dict__)
        del sys.modules[warm.__name__]
        prctl = _load_prctl()
        # Objects that exist now are never collected: a pod's collections do not walk (and
        # so copy) the pages it shares with this process.
        gc.freeze()
    except BaseException:
        _send(control, {"fatal": traceback.format_exc()})
        return 1
    _send(control, {"ready": os.getpid()})
    try:
        pod = serve(control, prctl)
    except BaseException:
        _send(control, {"fatal": traceback.format_exc()})
        raise
    if pod is None:
        return 0
    become(pod, app, code)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
