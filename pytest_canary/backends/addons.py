"""Pinned cluster add-ons for the kind backend: download once, install idempotently, wait.

Pins live in ``fixtures/addons.yaml`` (versions, URLs, digests). :class:`Downloads` keeps one
copy of each file in a cache directory (``~/.cache/pytest-canary/downloads`` unless told
otherwise), verifies it, and takes local files instead for air-gapped machines.
:class:`AddonInstaller` installs, in order:

1. **gateway-api** -- ``standard-install.yaml`` with ``kubectl apply --server-side`` (the CRDs
   are too large for client-side apply's annotation), then every CRD ``Established``;
2. **ingress-nginx** -- the kind provider manifest with ``kubectl apply``, then the controller
   rolled out and ready (``kubectl wait -n ingress-nginx --for=condition=ready pod -l
   app.kubernetes.io/component=controller``, UPSTREAM.md), then a server-side dry-run Ingress
   retried until the admission webhook answers;
3. **istio** -- ``istioctl install -y -f <overlay>`` (default profile, ingress gateway as a
   NodePort Service with the nodePort kind maps), which waits for readiness itself, then the
   ingress gateway rolled out;
4. **argo-rollouts** (on demand: when a test first needs the controller, or at setup when
   ``--canary-addons`` names it) -- namespace ``argo-rollouts`` (its ClusterRoleBinding
   names the ServiceAccount there), the release's ``install.yaml`` applied server-side in
   it, its five CRDs ``Established``, the controller Deployment ``argo-rollouts`` rolled out
   and its pod (``app.kubernetes.io/name=argo-rollouts``) Ready.

An add-on already present at the pinned version is left alone (only its readiness is waited
for); another version is upgraded in place by the same install, with a progress line saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform as platform_module
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_canary.backends import waits
from pytest_canary.backends.versions import Window, window_of
from pytest_canary.errors import BackendError, CanaryConfigError, ConvergenceTimeout
from pytest_canary.locks import file_lock
from pytest_canary.yaml_loader import YamlBudget, YamlLimits, load_all, read_text


@dataclass(frozen=True)
class Addon:
    """One row of the add-on table.

    Attributes:
        name: the add-on (its key in ``fixtures/addons.yaml``).
        install: the :class:`AddonInstaller` method that installs it and waits for it.
        namespace: where its pods run: watched while it installs, so that a pod stuck for a
            reason that will not heal fails the install within a minute (None: no pods).
        on_demand: installed at setup only when ``--canary-addons`` names it, otherwise
            when a test first needs it (not part of the default set :data:`ADDONS`).
    """

    name: str
    install: str
    namespace: str | None
    on_demand: bool = False


ADDON_TABLE: tuple[Addon, ...] = (
    Addon("gateway-api", "gateway_api", None),
    Addon("ingress-nginx", "ingress_nginx", "ingress-nginx"),
    Addon("istio", "istio", "istio-system"),
    Addon("argo-rollouts", "argo_rollouts", "argo-rollouts", on_demand=True),
)
"""Every add-on, in install order (Gateway API CRDs before Istio, which serves them). One
more add-on is one more row, one entry in ``fixtures/addons.yaml`` and one install method."""

ADDONS = tuple(addon.name for addon in ADDON_TABLE if not addon.on_demand)
"""The add-ons installed at setup by default (``--canary-addons`` unset)."""
ALL_ADDONS = tuple(addon.name for addon in ADDON_TABLE)
"""Every add-on ``--canary-addons`` and ``--canary-addon-file`` accept."""
BY_NAME = {addon.name: addon for addon in ADDON_TABLE}

ADDON_FILE_LIMITS = YamlLimits(
    max_bytes=64 * 1024 * 1024, max_documents=1000, max_nodes=5_000_000, max_depth=200
)
"""Bounds of an add-on file read here: CRD bundles are large (deep OpenAPI schemas)."""

GATEWAY_API_CORE = ("gatewayclasses", "gateways", "httproutes")
"""CRDs of the standard channel the gateway strategy uses."""

ISTIO_GATEWAY = "istio-system/istio-ingressgateway"
"""The Service the Istio overlay creates; istio and gateway traffic enters there."""

ARGO_NAMESPACE = "argo-rollouts"
"""Where Argo Rollouts runs: its ``install.yaml`` ClusterRoleBinding names the ServiceAccount
``argo-rollouts`` in this namespace (argoproj/argo-rollouts v1.9.1 ``manifests/install.yaml``)."""
ARGO_CONTROLLER = "argo-rollouts"
"""The controller Deployment of ``install.yaml`` (selector
``app.kubernetes.io/name: argo-rollouts``)."""
ARGO_CRDS = (
    "rollouts",
    "analysisruns",
    "analysistemplates",
    "clusteranalysistemplates",
    "experiments",
)
"""The CRDs (``<plural>.argoproj.io``) ``install.yaml`` brings."""

TOOL_GRACE = 30.0
"""Seconds a tool may run past its own ``--timeout`` before it is stopped: it prints why it
gave up, and that output reaches the error."""
ISTIO_WAIT_CHAIN = 3
"""Components ``istioctl install`` waits for one after the other in the default profile
(base, istiod, ingress gateway: istio 1.30.3 operator/pkg/install/install.go
``componentDependencies``); ``--readiness-timeout`` holds for each of them."""
WATCH_EVERY = 2.0
"""Seconds between two looks at an add-on's pods while it installs."""
QUICK_TIMEOUT = 30.0
"""Seconds for a short kubectl read (object state, pods, events)."""
DOWNLOAD_LOCK_TIMEOUT = 900.0
"""Seconds a download waits for another session's download of the same file."""

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default progress sink: drop the line."""


class AddonFailure(BackendError):
    """An add-on did not install: the message carries the command, why it stopped, the
    add-on's pods and warning events, and the tool's output."""


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())


def _pod_state(pod: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    reasons = [
        str(((cs.get("state") or {}).get("waiting") or {}).get("reason"))
        for cs in list(status.get("initContainerStatuses") or [])
        + list(status.get("containerStatuses") or [])
        if ((cs.get("state") or {}).get("waiting") or {}).get("reason")
    ]
    return f"{meta.get('name')} {status.get('phase', '?')}" + (
        f" ({', '.join(reasons)})" if reasons else ""
    )


def _event_line(event: Mapping[str, Any]) -> str:
    obj = event.get("involvedObject") or {}
    return (
        f"{event.get('reason', '')} {obj.get('kind', '')}/{obj.get('name', '')}: "
        f"{event.get('message', '')}"
    )


def fixtures_dir() -> Path:
    """The ``fixtures`` directory: next to the package in a checkout, or shipped inside it
    as ``pytest_canary/data/fixtures`` in a wheel."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package.parent / "fixtures", package / "data" / "fixtures"):
        if (candidate / "addons.yaml").is_file():
            return candidate
    raise BackendError(
        f"cannot find fixtures/addons.yaml next to {package} (checkout) or in "
        f"{package / 'data' / 'fixtures'} (installed package)"
    )


def host_platform() -> str:
    """``<os>/<arch>`` in Go's spelling: ``linux/amd64``, ``darwin/arm64``, ..."""
    system = platform_module.system().lower()
    machine = platform_module.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(
        machine, machine
    )
    return f"{system}/{arch}"


@dataclass(frozen=True)
class Pin:
    """One pinned add-on file.

    Attributes:
        name: the add-on (``gateway-api``, ``ingress-nginx``, ``istio``).
        version: the upstream version; an add-on at this version is kept as it is.
        url: download URL; ``{platform}`` is replaced for per-platform binaries.
        file: name of the cached copy (same placeholder).
        sha256: expected digest; a mapping (platform -> digest) for per-platform files;
            empty when none is pinned (see ``fixtures/addons.yaml``).
        checksum_url: URL of a published ``sha256sum`` line to verify against (``{url}``).
        platforms: Go platform -> the spelling in the URL.
        extra: any other keys (e.g. ``operator``, the istioctl overlay).
        kubernetes: the Kubernetes versions it supports (None: not pinned).
    """

    name: str
    version: str
    url: str
    file: str
    sha256: str | Mapping[str, str] = ""
    checksum_url: str | None = None
    platforms: Mapping[str, str] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    kubernetes: Window | None = None

    def resolve(self, platform: str) -> tuple[str, str, str]:
        """(url, file, sha256) for ``platform``.

        Raises:
            BackendError: when the add-on has no build for that platform.
        """
        spelled = ""
        if self.platforms:
            if platform not in self.platforms:
                raise BackendError(
                    f"{self.name} {self.version} has no build for {platform} (pinned: "
                    f"{', '.join(self.platforms)})"
                )
            spelled = self.platforms[platform]
        digest = self.sha256.get(platform, "") if isinstance(self.sha256, Mapping) else self.sha256
        return (
            self.url.replace("{platform}", spelled),
            self.file.replace("{platform}", spelled),
            str(digest or ""),
        )


def load_pins(path: Path | None = None) -> dict[str, Pin]:
    """The pins of ``fixtures/addons.yaml`` (or ``path``), by add-on name.

    Raises:
        BackendError: when the file lacks an add-on or a required key.
    """
    source = path or fixtures_dir() / "addons.yaml"
    raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    pins: dict[str, Pin] = {}
    for name in ALL_ADDONS:
        entry = raw.get(name)
        if not isinstance(entry, Mapping):
            raise BackendError(f"{source}: no entry for add-on {name!r}")
        missing = [k for k in ("version", "url", "file") if not entry.get(k)]
        if missing:
            raise BackendError(f"{source}: add-on {name!r} lacks {', '.join(missing)}")
        known = {"version", "url", "file", "sha256", "checksum_url", "platforms", "kubernetes"}
        window = entry.get("kubernetes")
        pins[name] = Pin(
            name=name,
            version=str(entry["version"]),
            url=str(entry["url"]),
            file=str(entry["file"]),
            sha256=entry.get("sha256") or "",
            checksum_url=entry.get("checksum_url"),
            platforms=dict(entry.get("platforms") or {}),
            extra={k: v for k, v in entry.items() if k not in known},
            kubernetes=window_of(f"{name} {entry['version']}", window)
            if isinstance(window, Mapping)
            else None,
        )
    return pins


@dataclass(frozen=True)
class KindPin:
    """The kind release pytest-canary needs and the node image from its release notes."""

    minimum: str
    node_image: str


def load_kind_pin(path: Path | None = None) -> KindPin:
    """The ``kind`` entry of ``fixtures/addons.yaml`` (or ``path``).

    Raises:
        BackendError: when it is missing or incomplete.
    """
    source = path or fixtures_dir() / "addons.yaml"
    raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    entry = raw.get("kind")
    if not isinstance(entry, Mapping) or not entry.get("minimum") or not entry.get("node_image"):
        raise BackendError(f"{source}: the kind entry needs minimum and node_image")
    return KindPin(str(entry["minimum"]), str(entry["node_image"]))


def parse_addons(value: str) -> tuple[str, ...]:
    """``ingress-nginx,istio`` -> the add-ons in install order (``none`` for none).

    Raises:
        CanaryConfigError: for an unknown add-on.
    """
    names = [n.strip() for n in value.split(",") if n.strip() and n.strip() != "none"]
    unknown = [n for n in names if n not in ALL_ADDONS]
    if unknown:
        raise CanaryConfigError(
            f"add-ons {value!r}: unknown {', '.join(unknown)}; known: "
            f"{', '.join(ALL_ADDONS)} (or none)"
        )
    return tuple(n for n in ALL_ADDONS if n in names)


def parse_addon_files(values: Sequence[str]) -> dict[str, str]:
    """``NAME=PATH`` items -> {add-on: path}, for air-gapped installs.

    Raises:
        CanaryConfigError: for a malformed item, an unknown add-on or a missing file.
    """
    files: dict[str, str] = {}
    for item in values:
        name, sep, path = item.partition("=")
        if not sep or name not in ALL_ADDONS:
            raise CanaryConfigError(
                f"add-on file {item!r}: must be NAME=PATH with NAME one of {', '.join(ALL_ADDONS)}"
            )
        if not Path(path).expanduser().is_file():
            raise CanaryConfigError(f"add-on file {item!r}: {path} is not a file")
        files[name] = str(Path(path).expanduser())
    return files


def sha256_of(path: Path) -> str:
    """Hex digest of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# -- downloads ------------------------------------------------------------------------------


class Downloads:
    """One verified copy of each pinned file.

    Args:
        cache_dir: the cache root (files go to ``<cache_dir>/downloads``).
        overrides: add-on -> local file to use instead of downloading (air-gapped machines).
        progress: receives a line per download.
        get: HTTP GET (``requests.get`` signature); injectable for tests.
    """

    def __init__(
        self,
        cache_dir: Path,
        *,
        overrides: Mapping[str, str] | None = None,
        progress: Progress = _quiet,
        get: Callable[..., Any] | None = None,
    ) -> None:
        self.directory = cache_dir / "downloads"
        self.overrides = dict(overrides or {})
        self.progress = progress
        self._get = get

    def _http_get(self, url: str, **kwargs: Any) -> Any:
        if self._get is not None:
            return self._get(url, **kwargs)
        import requests

        return requests.get(url, **kwargs)

    def fetch(self, pin: Pin, platform: str) -> Path:
        """The verified local file of ``pin`` for ``platform``.

        Raises:
            BackendError: when it cannot be downloaded (with the air-gapped alternative) or
                does not match its digest.
        """
        url, name, pinned = pin.resolve(platform)
        if pin.name in self.overrides:
            path = Path(self.overrides[pin.name])
            self._verify(path, pinned, f"{pin.name} file {path} (--canary-addon-file)")
            return path
        cached = self.directory / name
        recorded = cached.with_name(cached.name + ".sha256")
        if cached.is_file():
            expected = pinned or (recorded.read_text().split()[0] if recorded.is_file() else "")
            self._verify(cached, expected, f"cached {cached}")
            return cached
        self.directory.mkdir(parents=True, exist_ok=True)
        with file_lock(
            str(cached) + ".lock",
            timeout=DOWNLOAD_LOCK_TIMEOUT,
            what=f"the download of {pin.name} {pin.version}",
            progress=self.progress,
        ):
            if cached.is_file():  # another process finished it meanwhile
                return self.fetch(pin, platform)
            digest = self._download(pin, url, cached, pinned)
            recorded.write_text(f"{digest}  {name}\n")
        return cached

    def _download(self, pin: Pin, url: str, target: Path, pinned: str) -> str:
        self.progress(f"downloading {pin.name} {pin.version} from {url}")
        started = time.monotonic()
        partial = target.with_name(target.name + ".part")
        try:
            # A streamed response holds its connection until closed, on every path.
            streamed = self._http_get(url, stream=True, timeout=(10, 120))
            with contextlib.closing(streamed) as response:
                response.raise_for_status()
                digest = hashlib.sha256()
                size = 0
                with partial.open("wb") as handle:
                    for chunk in response.iter_content(chunk_size=1 << 20):
                        handle.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
        except Exception as exc:
            partial.unlink(missing_ok=True)
            raise BackendError(
                f"could not download {pin.name} {pin.version} from {url}: {exc}. Offline? "
                f"Fetch that file on a connected machine and pass --canary-addon-file "
                f"{pin.name}=PATH, or copy it to {target}"
            ) from exc
        actual = digest.hexdigest()
        expected = pinned or self._published_digest(pin, url)
        if expected and actual != expected:
            partial.unlink(missing_ok=True)
            raise BackendError(
                f"{pin.name} {pin.version} from {url} has sha256 {actual}, expected {expected}: "
                "refusing to use it"
            )
        partial.replace(target)
        how = "verified" if expected else "recorded (no published digest)"
        self.progress(
            f"downloaded {pin.name} {pin.version} ({size / 1e6:.1f} MB, "
            f"{time.monotonic() - started:.1f}s); sha256 {actual} {how}"
        )
        return actual

    def _published_digest(self, pin: Pin, url: str) -> str:
        if not pin.checksum_url:
            return ""
        checksum_url = pin.checksum_url.replace("{url}", url)
        try:
            response = self._http_get(checksum_url, timeout=(10, 30))
            response.raise_for_status()
            text = str(response.text)
        except Exception as exc:
            raise BackendError(
                f"could not read the published checksum {checksum_url} of {pin.name}: {exc}"
            ) from exc
        words = text.split()
        if not words or len(words[0]) != 64:
            raise BackendError(f"{checksum_url} holds no sha256 digest: {text[:100]!r}")
        return words[0].lower()

    @staticmethod
    def _verify(path: Path, expected: str, what: str) -> None:
        if not path.is_file():
            raise BackendError(f"{what} does not exist")
        if expected:
            actual = sha256_of(path)
            if actual != expected.lower():
                raise BackendError(
                    f"{what} has sha256 {actual}, expected {expected}: delete it to download "
                    "again, or check where it came from"
                )


def extract_istioctl(archive: Path, directory: Path) -> Path:
    """The ``istioctl`` binary from its release tarball (extracted once, next to it).

    Raises:
        BackendError: when the archive holds no ``istioctl``.
    """
    binary = directory / f"{archive.name.removesuffix('.tar.gz')}" / "istioctl"
    if binary.is_file():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        member = next((m for m in tar.getmembers() if Path(m.name).name == "istioctl"), None)
        if member is None or not member.isfile():
            raise BackendError(f"{archive} holds no istioctl binary")
        source = tar.extractfile(member)
        assert source is not None
        partial = binary.with_name("istioctl.part")
        with source, partial.open("wb") as handle:
            handle.write(source.read())
    partial.chmod(0o755)
    partial.replace(binary)
    return binary


def istio_operator(pin: Pin, gateway_node_port: int) -> dict[str, Any]:
    """The ``istioctl install -f`` overlay with the ingress gateway's nodePort set."""
    overlay = json.loads(json.dumps(pin.extra.get("operator") or {}))
    gateways = overlay["spec"]["components"]["ingressGateways"]
    for port in gateways[0]["k8s"]["service"]["ports"]:
        if port.get("port") == 80:
            port["nodePort"] = gateway_node_port
    return dict(overlay)


def version_in_image(image: str) -> str:
    """The tag of an image reference (digest dropped): ``...controller:v1.15.1@sha256:..``
    -> ``v1.15.1``."""
    reference = image.split("@", 1)[0]
    name, _, tag = reference.rpartition(":")
    return tag if name and "/" not in tag else ""


# -- installing ---------------------------------------------------------------------------------


class AddonInstaller:
    """Installs pinned add-ons into a cluster with ``kubectl`` and ``istioctl``.

    Every tool that waits gets its own ``--timeout`` (``timeout``); the process itself may run
    :data:`TOOL_GRACE` seconds longer, so that a tool that gives up prints why before it is
    stopped. While a tool runs, the add-on's pods are watched: one stuck for a reason that
    will not heal (:class:`~pytest_canary.backends.waits.TerminalWatch`: an image that cannot
    be pulled, a crash loop, a pod no node can take) stops the install within a minute, and the
    error carries those pods, the namespace's warning events and the tool's output.

    Args:
        kubectl: path of kubectl.
        kubeconfig: the cluster's kubeconfig file.
        downloads: where the pinned files come from.
        timeout: seconds for each install and each readiness wait (the tools' own timeout).
        progress: receives a line per step.
        platform: ``os/arch`` of this machine (for istioctl).
        watch_every: seconds between two looks at the add-on's pods.
        lasting: seconds a reason a retry may still clear must last to count as terminal.
    """

    def __init__(
        self,
        kubectl: str,
        kubeconfig: Path,
        downloads: Downloads,
        *,
        timeout: float = 600.0,
        progress: Progress = _quiet,
        platform: str | None = None,
        watch_every: float = WATCH_EVERY,
        lasting: float = waits.LASTING,
    ) -> None:
        self.kubectl_path = kubectl
        self.kubeconfig = kubeconfig
        self.downloads = downloads
        self.timeout = timeout
        self.progress = progress
        self.platform = platform or host_platform()
        self.watch_every = watch_every
        self.lasting = lasting
        self._addon: Addon | None = None
        self._watch = waits.TerminalWatch(lasting)
        self.gateway_node_port: int | None = None

    # -- tools ------------------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig))

    def run(
        self,
        *args: str,
        timeout: float | None = None,
        stdin: str | None = None,
        evidence: bool = True,
        budget: str = "its own timeout",
    ) -> str:
        """Run a command (kubectl or istioctl path first) and return stdout; while it runs,
        watch the current add-on's pods.

        ``timeout`` is the longest the tool may wait by its own flags (default: the
        installer's), ``budget`` says which flags those are; the process is stopped
        :data:`TOOL_GRACE` seconds after it. Without ``evidence`` a failure carries the
        tool's output only (for attempts that are expected to fail and are retried).

        Raises:
            AddonFailure: when it fails, overruns, or a pod of the add-on is stuck; with the
                command, its output, the pods and the events.
        """
        limit = (timeout or self.timeout) + TOOL_GRACE
        try:
            process = subprocess.Popen(
                list(args),
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=self._env(),
            )
        except OSError as exc:
            raise AddonFailure(f"cannot run {args[0]}: {exc}") from exc
        started = time.monotonic()
        pending = stdin
        while True:
            left = limit - (time.monotonic() - started)
            try:
                out, err = process.communicate(
                    input=pending, timeout=max(0.0, min(self.watch_every, left))
                )
                break
            except subprocess.TimeoutExpired:
                pending = None  # sent with the first call; the output is kept between calls
            stuck = self._stuck_pods()
            if stuck or time.monotonic() - started >= limit:
                process.kill()
                out, err = process.communicate()
                why = (
                    "stopped: a pod of the add-on will not become ready"
                    if stuck
                    else f"did not finish within {limit:.0f}s ({budget} + {TOOL_GRACE:.0f}s)"
                )
                raise self.failure(" ".join(args), why, out, err, stuck)
        if process.returncode != 0:
            why = f"failed (exit {process.returncode})"
            if not evidence:
                tail = "\n".join((err.strip() + "\n" + out.strip()).strip().splitlines()[-15:])
                raise AddonFailure(f"{' '.join(args)} {why}:\n{tail}")
            raise self.failure(" ".join(args), why, out, err, self._stuck_pods())
        return out

    def kubectl(
        self,
        *args: str,
        timeout: float | None = None,
        stdin: str | None = None,
        evidence: bool = True,
    ) -> str:
        """Run kubectl against the cluster (see :meth:`run`)."""
        return self.run(
            self.kubectl_path,
            f"--kubeconfig={self.kubeconfig}",
            *args,
            timeout=timeout,
            stdin=stdin,
            evidence=evidence,
        )

    def _quick(self, *args: str) -> str:
        """A short kubectl read, outside the watch (its failure is returned as its text)."""
        try:
            done = subprocess.run(
                [self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args],
                capture_output=True,
                text=True,
                env=self._env(),
                timeout=QUICK_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"(kubectl {' '.join(args)}: {exc})"
        if done.returncode != 0:
            return f"(kubectl {' '.join(args)}: {(done.stderr or done.stdout).strip()[-300:]})"
        return done.stdout

    def get_json(self, *args: str) -> dict[str, Any] | None:
        """``kubectl get ... -o json``, or None when the object does not exist."""
        out = self._quick("get", *args, "-o", "json", "--ignore-not-found")
        if not out.strip() or out.startswith("(kubectl"):
            return None
        try:
            result: dict[str, Any] = json.loads(out)
        except ValueError:
            return None
        return result

    # -- watching ---------------------------------------------------------------------------

    def _pods(self, namespace: str) -> list[dict[str, Any]]:
        listing = self.get_json("pods", "-n", namespace)
        return list((listing or {}).get("items") or [])

    def _stuck_pods(self) -> list[str]:
        """The current add-on's pods stuck for a reason that will not heal (empty: none);
        pods of a Job are judged by their Job (:class:`~.waits.TerminalWatch`)."""
        if self._addon is None or self._addon.namespace is None:
            return []
        pods = self._pods(self._addon.namespace)
        jobs: list[dict[str, Any]] = []
        if any(
            ref.get("kind") == "Job"
            for pod in pods
            for ref in (pod.get("metadata") or {}).get("ownerReferences") or []
        ):
            listing = self.get_json("jobs", "-n", self._addon.namespace)
            jobs = list((listing or {}).get("items") or [])
        return self._watch.look(pods, jobs)

    def failure(
        self, command: str, why: str, out: str, err: str, stuck: Sequence[str] = ()
    ) -> AddonFailure:
        """An :class:`AddonFailure` carrying the evidence: the stuck pods, the add-on's pods
        and warning events, and the tail of the tool's output."""
        addon = self._addon.name if self._addon is not None else "add-on"
        parts = [f"installing {addon}: {command} {why}"]
        if stuck:
            parts.append("stuck:\n" + "\n".join(f"  {line}" for line in stuck))
        tail = "\n".join((err.strip() + "\n" + out.strip()).strip().splitlines()[-25:])
        if tail:
            parts.append("its output (last lines):\n" + _indent(tail))
        namespace = self._addon.namespace if self._addon is not None else None
        if namespace is not None:
            pods = self._pods(namespace)
            lines = [_pod_state(p) for p in pods] or ["(none)"]
            parts.append(f"pods in {namespace}:\n" + _indent("\n".join(lines)))
            events = self.get_json("events", "-n", namespace)
            warnings = [e for e in (events or {}).get("items") or [] if e.get("type") == "Warning"]
            parts.append(
                f"warning events in {namespace}:\n"
                + _indent("\n".join(_event_line(e) for e in warnings[-15:]) or "(none)")
            )
        return AddonFailure("\n".join(parts))

    # -- add-ons ----------------------------------------------------------------------------

    def install(
        self, names: Sequence[str], pins: Mapping[str, Pin], *, gateway_node_port: int
    ) -> None:
        """Install ``names`` (in :data:`ADDON_TABLE` order), each followed by its readiness
        wait."""
        for addon in ADDON_TABLE:
            if addon.name not in names:
                continue
            started = time.monotonic()
            self._addon, self._watch = addon, waits.TerminalWatch(self.lasting)
            self.gateway_node_port = gateway_node_port
            try:
                getattr(self, addon.install)(pins[addon.name])
            finally:
                self._addon = None
            self.progress(
                f"{addon.name} {pins[addon.name].version} ready ({time.monotonic() - started:.0f}s)"
            )

    def gateway_api(self, pin: Pin) -> None:
        """Gateway API CRDs (standard channel), then each CRD Established."""
        crd = self.get_json("crd", "httproutes.gateway.networking.k8s.io")
        present = (
            ((crd or {}).get("metadata") or {})
            .get("annotations", {})
            .get("gateway.networking.k8s.io/bundle-version")
        )
        if present == pin.version:
            self.progress(f"gateway-api {pin.version} already installed")
            names = [f"crd/{plural}.gateway.networking.k8s.io" for plural in GATEWAY_API_CORE]
        else:
            path = self.downloads.fetch(pin, self.platform)
            self.progress(
                f"installing gateway-api {pin.version}"
                + (f" (replacing {present})" if present else "")
            )
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
            # A file the user may have given (--canary-addon-file): read within bounds sized
            # for CRD bundles.
            budget = YamlBudget(ADDON_FILE_LIMITS)
            names = [
                f"crd/{doc['metadata']['name']}"
                for doc in load_all(read_text(path, budget), str(path), budget)
                if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
            ]
        if names:
            self.kubectl(
                "wait", "--for=condition=Established", f"--timeout={int(self.timeout)}s", *names
            )

    def ingress_nginx(self, pin: Pin) -> None:
        """The kind manifest; the controller rolled out and Ready; the webhook answering."""
        deployment = self.get_json("deployment", "-n", "ingress-nginx", "ingress-nginx-controller")
        containers = (((deployment or {}).get("spec") or {}).get("template") or {}).get(
            "spec", {}
        ).get("containers") or [{}]
        present = version_in_image(str(containers[0].get("image", "")))
        wanted = pin.version.removeprefix("controller-")
        if present == wanted:
            self.progress(f"ingress-nginx {pin.version} already installed")
        else:
            path = self.downloads.fetch(pin, self.platform)
            self.progress(
                f"installing ingress-nginx {pin.version}"
                + (f" (replacing {present})" if present else "")
            )
            self.kubectl("apply", "-f", str(path))
        seconds = f"--timeout={int(self.timeout)}s"
        self.kubectl(
            "rollout",
            "status",
            "-n",
            "ingress-nginx",
            "deployment/ingress-nginx-controller",
            seconds,
        )
        # UPSTREAM.md: wait for the controller pod, then retry while the webhook refuses.
        self.kubectl(
            "wait",
            "-n",
            "ingress-nginx",
            "--for=condition=ready",
            "pod",
            "-l",
            "app.kubernetes.io/component=controller",
            seconds,
        )
        self.await_admission()

    def await_admission(self) -> None:
        """Retry a server-side dry-run Ingress until the admission webhook accepts it."""
        probe = yaml.safe_dump(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": "pytest-canary-webhook-probe", "namespace": "default"},
                "spec": {
                    "ingressClassName": "nginx",
                    "rules": [
                        {
                            "host": "webhook-probe.pytest-canary.invalid",
                            "http": {
                                "paths": [
                                    {
                                        "path": "/",
                                        "pathType": "Prefix",
                                        "backend": {
                                            "service": {"name": "probe", "port": {"number": 80}}
                                        },
                                    }
                                ]
                            },
                        }
                    ],
                },
            }
        )

        def attempt() -> waits.Check:
            try:
                self.kubectl(
                    "apply", "--dry-run=server", "-f", "-", stdin=probe, timeout=30, evidence=False
                )
            except AddonFailure as exc:
                if "failed calling webhook" not in str(exc):
                    raise self.failure(
                        "kubectl apply --dry-run=server (a probe Ingress)", "failed", str(exc), ""
                    ) from None
                stuck = self._stuck_pods()
                if stuck:
                    raise self.failure(
                        "the admission webhook", "does not answer", str(exc), "", stuck
                    ) from None
                return waits.Check(False, str(exc).splitlines()[-1])
            return waits.Check(True, "accepted")

        try:
            waits.wait_until(
                "the ingress-nginx admission webhook",
                "answering (a dry-run Ingress accepted)",
                attempt,
                timeout=self.timeout,
                max_interval=3.0,
                setting="--canary-setup-timeout",
            )
        except ConvergenceTimeout as exc:
            raise self.failure("the admission webhook", str(exc), "", "") from exc

    def istio(self, pin: Pin, *, gateway_node_port: int | None = None) -> None:
        """istioctl install with the kind overlay (the ingress gateway's nodePort
        ``gateway_node_port``, default the one :meth:`install` was given), then the ingress
        gateway rolled out."""
        gateway_node_port = gateway_node_port or self.gateway_node_port
        if gateway_node_port is None:
            raise BackendError("installing istio needs the ingress gateway's nodePort")
        istiod = self.get_json("deployment", "-n", "istio-system", "istiod")
        containers = (((istiod or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get(
            "containers"
        ) or [{}]
        present = version_in_image(str(containers[0].get("image", "")))
        gateway = self.get_json("service", "-n", "istio-system", "istio-ingressgateway")
        node_ports = {
            p.get("nodePort") for p in ((gateway or {}).get("spec") or {}).get("ports") or []
        }
        if present == pin.version and gateway_node_port in node_ports:
            self.progress(f"istio {pin.version} already installed")
        else:
            archive = self.downloads.fetch(pin, self.platform)
            istioctl = extract_istioctl(archive, self.downloads.directory)
            overlay = istio_operator(pin, gateway_node_port)
            self.progress(
                f"installing istio {pin.version} with istioctl (about 1-2 min)"
                + (f" (replacing {present})" if present else "")
            )
            # istioctl waits --readiness-timeout for each component, and a component only
            # after the one it depends on (operator/pkg/install/install.go install,
            # componentDependencies: base, then istiod, then the ingress gateway): a third
            # each keeps the whole install within --canary-setup-timeout.
            per_component = max(1, int(self.timeout // ISTIO_WAIT_CHAIN))
            with tempfile.TemporaryDirectory() as scratch:
                overlay_file = Path(scratch) / "istio-kind.yaml"
                overlay_file.write_text(yaml.safe_dump(overlay), encoding="utf-8")
                self.run(
                    str(istioctl),
                    "install",
                    "-y",
                    "-f",
                    str(overlay_file),
                    f"--kubeconfig={self.kubeconfig}",
                    f"--readiness-timeout={per_component}s",
                    timeout=per_component * ISTIO_WAIT_CHAIN,
                    budget=(
                        f"--readiness-timeout={per_component}s for each of base, istiod and "
                        "the ingress gateway in turn"
                    ),
                )
        self.kubectl(
            "rollout",
            "status",
            "-n",
            "istio-system",
            "deployment/istio-ingressgateway",
            f"--timeout={int(self.timeout)}s",
        )

    def argo_rollouts(self, pin: Pin) -> None:
        """Argo Rollouts: namespace ``argo-rollouts``, the release's ``install.yaml``
        applied server-side in it, the CRDs Established, the controller rolled out and its
        pod Ready. The controller at the pinned version is kept (readiness only)."""
        deployment = self.get_json("deployment", "-n", ARGO_NAMESPACE, ARGO_CONTROLLER)
        containers = (((deployment or {}).get("spec") or {}).get("template") or {}).get(
            "spec", {}
        ).get("containers") or [{}]
        present = version_in_image(str(containers[0].get("image", "")))
        if present == pin.version:
            self.progress(f"argo-rollouts {pin.version} already installed")
        else:
            path = self.downloads.fetch(pin, self.platform)
            self.progress(
                f"installing argo-rollouts {pin.version}"
                + (f" (replacing {present})" if present else "")
            )
            # install.yaml has no namespace of its own: the namespaced objects go to -n, and
            # its ClusterRoleBinding names the ServiceAccount in argo-rollouts (docs/
            # installation.md: "kubectl create namespace argo-rollouts" first).
            namespace = yaml.safe_dump(
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ARGO_NAMESPACE}}
            )
            self.kubectl("apply", "-f", "-", stdin=namespace)
            # Server-side, as gateway-api: no last-applied annotation holding the CRDs.
            self.kubectl(
                "apply", "--server-side", "--force-conflicts", "-n", ARGO_NAMESPACE, "-f", str(path)
            )
        seconds = f"--timeout={int(self.timeout)}s"
        self.kubectl(
            "wait",
            "--for=condition=Established",
            seconds,
            *(f"crd/{plural}.argoproj.io" for plural in ARGO_CRDS),
        )
        self.kubectl(
            "rollout", "status", "-n", ARGO_NAMESPACE, f"deployment/{ARGO_CONTROLLER}", seconds
        )
        self.kubectl(
            "wait",
            "-n",
            ARGO_NAMESPACE,
            "--for=condition=ready",
            "pod",
            "-l",
            f"app.kubernetes.io/name={ARGO_CONTROLLER}",
            seconds,
        )
