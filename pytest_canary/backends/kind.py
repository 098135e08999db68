"""The ``kind`` backend: the ``kube`` backend plus the cluster's life.

:func:`setup_cluster` creates a kind cluster with ``pytest-kind``'s ``KindCluster`` (or reuses
one of that name), from ``fixtures/kind-config.yaml`` with host ports mapped on 127.0.0.1,
installs the pinned add-ons (:mod:`pytest_canary.backends.addons`), all under a file lock so
that concurrent sessions and xdist never create it twice. :class:`KindBackend` runs releases
there: ingress-nginx through the mapped port 80, the Istio gateway through its mapped
nodePort, Service entries through the mapped nodePort pool; sample images are built with
:mod:`pytest_canary.images` and loaded with ``KindCluster.load_docker_image`` on first use.

Never deleted: a cluster this run did not create, or any cluster with ``keep_cluster``.

Example:
    >>> options = KindOptions(keep_cluster=True)                         # doctest: +SKIP
    >>> backend = KindBackend.setup(options, run_id="manual", progress=print)  # doctest: +SKIP
    >>> with Harness(backend.environment("smoke")) as canary:           # doctest: +SKIP
    ...     canary.deploy("nginx", stable="1.0", canary="2.0", weight=20).expect_split(0.2)
    >>> backend.close()                                                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pytest_canary.backends import addons
from pytest_canary.backends.kube import EntryPoints, KubeApi, KubeBackend, KubeOptions
from pytest_canary.errors import BackendError, CanaryConfigError

DEFAULT_CLUSTER = "pytest-canary"
HTTP_PORT = 80
HTTPS_PORT = 443
GATEWAY_NODE_PORT = 30080
"""The Istio ingress gateway's fixed nodePort (``fixtures/addons.yaml`` overlay)."""
NODE_PORT_POOL: tuple[int, ...] = tuple(range(30100, 30120))
"""NodePorts kind maps for per-test entry Services: at most this many at once."""
MAX_NAME = 32  # kind cluster names become container and network names

Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    """Default progress sink: drop the line."""


def default_cache_dir() -> Path:
    """``$PYTEST_CANARY_CACHE_DIR``, else ``$XDG_CACHE_HOME/pytest-canary``, else
    ``~/.cache/pytest-canary``."""
    explicit = os.environ.get("PYTEST_CANARY_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "pytest-canary"


@dataclass(frozen=True)
class KindOptions:
    """The kind cluster to create or reuse (plain, picklable values).

    Attributes:
        cluster: kind cluster name.
        keep_cluster: never delete the cluster at the end (reuse it next session).
        node_image: kind node image (None: kind's default for its version).
        http_port: host port for ingress-nginx (None: a free one).
        gateway_port: host port for the Istio ingress gateway (None: a free one).
        addons: add-ons to install (:data:`~pytest_canary.backends.addons.ADDONS`).
        addon_files: add-on -> local file used instead of downloading.
        cache_dir: downloads, kubeconfigs and lock files.
        setup_timeout: seconds for cluster creation and for each add-on step.
        kube: namespace, wait and keep settings of the environments.
    """

    cluster: str = DEFAULT_CLUSTER
    keep_cluster: bool = False
    node_image: str | None = None
    http_port: int | None = None
    gateway_port: int | None = None
    addons: tuple[str, ...] = addons.ADDONS
    addon_files: Mapping[str, str] = field(default_factory=dict)
    cache_dir: str = field(default_factory=lambda: str(default_cache_dir()))
    setup_timeout: float = 900.0
    kube: KubeOptions = field(default_factory=KubeOptions)

    def describe(self) -> str:
        """One line for the pytest header."""
        keep = "kept" if self.keep_cluster else "deleted at the end if created by this run"
        return (
            f"cluster {self.cluster}, {keep}; add-ons {', '.join(self.addons) or 'none'}; "
            f"keep namespaces {self.kube.keep}"
        )


def parse_cluster_name(value: str) -> str:
    """A kind cluster name: lowercase letters, digits and ``-``."""
    import re

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value) or len(value) > MAX_NAME:
        raise CanaryConfigError(
            f"kind cluster name {value!r}: 1-{MAX_NAME} lowercase letters, digits and '-'"
        )
    return value


def parse_port(value: str, what: str) -> int:
    """A TCP port number 1-65535."""
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise CanaryConfigError(f"{what}={value!r}: must be a TCP port from 1 to 65535")
    return port


# -- ports ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PortMap:
    """Host ports (on 127.0.0.1) of the cluster's entry points."""

    http: int
    https: int
    gateway: int
    node_ports: Mapping[int, int]

    def as_dict(self) -> dict[str, Any]:
        """Plain data (xdist hands it to workers)."""
        data = asdict(self)
        data["node_ports"] = {str(k): v for k, v in self.node_ports.items()}
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PortMap:
        """Inverse of :meth:`as_dict`."""
        return cls(
            http=int(data["http"]),
            https=int(data["https"]),
            gateway=int(data["gateway"]),
            node_ports={int(k): int(v) for k, v in dict(data["node_ports"]).items()},
        )


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` can be bound now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def choose_ports(
    options: KindOptions,
    *,
    free: Callable[[], int] = free_port,
    is_free: Callable[[int], bool] = port_is_free,
) -> PortMap:
    """Host ports for a new cluster: the ones asked for (checked free), the rest free ones.

    Raises:
        BackendError: when a requested port is taken.
    """
    taken: set[int] = set()

    def pick(requested: int | None, flag: str) -> int:
        if requested is not None:
            if requested in taken or not is_free(requested):
                raise BackendError(
                    f"host port {requested} ({flag}) is in use on 127.0.0.1: choose another "
                    "or leave the option out for a free port"
                )
            taken.add(requested)
            return requested
        for _ in range(100):
            port = free()
            if port not in taken:
                taken.add(port)
                return port
        raise BackendError("could not find free host ports on 127.0.0.1")

    http = pick(options.http_port, "--canary-kind-http-port")
    gateway = pick(options.gateway_port, "--canary-kind-gateway-port")
    https = pick(None, "https")
    node_ports = {node_port: pick(None, f"nodePort {node_port}") for node_port in NODE_PORT_POOL}
    return PortMap(http=http, https=https, gateway=gateway, node_ports=node_ports)


def load_kind_template(path: Path | None = None) -> dict[str, Any]:
    """``fixtures/kind-config.yaml`` as a dict."""
    source = path or addons.fixtures_dir() / "kind-config.yaml"
    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not data.get("nodes"):
        raise BackendError(f"{source}: not a kind Cluster config with nodes")
    return data


def render_kind_config(template: Mapping[str, Any], ports: PortMap) -> dict[str, Any]:
    """The template with the control-plane's ``extraPortMappings`` (all on 127.0.0.1)."""
    config = copy.deepcopy(dict(template))
    control_plane = next(
        (n for n in config["nodes"] if n.get("role") == "control-plane"), config["nodes"][0]
    )
    labels = control_plane.setdefault("labels", {})
    labels.setdefault("ingress-ready", "true")
    mappings = [
        (HTTP_PORT, ports.http),
        (HTTPS_PORT, ports.https),
        (GATEWAY_NODE_PORT, ports.gateway),
    ]
    mappings += sorted(ports.node_ports.items())
    control_plane["extraPortMappings"] = [
        {
            "containerPort": container,
            "hostPort": host,
            "listenAddress": "127.0.0.1",
            "protocol": "TCP",
        }
        for container, host in mappings
    ]
    return config


def ports_from_docker(published: Mapping[str, Any]) -> PortMap:
    """The port map of an existing node container (``NetworkSettings.Ports`` of
    ``docker inspect``: ``{"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "41234"}], ...}``).

    Raises:
        BackendError: when a port pytest-canary needs is not mapped (a cluster not made by
            pytest-canary).
    """
    found: dict[int, int] = {}
    for key, bindings in published.items():
        container, _, proto = key.partition("/")
        if proto == "tcp" and bindings:
            found[int(container)] = int(bindings[0]["HostPort"])
    needed = [HTTP_PORT, GATEWAY_NODE_PORT, *NODE_PORT_POOL]
    missing = [p for p in needed if p not in found]
    if missing:
        raise BackendError(
            f"the cluster's node does not map port(s) {', '.join(map(str, missing[:5]))}"
            f"{' ...' if len(missing) > 5 else ''} to this machine: it was not created by "
            "pytest-canary. Delete it (kind delete cluster --name NAME) or pick another name "
            "with --canary-kind-cluster"
        )
    return PortMap(
        http=found[HTTP_PORT],
        https=found.get(HTTPS_PORT, 0),
        gateway=found[GATEWAY_NODE_PORT],
        node_ports={p: found[p] for p in NODE_PORT_POOL},
    )


# -- tools ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    """Paths of the binaries the kind backend runs."""

    kind: str | None
    kubectl: str


def find_tools(environ: Mapping[str, str] | None = None) -> Tools:
    """kind and kubectl from PATH.

    pytest-kind would otherwise download kind v0.17.0 / kubectl v1.25.3 for amd64 only, too
    old for current node images (UPSTREAM.md); that download is allowed only when the user
    asked for it with ``KIND_VERSION`` or ``KIND_DOWNLOAD_URL``.

    Raises:
        BackendError: naming what is missing and how to install it.
    """
    env = dict(os.environ if environ is None else environ)
    search = env.get("PATH")
    kind = shutil.which("kind", path=search)
    kubectl = shutil.which("kubectl", path=search)
    if kind is None and not (env.get("KIND_VERSION") or env.get("KIND_DOWNLOAD_URL")):
        raise BackendError(
            "the kind backend needs `kind` on PATH (https://kind.sigs.k8s.io/docs/user/"
            "quick-start/#installation); or set KIND_VERSION (e.g. v0.31.0) to let pytest-kind "
            "download it"
        )
    if kubectl is None:
        raise BackendError(
            "the kind backend needs `kubectl` on PATH "
            "(https://kubernetes.io/docs/tasks/tools/#kubectl)"
        )
    return Tools(kind=kind, kubectl=kubectl)


def _create_within(
    cluster: Any, config: Path, name: str, kind: Path | str, deadline: float
) -> None:
    """pytest-kind's ``create`` has no deadline of its own: run it in a thread and, when
    it overruns ``deadline`` or is interrupted (Ctrl-C), delete the half-made cluster —
    which also ends the ``kind create`` still running — and raise."""
    failure: list[BaseException] = []

    def create() -> None:
        try:
            cluster.create(config)
        except BaseException as exc:  # re-raised in the calling thread
            failure.append(exc)

    worker = threading.Thread(target=create, name="kind-create", daemon=True)
    worker.start()
    try:
        worker.join(timeout=deadline)
        if worker.is_alive():
            raise BackendError(
                f"creating kind cluster {name} did not finish within {deadline:.0f}s "
                "(--canary-setup-timeout); the half-made cluster was deleted"
            )
    except BaseException:
        with contextlib.suppress(BackendError):
            run_tool([str(kind), "delete", "cluster", "--name", name], timeout=120)
        worker.join(timeout=30)
        raise
    if failure:
        with contextlib.suppress(BackendError):
            run_tool([str(kind), "delete", "cluster", "--name", name], timeout=120)
        raise BackendError(f"creating kind cluster {name} failed: {failure[0]}") from failure[0]


def run_tool(args: Sequence[str], *, timeout: float, stdin: str | None = None) -> str:
    """Run a command; its stdout, or a BackendError with the tail of its output."""
    try:
        done = subprocess.run(
            list(args), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"{' '.join(args)} did not finish within {timeout:.0f}s") from exc
    except OSError as exc:
        raise BackendError(f"cannot run {args[0]}: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise BackendError(f"{' '.join(args)} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


@contextmanager
def _inside(directory: Path) -> Iterator[None]:
    """Run a block in ``directory``: ``KindCluster(...)`` creates ``.pytest-kind/<name>`` in
    the working directory, which belongs in our cache, not in the user's project."""
    directory.mkdir(parents=True, exist_ok=True)
    previous = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(previous)


def kind_cluster(handle: ClusterHandle) -> Any:
    """pytest-kind's ``KindCluster`` for ``handle`` (no cluster is created here)."""
    from pytest_kind import KindCluster

    with _inside(Path(handle.cache_dir)):
        return KindCluster(
            handle.name,
            kubeconfig=Path(handle.kubeconfig),
            kind_path=Path(handle.kind) if handle.kind else None,
            kubectl_path=Path(handle.kubectl),
        )


# -- the cluster --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterHandle:
    """A ready kind cluster, as plain data a process (or xdist worker) can attach to.

    Attributes:
        created: this session created the cluster, so it may delete it.
    """

    name: str
    kubeconfig: str
    ports: PortMap
    created: bool
    kind: str | None
    kubectl: str
    cache_dir: str
    addons: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``workerinput``."""
        data = asdict(self)
        data["ports"] = self.ports.as_dict()
        data["addons"] = list(self.addons)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClusterHandle:
        """Inverse of :meth:`as_dict`."""
        values = dict(data)
        values["ports"] = PortMap.from_dict(values["ports"])
        values["addons"] = tuple(values["addons"])
        return cls(**values)


def existing_clusters(kind: str | None, *, timeout: float = 60.0) -> list[str]:
    """``kind get clusters``."""
    if kind is None:
        return []
    return [
        line.strip()
        for line in run_tool([kind, "get", "clusters"], timeout=timeout).splitlines()
        if line.strip()
    ]


def node_ports(name: str) -> PortMap:
    """The host port mapping of cluster ``name``'s control-plane container (Docker)."""
    try:
        import docker

        client = docker.from_env(timeout=30)
        container = client.containers.get(f"{name}-control-plane")
        published = container.attrs["NetworkSettings"]["Ports"] or {}
    except Exception as exc:
        raise BackendError(
            f"cannot read the port mapping of {name}-control-plane from Docker: {exc} "
            "(the kind backend supports kind's Docker provider)"
        ) from exc
    return ports_from_docker(published)


def setup_cluster(options: KindOptions, *, progress: Progress = _quiet) -> ClusterHandle:
    """Create (or reuse) the cluster and install its add-ons, under an inter-process lock.

    Raises:
        BackendError: naming the step that failed.
    """
    import filelock

    tools = find_tools()
    cache = Path(options.cache_dir)
    if tools.kind is None:  # KIND_VERSION / KIND_DOWNLOAD_URL: let pytest-kind fetch it first
        tools = Tools(
            kind=_downloaded_kind(options.cluster, cache, tools, progress), kubectl=tools.kubectl
        )
    home = cache / "clusters" / options.cluster
    home.mkdir(parents=True, exist_ok=True)
    kubeconfig = home / "kubeconfig"
    lock = filelock.FileLock(str(home / "setup.lock"))
    try:
        lock.acquire(timeout=0)
    except filelock.Timeout:
        progress(f"kind cluster {options.cluster}: waiting for another session setting it up")
        lock.acquire(timeout=options.setup_timeout)
    try:
        created = options.cluster not in existing_clusters(tools.kind)
        if created:
            ports = choose_ports(options)
            config = home / "kind-config.yaml"
            config.write_text(
                yaml.safe_dump(render_kind_config(load_kind_template(), ports), sort_keys=False),
                encoding="utf-8",
            )
            handle = ClusterHandle(
                options.cluster,
                str(kubeconfig),
                ports,
                True,
                tools.kind,
                tools.kubectl,
                str(cache),
                options.addons,
            )
            started = time.monotonic()
            progress(f"creating kind cluster {options.cluster} (about 1 min; config {config})")
            cluster = kind_cluster(handle)
            cluster.image = options.node_image
            _create_within(
                cluster, config, options.cluster, tools.kind or "kind", options.setup_timeout
            )
            progress(f"created kind cluster {options.cluster} in {time.monotonic() - started:.0f}s")
        else:
            progress(f"reusing kind cluster {options.cluster} (not deleted at the end)")
            kubeconfig.write_text(
                run_tool(
                    [str(tools.kind), "get", "kubeconfig", "--name", options.cluster], timeout=60
                ),
                encoding="utf-8",
            )
            kubeconfig.chmod(0o600)
            handle = ClusterHandle(
                options.cluster,
                str(kubeconfig),
                node_ports(options.cluster),
                False,
                tools.kind,
                tools.kubectl,
                str(cache),
                options.addons,
            )
        try:
            _prepare(options, kubeconfig, tools, progress)
        except BaseException as exc:
            if not (created and not options.keep_cluster):
                raise
            delete_cluster(handle, progress=progress)
            if not isinstance(exc, BackendError):
                raise
            raise BackendError(
                f"{exc}\n(the new cluster {options.cluster} was deleted again; pass "
                "--canary-keep-cluster to keep it for inspection)"
            ) from exc
        return handle
    finally:
        lock.release()


def _prepare(options: KindOptions, kubeconfig: Path, tools: Tools, progress: Progress) -> None:
    """Nodes Ready, then the add-ons, each with its readiness wait."""
    run_tool(
        [
            tools.kubectl,
            f"--kubeconfig={kubeconfig}",
            "wait",
            "--for=condition=Ready",
            "node",
            "--all",
            f"--timeout={int(options.setup_timeout)}s",
        ],
        timeout=options.setup_timeout + 30,
    )
    if options.addons:
        installer = addons.AddonInstaller(
            tools.kubectl,
            kubeconfig,
            addons.Downloads(
                Path(options.cache_dir), overrides=options.addon_files, progress=progress
            ),
            timeout=options.setup_timeout,
            progress=progress,
        )
        installer.install(options.addons, addons.load_pins(), gateway_node_port=GATEWAY_NODE_PORT)


def _downloaded_kind(name: str, cache: Path, tools: Tools, progress: Progress) -> str:
    """pytest-kind's download of kind (as KIND_VERSION / KIND_DOWNLOAD_URL say), so that
    ``kind get clusters`` can tell whether the cluster exists before anything is created."""
    progress(f"downloading kind {os.environ.get('KIND_VERSION', '')} with pytest-kind")
    probe = ClusterHandle(
        name,
        str(cache / "kubeconfig"),
        PortMap(0, 0, 0, {}),
        False,
        None,
        tools.kubectl,
        str(cache),
        (),
    )
    cluster = kind_cluster(probe)
    try:
        with _inside(cache):
            cluster.ensure_kind()
    except Exception as exc:
        raise BackendError(f"pytest-kind could not download kind: {exc}") from exc
    path = Path(cluster.kind_path)
    return str(path if path.is_absolute() else (cache / path).resolve())


def delete_cluster(handle: ClusterHandle, *, progress: Progress = _quiet) -> None:
    """Delete the cluster -- only if this session created it."""
    if not handle.created:
        return
    progress(f"deleting kind cluster {handle.name}")
    try:
        kind_cluster(handle).delete()
    except Exception as exc:
        raise BackendError(
            f"deleting kind cluster {handle.name} failed: {exc}; delete it yourself: "
            f"kind delete cluster --name {handle.name}"
        ) from exc


# -- images -------------------------------------------------------------------------------------


def workload_images(objects: Sequence[Mapping[str, Any]]) -> list[str]:
    """Container images of the workloads among ``objects``, in order, without repeats."""
    seen: dict[str, None] = {}
    for obj in objects:
        template = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in list(template.get("initContainers") or []) + list(
            template.get("containers") or []
        ):
            if container.get("image"):
                seen[str(container["image"])] = None
    return list(seen)


def check_loadable(image: str) -> None:
    """Refuse what ``kind load`` must never get: an image without a tag or tagged ``latest``
    (Kubernetes then defaults to ``imagePullPolicy: Always`` and pulls, which fails)."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return
    tag = last.partition(":")[2]
    if not tag or tag == "latest":
        raise BackendError(
            f"image {image!r}: give it a version tag; kind-loaded images tagged latest (or "
            "untagged) are pulled from a registry instead of used"
        )


class ImageLoader:
    """Builds sample images and loads images into the kind cluster, once per tag.

    A file lock per tag serialises builds and loads between xdist workers; ``kind load``
    itself skips nodes that already have the image.
    """

    def __init__(self, handle: ClusterHandle, *, progress: Progress = _quiet) -> None:
        self.handle = handle
        self.progress = progress
        self._loaded: set[str] = set()
        self._cluster: Any = None
        self._lock = threading.Lock()

    def ensure(self, image: str) -> None:
        """Make ``image`` available on the nodes (built first if it is a sample image)."""
        with self._lock:
            if image in self._loaded:
                return
            sample = _parse_sample(image)
            if sample is None and not _in_local_docker(image):
                self._loaded.add(image)  # not ours and not local: the cluster pulls it
                return
            check_loadable(image)
            import filelock

            safe = image.replace("/", "_").replace(":", "_")
            locks = Path(self.handle.cache_dir) / "locks"
            locks.mkdir(parents=True, exist_ok=True)
            with filelock.FileLock(str(locks / f"image-{safe}.lock")):
                if sample is not None:
                    self._build(image, *sample)
                started = time.monotonic()
                self.progress(f"loading image {image} into kind cluster {self.handle.name}")
                if self._cluster is None:
                    self._cluster = kind_cluster(self.handle)
                try:
                    self._cluster.load_docker_image(image)
                except Exception as exc:
                    raise BackendError(f"kind load docker-image {image} failed: {exc}") from exc
                self.progress(f"loaded image {image} in {time.monotonic() - started:.0f}s")
            self._loaded.add(image)

    def _build(self, image: str, flavor: str, version: str) -> None:
        try:
            from pytest_canary import images
        except ImportError:
            if _in_local_docker(image):
                return
            raise BackendError(
                f"image {image} is not in the local Docker engine and this pytest-canary has "
                "no image builder (pytest_canary.images): build it yourself (docker build "
                f"--build-arg VERSION={version} -t {image} sample_app/{flavor}) and run again"
            ) from None
        built = images.build_sample_image(version, flavor, progress=self.progress)
        if built != image:
            raise BackendError(f"building {image} produced {built}")


def _parse_sample(image: str) -> tuple[str, str] | None:
    try:
        from pytest_canary import images
    except ImportError:
        repository, _, tag = image.rpartition(":")
        prefix = "pytest-canary/sample-"
        if repository.startswith(prefix) and tag:
            return repository.removeprefix(prefix), tag
        return None
    return images.parse_sample_image(image)


def _in_local_docker(image: str) -> bool:
    try:
        import docker

        client = docker.from_env(timeout=10)
    except Exception:
        return False
    try:
        client.images.get(image)
    except Exception:
        return False
    finally:
        client.close()
    return True


# -- the backend --------------------------------------------------------------------------------


class KindBackend(KubeBackend):
    """The kube backend on a kind cluster it created or reuses.

    Args:
        handle: the ready cluster.
        options: the kind options (``options.kube`` for environments).
        run_id: labels every namespace of this run.
        owner: this process set the cluster up and deletes it at :meth:`close` if it created
            it (False in xdist workers: the controller owns it).
        progress: receives progress lines.
    """

    name = "kind"

    def __init__(
        self,
        handle: ClusterHandle,
        options: KindOptions,
        *,
        run_id: str,
        owner: bool,
        progress: Progress = _quiet,
    ) -> None:
        self.handle = handle
        self.kind_options = options
        self.owner = owner
        has_istio = "istio" in handle.addons
        kube_options = options.kube
        if has_istio and kube_options.gateway is None:
            kube_options = _replace(kube_options, gateway=addons.ISTIO_GATEWAY)
        gateway_url = f"http://127.0.0.1:{handle.ports.gateway}"
        points = EntryPoints(
            urls={
                "nginx": f"http://127.0.0.1:{handle.ports.http}",
                "istio": gateway_url,
                "gateway": gateway_url,
            },
            node_address="127.0.0.1",
            node_port_map=dict(handle.ports.node_ports),
            node_port_pool=NODE_PORT_POOL,
        )
        api = KubeApi.from_kubeconfig(handle.kubeconfig, f"kind-{handle.name}")
        super().__init__(
            api,
            kube_options,
            points,
            run_id=run_id,
            context=f"kind-{handle.name}",
            progress=progress,
            lock_dir=Path(handle.cache_dir) / "locks" / handle.name,
        )
        self.images = ImageLoader(handle, progress=progress)

    @classmethod
    def setup(
        cls, options: KindOptions, *, run_id: str, progress: Progress = _quiet
    ) -> KindBackend:
        """Create or reuse the cluster, install add-ons, and return the owning backend."""
        handle = setup_cluster(options, progress=progress)
        backend = cls(handle, options, run_id=run_id, owner=True, progress=progress)
        progress(f"ready: {backend.describe()}")
        return backend

    @classmethod
    def attach(
        cls,
        handle: Mapping[str, Any],
        options: KindOptions,
        *,
        run_id: str,
        progress: Progress = _quiet,
    ) -> KindBackend:
        """A backend on a cluster another process set up (an xdist worker)."""
        return cls(
            ClusterHandle.from_dict(handle), options, run_id=run_id, owner=False, progress=progress
        )

    def describe(self) -> str:
        ports = self.handle.ports
        state = "created by this run" if self.handle.created else "reused"
        kept = ", kept" if self.kind_options.keep_cluster or not self.handle.created else ""
        return (
            f"kind cluster {self.handle.name} ({state}{kept}; add-ons "
            f"{', '.join(self.handle.addons) or 'none'}; ingress-nginx 127.0.0.1:{ports.http}, "
            f"Istio gateway 127.0.0.1:{ports.gateway})"
        )

    def prepare(self, objects: Sequence[Mapping[str, Any]]) -> None:
        for image in workload_images(objects):
            self.images.ensure(image)

    def handoff(self) -> dict[str, Any]:
        """The cluster as plain data for xdist workers (:meth:`attach`)."""
        return self.handle.as_dict()

    def close(self) -> None:
        """Close environments, then delete the cluster if this session created it (unless
        ``keep_cluster``)."""
        try:
            super().close()
        finally:
            if self.owner and not self.kind_options.keep_cluster:
                self.owner = False
                delete_cluster(self.handle, progress=self.progress)


def _replace(options: KubeOptions, **changes: Any) -> KubeOptions:
    import dataclasses

    return dataclasses.replace(options, **changes)


# -- options, as the plugin resolves them -----------------------------------------------------


def new_run_id() -> str:
    """An id for this test session's namespaces (a valid label value)."""
    import secrets

    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


Values = Mapping[str, tuple[str, Any]]
"""Option name -> (where the value came from, raw value), as the plugin collected them."""


def _get(values: Values, name: str) -> Any:
    return values[name][1] if name in values else None


def _parsed(values: Values, name: str, parse: Callable[[Any], Any]) -> Any:
    """``parse`` the raw value; errors name the value's origin."""
    if name not in values:
        return None
    origin, raw = values[name]
    try:
        return parse(raw)
    except CanaryConfigError as exc:
        raise CanaryConfigError(f"{exc} (from {origin})") from None


def cluster_options(backend: str, values: Values) -> KubeOptions | KindOptions:
    """Options of the ``kube`` or ``kind`` backend from the plugin's resolved values.

    Raises:
        CanaryConfigError: naming the option, its value, where it came from and what is allowed.
    """
    from pytest_canary.backends.kube import (
        parse_entry_urls,
        parse_gateway,
        parse_keep,
        parse_seconds,
    )

    def seconds(name: str, default: float) -> float:
        value = _parsed(values, name, lambda raw: parse_seconds(str(raw), name))
        return default if value is None else float(value)

    gateway = _parsed(values, "canary_gateway", lambda raw: parse_gateway(str(raw)) and str(raw))
    kube = KubeOptions(
        kubeconfig=_get(values, "canary_kubeconfig"),
        context=_get(values, "kube_context"),
        context_explicit=_get(values, "kube_context") is not None,
        entry_urls=_parsed(values, "canary_entry_url", lambda raw: parse_entry_urls(list(raw)))
        or {},
        ingress_class=_get(values, "canary_ingress_class"),
        gateway=gateway,
        node_address=_get(values, "canary_node_address"),
        keep=_parsed(values, "canary_keep", lambda raw: parse_keep(str(raw))) or "never",
        wait_timeout=seconds("canary_wait_timeout", 180.0),
        dataplane_timeout=seconds("canary_dataplane_timeout", 60.0),
    )
    if backend == "kube":
        return kube

    def port(flag: str) -> Callable[[Any], int]:
        return lambda raw: parse_port(str(raw), flag)

    cache = _get(values, "canary_cache_dir")
    return KindOptions(
        cluster=_parsed(values, "canary_kind_cluster", lambda raw: parse_cluster_name(str(raw)))
        or DEFAULT_CLUSTER,
        keep_cluster=bool(_get(values, "canary_keep_cluster")),
        node_image=_get(values, "canary_kind_image"),
        http_port=_parsed(values, "canary_kind_http_port", port("--canary-kind-http-port")),
        gateway_port=_parsed(
            values, "canary_kind_gateway_port", port("--canary-kind-gateway-port")
        ),
        addons=_parsed(values, "canary_addons", lambda raw: addons.parse_addons(str(raw)))
        if "canary_addons" in values
        else addons.ADDONS,
        addon_files=_parsed(
            values, "canary_addon_file", lambda raw: addons.parse_addon_files(list(raw))
        )
        or {},
        cache_dir=str(Path(cache).expanduser()) if cache else str(default_cache_dir()),
        setup_timeout=seconds("canary_setup_timeout", 900.0),
        kube=kube,
    )


def make_cluster_backend(
    options: KubeOptions | KindOptions,
    *,
    run_id: str,
    handoff: Mapping[str, Any] | None = None,
    progress: Progress = _quiet,
) -> KubeBackend:
    """The session's backend: ``kube`` on the kubeconfig, or ``kind`` set up here, or (in an
    xdist worker, ``handoff`` given) attached to the controller's kind cluster."""
    if isinstance(options, KubeOptions):
        lock_dir = default_cache_dir() / "locks" / "kube"
        return KubeBackend.from_kubeconfig(
            options, run_id=run_id, progress=progress, lock_dir=lock_dir
        )
    if handoff is not None:
        return KindBackend.attach(handoff, options, run_id=run_id, progress=progress)
    return KindBackend.setup(options, run_id=run_id, progress=progress)
