"""Add-on pins, the download cache, and the install commands (against a fake kubectl)."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_canary.backends import addons
from pytest_canary.backends.addons import (
    ADDONS,
    AddonFailure,
    AddonInstaller,
    Downloads,
    Pin,
    extract_istioctl,
    load_pins,
    parse_addon_files,
    parse_addons,
    version_in_image,
)
from pytest_canary.errors import BackendError, CanaryConfigError

# -- pins ------------------------------------------------------------------------------------------


def test_pins_are_the_versions_the_project_targets() -> None:
    pins = load_pins()
    assert list(ADDONS) == ["gateway-api", "ingress-nginx", "istio"]  # installed by default
    assert list(pins) == [*ADDONS, "argo-rollouts"]  # and the one installed on demand
    assert pins["ingress-nginx"].version == "controller-v1.15.1"
    assert pins["ingress-nginx"].resolve("linux/amd64")[0] == (
        "https://raw.githubusercontent.com/kubernetes/ingress-nginx/controller-v1.15.1/"
        "deploy/static/provider/kind/deploy.yaml"
    )
    assert pins["gateway-api"].version == "v1.6.1"
    assert pins["gateway-api"].resolve("linux/amd64")[0] == (
        "https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.6.1/"
        "standard-install.yaml"
    )
    assert pins["istio"].version == "1.30.3"


@pytest.mark.parametrize(
    ("platform", "asset"),
    [
        ("linux/amd64", "istioctl-1.30.3-linux-amd64.tar.gz"),
        ("linux/arm64", "istioctl-1.30.3-linux-arm64.tar.gz"),
        ("darwin/amd64", "istioctl-1.30.3-osx.tar.gz"),
        ("darwin/arm64", "istioctl-1.30.3-osx-arm64.tar.gz"),
    ],
)
def test_istioctl_comes_per_platform_with_its_published_checksum(platform: str, asset: str) -> None:
    pin = load_pins()["istio"]
    url, name, digest = pin.resolve(platform)
    assert url == f"https://github.com/istio/istio/releases/download/1.30.3/{asset}"
    assert name == asset
    assert digest == ""  # not pinned here: verified against the published <asset>.sha256
    assert pin.checksum_url == "{url}.sha256"


def test_an_unsupported_platform_is_named() -> None:
    with pytest.raises(BackendError, match=r"istio 1\.30\.3 has no build for windows/amd64"):
        load_pins()["istio"].resolve("windows/amd64")


def test_sha256_are_empty_or_real_digests() -> None:
    for pin in load_pins().values():
        digests = pin.sha256.values() if isinstance(pin.sha256, dict) else [pin.sha256]
        for digest in digests:
            assert digest == "" or (len(digest) == 64 and int(digest, 16) >= 0)


def test_addon_selection_and_local_files(tmp_path: Path) -> None:
    assert parse_addons("istio, ingress-nginx") == ("ingress-nginx", "istio")
    assert parse_addons("none") == ()
    with pytest.raises(CanaryConfigError, match="unknown linkerd"):
        parse_addons("linkerd")
    local = tmp_path / "deploy.yaml"
    local.write_text("kind: List\n")
    assert parse_addon_files([f"ingress-nginx={local}"]) == {"ingress-nginx": str(local)}
    with pytest.raises(CanaryConfigError, match="is not a file"):
        parse_addon_files([f"istio={tmp_path / 'missing.tar.gz'}"])
    with pytest.raises(CanaryConfigError, match="must be NAME=PATH"):
        parse_addon_files([str(local)])


def test_version_in_image() -> None:
    assert (
        version_in_image("registry.k8s.io/ingress-nginx/controller:v1.15.1@sha256:abc") == "v1.15.1"
    )
    assert version_in_image("docker.io/istio/pilot:1.30.3") == "1.30.3"
    assert version_in_image("localhost:5000/pilot") == ""


# -- downloads ------------------------------------------------------------------------------------


class FakeResponse:
    def __init__(self, body: bytes, status: int = 200) -> None:
        self.body = body
        self.status = status
        self.text = body.decode(errors="replace")
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise OSError(f"HTTP {self.status}")

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        for start in range(0, len(self.body), chunk_size):
            yield self.body[start : start + chunk_size]


def pin(**changes: Any) -> Pin:
    values: dict[str, Any] = {
        "name": "ingress-nginx",
        "version": "controller-v1.15.1",
        "url": "https://example.invalid/deploy.yaml",
        "file": "deploy.yaml",
    }
    return Pin(**(values | changes))


def test_a_download_is_cached_and_its_digest_recorded_then_verified(tmp_path: Path) -> None:
    body = b"apiVersion: v1\nkind: Namespace\n"
    gets: list[str] = []
    lines: list[str] = []
    downloads = Downloads(
        tmp_path, progress=lines.append, get=lambda url, **_: gets.append(url) or FakeResponse(body)
    )
    path = downloads.fetch(pin(), "linux/amd64")
    assert path == tmp_path / "downloads" / "deploy.yaml" and path.read_bytes() == body
    digest = hashlib.sha256(body).hexdigest()
    assert (tmp_path / "downloads" / "deploy.yaml.sha256").read_text().split()[0] == digest
    assert lines[-1].endswith(f"sha256 {digest} recorded (no published digest)")
    assert downloads.fetch(pin(), "linux/amd64") == path
    assert gets == ["https://example.invalid/deploy.yaml"]  # once
    path.write_bytes(b"tampered")
    with pytest.raises(BackendError, match=rf"has sha256 .*, expected {digest}"):
        downloads.fetch(pin(), "linux/amd64")


def test_a_download_that_does_not_match_its_published_checksum_is_refused(tmp_path: Path) -> None:
    def get(url: str, **_: Any) -> FakeResponse:
        if url.endswith(".sha256"):
            return FakeResponse(b"0" * 64 + b"  istioctl.tar.gz\n")
        return FakeResponse(b"not what was published")

    downloads = Downloads(tmp_path, get=get)
    with pytest.raises(BackendError, match=r"expected 0{64}: refusing to use it"):
        downloads.fetch(pin(name="istio", checksum_url="{url}.sha256"), "linux/amd64")
    assert list((tmp_path / "downloads").iterdir()) == [tmp_path / "downloads" / "deploy.yaml.lock"]


def test_a_streamed_download_is_closed_on_success_and_on_error(tmp_path: Path) -> None:
    """The streamed response holds a connection: it is closed on every path (an open one
    is a ResourceWarning, an error under filterwarnings = error)."""
    served: list[FakeResponse] = []

    def get(url: str, **_: Any) -> FakeResponse:
        served.append(FakeResponse(b"body", status=404 if "missing" in url else 200))
        return served[-1]

    downloads = Downloads(tmp_path, get=get)
    downloads.fetch(pin(), "linux/amd64")
    with pytest.raises(BackendError, match="HTTP 404"):
        downloads.fetch(pin(url="https://example.invalid/missing.yaml", file="m.yaml"), "x")
    assert [r.closed for r in served] == [True, True]


def test_offline_downloads_explain_the_air_gapped_way(tmp_path: Path) -> None:
    def get(url: str, **_: Any) -> FakeResponse:
        raise OSError("Name or service not known")

    with pytest.raises(BackendError) as caught:
        Downloads(tmp_path, get=get).fetch(pin(), "linux/amd64")
    message = str(caught.value)
    assert "Name or service not known" in message
    assert "--canary-addon-file ingress-nginx=PATH" in message
    assert str(tmp_path / "downloads" / "deploy.yaml") in message


def test_a_local_file_replaces_the_download_and_is_checked_against_a_pin(tmp_path: Path) -> None:
    local = tmp_path / "mine.yaml"
    local.write_bytes(b"kind: List\n")

    def no_network(url: str, **_: Any) -> FakeResponse:
        raise AssertionError("no download expected")

    downloads = Downloads(tmp_path, overrides={"ingress-nginx": str(local)}, get=no_network)
    assert downloads.fetch(pin(), "linux/amd64") == local
    with pytest.raises(BackendError, match="--canary-addon-file"):
        downloads.fetch(pin(sha256="f" * 64), "linux/amd64")


def test_istioctl_is_extracted_from_its_tarball(tmp_path: Path) -> None:
    archive = tmp_path / "istioctl-1.30.3-linux-amd64.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        data = b"#!/bin/sh\necho istioctl\n"
        info = tarfile.TarInfo("istioctl")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    binary = extract_istioctl(archive, tmp_path)
    assert binary.read_bytes().startswith(b"#!/bin/sh") and binary.stat().st_mode & 0o111
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz"):
        pass
    with pytest.raises(BackendError, match="holds no istioctl binary"):
        extract_istioctl(empty, tmp_path)


# -- installing, against a fake kubectl ------------------------------------------------------------

FAKE_KUBECTL = """\
import json, os, sys, time
state_file = {state!r}

def save(state):
    # Atomic: several fake kubectls run at once (the tool and the pod watch).
    with open(state_file + ".tmp-%d" % os.getpid(), "w") as f:
        json.dump(state, f)
    os.replace(f.name, state_file)

def printed(match):
    return state_file + ".printed-" + "".join(c if c.isalnum() else "_" for c in match)

state = json.load(open(state_file))
args = [a for a in sys.argv[1:] if not a.startswith("--kubeconfig")]
line = " ".join(args)
state["log"].append(line)
for rule in state["rules"]:
    if rule.get("after") and not os.path.exists(printed(rule["after"])):
        continue
    if rule["match"] in line and rule.get("times", 1) != 0:
        if rule.get("times", -1) > 0:
            rule["times"] -= 1
        save(state)
        if rule.get("until"):
            # Answer only once another command has printed (bounded: a minute).
            deadline = time.monotonic() + 60
            while not os.path.exists(printed(rule["until"])) and time.monotonic() < deadline:
                time.sleep(0.05)
        sys.stdout.write(rule.get("out", ""))
        sys.stderr.write(rule.get("err", ""))
        sys.stdout.flush()
        sys.stderr.flush()
        open(printed(rule["match"]), "w").close()
        time.sleep(rule.get("sleep", 0))
        sys.exit(rule.get("rc", 0))
save(state)
"""


class FakeKubectl:
    """A kubectl that logs its arguments and answers from rules (first match wins)."""

    def __init__(self, directory: Path) -> None:
        self.state = directory / "kubectl-state.json"
        self.path = directory / "kubectl"
        self.path.write_text(f"#!{sys.executable}\n" + FAKE_KUBECTL.format(state=str(self.state)))
        self.path.chmod(0o755)
        self.rules: list[dict[str, Any]] = []
        self.save()

    def rule(
        self,
        match: str,
        *,
        out: Any = "",
        rc: int = 0,
        err: str = "",
        times: int = -1,
        sleep: float = 0,
        after: str = "",
        until: str = "",
    ) -> None:
        """Answer commands containing ``match``; with ``after``, only once a command
        matching ``after`` has printed its output (no race with a slow fake); with
        ``until``, this rule matches at once but its answer waits (at most a minute) until
        a command matching ``until`` has printed."""
        text = out if isinstance(out, str) else json.dumps(out)
        self.rules.append(
            {
                "match": match,
                "out": text,
                "rc": rc,
                "err": err,
                "times": times,
                "sleep": sleep,
                "after": after,
                "until": until,
            }
        )
        self.save()

    def save(self) -> None:
        self.state.write_text(json.dumps({"rules": self.rules, "log": []}))

    @property
    def log(self) -> list[str]:
        return list(json.loads(self.state.read_text())["log"])


@pytest.fixture
def kubectl(tmp_path: Path) -> FakeKubectl:
    return FakeKubectl(tmp_path)


def installer(
    kubectl: FakeKubectl, tmp_path: Path, timeout: float = 5, **overrides: str
) -> AddonInstaller:
    def no_network(url: str, **_: Any) -> FakeResponse:
        raise AssertionError(f"unexpected download of {url}")

    downloads = Downloads(tmp_path, overrides=overrides, get=no_network)
    return AddonInstaller(
        str(kubectl.path),
        tmp_path / "kubeconfig",
        downloads,
        timeout=timeout,
        watch_every=0.2,
        lasting=1.0,
    )


def test_gateway_api_at_the_pinned_version_is_kept(kubectl: FakeKubectl, tmp_path: Path) -> None:
    crd = {"metadata": {"annotations": {"gateway.networking.k8s.io/bundle-version": "v1.6.1"}}}
    kubectl.rule("get crd httproutes.gateway.networking.k8s.io", out=crd)
    installer(kubectl, tmp_path).gateway_api(load_pins()["gateway-api"])
    assert not any(line.startswith("apply") for line in kubectl.log)
    assert kubectl.log[-1].startswith(
        "wait --for=condition=Established --timeout=5s crd/gatewayclasses"
    )


def test_gateway_api_is_applied_server_side_and_every_crd_waited(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    bundle = tmp_path / "standard-install.yaml"
    bundle.write_text(
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: httproutes.gateway.networking.k8s.io}\n---\n"
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {name: grpcroutes.gateway.networking.k8s.io}\n"
    )
    installer(kubectl, tmp_path, **{"gateway-api": str(bundle)}).gateway_api(
        load_pins()["gateway-api"]
    )
    assert f"apply --server-side --force-conflicts -f {bundle}" in kubectl.log
    assert kubectl.log[-1] == (
        "wait --for=condition=Established --timeout=5s "
        "crd/httproutes.gateway.networking.k8s.io crd/grpcroutes.gateway.networking.k8s.io"
    )


def test_ingress_nginx_install_waits_for_the_controller_then_the_webhook(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text("kind: List\n")
    kubectl.rule(
        "apply --dry-run=server",
        rc=1,
        err="Error from server (InternalError): Internal error occurred: failed calling webhook "
        '"validate.nginx.ingress.kubernetes.io": connect: connection refused\n',
        times=2,
    )
    installer(kubectl, tmp_path, **{"ingress-nginx": str(manifest)}).ingress_nginx(
        load_pins()["ingress-nginx"]
    )
    log = kubectl.log
    assert log[1] == f"apply -f {manifest}"
    assert (
        log[2] == "rollout status -n ingress-nginx deployment/ingress-nginx-controller --timeout=5s"
    )
    assert log[3] == (
        "wait -n ingress-nginx --for=condition=ready pod -l "
        "app.kubernetes.io/component=controller --timeout=5s"
    )
    assert log[4:] == ["apply --dry-run=server -f -"] * 3  # refused twice, then accepted


def test_ingress_nginx_of_the_pinned_version_is_not_reapplied(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    image = "registry.k8s.io/ingress-nginx/controller:v1.15.1@sha256:" + "a" * 64
    deployment = {"spec": {"template": {"spec": {"containers": [{"image": image}]}}}}
    kubectl.rule("get deployment -n ingress-nginx ingress-nginx-controller", out=deployment)
    installer(kubectl, tmp_path).ingress_nginx(load_pins()["ingress-nginx"])
    assert not any(line.startswith("apply -f") for line in kubectl.log)


def test_a_webhook_that_denies_the_probe_is_a_real_error(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    kubectl.rule("apply --dry-run=server", rc=1, err="admission webhook denied the request: nope\n")
    with pytest.raises(BackendError, match="denied the request: nope"):
        installer(kubectl, tmp_path).await_admission()


def test_istio_at_the_pinned_version_with_the_node_port_is_kept(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    istiod = {
        "spec": {"template": {"spec": {"containers": [{"image": "docker.io/istio/pilot:1.30.3"}]}}}
    }
    gateway = {"spec": {"ports": [{"port": 80, "nodePort": 30080}]}}
    kubectl.rule("get deployment -n istio-system istiod", out=istiod)
    kubectl.rule("get service -n istio-system istio-ingressgateway", out=gateway)
    installer(kubectl, tmp_path).istio(load_pins()["istio"], gateway_node_port=30080)
    assert kubectl.log[-1] == (
        "rollout status -n istio-system deployment/istio-ingressgateway --timeout=5s"
    )


def test_istio_is_installed_with_istioctl_and_the_kind_overlay(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    calls = tmp_path / "istioctl-calls"
    script = (
        f"#!{sys.executable}\nimport sys, pathlib\n"
        "overlay = pathlib.Path(sys.argv[sys.argv.index('-f') + 1]).read_text()\n"
        f"pathlib.Path({str(calls)!r}).write_text(' '.join(sys.argv[1:]) + '\\n' + overlay)\n"
    ).encode()
    archive = tmp_path / "istioctl.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("istioctl")
        info.size = len(script)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(script))
    installer(kubectl, tmp_path, timeout=90, istio=str(archive)).istio(
        load_pins()["istio"], gateway_node_port=30080
    )
    argv, overlay = calls.read_text().split("\n", 1)
    # istioctl waits that long for base, istiod and the gateway in turn: a third each
    assert argv.startswith("install -y -f ") and "--readiness-timeout=30s" in argv
    assert "nodePort: 30080" in overlay and "type: NodePort" in overlay
    assert kubectl.log[-1].startswith(
        "rollout status -n istio-system deployment/istio-ingressgateway"
    )


def test_install_runs_the_chosen_addons_in_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    done: list[str] = []
    lines: list[str] = []
    inst = AddonInstaller("kubectl", tmp_path / "kc", Downloads(tmp_path), progress=lines.append)
    monkeypatch.setattr(inst, "gateway_api", lambda pin: done.append(pin.name))
    monkeypatch.setattr(inst, "ingress_nginx", lambda pin: done.append(pin.name))
    monkeypatch.setattr(inst, "istio", lambda pin: done.append(pin.name))
    inst.install(["istio", "gateway-api"], load_pins(), gateway_node_port=30080)
    assert done == ["gateway-api", "istio"]
    assert lines[0].startswith("gateway-api v1.6.1 ready (")


def test_fixtures_are_found_from_the_package() -> None:
    assert (addons.fixtures_dir() / "kind-config.yaml").is_file()


# -- failures that explain themselves ----------------------------------------------------------

CONTROLLER_IMAGE = (
    "registry.k8s.io/ingress-nginx/controller:v1.15.1@sha256:"
    "594ceea76b01c592858f803f9ff4d2cb40542cae2060410b2c95f75907d659e1"
)
PULL_FAILED = (
    f'Failed to pull image "{CONTROLLER_IMAGE}": failed to pull and unpack image: failed to '
    "resolve reference: dial tcp: lookup registry.k8s.io on 10.96.0.10:53: no such host"
)


def stuck_controller(reason: str = "ImagePullBackOff") -> dict[str, Any]:
    """``kubectl get pods -n ingress-nginx -o json`` while the controller image cannot be
    pulled (kubelet: ErrImagePull, then ImagePullBackOff)."""
    return {
        "items": [
            {
                "metadata": {
                    "name": "ingress-nginx-controller-6d9f-x2x",
                    "namespace": "ingress-nginx",
                },
                "status": {
                    "phase": "Pending",
                    "containerStatuses": [
                        {
                            "name": "controller",
                            "ready": False,
                            "restartCount": 0,
                            "image": CONTROLLER_IMAGE,
                            "state": {
                                "waiting": {
                                    "reason": reason,
                                    "message": f'Back-off pulling image "{CONTROLLER_IMAGE}"',
                                }
                            },
                        }
                    ],
                },
            }
        ]
    }


EVENTS = {
    "items": [
        {
            "type": "Normal",
            "reason": "Pulling",
            "involvedObject": {"kind": "Pod", "name": "ingress-nginx-controller-6d9f-x2x"},
            "message": f'Pulling image "{CONTROLLER_IMAGE}"',
        },
        {
            "type": "Warning",
            "reason": "Failed",
            "involvedObject": {"kind": "Pod", "name": "ingress-nginx-controller-6d9f-x2x"},
            "message": PULL_FAILED,
        },
    ]
}


def test_an_add_on_pod_in_image_pull_back_off_fails_in_seconds_with_its_event(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    """The controller cannot pull its image: ``kubectl rollout status`` would wait its whole
    timeout (here 600 s). The install stops at the next look at the pods instead, and the
    error carries the stuck pod, the warning event and what kubectl printed so far."""
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text("kind: List\n")
    kubectl.rule(
        "rollout status",
        out='Waiting for deployment "ingress-nginx-controller" rollout to finish: 0 of 1 '
        "updated replicas are available...\n",
        sleep=600,
    )
    # The pod turns out stuck once kubectl has said what it waits for (as a real one does
    # at once); before that the watch sees no pod yet.
    kubectl.rule("get pods -n ingress-nginx", out=stuck_controller(), after="rollout status")
    kubectl.rule("get pods -n ingress-nginx", out={"items": []})
    kubectl.rule("get events -n ingress-nginx", out=EVENTS)
    inst = installer(kubectl, tmp_path, timeout=600, **{"ingress-nginx": str(manifest)})
    started = time.monotonic()
    with pytest.raises(AddonFailure) as caught:
        inst.install(["ingress-nginx"], load_pins(), gateway_node_port=30080)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert (
        message.startswith("installing ingress-nginx: ")
        and "stopped: a pod of the add-on will not become ready" in message
    )
    assert (
        "pod ingress-nginx-controller-6d9f-x2x: container controller: ImagePullBackOff" in message
    )
    assert f"Failed Pod/ingress-nginx-controller-6d9f-x2x: {PULL_FAILED}" in message
    assert "0 of 1 updated replicas are available" in message  # the tool's own output
    assert "Pulling image" not in message  # normal events are left out


def test_err_image_pull_fails_the_install_only_once_it_lasts(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text("kind: List\n")
    kubectl.rule("rollout status", sleep=600)
    kubectl.rule("get pods -n ingress-nginx", out=stuck_controller("ErrImagePull"))
    kubectl.rule("get events -n ingress-nginx", out=EVENTS)
    inst = installer(kubectl, tmp_path, timeout=600, **{"ingress-nginx": str(manifest)})
    started = time.monotonic()
    with pytest.raises(AddonFailure, match="container controller: ErrImagePull"):
        inst.install(["ingress-nginx"], load_pins(), gateway_node_port=30080)
    assert 1.0 <= time.monotonic() - started < 10  # lasting=1 s in this installer


def test_a_tool_gets_its_own_timeout_and_its_output_is_kept(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    """kubectl's ``--timeout`` is the installer's; the process is stopped only
    TOOL_GRACE seconds later, so a kubectl that gives up prints why and that reaches the
    error."""
    kubectl.rule(
        "wait --for=condition=Established",
        rc=1,
        err="error: timed out waiting for the condition on customresourcedefinitions/httproutes\n",
    )
    crd = {"metadata": {"annotations": {"gateway.networking.k8s.io/bundle-version": "v1.6.1"}}}
    kubectl.rule("get crd httproutes.gateway.networking.k8s.io", out=crd)
    inst = installer(kubectl, tmp_path, timeout=7)
    with pytest.raises(AddonFailure) as caught:
        inst.install(["gateway-api"], load_pins(), gateway_node_port=30080)
    message = str(caught.value)
    assert "--timeout=7s" in message and "failed (exit 1)" in message
    assert "timed out waiting for the condition on customresourcedefinitions/httproutes" in message
    assert addons.TOOL_GRACE > 0


ADMISSION_PATCH_JOB = "ingress-nginx-admission-patch"


def admission_pods(restarts: int) -> dict[str, Any]:
    """``kubectl get pods -n ingress-nginx -o json`` while the certgen ``patch`` Job's pod
    crash-loops: it errors while the secret the ``create`` Job writes does not exist yet
    (images/kube-webhook-certgen/rootfs/cmd/patch.go "no secret with ..."), and its Job
    restarts it (deploy/static/provider/kind/deploy.yaml ``restartPolicy: OnFailure``)."""
    return {
        "items": [
            {
                "metadata": {
                    "name": f"{ADMISSION_PATCH_JOB}-7xk2p",
                    "namespace": "ingress-nginx",
                    "ownerReferences": [
                        {"apiVersion": "batch/v1", "kind": "Job", "name": ADMISSION_PATCH_JOB}
                    ],
                },
                "status": {
                    "phase": "Running",
                    "containerStatuses": [
                        {
                            "name": "patch",
                            "restartCount": restarts,
                            "state": {
                                "waiting": {
                                    "reason": "CrashLoopBackOff",
                                    "message": "back-off 10s restarting failed container=patch",
                                }
                            },
                        }
                    ],
                },
            }
        ]
    }


def admission_job(failed: bool) -> dict[str, Any]:
    status: dict[str, Any] = {"active": 1}
    if failed:
        status = {
            "failed": 1,
            "conditions": [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                }
            ],
        }
    return {
        "items": [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": ADMISSION_PATCH_JOB, "namespace": "ingress-nginx"},
                "spec": {"template": {"spec": {"restartPolicy": "OnFailure"}}},
                "status": status,
            }
        ]
    }


def test_the_admission_patch_jobs_crash_at_start_does_not_fail_the_install(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    """The normal start of ingress-nginx on kind: the patch Job's pod is in CrashLoopBackOff
    (several restarts) while the controller rolls out. Its Job has not failed, so the
    install goes on; the rollout finishes only after the watch has seen that pod and its
    Job."""
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text("kind: List\n")
    kubectl.rule("get pods -n ingress-nginx", out=admission_pods(restarts=4))
    kubectl.rule("get jobs -n ingress-nginx", out=admission_job(failed=False))
    kubectl.rule("rollout status", until="get jobs -n ingress-nginx")
    inst = installer(kubectl, tmp_path, timeout=60, **{"ingress-nginx": str(manifest)})
    inst.install(["ingress-nginx"], load_pins(), gateway_node_port=30080)
    assert "get jobs -n ingress-nginx -o json --ignore-not-found" in kubectl.log
    assert "apply --dry-run=server -f -" in kubectl.log  # went on to the webhook


def test_a_job_that_failed_for_good_fails_the_install_with_its_reason(
    kubectl: FakeKubectl, tmp_path: Path
) -> None:
    manifest = tmp_path / "deploy.yaml"
    manifest.write_text("kind: List\n")
    kubectl.rule("get pods -n ingress-nginx", out=admission_pods(restarts=6))
    kubectl.rule("get jobs -n ingress-nginx", out=admission_job(failed=True))
    kubectl.rule("rollout status", sleep=600)
    inst = installer(kubectl, tmp_path, timeout=600, **{"ingress-nginx": str(manifest)})
    with pytest.raises(AddonFailure) as caught:
        inst.install(["ingress-nginx"], load_pins(), gateway_node_port=30080)
    assert (
        f"job {ADMISSION_PATCH_JOB} failed: BackoffLimitExceeded: Job has reached the "
        "specified backoff limit"
    ) in str(caught.value)


def test_a_stuck_istioctl_is_stopped_after_its_per_component_waits_and_says_so(
    kubectl: FakeKubectl, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = b"#!/bin/sh\necho '- Processing resources for Istiod.'\nexec sleep 60\n"
    archive = tmp_path / "istioctl.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("istioctl")
        info.size = len(script)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(script))
    monkeypatch.setattr(addons, "TOOL_GRACE", 1.0)
    inst = installer(kubectl, tmp_path, timeout=3, istio=str(archive))
    with pytest.raises(AddonFailure) as caught:
        inst.istio(load_pins()["istio"], gateway_node_port=30080)
    message = str(caught.value)
    assert (
        "did not finish within 4s (--readiness-timeout=1s for each of base, istiod and the "
        "ingress gateway in turn + 1s)"
    ) in message
    assert "Processing resources for Istiod" in message
