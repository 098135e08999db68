"""The local backend's Docker runtime: pods as labelled containers on 127.0.0.1, any app
image, and nothing of ours left on the engine after a run, whatever happened during it.

Tests marked ``docker`` skip, with the reason, when no Docker engine answers; the option
tests at the end need no Docker.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_canary import AppImage, BackendError, Harness
from pytest_canary.apps import VersionFromJson
from pytest_canary.backends.local import LocalBackend, make_runtime
from pytest_canary.backends.local.docker_runtime import (
    PID_LABEL,
    PID_START_LABEL,
    POD_LABEL,
    RUN_LABEL,
    DockerRuntime,
    owner_alive,
    owner_labels,
    process_start_time,
    run_containers,
    sweep_dead_runs,
)
from pytest_canary.backends.local.runtime import PodSpec, wait_healthy
from pytest_canary.images import build_sample_image, connect

# Every session on the Docker runtime sweeps the containers of dead runs, on the one engine: a
# session started by a test on the other xdist worker could sweep a killed run's containers
# before this file's test has seen them left behind. One worker runs this file (--dist
# loadgroup in addopts).
pytestmark = pytest.mark.xdist_group("docker-engine")


@pytest.fixture(scope="module")
def docker_client() -> Iterator[Any]:
    try:
        client = connect(timeout=60)
    except BackendError as exc:
        pytest.skip(f"needs a Docker engine: {exc}")
    try:
        if shutil.which("go") is None and not all(
            _image_exists(client, f"pytest-canary/sample-go:{v}") for v in ("1.0", "2.0")
        ):
            pytest.skip("needs Go to build the sample images (apt-get install golang-go)")
        for version in ("1.0", "2.0"):
            build_sample_image(version, client=client, progress=lambda _: None)
        yield client
    finally:
        client.close()


def _image_exists(client: Any, reference: str) -> bool:
    import docker

    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    return True


@pytest.fixture
def runtime(docker_client: Any) -> Iterator[DockerRuntime]:
    rt = DockerRuntime(docker_client, sweep=False, progress=lambda _: None)
    try:
        yield rt
    finally:
        rt.close()
        assert run_containers(docker_client, rt.run_id) == []


def pod(name: str, version: str, **env: str) -> PodSpec:
    return PodSpec(
        name=name,
        labels={"app": "kubeapp", "version": version},
        image=f"pytest-canary/sample-go:{version}",
        env={"APP_VERSION": version, "PORT": "8080", **env},
        port=8080,
    )


def get(port: int, path: str = "/") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def ours(client: Any, **labels: str) -> list[Any]:
    """Containers of ours, optionally narrowed by label values."""
    filters = [RUN_LABEL] + [f"{k}={v}" for k, v in labels.items()]
    return list(client.containers.list(all=True, filters={"label": filters}))


# -- the runtime --------------------------------------------------------------------------------


@pytest.mark.docker
def test_pods_are_labelled_containers_published_on_loopback(
    runtime: DockerRuntime, docker_client: Any
) -> None:
    pods = runtime.start_many(
        [pod("web-a", "1.0", APP_TRACK="stable"), pod("web-b", "2.0", APP_TRACK="canary")]
    )
    for running in pods:
        wait_healthy(running)
    a, b = pods
    status, headers, body = get(b.port)
    assert status == 200 and headers["X-App-Version"] == "2.0"
    assert json.loads(body) == {
        "app": "kubeapp",
        "version": "2.0",
        "track": "canary",
        "hostname": "web-b",  # POD_NAME, as the Downward API gives it on a cluster
    }
    assert a.host == "127.0.0.1" and get(a.port)[1]["X-App-Version"] == "1.0"
    (container,) = ours(docker_client, **{POD_LABEL: "web-a"})
    labels = container.labels
    assert labels[RUN_LABEL] == runtime.run_id
    assert labels[PID_LABEL] == str(os.getpid())
    assert labels[PID_START_LABEL] == process_start_time(os.getpid())
    bindings = container.attrs["HostConfig"]["PortBindings"]["8080/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"]  # never on every interface
    a.stop(grace=2)
    assert not a.alive()
    assert ours(docker_client, **{POD_LABEL: "web-a"}) == []  # stopped means removed
    assert "listening on" in a.log_tail(5)  # the log outlives the container
    assert [h.name for h in runtime.containers] == [b.stopper.name]  # type: ignore[attr-defined]


@pytest.mark.docker
def test_an_image_that_is_not_there_is_named_and_nothing_starts(
    runtime: DockerRuntime, docker_client: Any
) -> None:
    missing = PodSpec("shop-x", {}, "registry.example/shop:9.9", {}, 8080)
    with pytest.raises(BackendError) as info:
        runtime.start_many([pod("web-a", "1.0"), missing])
    assert "image registry.example/shop:9.9 is not on the Docker engine" in str(info.value)
    assert "pulls nothing" in str(info.value)
    assert run_containers(docker_client, runtime.run_id) == []


@pytest.mark.docker
def test_a_pod_that_dies_is_reported_with_its_log(runtime: DockerRuntime) -> None:
    """The app exits at once (bad PORT): caught when its port is read or, if it dies a bit
    later, by the readiness wait; either way the message carries the app's own log line."""
    with pytest.raises(BackendError) as info:
        for running in runtime.start_many([pod("web-bad", "1.0", PORT="not-a-port")]):
            wait_healthy(running, timeout=15)
    message = str(info.value)
    assert "pod web-bad" in message and (
        "stopped right after start" in message or "exited" in message
    )
    assert 'PORT="not-a-port" from the environment' in message


@pytest.mark.docker
def test_close_removes_every_container_of_the_run(
    runtime: DockerRuntime, docker_client: Any
) -> None:
    runtime.start_many([pod("web-a", "1.0"), pod("web-b", "1.0"), pod("web-c", "2.0")])
    # One the runtime does not track (created by a start that was interrupted, say).
    docker_client.containers.create(
        "pytest-canary/sample-go:1.0", labels=runtime.labels, environment={"PORT": "8080"}
    )
    assert len(run_containers(docker_client, runtime.run_id)) == 4
    runtime.close()
    assert run_containers(docker_client, runtime.run_id) == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.docker
def test_sweep_removes_containers_of_dead_runs_only(docker_client: Any) -> None:
    import docker

    def create(labels: dict[str, str]) -> Any:
        return docker_client.containers.create("pytest-canary/sample-go:1.0", labels=labels)

    dead = create(owner_labels("dead-run", pid=_dead_pid()))
    recycled = create(owner_labels("recycled-run") | {PID_START_LABEL: "1"})  # pid reused
    other_host = create(owner_labels("far-run", pid=_dead_pid()) | {"pytest-canary/host": "x"})
    alive = create(owner_labels("live-run"))
    try:
        sweep_dead_runs(docker_client)
        # Checked on the engine, not on the returned names: a concurrent session's sweep
        # may have removed some of them first.
        left = {c.name for c in ours(docker_client)}
        assert {alive.name, other_host.name} <= left
        assert not left & {dead.name, recycled.name}
    finally:
        for container in (dead, recycled, other_host, alive):
            with contextlib.suppress(docker.errors.NotFound):  # swept ones are gone
                container.remove(force=True)


def test_owner_is_alive_only_while_the_same_process_runs() -> None:
    assert owner_alive(owner_labels("r"))
    assert not owner_alive(owner_labels("r", pid=_dead_pid()))
    assert not owner_alive(owner_labels("r") | {PID_START_LABEL: "1"})
    assert not owner_alive(
        {RUN_LABEL: "r", "pytest-canary/host": owner_labels("r")["pytest-canary/host"]}
    )


# -- the backend on containers ------------------------------------------------------------------


@pytest.mark.docker
def test_any_app_image_runs_on_its_port_and_is_read_by_its_reader(docker_client: Any) -> None:
    """A non-sample image (here the Go sample retagged as ``pytest-canary-test/shop``) on
    port 9090, its version read from the JSON body: routed and split like the sample."""
    for version in ("1.0", "2.0"):
        docker_client.images.get(f"pytest-canary/sample-go:{version}").tag(
            "pytest-canary-test/shop", version
        )
    shop = AppImage(
        "pytest-canary-test/shop:{version}",
        port=9090,
        health="/health",
        version_from=VersionFromJson("version"),
    )
    runtime = DockerRuntime(docker_client, sweep=False, progress=lambda _: None)
    backend = LocalBackend(seed=3, runtime=runtime)
    try:
        with Harness(backend.environment("test-any-app")) as canary:
            rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50, app=shop)
            ports = {
                c.labels[POD_LABEL]: c.attrs["HostConfig"]["PortBindings"]
                for c in run_containers(docker_client, runtime.run_id)
            }
            assert all("9090/tcp" in b for b in ports.values()), ports
            rel.expect_routed("2.0", headers={"X-Canary": "always"}, leak=0.1)
            rel.expect_split(0.5, tolerance=0.15)
    finally:
        backend.close()
        for version in ("1.0", "2.0"):
            docker_client.images.remove(f"pytest-canary-test/shop:{version}")
    assert run_containers(docker_client, runtime.run_id) == []


RECORDING_TEST = """
import json, os, signal

def test_release(canary):
    rel = canary.deploy("nginx", stable="1.0", canary="2.0", weight=50)
    names = [pod.stopper.name for pod in canary.environment.pods]
    with open("run.json", "w") as f:
        json.dump({{"pid": os.getpid(), "containers": names}}, f)
    {action}
"""


@pytest.mark.docker
@pytest.mark.parametrize(
    "action",
    ["rel.expect_split(0.9)", "raise RuntimeError('boom')", "os.kill(os.getpid(), signal.SIGINT)"],
    ids=["failed", "error", "ctrl-c"],
)
def test_nothing_is_left_after_a_failure_or_ctrl_c(
    pytester: pytest.Pytester, docker_client: Any, action: str
) -> None:
    pytester.makepyfile(RECORDING_TEST.format(action=action))
    result = pytester.runpytest_subprocess(
        "--canary-runtime=docker", "--canary-seed=1", timeout=120
    )
    assert result.ret != 0
    run = json.loads((pytester.path / "run.json").read_text())
    assert len(run["containers"]) == 2
    assert ours(docker_client, **{PID_LABEL: str(run["pid"])}) == []


@pytest.mark.docker
def test_containers_of_a_killed_pytest_are_swept_by_the_next_session(
    pytester: pytest.Pytester, docker_client: Any
) -> None:
    """``kill -9`` runs no teardown, and containers cannot die with their parent: they stay
    until the next session with the Docker runtime starts and removes them."""
    pytester.makepyfile(RECORDING_TEST.format(action="os.kill(os.getpid(), signal.SIGKILL)"))
    pytester.runpytest_subprocess("--canary-runtime=docker", "--canary-seed=1", timeout=120)
    run = json.loads((pytester.path / "run.json").read_text())
    left = ours(docker_client, **{PID_LABEL: str(run["pid"])})
    try:
        assert sorted(c.name for c in left) == sorted(run["containers"])  # really left behind
        pytester.makepyfile("def test_nothing(): pass")
        result = pytester.runpytest_subprocess("--canary-runtime=docker", timeout=60)
        result.assert_outcomes(passed=1)
        assert ours(docker_client, **{PID_LABEL: str(run["pid"])}) == []
        # (The header says "canary: removed N container(s) left by dead runs" unless a
        # concurrent session on the same engine swept them first.)
    finally:
        for container in ours(docker_client, **{PID_LABEL: str(run["pid"])}):
            container.remove(force=True)


# -- options (no Docker needed) ---------------------------------------------------------------


def test_runtime_option_is_in_help_and_header(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--help")
    help_text = " ".join(result.stdout.str().split())  # argparse wraps the help
    assert "--canary-runtime={process,docker} How the local backend runs pods" in help_text
    assert "canary_runtime (string): How the local backend runs pods" in help_text
    result = pytester.runpytest()
    result.stdout.fnmatch_lines(
        ["canary: local backend modelling *; pods as processes * (--canary-runtime=process)"]
    )


@pytest.mark.parametrize(
    ("args", "ini", "env", "message"),
    [
        (
            ["--canary-runtime=podman"],
            "",
            None,
            "*runtime 'podman' from command line --canary-runtime: must be one of process, docker",
        ),
        ([], "canary_runtime = vm", None, "*runtime 'vm' from ini canary_runtime: must be one of*"),
        ([], "", "k8s", "*runtime 'k8s' from environment PYTEST_CANARY_RUNTIME: must be one of*"),
    ],
)
def test_bad_runtime_says_where_it_came_from(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    ini: str,
    env: str | None,
    message: str,
) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    if env is not None:
        monkeypatch.setenv("PYTEST_CANARY_RUNTIME", env)
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_docker_runtime_without_an_engine_is_a_usage_error(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("--canary-runtime=docker")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*--canary-runtime=docker: no Docker engine answers at "
            "unix:///nonexistent/docker.sock*start dockerd*"
        ]
    )


def test_make_runtime_knows_both_runtimes() -> None:
    assert make_runtime("process").name == "process"
    with pytest.raises(ValueError, match="runtime='vm': must be one of process, docker"):
        make_runtime("vm")
