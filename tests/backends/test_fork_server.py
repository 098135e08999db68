"""Sample-app pods are forked by one fork server per process, and behave as started ones."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_canary.backends.local import fork_server
from pytest_canary.backends.local.fork_server import ForkedProcess
from pytest_canary.backends.local.runtime import (
    SAMPLE_APP,
    PodSpec,
    ProcessHandle,
    ProcessRuntime,
    RunningPod,
    process_start_time,
    wait_healthy,
)
from pytest_canary.errors import BackendError


def spec(name: str, **env: str) -> PodSpec:
    return PodSpec(
        name, {"app": "t"}, "pytest-canary/sample-nginx:1.0", {"APP_VERSION": "1.0", **env}, 80
    )


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def version(pod: RunningPod) -> str | None:
    conn = http.client.HTTPConnection(pod.host, pod.port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        response.read()
        return response.getheader("X-App-Version")
    finally:
        conn.close()


def gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while process_start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    return process_start_time(pid) is None


@pytest.fixture
def runtime() -> Iterator[ProcessRuntime]:
    r = ProcessRuntime()
    try:
        yield r
    finally:
        r.close()


def forked(pod: RunningPod) -> ForkedProcess:
    assert isinstance(pod.stopper, ProcessHandle)
    assert isinstance(pod.stopper.process, ForkedProcess), fork_server.failure()
    return pod.stopper.process


def test_pods_are_children_of_one_server_that_is_a_child_of_this_process(
    runtime: ProcessRuntime,
) -> None:
    a, b = runtime.start_many([spec("a"), spec("b", APP_VERSION="2.0")])
    server = fork_server.current()
    assert server is not None
    assert parent_of(server.process.pid) == os.getpid()
    assert parent_of(forked(a).pid) == parent_of(forked(b).pid) == server.process.pid
    for pod in (a, b):
        wait_healthy(pod)
    # Each pod runs with its own environment, not the server's.
    assert [version(a), version(b)] == ["1.0", "2.0"]
    a.stop(grace=5.0)
    b.stop(grace=5.0)
    assert forked(a).returncode == forked(b).returncode == 0  # a clean SIGTERM drain


def test_a_killed_pod_reports_its_signal_and_keeps_its_log(runtime: ProcessRuntime) -> None:
    (pod,) = runtime.start_many([spec("killed")])
    os.kill(forked(pod).pid, signal.SIGKILL)
    assert forked(pod).wait(timeout=10) == -signal.SIGKILL
    assert not pod.alive()
    with pytest.raises(BackendError, match="pod killed exited while waiting for readiness"):
        wait_healthy(pod)
    pod.stop(grace=1.0)  # closes its stdout


def test_a_pod_that_fails_to_start_reports_its_exit_code_and_log(runtime: ProcessRuntime) -> None:
    with pytest.raises(BackendError, match=r"(?s)exited with code 2 before listening.*sample_app:"):
        runtime.start_many([spec("bad", ERROR_RATE="lots")])


def test_a_custom_command_is_started_with_popen() -> None:
    runtime = ProcessRuntime(command=[sys.executable, "-S", str(SAMPLE_APP)])
    try:
        (pod,) = runtime.start_many([spec("own")])
        assert isinstance(pod.stopper, ProcessHandle)
        assert isinstance(pod.stopper.process, subprocess.Popen)
        pod.stop(grace=5.0)
    finally:
        runtime.close()


def test_without_a_server_pods_are_started_with_popen(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "zygote.py"
    broken.write_text("raise SystemExit(3)\n")
    monkeypatch.setattr(fork_server, "ZYGOTE", broken)
    monkeypatch.setattr(fork_server, "_server", None)
    monkeypatch.setattr(fork_server, "_failure", None)
    told: list[str] = []
    runtime = ProcessRuntime(progress=told.append)
    try:
        (pod,) = runtime.start_many([spec("fallback")])
        assert isinstance(pod.stopper, ProcessHandle)
        assert isinstance(pod.stopper.process, subprocess.Popen)
        assert "fork server did not start" in (fork_server.failure() or "")
        wait_healthy(pod)
        (again,) = runtime.start_many([spec("fallback-2")])
        for running in (pod, again):
            running.stop(grace=5.0)
    finally:
        runtime.close()
    # The user is told once why pods start slower, not once per pod.
    (line,) = told
    assert line.startswith("pods start as separate interpreters")
    assert line.endswith(
        "the fork server cannot run here: the pods' fork server did not start: "
        "the fork server exited (exit code 3)"
    ), line


def test_a_pod_the_server_cannot_take_starts_with_popen_and_says_why() -> None:
    """An environment over the server's message size: that pod starts with Popen (the
    server keeps running for the others), and the one progress line names the real reason,
    not "the fork server cannot run here"."""
    told: list[str] = []
    runtime = ProcessRuntime(progress=told.append)
    big = {f"BIG_{i}": "x" * 110_000 for i in range(10)}  # 1.1 MB, each under MAX_ARG_STRLEN
    try:
        (pod,) = runtime.start_many([spec("big", **big)])
        assert isinstance(pod.stopper, ProcessHandle)
        assert isinstance(pod.stopper.process, subprocess.Popen)
        pod.stop(grace=5.0)
    finally:
        runtime.close()
    (line,) = told
    assert "the fork server did not take a pod: a pod's environment of " in line, line
    assert f"bytes is over the {fork_server.MAX_MESSAGE} bytes" in line
    assert "cannot run here" not in line


def test_pods_die_with_their_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fork_server, "_server", None)  # a server of this test's own
    runtime = ProcessRuntime()
    try:
        pods = runtime.start_many([spec("orphan-1"), spec("orphan-2")])
        server = fork_server.current()
        assert server is not None
        pids = [forked(pod).pid for pod in pods]
        os.kill(server.process.pid, signal.SIGKILL)
        assert server.process.wait(timeout=10) == -signal.SIGKILL
        assert all(gone(pid) for pid in pids)  # their parent-death signal
        for pod in pods:
            assert forked(pod).wait(timeout=15) == -signal.SIGTERM
            pod.stop(grace=1.0)
        # The next pod gets a new server.
        (again,) = runtime.start_many([spec("after")])
        assert fork_server.current() not in (None, server)
        again.stop(grace=5.0)
    finally:
        runtime.close()
        if (own := fork_server.current()) is not None:
            own.close()
