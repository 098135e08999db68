"""The kube backend's session: the context guard and the Kubernetes version checked before
anything is applied, what killed runs left swept at setup, the leases of live runs renewed,
the NodePort address on Docker Desktop, and the whole thing through pytest (pytester)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import ApiServer, FakeIngress
from pytest_canary.backends.kube import KubeBackend, KubeOptions
from pytest_canary.backends.kube.entry import EntryPoints, NodeAddress
from pytest_canary.backends.kube.namespace import (
    RENEWED_AT,
    namespace_object,
    parse_rfc3339,
)
from pytest_canary.backends.kube.options import check_context
from pytest_canary.backends.kube.sweep import LeaseRenewer, owner_gone, sweep_namespaces
from pytest_canary.backends.owner import Owner, process_start_time
from pytest_canary.errors import BackendError, CanaryConfigError


def kubeconfig_for(api_server: ApiServer, path: Path, context: str = "staging-eu") -> Path:
    path.write_text(
        f"""
apiVersion: v1
kind: Config
clusters: [{{name: emu, cluster: {{server: "{api_server.url}"}}}}]
users: [{{name: emu, user: {{token: t}}}}]
contexts: [{{name: {context}, context: {{cluster: emu, user: emu}}}}]
current-context: {context}
"""
    )
    return path


# -- the Kubernetes version, before anything is applied -------------------------------------------

NGINX_CLASS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "IngressClass",
    "metadata": {"name": "nginx"},
    "spec": {"controller": "k8s.io/ingress-nginx"},
}


def test_a_server_outside_the_window_is_refused_before_anything_is_applied(
    api_server: ApiServer, tmp_path: Path
) -> None:
    api_server.emulator.version = {
        "major": "1",
        "minor": "29+",
        "gitVersion": "v1.29.4-eks-2ad3f0b",
    }
    options = KubeOptions(
        kubeconfig=str(kubeconfig_for(api_server, tmp_path / "kc")), context_explicit=True
    )
    with pytest.raises(BackendError) as caught:
        KubeBackend.from_kubeconfig(options, run_id="run-1")
    message = str(caught.value)
    assert message.startswith(
        "Kubernetes v1.29.4-eks-2ad3f0b (context staging-eu; it runs gateway-api "
        "(gateway.networking.k8s.io/v1 served), istio (networking.istio.io/v1 served)) is "
        "outside 1.32 or newer, the versions the pinned add-ons support: "
    )
    assert "istio 1.30.3 needs 1.32 or newer" in message
    assert api_server.writes() == []


def test_only_the_windows_of_the_data_planes_the_cluster_runs_are_checked(
    tmp_path: Path,
) -> None:
    """A 1.31 cluster with ingress-nginx and neither Istio nor Gateway API: inside
    ingress-nginx's window (1.31-1.35), outside Istio's (1.32+), which it does not run."""
    server = ApiServer(istio=False, gateway_api=False).start()
    try:
        server.emulator.version = {"major": "1", "minor": "31", "gitVersion": "v1.31.6"}
        server.put(NGINX_CLASS, "ingressclasses")
        options = KubeOptions(
            kubeconfig=str(kubeconfig_for(server, tmp_path / "kc")), context_explicit=True
        )
        KubeBackend.from_kubeconfig(options, run_id="run-1").close()
        server.emulator.version = {"major": "1", "minor": "36", "gitVersion": "v1.36.1"}
        with pytest.raises(BackendError) as caught:
            KubeBackend.from_kubeconfig(options, run_id="run-1")
        assert str(caught.value).startswith(
            "Kubernetes v1.36.1 (context staging-eu; it runs ingress-nginx (IngressClass nginx, "
            "controller k8s.io/ingress-nginx)) is outside 1.31-1.35"
        )
        assert "istio" not in str(caught.value)
    finally:
        server.stop()


def test_every_add_on_whose_window_excludes_the_version_is_named(
    api_server: ApiServer, tmp_path: Path
) -> None:
    api_server.emulator.version = {"major": "1", "minor": "28", "gitVersion": "v1.28.15"}
    api_server.put(NGINX_CLASS, "ingressclasses")
    options = KubeOptions(
        kubeconfig=str(kubeconfig_for(api_server, tmp_path / "kc")), context_explicit=True
    )
    with pytest.raises(BackendError) as caught:
        KubeBackend.from_kubeconfig(options, run_id="run-1")
    message = str(caught.value)
    for needs in (
        "gateway-api v1.6.1 needs 1.30 or newer",
        "ingress-nginx controller-v1.15.1 needs 1.31-1.35",
        "istio 1.30.3 needs 1.32 or newer",
    ):
        assert needs in message
    assert "pass --canary-any-kubernetes-version to run anyway" in message


def test_the_window_is_an_explicit_opt_out(api_server: ApiServer, tmp_path: Path) -> None:
    api_server.emulator.version = {"major": "1", "minor": "36", "gitVersion": "v1.36.1"}
    api_server.put(NGINX_CLASS, "ingressclasses")  # tested up to 1.35
    lines: list[str] = []
    options = KubeOptions(
        kubeconfig=str(kubeconfig_for(api_server, tmp_path / "kc")),
        context_explicit=True,
        any_kubernetes_version=True,
    )
    backend = KubeBackend.from_kubeconfig(options, run_id="run-1", progress=lines.append)
    backend.close()
    assert any(
        line.startswith("Kubernetes v1.36.1 (context staging-eu; it runs gateway-api")
        and " is outside 1.32-1.35" in line
        for line in lines
    )


def test_host_locks_are_kept_per_cluster(api_server: ApiServer, tmp_path: Path) -> None:
    """Runs against two clusters never wait for each other's hosts; two contexts of one
    cluster share its locks."""
    other = ApiServer().start()
    try:
        locks = tmp_path / "locks"
        dirs = []
        for server, context in ((api_server, "a"), (api_server, "b"), (other, "c")):
            options = KubeOptions(
                kubeconfig=str(kubeconfig_for(server, tmp_path / f"kc-{context}", context)),
                context_explicit=True,
            )
            backend = KubeBackend.from_kubeconfig(options, run_id="run-1", lock_dir=locks)
            dirs.append(backend.host_locks.directory)
            backend.close()
        assert dirs[0] == dirs[1] != dirs[2]
        assert all(d is not None and d.parent == locks for d in dirs)
    finally:
        other.stop()


# -- the sweep of what killed runs left ----------------------------------------------------------


def dead_owner() -> Owner:
    """A process that ran on this host and is gone (a pytest killed with -9)."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    start = ""
    deadline = time.monotonic() + 5
    while not start and time.monotonic() < deadline:
        start = process_start_time(process.pid) or ""
    process.kill()
    process.wait()
    return dataclasses.replace(Owner.this_process(), pid=process.pid, pid_start=start)


def left_namespace(
    api_server: ApiServer, name: str, owner: Owner, *, run: str, renewed: float, kept: bool = False
) -> None:
    """A namespace (with an Ingress) as a run left it."""
    obj = namespace_object(
        name,
        run_id=run,
        test_name=f"tests/test_x.py::{name}",
        owner=owner,
        lease_seconds=600,
        now=renewed,
        kept=kept,
    )
    api_server.put(obj, "namespaces")
    api_server.put(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "kubeapp", "namespace": name},
            "spec": {"rules": [{"host": "foo.bar"}]},
        },
        "ingresses",
    )


def test_namespaces_of_gone_runs_are_swept_routing_first_and_live_ones_kept(
    api_server: ApiServer,
) -> None:
    now = time.time()
    left_namespace(api_server, "canary-killed-aaaaa", dead_owner(), run="run-old", renewed=now - 30)
    left_namespace(
        api_server, "canary-running-bbbbb", Owner.this_process(), run="run-live", renewed=now
    )
    left_namespace(
        api_server, "canary-kept-ccccc", dead_owner(), run="run-old", renewed=now - 30, kept=True
    )
    other_host = Owner("ci-runner-7", 4242, "123")
    left_namespace(
        api_server, "canary-remote-stale-ddddd", other_host, run="run-ci", renewed=now - 3600
    )
    left_namespace(
        api_server, "canary-remote-live-eeeee", other_host, run="run-ci2", renewed=now - 30
    )
    left_namespace(api_server, "canary-mine-fffff", dead_owner(), run="run-1", renewed=now - 30)
    lines: list[str] = []
    swept = sweep_namespaces(api_server.api(), run_id="run-1", progress=lines.append)
    assert sorted(swept) == ["canary-killed-aaaaa", "canary-remote-stale-ddddd"]
    assert set(api_server.emulator.namespaces) == {
        "canary-running-bbbbb",
        "canary-kept-ccccc",
        "canary-remote-live-eeeee",
        "canary-mine-fffff",  # this run's own: never
    }
    steps = [f"{c.method} {c.path}" for c in api_server.writes()]
    first = steps.index(
        "DELETE /apis/networking.k8s.io/v1/namespaces/canary-killed-aaaaa/ingresses/kubeapp"
    )
    assert steps[first + 1] == "DELETE /api/v1/namespaces/canary-killed-aaaaa"
    assert any("left by run run-old: its run's process (pid" in line for line in lines)
    assert any("stopped renewing its lease" in line for line in lines)


def test_a_dead_pid_of_another_container_with_the_same_host_name_is_left_to_its_lease(
    api_server: ApiServer,
) -> None:
    """A run in a container started with --network=host has this machine's host name but
    its own pids: its pid not running here says nothing. Its namespace is swept only once
    its lease ran out."""
    now = time.time()
    container = dataclasses.replace(dead_owner(), pid_ns="4026532999")
    left_namespace(api_server, "canary-container-aaaaa", container, run="run-c", renewed=now)
    assert sweep_namespaces(api_server.api(), run_id="run-1") == []
    stale = now - 600 - 120
    left_namespace(api_server, "canary-container-aaaaa", container, run="run-c", renewed=stale)
    assert sweep_namespaces(api_server.api(), run_id="run-1") == ["canary-container-aaaaa"]


def test_a_backend_sweeps_at_setup(api_server: ApiServer, tmp_path: Path) -> None:
    left_namespace(
        api_server, "canary-killed-aaaaa", dead_owner(), run="run-old", renewed=time.time()
    )
    options = KubeOptions(
        kubeconfig=str(kubeconfig_for(api_server, tmp_path / "kc")), context_explicit=True
    )
    KubeBackend.from_kubeconfig(options, run_id="run-1").close()
    assert "canary-killed-aaaaa" not in api_server.emulator.namespaces


def test_a_recycled_pid_is_not_taken_for_the_owner() -> None:
    me = Owner.this_process()
    someone_else = {
        "metadata": {
            "annotations": {
                "pytest-canary/owner-host": me.host,
                "pytest-canary/owner-pid": str(me.pid),
                "pytest-canary/owner-pid-start": "1",  # not when this process started
                "pytest-canary/owner-boot-id": me.boot_id,
                "pytest-canary/owner-pid-namespace": me.pid_ns,
            }
        }
    }
    assert owner_gone(someone_else, run_id="r", now=time.time()) is not None


def test_leases_of_open_namespaces_are_renewed_while_the_run_lives(
    api_server: ApiServer, make_backend: Callable[..., KubeBackend]
) -> None:
    backend = make_backend()
    backend.leases = LeaseRenewer(backend._renew_leases, every=0.2, lease=600)
    env = backend.environment("test_lease")
    env.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}])

    def renewed() -> float:
        stamp = api_server.emulator.namespaces[env.namespace]["metadata"]["annotations"][RENEWED_AT]
        value = parse_rfc3339(stamp)
        assert value is not None
        return value

    first = renewed()
    deadline = time.monotonic() + 5
    while renewed() == first and time.monotonic() < deadline:
        time.sleep(0.05)
    assert renewed() > first
    env.close()


def test_a_lease_renewal_that_keeps_failing_reaches_the_test_thread() -> None:
    now = [0.0]

    def broken() -> None:
        raise ConnectionError("API server gone")

    renewer = LeaseRenewer(broken, every=0.01, lease=10, clock=lambda: now[0])
    renewer.start()
    deadline = time.monotonic() + 5
    while renewer._error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    renewer.check()  # failing, but not for longer than a lease yet
    now[0] = 11.0
    with pytest.raises(
        BackendError, match="renewing the namespace leases of this run failed for 11s"
    ):
        renewer.check()
    renewer.stop()


# -- NodePorts from this machine ------------------------------------------------------------------


@pytest.mark.parametrize("context", ["kind-dev", "docker-desktop", "k3d-x"])
def test_docker_desktop_node_ips_are_not_guessed(context: str, api_server: ApiServer) -> None:
    address = NodeAddress(api_server.api(), EntryPoints(), context=context, platform="darwin")
    with pytest.raises(BackendError) as caught:
        address.endpoint(30100)
    assert "--canary-node-address=HOST" in str(caught.value)
    assert "--canary-backend=kind" in str(caught.value)


def test_a_given_node_address_or_port_map_is_used_as_it_is(api_server: ApiServer) -> None:
    given = NodeAddress(
        api_server.api(),
        EntryPoints(node_address="127.0.0.1"),
        context="kind-dev",
        platform="darwin",
    )
    assert given.endpoint(30100) == ("127.0.0.1", 30100)
    mapped = NodeAddress(
        api_server.api(),
        EntryPoints(node_address="127.0.0.1", node_port_map={30100: 41234}),
        context="kind-x",
        platform="win32",
    )
    assert mapped.endpoint(30100) == ("127.0.0.1", 41234)  # kind's extraPortMappings


# -- through pytest: options, guard, keep=failed, artifacts ----------------------------------------


def test_the_plugin_runs_tests_on_the_kube_backend_with_guard_keep_and_artifacts(
    pytester: pytest.Pytester,
    api_server: ApiServer,
    fake_ingress: FakeIngress,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PYTEST_CANARY_CACHE_DIR", str(tmp_path / "cache"))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        f"""
apiVersion: v1
kind: Config
clusters: [{{name: emu, cluster: {{server: "{api_server.url}"}}}}]
users: [{{name: emu, user: {{token: t}}}}]
contexts: [{{name: staging-eu, context: {{cluster: emu, user: emu}}}}]
current-context: staging-eu
"""
    )
    pytester.makepyfile(
        """
        def test_ok(canary):
            canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)

        def test_bad(canary):
            canary.deploy("nginx", stable="1.0", canary="2.0", weight=20, name="shop")
            assert False, "boom"
        """
    )
    args = [
        "--canary-backend=kube",
        f"--canary-kubeconfig={kubeconfig}",
        f"--canary-entry-url={fake_ingress.url}",
        "--canary-keep=failed",
        f"--canary-artifacts={tmp_path / 'artifacts'}",
        "--canary-wait-timeout=5",
        "--canary-dataplane-timeout=5",
        "-p",
        "no:randomly",
    ]
    refused = pytester.runpytest(*args)
    refused.stdout.fnmatch_lines(["*kube context 'staging-eu'*Pass --kube-context=staging-eu*"])
    assert api_server.emulator.namespaces == {}

    result = pytester.runpytest(*args, "--kube-context=staging-eu")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*canary: kube backend (context staging-eu; entries *=http://127.0.0.1:*; "
            "keep namespaces failed)",
            "*canary diagnostics*",
            "*--- manifests of shop (canary): routing objects ---*",
            "(every section in full: */artifacts/*)",
            "*canary kept namespaces*",
            "canary-test-bad-*",
        ]
    )
    (kept,) = api_server.emulator.namespaces
    assert kept.startswith("canary-test-bad-")
    (folder,) = (tmp_path / "artifacts").iterdir()
    assert folder.name.endswith("test_bad")
    names = sorted(p.name for p in folder.iterdir())
    assert "01-namespace.txt" in names
    assert any(n.endswith("manifests-of-shop-canary.txt") for n in names)


# -- live tier -----------------------------------------------------------------------------------


def _reachable_context() -> str:
    """The current kube context if a cluster answers, else the reason to skip."""
    if os.environ.get("PYTEST_CANARY_E2E") != "kube":
        pytest.skip(
            "e2e: set PYTEST_CANARY_E2E=kube to run the live kube tests against the current "
            "kubeconfig context (a test cluster: kind-*, minikube, docker-desktop, k3d-*)"
        )
    if shutil.which("kubectl") is None:
        pytest.skip("e2e: kubectl is not on PATH")
    try:
        from kubernetes import config

        _, current = config.list_kube_config_contexts()
    except Exception as exc:
        pytest.skip(f"e2e: no kubeconfig ({exc}); create a cluster, e.g. kind create cluster")
    context = str(current["name"])
    try:
        check_context(context, explicit=False)
    except CanaryConfigError:
        pytest.skip(f"e2e: current context {context!r} is not a test cluster (kind-*, ...)")
    from kubernetes import client
    from kubernetes import config as kconfig

    try:
        api = kconfig.new_client_from_config(context=context)
        client.VersionApi(api).get_code(_request_timeout=3)
    except Exception as exc:
        pytest.skip(f"e2e: no cluster reachable through context {context!r} ({type(exc).__name__})")
    return context


@pytest.mark.e2e
def test_live_cluster_namespace_lifecycle() -> None:
    """Against the current test cluster (kind-*, minikube, ...): a namespace appears with its
    labels and disappears at teardown. Enable: a reachable test cluster in your kubeconfig."""
    from pytest_canary.backends.kube import KubeOptions

    context = _reachable_context()
    backend = KubeBackend.from_kubeconfig(
        KubeOptions(
            context=context, entry_urls={"*": os.environ.get("CANARY_ENTRY", "http://127.0.0.1")}
        ),
        run_id="e2e",
    )
    env = backend.environment("test_live_cluster_namespace_lifecycle")
    try:
        env.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": "probe"},
                    "data": {"a": "b"},
                }
            ]
        )
        namespace = backend.api.get("v1", "Namespace", env.namespace)
        assert namespace is not None
        assert namespace["metadata"]["labels"]["pytest-canary/run"] == "e2e"
    finally:
        env.close()
        backend.close()
