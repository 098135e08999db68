"""The kind cluster's life without a kind cluster: created or reused, the Kubernetes version
checked before anything is created or installed, shared with concurrent runs, kept when its
setup failed, deleted by its creator only. A stand-in ``kind`` (or pytest-kind's KindCluster
with a fake binary) and the API emulator stand for the real ones; the live tier at the
bottom runs the real thing."""

from __future__ import annotations

import dataclasses
import os
import pickle
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ApiServer
from pytest_canary.backends import addons
from pytest_canary.backends.addons import ADDONS, AddonFailure
from pytest_canary.backends.kind import backend as kind_backend
from pytest_canary.backends.kind import cluster
from pytest_canary.backends.kind.cluster import ClusterHandle, ClusterUsers, setup_cluster
from pytest_canary.backends.kind.config import GATEWAY_NODE_PORT, NODE_PORT_POOL, PortMap
from pytest_canary.backends.kind.options import KindOptions
from pytest_canary.backends.kind.tools import Tools
from pytest_canary.backends.kube.options import KubeOptions
from pytest_canary.backends.owner import Owner, process_start_time
from pytest_canary.errors import BackendError
from pytest_canary.images import connect

PORTS = PortMap(
    http=18080,
    https=18443,
    gateway=18081,
    node_ports={p: 19000 + i for i, p in enumerate(NODE_PORT_POOL)},
)
PINNED = addons.load_kind_pin()


def test_handles_survive_the_trip_to_xdist_workers() -> None:
    handle = ClusterHandle(
        "pytest-canary", "/c/kubeconfig", PORTS, True, "/bin/kind", "/bin/kubectl", "/c", ADDONS
    )
    data = handle.as_dict()
    assert pickle.loads(pickle.dumps(data)) == data
    assert ClusterHandle.from_dict(data) == handle


def test_the_pinned_node_image_is_a_tag_and_digest_inside_the_add_ons_window() -> None:
    image, _, digest = PINNED.node_image.partition("@")
    assert image == "kindest/node:v1.35.0"
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 64
    assert PINNED.minimum == "v0.31.0"  # the kind release whose notes list that image


@pytest.fixture
def fake_kind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, api_server: ApiServer
) -> dict[str, Any]:
    """kind, kubectl and add-ons stood in for; the cluster's API is the emulator. Commands
    run through ``run_tool`` are logged (``create <config> image=<image>``, ``delete``, or
    their first words); ``state["create"]`` may replace what ``kind create`` does."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # the per-user cluster locks
    api_server.put(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}, "namespaces"
    )
    state: dict[str, Any] = {"clusters": [], "log": [], "installed": [], "api": api_server}
    monkeypatch.setattr(cluster, "find_tools", lambda **_: Tools("/bin/kind", "/bin/kubectl"))
    monkeypatch.setattr(
        cluster, "check_kind_version", lambda kind, minimum: state["log"].append("kind version")
    )
    monkeypatch.setattr(cluster, "existing_clusters", lambda _kind: list(state["clusters"]))
    monkeypatch.setattr(cluster, "node_ports", lambda name: PORTS)
    monkeypatch.setattr(cluster, "host_cgroup_version", lambda: state.get("cgroup", 2))
    monkeypatch.setattr(cluster, "cluster_api", lambda handle: api_server.api())
    monkeypatch.setattr(kind_backend, "cluster_api", lambda handle: api_server.api())

    def run_tool(args: list[str], **kwargs: Any) -> str:
        if args[1:3] == ["create", "cluster"]:
            options = dict(zip(args[3::2], args[4::2], strict=True))
            state["log"].append(
                f"create {Path(options['--config']).name} image={options['--image']}"
            )
            state["create_timeout"] = kwargs.get("timeout")
            if "create" in state:
                state["create"](args)
            return ""
        if args[1:3] == ["delete", "cluster"]:
            state["log"].append("delete")
            return ""
        state["log"].append(" ".join(args[:4]))
        return ""

    monkeypatch.setattr(cluster, "run_tool", run_tool)

    class Installer:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def install(self, names: Any, pins: Any, *, gateway_node_port: int) -> None:
            if state.get("fail"):
                raise (
                    state["fail"]
                    if isinstance(state["fail"], BaseException)
                    else AddonFailure(state["fail"])
                )
            state["installed"].append((tuple(names), gateway_node_port))

    monkeypatch.setattr(cluster.addons, "AddonInstaller", Installer)
    state["options"] = KindOptions(cache_dir=str(tmp_path))
    return state


def test_a_missing_cluster_is_created_with_the_pinned_node_image_and_deleted_by_its_creator(
    fake_kind: dict[str, Any], tmp_path: Path
) -> None:
    import yaml

    handle = setup_cluster(fake_kind["options"], run_id="run-a")
    assert handle.created
    assert fake_kind["log"][:2] == [
        "kind version",
        f"create kind-config.yaml image={PINNED.node_image}",
    ]
    written = yaml.safe_load((tmp_path / "clusters/pytest-canary/kind-config.yaml").read_text())
    assert len(written["nodes"][0]["extraPortMappings"]) == 3 + len(NODE_PORT_POOL)
    assert any(line.endswith(" wait --for=condition=Ready") for line in fake_kind["log"])
    assert fake_kind["installed"] == [(ADDONS, GATEWAY_NODE_PORT)]
    cluster.delete_cluster(handle, run_id="run-a")
    assert fake_kind["log"][-1] == "delete"


@pytest.mark.parametrize(
    ("cgroup", "image", "patched"),
    [
        (1, None, True),  # the pinned 1.35 image
        (1, "kindest/node:v1.34.0", False),  # its kubelet still starts on cgroup v1
        (2, None, False),
    ],
)
def test_on_a_cgroup_v1_host_a_1_35_node_is_allowed_to_start(
    fake_kind: dict[str, Any], tmp_path: Path, cgroup: int, image: str | None, patched: bool
) -> None:
    """From 1.35 the kubelet refuses cgroup v1 unless failCgroupV1 is false (KEP-5573):
    on such a host the kind config carries that setting for the kubelet."""
    import yaml

    fake_kind["cgroup"] = cgroup
    lines: list[str] = []
    setup_cluster(KindOptions(cache_dir=str(tmp_path), node_image=image), progress=lines.append)
    written = yaml.safe_load((tmp_path / "clusters/pytest-canary/kind-config.yaml").read_text())
    patches = [yaml.safe_load(p) for p in written.get("kubeadmConfigPatches") or []]
    if patched:
        assert patches == [
            {
                "kind": "KubeletConfiguration",
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "failCgroupV1": False,
            }
        ]
        assert any("the Docker host runs cgroup v1" in line for line in lines)
    else:
        assert patches == []


def test_an_existing_cluster_is_reused_and_never_deleted(fake_kind: dict[str, Any]) -> None:
    fake_kind["clusters"] = ["pytest-canary"]
    handle = setup_cluster(fake_kind["options"], run_id="run-a")
    assert not handle.created
    assert handle.ports == PORTS
    assert not any(line.startswith("create") for line in fake_kind["log"])
    assert "/bin/kind export kubeconfig --name" in fake_kind["log"]  # merged, never overwritten
    cluster.delete_cluster(handle)
    assert "delete" not in fake_kind["log"]


def test_a_node_image_outside_the_window_is_refused_before_anything_is_created(
    fake_kind: dict[str, Any], tmp_path: Path
) -> None:
    options = KindOptions(cache_dir=str(tmp_path), node_image="kindest/node:v1.29.2")
    with pytest.raises(BackendError) as caught:
        setup_cluster(options, run_id="run-a")
    message = str(caught.value)
    assert message.startswith(
        "Kubernetes kindest/node:v1.29.2 (the kind node image) is outside 1.32-1.35"
    )
    assert "istio 1.30.3 needs 1.32 or newer (istioctl's MinK8SVersion = 32" in message
    assert "ingress-nginx controller-v1.15.1 needs 1.31-1.35" in message
    assert "--canary-any-kubernetes-version" in message
    assert fake_kind["log"] == ["kind version"]  # nothing created


def test_the_window_follows_the_chosen_add_ons(fake_kind: dict[str, Any], tmp_path: Path) -> None:
    options = KindOptions(
        cache_dir=str(tmp_path), node_image="kindest/node:v1.31.4", addons=("ingress-nginx",)
    )
    assert setup_cluster(options, run_id="run-a").created  # 1.31 is fine without Istio


def test_a_reused_cluster_outside_the_window_is_refused_before_anything_is_installed(
    fake_kind: dict[str, Any], tmp_path: Path
) -> None:
    fake_kind["clusters"] = ["pytest-canary"]
    fake_kind["api"].emulator.version = {"major": "1", "minor": "36", "gitVersion": "v1.36.1"}
    with pytest.raises(BackendError) as caught:
        setup_cluster(fake_kind["options"], run_id="run-a")
    message = str(caught.value)
    assert "Kubernetes v1.36.1 (kind cluster pytest-canary) is outside 1.32-1.35" in message
    assert (
        "ingress-nginx controller-v1.15.1 needs 1.31-1.35 (controller-v1.15.1 is tested" in message
    )
    assert "existed before this run and was left as it was" in message
    assert fake_kind["installed"] == []
    writes = [c for c in fake_kind["api"].writes()]
    assert writes == []  # nothing applied either


def test_the_version_window_can_be_opted_out_of(fake_kind: dict[str, Any], tmp_path: Path) -> None:
    fake_kind["clusters"] = ["pytest-canary"]
    fake_kind["api"].emulator.version = {"major": "1", "minor": "36", "gitVersion": "v1.36.1"}
    lines: list[str] = []
    options = KindOptions(cache_dir=str(tmp_path), kube=KubeOptions(any_kubernetes_version=True))
    setup_cluster(options, run_id="run-a", progress=lines.append)
    assert fake_kind["installed"] == [(ADDONS, GATEWAY_NODE_PORT)]
    assert any("going on: --canary-any-kubernetes-version was given" in line for line in lines)


def test_a_cluster_whose_add_ons_failed_is_kept_and_the_message_says_how_to_delete_it(
    fake_kind: dict[str, Any], tmp_path: Path
) -> None:
    fake_kind["fail"] = "installing istio: istioctl install failed (exit 1)"
    with pytest.raises(BackendError) as caught:
        setup_cluster(fake_kind["options"], run_id="run-a")
    message = str(caught.value)
    assert message.startswith("installing istio: istioctl install failed (exit 1)")
    assert "the new kind cluster pytest-canary was kept for inspection" in message
    assert "kubectl --context kind-pytest-canary get pods -A" in message
    assert "delete it with: kind delete cluster --name pytest-canary" in message
    assert "delete" not in fake_kind["log"]


def test_an_interrupted_setup_says_the_new_cluster_was_kept_and_how_to_delete_it(
    fake_kind: dict[str, Any],
) -> None:
    """Ctrl-C while the add-ons install: KeyboardInterrupt passes on, and a line says the
    new cluster stays (the next run would reuse it and never delete it)."""
    fake_kind["fail"] = KeyboardInterrupt()
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        setup_cluster(fake_kind["options"], run_id="run-a", progress=lines.append)
    assert lines[-1] == (
        "setup of kind cluster pytest-canary interrupted (KeyboardInterrupt) (the new kind "
        "cluster pytest-canary was kept for inspection: kubectl --context kind-pytest-canary "
        "get pods -A; delete it with: kind delete cluster --name pytest-canary)"
    )
    assert "delete" not in fake_kind["log"]


def test_never_keeping_the_cluster_deletes_it_even_after_a_failed_setup(
    fake_kind: dict[str, Any], tmp_path: Path
) -> None:
    fake_kind["fail"] = "installing istio: it broke"
    options = KindOptions(cache_dir=str(tmp_path), keep_cluster="never")
    with pytest.raises(BackendError, match="was deleted again: --canary-keep-cluster=never"):
        setup_cluster(options, run_id="run-a")
    assert fake_kind["log"][-1] == "delete"


def test_a_cluster_another_live_run_uses_is_not_deleted_under_it(
    fake_kind: dict[str, Any], tmp_path: Path
) -> None:
    """Run A creates the cluster; run B, another pytest process on this machine, joins it.
    When A ends first, the cluster stays (the message says who uses it and how to delete
    it later); once B's process is gone, A's teardown deletes it."""
    handle = setup_cluster(fake_kind["options"], run_id="run-a")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        deadline = time.monotonic() + 10
        while process_start_time(other.pid) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        run_b = dataclasses.replace(
            Owner.this_process(), pid=other.pid, pid_start=process_start_time(other.pid) or ""
        )
        ClusterUsers(fake_kind["api"].api(), "run-b", run_b).register()
        lines: list[str] = []
        assert not cluster.delete_cluster(handle, run_id="run-a", progress=lines.append)
        assert "delete" not in fake_kind["log"]
        assert lines == [
            f"kind cluster pytest-canary is not deleted: run run-b ({run_b.describe()}) still "
            "uses it; delete it when done: kind delete cluster --name pytest-canary"
        ]
    finally:
        other.kill()
        other.wait()
    assert cluster.delete_cluster(handle, run_id="run-a")
    assert fake_kind["log"][-1] == "delete"
    # B's record died with it: deleted on the way.
    records = fake_kind["api"].emulator.live("configmaps", "default")
    assert [m["metadata"]["name"] for m in records] == ["pytest-canary-user-run-a"]


def test_the_kind_backend_records_its_run_and_withdraws_it_at_the_end(
    fake_kind: dict[str, Any],
) -> None:
    backend = kind_backend.KindBackend.setup(fake_kind["options"], run_id="run-a")
    names = [m["metadata"]["name"] for m in fake_kind["api"].emulator.live("configmaps", "default")]
    assert names == ["pytest-canary-user-run-a"]
    backend.close()
    assert fake_kind["api"].emulator.live("configmaps", "default") == []
    assert fake_kind["log"][-1] == "delete"


def test_a_cluster_holding_namespaces_kept_by_canary_keep_is_not_deleted(
    fake_kind: dict[str, Any],
) -> None:
    """--canary-keep keeps a test's namespace for inspection: the cluster this run created
    holds it, so it is kept too (and the line says how to delete it)."""
    lines: list[str] = []
    options = KindOptions(cache_dir=fake_kind["options"].cache_dir, kube=KubeOptions(keep="always"))
    backend = kind_backend.KindBackend.setup(options, run_id="run-a", progress=lines.append)
    env = backend.environment("test_kept")
    env.apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}}])
    backend.close()
    assert "delete" not in fake_kind["log"]
    assert lines[-1] == (
        f"kind cluster pytest-canary is kept: it holds the namespaces --canary-keep kept "
        f"({env.namespace}); delete it when done: kind delete cluster --name pytest-canary"
    )


def test_namespaces_an_xdist_worker_kept_keep_the_cluster_too(fake_kind: dict[str, Any]) -> None:
    """A worker kept a namespace (labelled kept, with this run's id); the controller, which
    deletes the cluster, finds it in the cluster."""
    lines: list[str] = []
    backend = kind_backend.KindBackend.setup(
        fake_kind["options"], run_id="run-a", progress=lines.append
    )
    fake_kind["api"].put(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "canary-worker-test-1a2b3",
                "labels": {"pytest-canary/run": "run-a", "pytest-canary/kept": "true"},
            },
        },
        "namespaces",
    )
    backend.close()
    assert "delete" not in fake_kind["log"]
    assert "(canary-worker-test-1a2b3)" in lines[-1]


FAKE_KIND = """#!/bin/sh
echo "$@" >> "{log}"
case "$1 $2" in
  "version ") echo "kind {minimum} go1.25.5 linux/amd64" ;;
  "get clusters") cat "{clusters}" 2>/dev/null || echo "No kind clusters found." >&2 ;;
  "export kubeconfig") ;;
  "create cluster")
    echo "Creating cluster \\"$4\\" ..."
    if [ -e "{fail}" ]; then
      echo " ✗ Preparing nodes 📦" >&2
      echo "ERROR: failed to create cluster: $(cat "{fail}")" >&2
      exit 1
    fi
    echo pytest-canary > "{clusters}" ;;
  "delete cluster") rm -f "{clusters}" ;;
esac
"""


@pytest.fixture
def kind_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Path]:
    """A stand-in ``kind`` (and an empty kubectl) on PATH; the cluster's checks and
    add-ons skipped."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    paths = {
        "log": tmp_path / "kind.log",
        "clusters": tmp_path / "clusters",
        "fail": tmp_path / "fail",
        "kind": bin_dir / "kind",
        "cache": tmp_path / "cache",
    }
    paths["kind"].write_text(
        FAKE_KIND.format(
            log=paths["log"],
            clusters=paths["clusters"],
            fail=paths["fail"],
            minimum=PINNED.minimum,
        )
    )
    paths["kind"].chmod(0o755)
    (bin_dir / "kubectl").write_text("#!/bin/sh\n")
    (bin_dir / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(cluster, "_check_and_prepare", lambda *args, **kwargs: None)
    monkeypatch.setattr(cluster, "host_cgroup_version", lambda: 2)
    monkeypatch.chdir(tmp_path)
    return paths


def test_kind_creates_and_deletes_with_our_config_and_kind_binary(
    kind_on_path: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kind binary on PATH, run by us with a deadline (its output kept for errors)."""
    cache = kind_on_path["cache"]
    options = KindOptions(cache_dir=str(cache))
    handle = setup_cluster(options)
    calls = kind_on_path["log"].read_text().splitlines()
    home = cache / "clusters" / "pytest-canary"
    assert calls == [
        "version",
        "get clusters",
        f"create cluster --name pytest-canary --kubeconfig {home / 'kubeconfig'} "
        f"--image {PINNED.node_image} --config {home / 'kind-config.yaml'}",
    ]
    assert handle.created and handle.kind == str(kind_on_path["kind"])
    assert not (kind_on_path["cache"].parent / ".pytest-kind").exists()
    monkeypatch.setattr(cluster, "_other_users", lambda handle, run_id: [])
    cluster.delete_cluster(handle)
    assert kind_on_path["log"].read_text().splitlines()[-1] == (
        f"delete cluster --name pytest-canary --kubeconfig {home / 'kubeconfig'}"
    )
    kind_on_path["clusters"].write_text("pytest-canary\n")
    monkeypatch.setattr(cluster, "node_ports", lambda name: PORTS)  # Docker knows the real one
    again = setup_cluster(options)  # it exists now: reused, so never deleted
    assert not again.created
    assert kind_on_path["log"].read_text().splitlines()[-1] == (
        f"export kubeconfig --name pytest-canary --kubeconfig {home / 'kubeconfig'}"
    )


def test_a_failed_kind_create_shows_kinds_own_output(kind_on_path: dict[str, Path]) -> None:
    """kind says why it failed on its stderr: that reaches the error (run inside pytest-kind's
    KindCluster.create it went to a terminal that a failing session setup never shows)."""
    kind_on_path["fail"].write_text('could not find a log line that matches "Reached target"')
    with pytest.raises(BackendError) as caught:
        setup_cluster(KindOptions(cache_dir=str(kind_on_path["cache"])))
    message = str(caught.value)
    assert "creating kind cluster pytest-canary failed" in message
    assert "the half-made cluster was deleted" in message
    assert "ERROR: failed to create cluster: could not find a log line that matches" in message
    assert "✗ Preparing nodes" in message
    assert kind_on_path["log"].read_text().splitlines()[-1] == "delete cluster --name pytest-canary"


def test_a_cluster_another_session_created_meanwhile_is_not_deleted(
    kind_on_path: dict[str, Path],
) -> None:
    kind_on_path["fail"].write_text(
        'node(s) already exist for a cluster with the name "pytest-canary"'
    )
    with pytest.raises(BackendError, match="another session created it meanwhile"):
        setup_cluster(KindOptions(cache_dir=str(kind_on_path["cache"])))
    assert not any(
        line.startswith("delete") for line in kind_on_path["log"].read_text().splitlines()
    )


def test_sessions_with_different_cache_directories_share_the_cluster_setup_lock(
    kind_on_path: dict[str, Path], tmp_path: Path
) -> None:
    """Cluster names are per Docker engine, not per cache directory: a session whose
    ``--canary-cache-dir`` differs waits for the one setting the cluster up (here: until its
    deadline), instead of creating the same cluster at the same time."""
    lock = cluster.cluster_lock("pytest-canary")
    assert str(lock).startswith(str(tmp_path / "home"))
    lock.parent.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import filelock, sys\n"
            f"with filelock.FileLock({str(lock)!r}):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        options = KindOptions(cache_dir=str(tmp_path / "other-cache"), setup_timeout=0.5)
        with pytest.raises(cluster.SetupLockBusy, match=str(lock)):
            setup_cluster(options)
        assert not kind_on_path["log"].read_text().count("create")
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=30)
        holder.stdout.close()


def test_a_cluster_creation_that_overruns_its_deadline_is_deleted_and_reported(
    fake_kind: dict[str, Any], tmp_path: Path
) -> None:
    def overrun(args: list[str]) -> None:
        raise BackendError(f"{' '.join(args)} did not finish within 0s and was stopped")

    fake_kind["create"] = overrun
    options = KindOptions(cache_dir=str(tmp_path), setup_timeout=0.3)
    with pytest.raises(BackendError, match="the half-made cluster was deleted"):
        setup_cluster(options)
    assert fake_kind["create_timeout"] == 0.3
    assert fake_kind["log"][-1] == "delete"


# -- live tier ------------------------------------------------------------------------------------


def live_kind_reason() -> str | None:
    """Why the live kind tests cannot run here (None: they can)."""
    if os.environ.get("PYTEST_CANARY_E2E") != "kind":
        return (
            "e2e: set PYTEST_CANARY_E2E=kind to run the live kind tests (they create kind cluster "
            f"pytest-canary-e2e: Docker, kind {PINNED.minimum}+ and kubectl on PATH, about 4 CPUs "
            "and 6 GB for Docker, network for the add-ons or their files in the cache)"
        )
    try:
        client = connect(timeout=5)  # the probe's client is closed either way
    except BackendError as exc:
        return f"e2e: {exc}"
    client.close()
    for tool in ("kind", "kubectl"):
        if shutil.which(tool) is None:
            return f"e2e: no {tool} binary on PATH"
    return None


@pytest.mark.e2e
def test_live_kind_cluster_serves_a_weighted_canary() -> None:
    """Creates (or reuses) kind cluster ``pytest-canary-e2e`` with ingress-nginx only, deploys a
    weighted nginx canary, checks the split, promotes and checks everything reaches the new
    version; keeps the cluster for the next run."""
    reason = live_kind_reason()
    if reason:
        pytest.skip(reason)
    from pytest_canary.harness import Harness

    options = KindOptions(
        cluster="pytest-canary-e2e", addons=("ingress-nginx",), keep_cluster="always"
    )
    backend = kind_backend.KindBackend.setup(options, run_id="e2e", progress=print)
    try:
        with Harness(backend.environment("test_live_kind")) as canary:
            release = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
            release.expect_split(0.20)
            release.promote()
            release.expect_routed("2.0")
        assert not [k for k in backend.signals.unavailable if k.startswith("ingress-nginx")]
    finally:
        backend.close()


@pytest.mark.e2e
def test_live_kind_cluster_serves_istio_and_gateway_api_canaries_with_readable_signals() -> None:
    """All three add-ons on kind cluster ``pytest-canary-e2e`` (installed if missing): an
    Istio and a Gateway API canary split as configured, the gateways' Envoy configuration
    is read from the right pods (no signal given up), and the server runs the pinned
    Kubernetes version."""
    reason = live_kind_reason()
    if reason:
        pytest.skip(reason)
    from pytest_canary.harness import Harness

    options = KindOptions(cluster="pytest-canary-e2e", keep_cluster="always")
    backend = kind_backend.KindBackend.setup(options, run_id="e2e", progress=print)
    try:
        version = backend.api.server_version()["gitVersion"]
        if backend.handle.created:
            assert version.startswith("v1.35."), version
        with Harness(backend.environment("test_live_istio")) as canary:
            canary.deploy("istio", stable="v1", canary="v2", weight=10).expect_split(0.10)
        with Harness(backend.environment("test_live_gateway")) as canary:
            release = canary.deploy("gateway", stable="1.0", canary="2.0", weight=20)
            release.expect_split(0.20)
            release.promote()
            release.expect_routed("2.0")
        assert backend.signals.unavailable == {}, backend.signals.unavailable
    finally:
        backend.close()


def docker_node(running: bool) -> dict[str, Any]:
    """``docker inspect pytest-canary-control-plane``: a stopped container keeps its
    HostConfig.PortBindings, but its NetworkSettings.Ports is empty."""
    bindings = {
        f"{container}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(host)}]
        for container, host in [(80, 18080), (443, 18443), (30080, 18081)]
        + [(p, 19000 + i) for i, p in enumerate(NODE_PORT_POOL)]
    }
    bindings["6443/tcp"] = [{"HostIp": "127.0.0.1", "HostPort": ""}]  # kind's random API port
    return {
        "State": {"Running": running, "Status": "running" if running else "exited"},
        "HostConfig": {"PortBindings": bindings},
        "NetworkSettings": {"Ports": bindings if running else {}},
    }


@pytest.fixture
def docker_with(monkeypatch: pytest.MonkeyPatch) -> Any:
    def use(attrs: dict[str, Any]) -> None:
        class Container:
            def __init__(self) -> None:
                self.attrs = attrs

        class Containers:
            def get(self, name: str) -> Container:
                assert name == "pytest-canary-control-plane"
                return Container()

        class Client:
            containers = Containers()

            def close(self) -> None:
                pass

        monkeypatch.setattr(cluster.images, "connect", lambda **_: Client())

    return use


def test_a_stopped_node_container_is_named_with_the_command_that_starts_it(
    docker_with: Any,
) -> None:
    docker_with(docker_node(running=False))
    with pytest.raises(BackendError) as caught:
        cluster.node_ports("pytest-canary")
    message = str(caught.value)
    assert "node container pytest-canary-control-plane is exited" in message
    assert "docker start pytest-canary-control-plane" in message
    assert "not created by pytest-canary" not in message


def test_the_port_map_of_a_running_node_comes_from_its_port_bindings(docker_with: Any) -> None:
    docker_with(docker_node(running=True))
    assert cluster.node_ports("pytest-canary") == PORTS
