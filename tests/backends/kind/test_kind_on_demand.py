"""Argo Rollouts on kind: installed the first time a test needs the controller (once per
cluster, under a lock), after the cluster's version is checked against its window; or at
setup when ``--canary-addons`` names it. The live tier at the bottom runs the seed's
Rollout on a real kind cluster."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_kind_cluster import PORTS, live_kind_reason

from conftest import ApiServer
from pytest_canary.backends import addons
from pytest_canary.backends.addons import ADDONS
from pytest_canary.backends.kind import backend as kind_backend
from pytest_canary.backends.kind import on_demand
from pytest_canary.backends.kind.cluster import ClusterHandle
from pytest_canary.backends.kind.options import KindOptions
from pytest_canary.backends.kube.options import KubeOptions
from pytest_canary.errors import BackendError


@pytest.fixture
def installs(
    monkeypatch: pytest.MonkeyPatch, api_server: ApiServer, tmp_path: Path
) -> list[dict[str, Any]]:
    """Installs asked of the add-on installer (stood in for); the cluster's API is the
    emulator; the per-user locks under a home of the test's own."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    done: list[dict[str, Any]] = []

    class Installer:
        def __init__(self, kubectl: str, kubeconfig: Path, downloads: Any, **kwargs: Any) -> None:
            self.seen = {"kubectl": kubectl, "kubeconfig": str(kubeconfig), **kwargs}

        def install(self, names: Any, pins: Any, *, gateway_node_port: int) -> None:
            done.append({"names": tuple(names), **self.seen})

    monkeypatch.setattr(addons, "AddonInstaller", Installer)
    monkeypatch.setattr(kind_backend, "cluster_api", lambda handle: api_server.api())
    monkeypatch.setattr(on_demand, "cluster_api", lambda handle: api_server.api())
    return done


def backend_for(tmp_path: Path, names: tuple[str, ...] = ADDONS, **options: Any) -> Iterator[Any]:
    handle = ClusterHandle(
        "c", str(tmp_path / "kubeconfig"), PORTS, True, None, "/bin/kubectl", str(tmp_path), names
    )
    backend = kind_backend.KindBackend(
        handle, KindOptions(cache_dir=str(tmp_path), **options), run_id="r", owns_cluster=False
    )
    try:
        yield backend
    finally:
        backend.close()


def test_argo_rollouts_is_installed_once_when_a_test_first_needs_it(
    installs: list[dict[str, Any]], tmp_path: Path
) -> None:
    for backend in backend_for(tmp_path):
        assert installs == []  # not at setup, nor when the backend is made
        backend.ensure_argo_rollouts()
        backend.ensure_argo_rollouts()
    assert [i["names"] for i in installs] == [("argo-rollouts",)]
    assert installs[0]["kubectl"] == "/bin/kubectl"
    assert installs[0]["kubeconfig"] == str(tmp_path / "kubeconfig")
    locks = tmp_path / "home" / ".cache" / "pytest-canary" / "locks"
    assert (locks / "kind-cluster-c-addon-argo-rollouts.lock").exists()  # next to the setup's


def test_installed_at_setup_it_is_not_installed_again(
    installs: list[dict[str, Any]], tmp_path: Path
) -> None:
    for backend in backend_for(tmp_path, ("ingress-nginx", "argo-rollouts")):
        backend.ensure_argo_rollouts()
    assert installs == []


def test_a_cluster_outside_the_add_ons_window_is_refused_before_installing(
    installs: list[dict[str, Any]], tmp_path: Path, api_server: ApiServer
) -> None:
    api_server.emulator.version = {"major": "1", "minor": "36", "gitVersion": "v1.36.1"}
    for backend in backend_for(tmp_path):
        with pytest.raises(BackendError, match=r"argo-rollouts v1\.9\.1") as caught:
            backend.ensure_argo_rollouts()
        assert "1.36" in str(caught.value)
    assert installs == []
    for backend in backend_for(tmp_path, kube=KubeOptions(any_kubernetes_version=True)):
        backend.ensure_argo_rollouts()
    assert [i["names"] for i in installs] == [("argo-rollouts",)]


# -- the live tier --------------------------------------------------------------------------------


@pytest.mark.e2e
def test_live_kind_cluster_runs_the_seeds_rollout_with_argo_rollouts_installed_on_demand() -> None:
    """kind cluster ``pytest-canary-e2e`` with ingress-nginx; Argo Rollouts v1.9.1 installed
    when the release needs it; the seed's steps walked by the real controller, each split
    checked through ingress-nginx."""
    reason = live_kind_reason()
    if reason:
        pytest.skip(reason)
    from pytest_canary.harness import Harness

    options = KindOptions(
        cluster="pytest-canary-e2e", addons=("ingress-nginx",), keep_cluster="always"
    )
    backend = kind_backend.KindBackend.setup(options, run_id="e2e", progress=print)
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
    try:
        env = backend.environment("test_live_argo")
        assert env.runs_argo_rollouts, env.argo_rollouts_missing()
        with Harness(env) as canary:
            rel = canary.deploy(
                "rollouts", stable="1.0", canary="2.0", steps=steps, traffic="nginx"
            )
            rel.expect_split(0.20)
            rel.promote()
            rel.expect_split(0.50)
            rel.abort()
            rel.expect_routed("1.0")
            rel.rollback()
            assert rel.status.phase == "Healthy" and rel.stable_version == "1.0"
    finally:
        backend.close()
