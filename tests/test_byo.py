"""Loading your own manifests: files, folders, multi-document YAML, kustomize, and the
errors that name the file and the document (``pytest_canary.byo``)."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_canary import CanaryConfigError, Harness, byo
from pytest_canary.backends.local import LocalBackend

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "suites" / "manifests" / "shop"

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-v1, namespace: prod}
spec:
  selector: {matchLabels: {app: web, version: v1}}
  template:
    metadata: {labels: {app: web, version: v1}}
    spec:
      containers: [{name: web, image: "example.com/web:1"}]
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: prod}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def kustomize_available() -> bool:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        return False
    done = subprocess.run([kubectl, "kustomize", "--help"], capture_output=True, check=False)
    return done.returncode == 0


needs_kustomize = pytest.mark.skipif(
    not kustomize_available(), reason="`kubectl kustomize` is not available: install kubectl"
)


@pytest.fixture
def canary() -> Iterator[Harness]:
    backend = LocalBackend(seed=11)
    try:
        with Harness(backend.environment("byo")) as harness:
            yield harness
    finally:
        backend.close()


# -- loading ------------------------------------------------------------------------------


def test_multi_document_file_keeps_order_and_origins(tmp_path: Path) -> None:
    path = write(
        tmp_path, "app.yaml", f"---\n{DEPLOYMENT}---\n# only a comment\n---\n{SERVICE}---\n"
    )
    loaded = byo.load(path)
    assert [o["kind"] for o in loaded.objects] == ["Deployment", "Service"]
    # Empty documents are skipped but still counted, as a reader of the file counts them.
    assert loaded.origins == [f"{path}, document 1", f"{path}, document 3"]


def test_folder_reads_yaml_files_in_name_order_not_subfolders(tmp_path: Path) -> None:
    write(tmp_path, "b-service.yml", SERVICE)
    write(tmp_path, "a-deploy.yaml", DEPLOYMENT)
    write(tmp_path, "notes.txt", "not a manifest")
    write(tmp_path, "nested/extra.yaml", SERVICE.replace("name: web,", "name: extra,"))
    loaded = byo.load(tmp_path)
    assert [o["metadata"]["name"] for o in loaded.objects] == ["web-v1", "web"]


def test_several_paths_and_a_list_kind(tmp_path: Path) -> None:
    items = "\n".join(
        "  - " + line if i == 0 else "    " + line
        for doc in (
            SERVICE.replace("name: web,", "name: a,"),
            SERVICE.replace("name: web,", "name: b,"),
        )
        for i, line in enumerate(doc.splitlines())
    )
    listed = write(tmp_path, "list.yaml", f"apiVersion: v1\nkind: List\nitems:\n{items}\n")
    single = write(tmp_path, "one.yaml", DEPLOYMENT)
    loaded = byo.load([single, listed])
    assert [o["metadata"]["name"] for o in loaded.objects] == ["web-v1", "a", "b"]
    assert loaded.origins[2] == f"{listed}, document 1, items[1]"


def test_missing_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(CanaryConfigError, match=r"manifests path '.*nowhere' does not exist"):
        byo.load(tmp_path / "nowhere")


def test_folder_without_manifests_says_subfolders_are_not_read(tmp_path: Path) -> None:
    write(tmp_path, "sub/app.yaml", DEPLOYMENT)
    with pytest.raises(CanaryConfigError, match=r"has no \*.yaml.*sub-folders are not read"):
        byo.load(tmp_path)


def test_yaml_error_names_file_document_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", f"{DEPLOYMENT}---\nkind: Service\nmetadata: {{name: [x\n")
    with pytest.raises(CanaryConfigError) as info:
        byo.load(path)
    message = str(info.value)
    assert f"{path}, document 2: not valid YAML at line" in message


def test_document_that_is_not_an_object_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", f"{DEPLOYMENT}---\n- just\n- a list\n")
    with pytest.raises(CanaryConfigError, match=r"bad.yaml, document 2: got a list"):
        byo.load(path)


def test_document_without_kind_or_name_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.yaml", "apiVersion: v1\nmetadata: {name: x}\n")
    with pytest.raises(CanaryConfigError, match=r"bad.yaml, document 1: no kind"):
        byo.load(path)
    path = write(
        tmp_path, "bad2.yaml", "apiVersion: v1\nkind: Service\nmetadata: {generateName: x-}\n"
    )
    with pytest.raises(
        CanaryConfigError, match=r"document 1: Service has no metadata.name; generateName"
    ):
        byo.load(path)


def test_schema_problems_name_file_and_document(tmp_path: Path) -> None:
    bad = SERVICE.replace("port: 80,", 'port: "eighty",')
    path = write(tmp_path, "app.yaml", f"{DEPLOYMENT}---\n{bad}")
    with pytest.raises(CanaryConfigError) as info:
        byo.check_schemas(byo.load(path))
    assert f"{path}, document 2: Service/web: spec.ports[0].port" in str(info.value)


# -- kustomize ----------------------------------------------------------------------------


@needs_kustomize
def test_kustomization_is_rendered_with_kubectl_kustomize() -> None:
    loaded = byo.load(SHOP / "kustomize" / "overlays" / "prod")
    names = sorted(o["metadata"]["name"] for o in loaded.objects if o["kind"] == "Ingress")
    assert names == ["prod-shop", "prod-shop-canary"]  # namePrefix applied by kustomize
    canary = next(o for o in loaded.objects if o["metadata"]["name"] == "prod-shop-canary")
    assert canary["metadata"]["annotations"]["nginx.ingress.kubernetes.io/canary-weight"] == "25"
    assert loaded.origins[0].startswith("kustomize output of ")


@needs_kustomize
def test_kustomize_failure_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "kustomization.yaml", "resources: [missing.yaml]\n")
    with pytest.raises(CanaryConfigError, match=r"kustomize .* failed: .*missing\.yaml"):
        byo.load(tmp_path)


def test_missing_kubectl_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "kustomization.yaml", "resources: []\n")
    monkeypatch.setattr("pytest_canary.byo.shutil.which", lambda name: None)
    with pytest.raises(CanaryConfigError, match="neither kubectl nor kustomize is on PATH"):
        byo.load(tmp_path)


# -- what the backend understands --------------------------------------------------------


def test_routing_irrelevant_kinds_are_left_out_with_a_warning(tmp_path: Path) -> None:
    config = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config}\ndata: {a: b}\n"
    hpa = (
        "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\n"
        "spec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web-v1}\n"
        "  maxReplicas: 3\n"
    )
    path = write(tmp_path, "app.yaml", f"{DEPLOYMENT}---\n{config}---\n{hpa}")
    loaded = byo.load(path)
    with pytest.warns(byo.ManifestWarning) as record:
        kept = byo.split_kinds(loaded, {"Deployment", "Service"})
    assert [o["kind"] for o in kept] == ["Deployment"]
    assert len(record) == 2
    assert "document 2: ConfigMap/web-config left out" in str(record[0].message)


def test_kinds_the_models_do_not_understand_are_listed_in_one_error(tmp_path: Path) -> None:
    sts = DEPLOYMENT.replace("kind: Deployment", "kind: StatefulSet")
    cronjob = "apiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\n"
    path = write(tmp_path, "app.yaml", f"{DEPLOYMENT}---\n{sts}---\n{cronjob}")
    with pytest.raises(CanaryConfigError) as info:
        byo.split_kinds(byo.load(path), {"Deployment", "Service"})
    message = str(info.value)
    assert message.startswith("2 object(s)")
    assert "document 2: apps/v1 StatefulSet/web-v1" in message
    assert "document 3: batch/v1 CronJob/nightly" in message


def test_versions_come_from_the_pod_label(tmp_path: Path) -> None:
    loaded = byo.load(SHOP / "nginx")
    assert byo.workload_versions(loaded.objects) == {"shop-v1": "v1", "shop-v2": "v2"}
    with pytest.raises(CanaryConfigError, match="version_label='release': no such pod label"):
        byo.workload_versions(loaded.objects, "release")


def test_defaults_from_the_routing_objects() -> None:
    objects = byo.load(SHOP / "nginx").objects
    assert byo.default_host(objects) == "shop.example.com"
    assert byo.default_path(objects) == "/shop"
    assert byo.canary_version(objects) == "v2"
    assert byo.canary_version(byo.load(SHOP / "istio").objects) is None


def test_rewrite_namespace_moves_objects_and_their_references() -> None:
    objects = byo.load([SHOP / "istio" / "routing.yaml"]).objects
    moved = byo.rewrite_namespace(objects, "canary-t1")
    assert {o["metadata"]["namespace"] for o in moved} == {"canary-t1"}
    vs = next(o for o in moved if o["kind"] == "VirtualService")
    assert vs["spec"]["gateways"] == ["canary-t1/shop-gateway"]
    assert vs["spec"]["http"][1]["route"][0]["destination"]["host"] == (
        "shop.canary-t1.svc.cluster.local"
    )
    rule = next(o for o in moved if o["kind"] == "DestinationRule")
    assert rule["spec"]["host"] == "shop.canary-t1.svc.cluster.local"
    assert objects[0]["metadata"]["namespace"] == "shop-prod"  # the input is not changed
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop-prod"}}
    assert byo.rewrite_namespace([namespace], "canary-t1") == []


# -- the harness ----------------------------------------------------------------------------


def test_apply_rejects_unknown_findings_mode(canary: Harness) -> None:
    with pytest.raises(CanaryConfigError, match="findings='loud': must be 'error'"):
        canary.apply(SHOP / "nginx", findings="loud")  # type: ignore[arg-type]


def test_apply_and_deploy_do_not_mix(canary: Harness) -> None:
    canary.deploy("nginx", stable="1.0", canary="2.0", weight=10)
    with pytest.raises(CanaryConfigError, match=r"already deployed a release with canary\.deploy"):
        canary.apply(SHOP / "nginx")


def test_apply_lists_unsupported_kinds_before_anything_runs(
    canary: Harness, tmp_path: Path
) -> None:
    shutil.copytree(SHOP / "nginx", tmp_path / "shop")
    sts = DEPLOYMENT.replace("kind: Deployment", "kind: StatefulSet").replace("web-v1", "cache")
    write(tmp_path, "shop/zz-cache.yaml", sts)
    with pytest.raises(CanaryConfigError, match=r"(?s)1 object\(s\) .* StatefulSet/cache"):
        canary.apply(tmp_path / "shop")
    assert canary.applied == []


def test_apply_moves_objects_into_the_test_namespace(canary: Harness) -> None:
    shop = canary.apply(SHOP / "nginx")
    namespaces = {o["metadata"]["namespace"] for o in shop.objects}
    assert namespaces == {canary.environment.namespace} != {"shop-prod"}
    assert (shop.versions, shop.canary_version, shop.path) == (("v1", "v2"), "v2", "/shop")
    assert "nginx model" in repr(shop)


def test_apply_caps_replicas_like_deploy_before_anything_runs(
    canary: Harness, tmp_path: Path
) -> None:
    shutil.copytree(SHOP / "nginx", tmp_path / "shop")
    many = DEPLOYMENT.replace("spec:\n", "spec:\n  replicas: 60\n", 1).replace("web-v1", "big")
    write(tmp_path, "shop/zz-big.yaml", many)
    with pytest.raises(CanaryConfigError) as caught:
        canary.apply(tmp_path / "shop")
    assert "zz-big.yaml, document 1: Deployment big has replicas: 60" in str(caught.value)
    assert "at most 50 pods per workload" in str(caught.value)
    assert canary.applied == [] and canary.environment.pods == []


def test_apply_caps_the_pods_of_all_workloads_together(tmp_path: Path) -> None:
    for number in range(3):
        text = DEPLOYMENT.replace("spec:\n", "spec:\n  replicas: 40\n", 1)
        write(tmp_path, f"d{number}.yaml", text.replace("web-v1", f"web-{number}"))
    loaded = byo.load(tmp_path)
    with pytest.raises(CanaryConfigError, match=r"d2\.yaml.*to 120; a test starts at most 100"):
        byo.check_replicas(loaded)


ROLLOUT = """\
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web, namespace: prod}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, version: v1}}
    spec:
      containers: [{name: web, image: "example.com/web:1"}]
  strategy:
    canary:
      steps: [{setCanaryScale: {STEP}}, {pause: {}}]
"""


@pytest.mark.parametrize(
    ("replicas", "fragment"),
    [
        # YAML 1e9 written as a float is the integer 1000000000 to the API server.
        ("1000000000.0", "has replicas: 1000000000; a test starts at most 50"),
        ("-1", "has replicas: -1; the API server refuses it"),
    ],
)
def test_apply_refuses_float_and_negative_replicas(
    replicas: str, fragment: str, tmp_path: Path
) -> None:
    write(tmp_path, "d.yaml", DEPLOYMENT.replace("spec:\n", f"spec:\n  replicas: {replicas}\n", 1))
    with pytest.raises(CanaryConfigError, match=re.escape(fragment)):
        byo.check_replicas(byo.load(tmp_path))


@pytest.mark.parametrize(("step", "pods"), [("{replicas: 120}", 120), ("{weight: 5000}", 100)])
def test_apply_bounds_the_canary_pods_of_set_canary_scale(
    step: str, pods: int, tmp_path: Path
) -> None:
    """Argo scales the canary to setCanaryScale.replicas (or weight percent of
    spec.replicas, above 100 too) whatever spec.replicas says."""
    write(tmp_path, "r.yaml", ROLLOUT.replace("{STEP}", step))
    with pytest.raises(CanaryConfigError, match=f"scales the canary to {pods} pods"):
        byo.check_replicas(byo.load(tmp_path))


def test_apply_validates_its_path_argument(canary: Harness) -> None:
    with pytest.raises(CanaryConfigError, match=r"path='/shop\?x': may hold only URL path"):
        canary.apply(SHOP / "nginx", path="/shop?x")
