"""The kind backend without a kind cluster: config, ports, tools, ownership, images, options.
The live tier at the bottom runs the real thing where Docker and kind exist."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_canary.backends import kind
from pytest_canary.backends.addons import ADDONS
from pytest_canary.backends.kind import (
    GATEWAY_NODE_PORT,
    NODE_PORT_POOL,
    ClusterHandle,
    ImageLoader,
    KindOptions,
    PortMap,
    check_loadable,
    choose_ports,
    cluster_options,
    find_tools,
    load_kind_template,
    ports_from_docker,
    render_kind_config,
    workload_images,
)
from pytest_canary.backends.kube import KubeOptions
from pytest_canary.errors import BackendError, CanaryConfigError

PORTS = PortMap(
    http=18080,
    https=18443,
    gateway=18081,
    node_ports={p: 19000 + i for i, p in enumerate(NODE_PORT_POOL)},
)


# -- the cluster config --------------------------------------------------------------------------


def test_fixture_template_is_a_one_node_cluster_labelled_ingress_ready() -> None:
    template = load_kind_template()
    assert template["kind"] == "Cluster"
    assert template["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in template["nodes"]] == ["control-plane"]
    assert template["nodes"][0]["labels"] == {"ingress-ready": "true"}


def test_rendered_config_maps_80_443_the_gateway_and_the_pool_on_localhost() -> None:
    config = render_kind_config(load_kind_template(), PORTS)
    (node,) = config["nodes"]
    mappings = {m["containerPort"]: m for m in node["extraPortMappings"]}
    assert set(mappings) == {80, 443, GATEWAY_NODE_PORT, *NODE_PORT_POOL}
    assert mappings[80]["hostPort"] == 18080
    assert mappings[443]["hostPort"] == 18443
    assert mappings[GATEWAY_NODE_PORT]["hostPort"] == 18081
    assert all(
        m["listenAddress"] == "127.0.0.1" and m["protocol"] == "TCP" for m in mappings.values()
    )
    host_ports = [m["hostPort"] for m in node["extraPortMappings"]]
    assert len(set(host_ports)) == len(host_ports)
    assert node["labels"]["ingress-ready"] == "true"
    assert yaml.safe_load(yaml.safe_dump(config)) == config  # what kind reads from the file


def test_the_gateway_node_port_is_the_one_the_istio_overlay_sets() -> None:
    from pytest_canary.backends.addons import istio_operator, load_pins

    overlay = istio_operator(load_pins()["istio"], GATEWAY_NODE_PORT)
    service = overlay["spec"]["components"]["ingressGateways"][0]["k8s"]["service"]
    assert service["type"] == "NodePort"
    assert {p["port"]: p.get("nodePort") for p in service["ports"]}[80] == GATEWAY_NODE_PORT
    # istio operator/pkg/render/manifest.go (applyComponentValuesToHelmValues): k8s.service.ports
    # replaces values.gateways.istio-ingressgateway.ports wholesale, so the overlay must keep the
    # chart's status port and targetPorts (manifests/charts/gateways/istio-ingress values).
    assert {p["port"]: p["targetPort"] for p in service["ports"]} == {
        15021: 15021,
        80: 8080,
        443: 8443,
    }


def test_data_plane_pods_are_selected_by_the_labels_upstream_sets() -> None:
    from pytest_canary.backends.kube import INGRESS_NGINX_PODS, ISTIO_GATEWAY_PODS

    # ingress-nginx deploy/static/provider/kind/deploy.yaml: controller pod template labels
    # (app.kubernetes.io/{name: ingress-nginx, component: controller}, container "controller");
    # istio manifests/charts/gateways/istio-ingress: labels {app: istio-ingressgateway,
    # istio: ingressgateway}.
    assert INGRESS_NGINX_PODS == (
        "app.kubernetes.io/name=ingress-nginx,app.kubernetes.io/component=controller"
    )
    assert ISTIO_GATEWAY_PODS == "istio=ingressgateway"


def test_choose_ports_uses_requested_free_ports_and_picks_distinct_free_ones() -> None:
    free = iter(range(40000, 40100))
    ports = choose_ports(
        KindOptions(http_port=8080), free=lambda: next(free), is_free=lambda port: True
    )
    assert ports.http == 8080
    every = [ports.http, ports.https, ports.gateway, *ports.node_ports.values()]
    assert len(set(every)) == len(every) == 3 + len(NODE_PORT_POOL)


def test_a_requested_port_in_use_is_refused_naming_the_option() -> None:
    with pytest.raises(
        BackendError, match=r"host port 8081 \(--canary-kind-gateway-port\) is in use"
    ):
        choose_ports(KindOptions(gateway_port=8081), is_free=lambda port: port != 8081)


def test_ports_of_a_reused_cluster_come_from_docker() -> None:
    published = {
        "6443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "35555"}],
        "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}],
        "443/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18443"}],
        f"{GATEWAY_NODE_PORT}/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18081"}],
        **{
            f"{p}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(19000 + i)}]
            for i, p in enumerate(NODE_PORT_POOL)
        },
    }
    assert ports_from_docker(published) == PORTS
    del published["80/tcp"]
    with pytest.raises(
        BackendError, match=r"does not map port\(s\) 80 .* not created by pytest-canary"
    ):
        ports_from_docker(published)


def test_handles_survive_the_trip_to_xdist_workers() -> None:
    handle = ClusterHandle(
        "pytest-canary", "/c/kubeconfig", PORTS, True, "/bin/kind", "/bin/kubectl", "/c", ADDONS
    )
    data = handle.as_dict()
    assert pickle.loads(pickle.dumps(data)) == data
    assert ClusterHandle.from_dict(data) == handle


# -- tools ----------------------------------------------------------------------------------------


def test_tools_come_from_path(tmp_path: Path) -> None:
    for name in ("kind", "kubectl"):
        tool = tmp_path / name
        tool.write_text("#!/bin/sh\n")
        tool.chmod(0o755)
    tools = find_tools({"PATH": str(tmp_path)})
    assert tools == kind.Tools(kind=str(tmp_path / "kind"), kubectl=str(tmp_path / "kubectl"))


def test_missing_kind_says_how_to_install_it_unless_a_download_was_asked_for(
    tmp_path: Path,
) -> None:
    kubectl = tmp_path / "kubectl"
    kubectl.write_text("#!/bin/sh\n")
    kubectl.chmod(0o755)
    with pytest.raises(BackendError, match="needs `kind` on PATH"):
        find_tools({"PATH": str(tmp_path)})
    assert find_tools({"PATH": str(tmp_path), "KIND_VERSION": "v0.31.0"}).kind is None
    with pytest.raises(BackendError, match="needs `kubectl` on PATH"):
        find_tools({"PATH": "/nonexistent", "KIND_VERSION": "v0.31.0"})


# -- ownership: never delete what this run did not create ------------------------------------------


class FakeKindCluster:
    def __init__(self, log: list[str]) -> None:
        self.log = log
        self.image: str | None = None

    def create(self, config: Path) -> None:
        self.log.append(f"create {config.name} image={self.image}")

    def delete(self) -> None:
        self.log.append("delete")

    def load_docker_image(self, image: str) -> None:
        self.log.append(f"load {image}")


@pytest.fixture
def fake_kind(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    state: dict[str, Any] = {"clusters": [], "log": [], "installed": []}
    monkeypatch.setattr(kind, "find_tools", lambda: kind.Tools("/bin/kind", "/bin/kubectl"))
    monkeypatch.setattr(kind, "existing_clusters", lambda _kind: list(state["clusters"]))
    monkeypatch.setattr(kind, "kind_cluster", lambda handle: FakeKindCluster(state["log"]))
    monkeypatch.setattr(kind, "node_ports", lambda name: PORTS)

    def run_tool(args: list[str], **_: Any) -> str:
        state["log"].append(" ".join(args[:4]))
        return "apiVersion: v1\nkind: Config\n"

    monkeypatch.setattr(kind, "run_tool", run_tool)

    class Installer:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def install(self, names: Any, pins: Any, *, gateway_node_port: int) -> None:
            state["installed"].append((tuple(names), gateway_node_port))

    monkeypatch.setattr(kind.addons, "AddonInstaller", Installer)
    state["options"] = KindOptions(cache_dir=str(tmp_path), node_image="kindest/node:v1.35.0")
    return state


def test_a_missing_cluster_is_created_from_the_rendered_config_and_deleted_by_its_creator(
    fake_kind: dict[str, Any], tmp_path: Path
) -> None:
    handle = kind.setup_cluster(fake_kind["options"])
    assert handle.created
    assert fake_kind["log"][0] == "create kind-config.yaml image=kindest/node:v1.35.0"
    written = yaml.safe_load((tmp_path / "clusters/pytest-canary/kind-config.yaml").read_text())
    assert len(written["nodes"][0]["extraPortMappings"]) == 3 + len(NODE_PORT_POOL)
    assert any(line.endswith(" wait --for=condition=Ready") for line in fake_kind["log"])
    assert fake_kind["installed"] == [(ADDONS, GATEWAY_NODE_PORT)]
    kind.delete_cluster(handle)
    assert fake_kind["log"][-1] == "delete"


def test_an_existing_cluster_is_reused_and_never_deleted(fake_kind: dict[str, Any]) -> None:
    fake_kind["clusters"] = ["pytest-canary"]
    handle = kind.setup_cluster(fake_kind["options"])
    assert not handle.created
    assert handle.ports == PORTS
    assert not any(line.startswith("create") for line in fake_kind["log"])
    assert "/bin/kind get kubeconfig --name" in fake_kind["log"]
    kind.delete_cluster(handle)
    assert "delete" not in fake_kind["log"]


# -- images ----------------------------------------------------------------------------------------


def test_workload_images_and_what_may_be_loaded() -> None:
    from pytest_canary import manifests
    from pytest_canary.spec import build_spec

    objects = manifests.render(build_spec("nginx", "1.0", "2.0"))
    assert workload_images(objects) == [
        "pytest-canary/sample-go:1.0",
        "pytest-canary/sample-go:2.0",
    ]
    for bad in ("shop:latest", "registry.example/shop", "localhost:5000/shop"):
        with pytest.raises(BackendError, match="give it a version tag"):
            check_loadable(bad)
    check_loadable("localhost:5000/shop:2.0")
    check_loadable("shop@sha256:" + "a" * 64)


def test_sample_images_are_built_and_loaded_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import pytest_canary.images as images

    log: list[str] = []
    monkeypatch.setattr(kind, "kind_cluster", lambda handle: FakeKindCluster(log))
    monkeypatch.setattr(
        images,
        "build_sample_image",
        lambda version, flavor, **_: (
            log.append(f"build {flavor} {version}") or f"pytest-canary/sample-{flavor}:{version}"
        ),
    )
    monkeypatch.setattr(kind, "_in_local_docker", lambda image: False)
    handle = ClusterHandle("c", "/k", PORTS, True, None, "/bin/kubectl", str(tmp_path), ADDONS)
    loader = ImageLoader(handle)
    loader.ensure("pytest-canary/sample-go:2.0")
    loader.ensure("pytest-canary/sample-go:2.0")
    loader.ensure("registry.example/other:1.0")  # not local: the cluster pulls it
    assert log == ["build go 2.0", "load pytest-canary/sample-go:2.0"]


# -- options ------------------------------------------------------------------------------------


def test_cluster_options_from_resolved_values() -> None:
    values = {
        "kube_context": ("command line --kube-context", "staging"),
        "canary_entry_url": ("ini canary_entry_url", ["http://10.0.0.5", "istio=http://10.0.0.6"]),
        "canary_keep": ("command line --canary-keep", "always"),
        "canary_wait_timeout": ("environment PYTEST_CANARY_WAIT_TIMEOUT", "30"),
        "canary_gateway": ("ini canary_gateway", "istio-ingress/public"),
    }
    kube = cluster_options("kube", values)
    assert kube == KubeOptions(
        context="staging",
        context_explicit=True,
        entry_urls={"*": "http://10.0.0.5", "istio": "http://10.0.0.6"},
        gateway="istio-ingress/public",
        keep="always",
        wait_timeout=30.0,
    )
    kind_options = cluster_options(
        "kind",
        {
            "canary_addons": ("command line --canary-addons", "istio,ingress-nginx"),
            "canary_keep_cluster": ("ini canary_keep_cluster", True),
            "canary_kind_http_port": ("command line --canary-kind-http-port", "8080"),
        },
    )
    assert isinstance(kind_options, KindOptions)
    assert kind_options.addons == ("ingress-nginx", "istio")
    assert kind_options.keep_cluster and kind_options.http_port == 8080
    assert pickle.loads(pickle.dumps(kind_options)) == kind_options


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        ("canary_wait_timeout", "soon", "canary_wait_timeout='soon': must be a number of seconds"),
        ("canary_kind_http_port", "99999", "must be a TCP port from 1 to 65535"),
        ("canary_addons", "linkerd", "unknown linkerd"),
        ("canary_kind_cluster", "My_Cluster", "lowercase letters, digits and '-'"),
        ("canary_gateway", "public", "must be NAMESPACE/NAME"),
    ],
)
def test_bad_option_values_name_the_value_and_where_it_came_from(
    name: str, raw: str, message: str
) -> None:
    with pytest.raises(CanaryConfigError, match=message) as caught:
        cluster_options("kind", {name: ("ini canary_x", raw)})
    assert str(caught.value).endswith("(from ini canary_x)")


# -- live tier ------------------------------------------------------------------------------------


def _docker_reason() -> str | None:
    try:
        import docker

        docker.from_env(timeout=5).ping()
    except Exception as exc:
        return f"no Docker engine ({type(exc).__name__}); start dockerd"
    return None


@pytest.mark.e2e
def test_live_kind_cluster_serves_a_weighted_canary(tmp_path: Path) -> None:
    """Creates (or reuses) kind cluster ``pytest-canary-e2e`` with ingress-nginx only, deploys a
    weighted nginx canary and checks the split. Enable: Docker running, `kind` and `kubectl` on
    PATH, network to download the ingress-nginx manifest (or a cached copy)."""
    reason = _docker_reason()
    if reason:
        pytest.skip(f"e2e: {reason}")
    if shutil.which("kind") is None:
        pytest.skip("e2e: no kind binary on PATH (https://kind.sigs.k8s.io)")
    if shutil.which("kubectl") is None:
        pytest.skip("e2e: no kubectl binary on PATH")
    from pytest_canary.harness import Harness

    options = KindOptions(cluster="pytest-canary-e2e", addons=("ingress-nginx",), keep_cluster=True)
    backend = kind.KindBackend.setup(options, run_id="e2e", progress=print)
    try:
        with Harness(backend.environment("test_live_kind")) as canary:
            release = canary.deploy("nginx", stable="1.0", canary="2.0", weight=20)
            release.expect_split(0.20)
            release.promote()
            release.expect_routed("2.0")
    finally:
        backend.close()


FAKE_KIND = """#!/bin/sh
echo "$@" >> "{log}"
case "$1 $2" in
  "get clusters") cat "{clusters}" 2>/dev/null || echo "No kind clusters found." >&2 ;;
  "create cluster")
    for arg in "$@"; do case "$arg" in --kubeconfig=*) kc="${{arg#--kubeconfig=}}" ;; esac; done
    cat > "$kc" <<KC
apiVersion: v1
kind: Config
clusters: [{{name: kind-x, cluster: {{server: "https://127.0.0.1:6443"}}}}]
users: [{{name: kind-x, user: {{token: t}}}}]
contexts: [{{name: kind-x, context: {{cluster: kind-x, user: kind-x}}}}]
current-context: kind-x
KC
    echo pytest-canary > "{clusters}" ;;
esac
"""


def test_pytest_kind_creates_and_deletes_with_our_config_and_kind_binary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real pytest-kind KindCluster, driven with a stand-in ``kind`` on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "kind.log"
    fake = bin_dir / "kind"
    fake.write_text(FAKE_KIND.format(log=log, clusters=tmp_path / "clusters"))
    fake.chmod(0o755)
    (bin_dir / "kubectl").write_text("#!/bin/sh\n")
    (bin_dir / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setattr(kind, "_prepare", lambda *args: None)
    monkeypatch.chdir(tmp_path)
    cache = tmp_path / "cache"
    options = KindOptions(cache_dir=str(cache), node_image="kindest/node:v1.35.0")
    handle = kind.setup_cluster(options)
    calls = log.read_text().splitlines()
    home = cache / "clusters" / "pytest-canary"
    assert calls == [
        "get clusters",
        "get clusters",  # pytest-kind's own check before creating
        f"create cluster --name=pytest-canary --kubeconfig={home / 'kubeconfig'} "
        f"--image=kindest/node:v1.35.0 --config {home / 'kind-config.yaml'}",
    ]
    assert handle.created and handle.kind == str(fake)
    assert not (tmp_path / ".pytest-kind").exists()  # kept out of the user's project
    assert (cache / ".pytest-kind" / "pytest-canary").is_dir()
    kind.delete_cluster(handle)
    assert log.read_text().splitlines()[-1] == (
        f"delete cluster --name=pytest-canary --kubeconfig={home / 'kubeconfig'}"
    )
    monkeypatch.setattr(kind, "node_ports", lambda name: PORTS)  # Docker knows the real one
    again = kind.setup_cluster(options)  # it exists now: reused, so never deleted
    assert not again.created


def test_a_cluster_creation_that_overruns_its_deadline_is_deleted_and_reported(
    fake_kind: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import time

    class SlowKindCluster(FakeKindCluster):
        def create(self, config: Path) -> None:
            # kind create, hanging until the cluster is deleted under it (bounded).
            deadline = time.monotonic() + 10
            while not any("delete" in line for line in self.log) and time.monotonic() < deadline:
                time.sleep(0.01)

    monkeypatch.setattr(kind, "kind_cluster", lambda handle: SlowKindCluster(fake_kind["log"]))
    options = KindOptions(cache_dir=str(tmp_path), setup_timeout=0.3)
    with pytest.raises(BackendError, match=r"did not finish within 0s \(--canary-setup-timeout\)"):
        kind.setup_cluster(options)
    assert "/bin/kind delete cluster --name" in fake_kind["log"]


def test_a_failed_cluster_creation_deletes_the_half_made_cluster(
    fake_kind: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    class BrokenKindCluster(FakeKindCluster):
        def create(self, config: Path) -> None:
            raise RuntimeError("node did not become ready")

    monkeypatch.setattr(kind, "kind_cluster", lambda handle: BrokenKindCluster(fake_kind["log"]))
    with pytest.raises(BackendError, match="creating kind cluster pytest-canary failed: node did"):
        kind.setup_cluster(fake_kind["options"])
    assert "/bin/kind delete cluster --name" in fake_kind["log"]
