"""Lifecycle corners of the local backend: pods outlive the thread that deployed them,
closed environments are let go, dead runs' pod folders are swept, teardown is parallel."""

from __future__ import annotations

import gc
import os
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_canary import Harness, build_spec
from pytest_canary.backends.local import LocalBackend
from pytest_canary.backends.local import runtime as runtime_module
from pytest_canary.backends.local.cluster import LocalEnvironment
from pytest_canary.backends.local.runtime import (
    OWNER_FILE,
    POD_DIR_PREFIX,
    PodSpec,
    ProcessHandle,
    ProcessRuntime,
    RunningPod,
    RuntimeHandle,
    process_start_time,
    stop_pods,
    sweep_dead_pod_dirs,
)
from pytest_canary.manifests import Phase, render


@pytest.fixture
def backend() -> Iterator[LocalBackend]:
    b = LocalBackend(seed=4)
    try:
        yield b
    finally:
        b.close()


def test_pods_outlive_the_thread_that_deployed_them(backend: LocalBackend) -> None:
    """PR_SET_PDEATHSIG fires when the forking *thread* ends: pods are forked by the
    runtime's own long-lived thread, so a deploy from a worker thread that ends is fine."""
    env = backend.environment("worker-thread")
    assert isinstance(env, LocalEnvironment)
    with Harness(env) as canary:
        errors: list[BaseException] = []

        def deploy() -> None:
            try:
                canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
            except BaseException as exc:
                errors.append(exc)

        worker = threading.Thread(target=deploy)
        worker.start()
        worker.join(60)
        assert not errors and not worker.is_alive()
        pods = env.pods
        assert len(pods) == 2
        for pod in pods:
            handle = pod.stopper
            assert isinstance(handle, ProcessHandle)
            # The parent-death signal would have arrived when the worker ended.
            with pytest.raises(subprocess.TimeoutExpired):
                handle.process.wait(timeout=1.0)
        release = canary.releases[-1]
        assert release.sample(40).error_count == 0


def test_closed_environments_are_let_go(backend: LocalBackend) -> None:
    env = backend.environment("closed")
    ref = weakref.ref(env)
    with Harness(env) as canary:
        canary.deploy("nginx", stable="1.0", canary="2.0")
    assert env not in backend._open
    del env, canary
    gc.collect()
    assert ref() is None


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(done.stdout)


def _folder(root: Path, name: str, owner: str | None) -> Path:
    folder = root / f"{POD_DIR_PREFIX}{name}"
    folder.mkdir()
    (folder / "pod.log").write_text("log\n")
    if owner is not None:
        (folder / OWNER_FILE).write_text(owner)
    return folder


def test_sweep_removes_only_folders_of_dead_runs(tmp_path: Path) -> None:
    host = socket.gethostname()
    me = os.getpid()
    dead = _folder(tmp_path, "dead", f"{_dead_pid()} 123 {host}\n")
    recycled = _folder(tmp_path, "recycled", f"{me} 1 {host}\n")  # our pid, another start
    alive = _folder(tmp_path, "alive", f"{me} {process_start_time(me)} {host}\n")
    elsewhere = _folder(tmp_path, "elsewhere", f"{_dead_pid()} 123 other-host\n")
    unknown = _folder(tmp_path, "unknown", None)
    removed = sweep_dead_pod_dirs(tmp_path)
    assert sorted(removed) == sorted([dead, recycled])
    assert alive.exists() and elsewhere.exists() and unknown.exists()
    assert not dead.exists() and not recycled.exists()


KILLED_RUN = """
import os, pathlib, signal

def test_killed(canary):
    canary.deploy("nginx", stable="1.0", canary="2.0")
    pathlib.Path("pid.txt").write_text(str(os.getpid()))
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_run_leaves_its_pod_folder_to_the_next_run(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(KILLED_RUN)
    pytester.runpytest_subprocess("--canary-seed=1", timeout=120)
    pid = int((pytester.path / "pid.txt").read_text())
    root = Path(os.environ.get("TMPDIR", "/tmp"))
    left = list(root.glob(f"{POD_DIR_PREFIX}{pid}-*"))
    assert len(left) == 1  # kill -9: nothing could clean up
    ProcessRuntime().close()  # the next run starts: it sweeps
    assert not left[0].exists()


class _StoppedHandle(RuntimeHandle):
    """A pod that ignores SIGTERM (e.g. SIGSTOPped): stop waits its whole grace period."""

    def __init__(self, clock: list[float], log: list[tuple[str, float]]) -> None:
        self.clock = clock
        self.log = log

    def terminate(self) -> None:
        self.log.append(("terminate", self.clock[0]))

    def stop(self, grace: float) -> None:
        self.log.append(("stop", grace))
        self.clock[0] += grace  # waited the whole grace period, then SIGKILL

    def alive(self) -> bool:
        return False

    def log_tail(self, lines: int) -> str:
        return ""


def test_stopping_pods_that_ignore_sigterm_takes_one_grace_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0.0]
    log: list[tuple[str, float]] = []
    monkeypatch.setattr(runtime_module.time, "monotonic", lambda: clock[0])
    spec = PodSpec("p", {}, "img", {}, 80)
    pods = [RunningPod(spec, "127.0.0.1", 1, _StoppedHandle(clock, log)) for _ in range(6)]
    stop_pods(pods, grace=2.0)
    assert [kind for kind, _ in log[:6]] == ["terminate"] * 6  # SIGTERM to all first
    assert clock[0] == pytest.approx(2.0)  # one grace period in all, not six
    assert not any(pod.ready for pod in pods)


def test_teardown_of_stopped_pods_kills_them_all(backend: LocalBackend) -> None:
    env = backend.environment("stopped-pods")
    assert isinstance(env, LocalEnvironment)
    env.apply(render(build_spec("nginx", stable="1.0", canary="2.0", replicas=2), Phase.CANARY))
    pids = []
    for pod in env.pods:
        assert isinstance(pod.stopper, ProcessHandle)
        pids.append(pod.stopper.process.pid)
        os.kill(pod.stopper.process.pid, 19)  # SIGSTOP: SIGTERM waits, SIGKILL does not
    env.close()
    assert all(process_start_time(pid) is None for pid in pids)


def test_a_published_snapshot_keeps_the_readiness_it_was_published_with(
    backend: LocalBackend,
) -> None:
    """Routers route on one consistent configuration, as a proxy does: a pod leaving the
    endpoints (its Ready flag cleared while the stable Deployment rolls) disappears from
    the next snapshot, not from the one a request is already routed on. Reading readiness
    live made a request routed on the old snapshot find no ready endpoint at all (503)
    while a rolling promotion swapped the stable pod."""
    env = backend.environment("snapshot-readiness")
    assert isinstance(env, LocalEnvironment)
    with Harness(env) as harness:
        harness.deploy("nginx", stable="1.0", canary="2.0", weight=50)
        before = env._snapshot
        (stable,) = [p for p in env.pods if p.labels.get("version") == "1.0"]
        stable.ready = False  # what a stopping pod goes through first
        assert [e.pod for e in before.service_endpoints("kubeapp-stable")] == [stable.name]
        env.publish()
        assert env._snapshot.service_endpoints("kubeapp-stable") == []
        stable.ready = True
        env.publish()
