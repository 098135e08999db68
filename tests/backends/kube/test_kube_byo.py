"""``canary.apply`` on the kube backend, against the Kubernetes API emulator (see conftest)
driven by the real ``kubernetes`` client, with traffic through the stand-in ingress-nginx and
kube-proxy.

What these prove: your objects reach the API as they are (namespace rewritten, every kind
included, in make-before-break order), the entry is chosen from the objects, the data-plane
wait reads versions the way you said, re-applying replaces the set and teardown deletes it.
What they cannot prove: real controllers, a real ingress-nginx or Istio gateway, your images.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ApiServer, FakeIngress
from pytest_canary import byo
from pytest_canary.apps import VersionFromHeader, VersionFromJson
from pytest_canary.backends.kube import EntryPoints, KubeBackend, KubeOptions
from pytest_canary.errors import BackendError, CanaryConfigError, ConvergenceTimeout
from pytest_canary.harness import Harness

SHOP = Path(__file__).parents[3] / "suites" / "manifests" / "shop"

EXTRAS = """
# Kinds that do not route: a cluster gets them all the same.
apiVersion: v1
kind: ConfigMap
metadata: {name: shop-config, namespace: shop-prod, labels: {app: shop}}
data: {currency: EUR}
---
apiVersion: autoscaling/v1
kind: HorizontalPodAutoscaler
metadata: {name: shop-v1, namespace: shop-prod}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: shop-v1}
  minReplicas: 2
  maxReplicas: 4
"""

SERVICE_ONLY = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: api-blue, namespace: payments}
spec:
  replicas: 2
  selector: {matchLabels: {app: api, version: blue}}
  template:
    metadata: {labels: {app: api, version: blue}}
    spec: {containers: [{name: api, image: registry.example.com/api:1.0}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api-green, namespace: payments}
spec:
  replicas: 1
  selector: {matchLabels: {app: api, version: green}}
  template:
    metadata: {labels: {app: api, version: green}}
    spec: {containers: [{name: api, image: registry.example.com/api:2.0}]}
---
apiVersion: v1
kind: Service
metadata: {name: api-green, namespace: payments}
spec:
  selector: {app: api, version: green}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: payments}
spec:
  selector: {app: api}
  ports: [{port: 80, targetPort: 8080}]
"""


def stored(api_server: ApiServer, namespace: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Objects in a namespace, minus what the emulated controllers made (pods, slices)."""
    return {
        (obj.raw["kind"], name): obj.raw
        for (res, ns, name), obj in api_server.emulator.objects.items()
        if ns == namespace and not obj.deleted and res.plural not in ("pods", "endpointslices")
    }


def shop_with_extras(tmp_path: Path) -> Path:
    """The nginx shop of suites/ plus a ConfigMap and an autoscaling/v1 HPA."""
    folder = tmp_path / "shop"
    shutil.copytree(SHOP / "nginx", folder)
    (folder / "extras.yaml").write_text(EXTRAS)
    return folder


def test_apply_creates_exactly_your_objects_in_the_test_namespace_configmaps_included(
    api_server: ApiServer, kube_backend: KubeBackend, tmp_path: Path
) -> None:
    folder = shop_with_extras(tmp_path)
    written = byo.load(folder).objects
    env = kube_backend.environment("test_byo_objects")
    with Harness(env) as canary:
        shop = canary.apply(folder)  # filterwarnings=error: no ManifestWarning on a cluster
        objects = stored(api_server, env.namespace)
        assert set(objects) == {(o["kind"], o["metadata"]["name"]) for o in written}
        for obj in written:
            got = objects[(obj["kind"], obj["metadata"]["name"])]
            assert got["metadata"]["namespace"] == env.namespace
            for field in ("spec", "data"):
                assert got.get(field) == obj.get(field)
            for key, value in obj["metadata"].items():  # labels, annotations as written
                assert key == "namespace" or got["metadata"][key] == value
        assert "shop-prod" not in json.dumps(list(objects.values()))
        assert "shop-prod" not in api_server.emulator.namespaces
        steps = [
            f"{c.method} {c.path.rsplit('/', 2)[-2]}/{c.path.rsplit('/', 1)[-1]}"
            for c in api_server.writes()
        ]
        assert steps == [
            f"PATCH namespaces/{env.namespace}",
            "PATCH configmaps/shop-config",
            "PATCH deployments/shop-v1",
            "PATCH deployments/shop-v2",
            "PATCH services/shop-v1",
            "PATCH services/shop-v2",
            "PATCH horizontalpodautoscalers/shop-v1",
            "PATCH ingresses/shop",
            "PATCH ingresses/shop-canary",
        ]
        (hpa,) = [c for c in api_server.writes() if "horizontalpodautoscalers" in c.path]
        assert hpa.path.startswith("/apis/autoscaling/v1/")  # the version written in the file
        assert shop.versions == ("v1", "v2")
        assert shop.canary_version == "v2"
        assert shop.host == "shop.example.com" and shop.path == "/shop"
        assert shop.entry.description.startswith("ingress-nginx at http://127.0.0.1:")


def test_traffic_through_the_ingress_is_split_and_routed_as_your_ingresses_say(
    kube_backend: KubeBackend,
) -> None:
    env = kube_backend.environment("test_byo_traffic")
    with Harness(env) as canary:
        shop = canary.apply(SHOP / "nginx", host="shop.example.com")
        shop.expect_split({"v2": 0.10}, tolerance=0.08)
        shop.expect_routed("v2", headers={"x-beta-user": "yes"}, leak=0.1)
        assert "converged" in env.diagnostics().sections["data-plane waits"]


def test_teardown_deletes_the_namespace_with_everything_applied(
    api_server: ApiServer, kube_backend: KubeBackend, tmp_path: Path
) -> None:
    env = kube_backend.environment("test_byo_teardown")
    with Harness(env) as canary:
        canary.apply(shop_with_extras(tmp_path))
        namespace = env.namespace
        assert ("ConfigMap", "shop-config") in stored(api_server, namespace)
    assert namespace not in api_server.emulator.namespaces
    assert stored(api_server, namespace) == {}
    # The routing objects go first (they hold the shared host), then the namespace.
    deletes = [c.path for c in api_server.writes() if c.method == "DELETE"]
    ingresses = f"/apis/networking.k8s.io/v1/namespaces/{namespace}/ingresses/"
    assert sorted(deletes[:2]) == [ingresses + "shop", ingresses + "shop-canary"]
    assert deletes[2:] == [f"/api/v1/namespaces/{namespace}"]


def test_a_service_only_set_enters_through_a_node_port_service_selecting_the_named_one(
    api_server: ApiServer, kube_backend: KubeBackend, tmp_path: Path
) -> None:
    path = tmp_path / "api.yaml"
    path.write_text(SERVICE_ONLY)
    env = kube_backend.environment("test_byo_node_port")
    with Harness(env) as canary:
        api = canary.apply(path, host="api")
        assert api.entry.per_connection
        assert "selector of Service api" in api.entry.description
        entry = stored(api_server, env.namespace)[("Service", "api-canary-entry")]
        assert entry["spec"]["type"] == "NodePort"
        assert entry["spec"]["selector"] == {"app": "api"}
        assert entry["spec"]["ports"][0]["nodePort"] == 30100
        # The entry Service is created first (its nodePort is the URL), then waited for
        # once the Deployments run: one endpoint per pod of both versions.
        writes = [c.path.rsplit("/", 1)[-1] for c in api_server.writes()]
        assert writes == [
            env.namespace,
            "api-canary-entry",
            "api-blue",
            "api-green",
            "api-green",
            "api",
        ]
        last_entry_wait = max(
            i
            for i, c in enumerate(api_server.calls)
            if c.params.get("labelSelector") == "kubernetes.io/service-name=api-canary-entry"
        )
        assert last_entry_wait > max(
            i for i, c in enumerate(api_server.calls) if c.path.endswith("/deployments/api-green")
        )
        sample = api.sample(120)  # kube-proxy: any ready pod of the Service, per connection
        assert set(sample.counts) == {"blue", "green"} and sample.error_count == 0
        namespace = env.namespace
    deletes = [c.path for c in api_server.writes() if c.method == "DELETE"]
    assert deletes == [
        f"/api/v1/namespaces/{namespace}/services/api-canary-entry",
        f"/api/v1/namespaces/{namespace}",
    ]


def test_version_from_reads_the_version_your_image_reports(
    api_server: ApiServer, kube_backend: KubeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image that reports its version only in its JSON body: the wait and the samples
    read it with ``version_from``; the default header reader would see no version. Its
    ``hostname`` field names the virtual host, not a pod: it is not taken for one."""

    def json_only(pod: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        version = pod["metadata"]["labels"]["version"]
        body = {"build": {"version": version}, "hostname": "shop.example.com"}
        return 200, {"Content-Type": "application/json"}, json.dumps(body).encode()

    monkeypatch.setattr(FakeIngress, "_answer", staticmethod(json_only))
    env = kube_backend.environment("test_byo_version_from")
    with Harness(env) as canary:
        shop = canary.apply(SHOP / "nginx", version_from=VersionFromJson("build.version"))
        sample = shop.sample(100)
        assert set(sample.counts) <= {"v1", "v2"} and sample.classified == 100
        shop.expect_routed("v2", headers={"x-beta-user": "yes"}, leak=0.1)


def test_a_version_nobody_reports_times_out_naming_the_reader(
    make_backend: Any,
) -> None:
    env = make_backend(dataplane_timeout=0.6).environment("test_byo_no_version")
    started = time.monotonic()
    with pytest.raises(ConvergenceTimeout) as caught:
        Harness(env).apply(SHOP / "nginx", version_from=VersionFromHeader("X-Shop-Version"))
    assert time.monotonic() - started < 5
    error = caught.value
    assert error.what.startswith("the data plane behind ingress-nginx at http://127.0.0.1:")
    assert "versions read from the response header X-Shop-Version" in error.condition
    assert "HTTP 200 without a version" in error.last_seen
    env.close()


def test_an_invalid_version_from_is_refused_before_anything_is_applied(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_byo_bad_reader")
    with pytest.raises(CanaryConfigError, match=r"version_from=.*VersionFromHeader\(name\)"):
        Harness(env).apply(SHOP / "nginx", version_from="X-App-Version")  # type: ignore[arg-type]
    with pytest.raises(CanaryConfigError, match=r"version_from\.header='bad header'"):
        Harness(env).apply(SHOP / "nginx", version_from=VersionFromHeader("bad header"))
    assert api_server.writes() == []
    env.close()


def test_reapplying_replaces_the_set_routing_first(
    api_server: ApiServer, kube_backend: KubeBackend, tmp_path: Path
) -> None:
    env = kube_backend.environment("test_byo_reapply")
    promoted = tmp_path / "promoted"
    promoted.mkdir()
    documents = list(yaml.safe_load_all((SHOP / "nginx" / "deployments.yaml").read_text()))
    (promoted / "deployments.yaml").write_text(yaml.safe_dump(documents[1]))
    services = list(yaml.safe_load_all((SHOP / "nginx" / "services.yaml").read_text()))
    (promoted / "services.yaml").write_text(yaml.safe_dump(services[1]))
    ingresses = list(yaml.safe_load_all((SHOP / "nginx" / "ingress.yaml").read_text()))
    ingresses[0]["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "shop-v2"
    (promoted / "ingress.yaml").write_text(yaml.safe_dump(ingresses[0]))
    with Harness(env) as canary:
        canary.apply(shop_with_extras(tmp_path))
        mark = len(api_server.calls)
        shop = canary.apply(promoted)
        deletes = [
            c.path.rsplit("/", 2)[-2:] for c in api_server.writes(mark) if c.method == "DELETE"
        ]
        assert deletes == [
            ["ingresses", "shop-canary"],
            ["horizontalpodautoscalers", "shop-v1"],
            ["services", "shop-v1"],
            ["deployments", "shop-v1"],
            ["configmaps", "shop-config"],
        ]
        assert set(stored(api_server, env.namespace)) == {
            ("Deployment", "shop-v2"),
            ("Service", "shop-v2"),
            ("Ingress", "shop"),
        }
        shop.expect_routed("v2", leak=0.1)


# -- the entry, chosen from the objects ---------------------------------------------------------


def moved(env: Any, folder: Path) -> list[dict[str, Any]]:
    return byo.rewrite_namespace(byo.load(folder).objects, env.namespace)


def test_istio_and_gateway_api_manifests_enter_through_the_gateway(
    api_server: ApiServer, kube_backend: KubeBackend
) -> None:
    env = kube_backend.environment("test_byo_entries")
    istio = env.entry_for_objects(moved(env, SHOP / "istio"), "shop.example.com")
    assert istio.description.startswith("the Istio ingress gateway at http://127.0.0.1:")
    assert istio.host == "shop.example.com" and not istio.per_connection
    gateway = env.entry_for_objects(moved(env, SHOP / "gateway-api"), "shop.example.com")
    assert gateway.description.startswith("the Gateway API gateway (Istio) at http://")
    assert api_server.writes() == []  # choosing a data-plane entry applies nothing
    env.close()


def test_virtual_services_bound_to_no_gateway_are_refused_they_route_in_mesh_calls_only(
    kube_backend: KubeBackend,
) -> None:
    env = kube_backend.environment("test_byo_mesh_only")
    objects = [o for o in moved(env, SHOP / "istio") if o["kind"] != "Gateway"]
    for obj in objects:
        if obj["kind"] == "VirtualService":
            obj["spec"]["gateways"] = ["mesh"]
    with pytest.raises(BackendError, match=r"VirtualService/shop: bound to no Gateway"):
        env.entry_for_objects(objects, "shop.example.com")
    env.close()


def test_a_data_plane_without_an_entry_url_is_reported_before_anything_is_applied(
    api_server: ApiServer,
) -> None:
    backend = KubeBackend(api_server.api(), KubeOptions(), EntryPoints(), run_id="run-1")
    env = backend.environment("test_byo_no_url")
    try:
        with pytest.raises(BackendError, match=r"--canary-entry-url=istio=http://"):
            Harness(env).apply(SHOP / "istio")
        assert api_server.writes() == []
    finally:
        env.close()
        backend.close()


def test_cluster_scoped_objects_are_refused_before_anything_is_applied(
    api_server: ApiServer, kube_backend: KubeBackend, tmp_path: Path
) -> None:
    folder = tmp_path / "shop"
    shutil.copytree(SHOP / "nginx", folder)
    (folder / "class.yaml").write_text(
        "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\n"
        "spec: {controller: k8s.io/ingress-nginx}\n"
    )
    env = kube_backend.environment("test_byo_cluster_scoped")
    with pytest.raises(CanaryConfigError, match=r"IngressClass/nginx: cluster-scoped"):
        Harness(env).apply(folder)
    assert api_server.writes() == []
    env.close()


def test_on_the_local_backend_the_stand_ins_answer_so_version_from_is_not_used(
    canary: Harness,
) -> None:
    """The local backend runs the sample app for your workloads, whatever their image: it
    answers with X-App-Version, which is what is read there."""
    shop = canary.apply(SHOP / "nginx", version_from=VersionFromJson("build.version"))
    assert canary.environment.stands_in_for_workloads
    assert shop.version_from == VersionFromHeader()
    shop.expect_routed("v2", headers={"x-beta-user": "yes"})
