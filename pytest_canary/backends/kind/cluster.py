"""The kind cluster's life: created or reused, checked, shared, deleted by its creator only.

:func:`setup_cluster`, under a file lock per cluster name in one fixed place per user
(:func:`cluster_lock`: concurrent sessions and xdist never create it twice, whatever their
cache directories):

1. ``kind version`` at least the pinned minimum; the node image (pinned by tag and digest,
   or ``--canary-kind-image``) inside the Kubernetes window of the add-ons -- both before
   anything is created;
2. create the cluster with ``kind create cluster`` from the rendered config (run here within
   ``--canary-setup-timeout``, its output kept for the error; on a cgroup v1 Docker host the
   config lets a 1.35+ kubelet start), or reuse the existing one (its kubeconfig exported, its
   port mapping read from Docker);
3. the server's Kubernetes version checked (a reused cluster may run anything), this run
   registered as a user of the cluster, namespaces of killed runs swept -- before anything is
   installed or applied;
4. nodes Ready, then the add-ons (:mod:`pytest_canary.backends.addons`).

A cluster whose setup failed is kept for inspection unless ``--canary-keep-cluster=never``,
and the error says how to delete it. :func:`delete_cluster` deletes only a cluster this run
created, and not while another live run uses it (:class:`ClusterUsers`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from pytest_canary import images
from pytest_canary.backends import addons, versions
from pytest_canary.backends.kind.config import (
    FAIL_CGROUP_V1_FROM,
    GATEWAY_NODE_PORT,
    PortMap,
    allow_cgroup_v1,
    choose_ports,
    load_kind_template,
    ports_from_docker,
    render_kind_config,
)
from pytest_canary.backends.kind.options import KindOptions
from pytest_canary.backends.kind.tools import Tools, check_kind_version, find_tools, run_tool
from pytest_canary.backends.kube.api import KubeApi, api_error_message
from pytest_canary.backends.kube.backend import check_kubernetes_version
from pytest_canary.backends.kube.namespace import (
    MANAGED_BY,
    RUN_LABEL,
    owner_annotations,
    owner_of,
)
from pytest_canary.backends.kube.sweep import LEASE_SECONDS, owner_gone, sweep_namespaces
from pytest_canary.backends.owner import Owner
from pytest_canary.errors import BackendError
from pytest_canary.locks import LockTimeout, file_lock

Progress = Callable[[str], None]

USER_LABEL = "pytest-canary/cluster-user"
USERS_NAMESPACE = "default"


def _quiet(message: str) -> None:
    """Default progress sink: drop the line."""


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

    @property
    def context(self) -> str:
        """The kubeconfig context kind writes for the cluster."""
        return f"kind-{self.name}"

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


def cluster_api(handle: ClusterHandle) -> KubeApi:
    """The cluster's API through its kubeconfig (a seam the contract tests replace)."""
    return KubeApi.from_kubeconfig(handle.kubeconfig, handle.context)


# -- users: who else runs on this cluster -------------------------------------------------------


class ClusterUsers:
    """Records, in the cluster, the runs that use it: a ConfigMap per run in ``default``,
    labelled ``pytest-canary/cluster-user=true`` and annotated with the owning process and a
    lease (:mod:`pytest_canary.backends.kube.namespace`). A run's creator does not delete the
    cluster while another live run's record is there (liveness rule:
    :func:`~pytest_canary.backends.kube.sweep.owner_gone`); records of dead runs are deleted
    when seen.
    """

    def __init__(self, api: KubeApi, run_id: str, owner: Owner | None = None) -> None:
        self.api = api
        self.run_id = run_id
        self.owner = owner or Owner.this_process()

    @property
    def name(self) -> str:
        """This run's record."""
        return f"pytest-canary-user-{self.run_id}"[:253]

    def register(self, *, now: float | None = None) -> None:
        """Record (or renew) this run's use of the cluster."""
        self.api.apply(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": self.name,
                    "namespace": USERS_NAMESPACE,
                    "labels": {USER_LABEL: "true", RUN_LABEL: self.run_id} | MANAGED_BY,
                    "annotations": owner_annotations(
                        self.owner,
                        lease_seconds=LEASE_SECONDS,
                        now=time.time() if now is None else now,
                    ),
                },
                "data": {"run": self.run_id},
            },
            namespace=USERS_NAMESPACE,
        )

    def unregister(self) -> None:
        """Remove this run's record."""
        with contextlib.suppress(Exception):
            self.api.delete("v1", "ConfigMap", self.name, USERS_NAMESPACE)

    def others(self, *, now: float | None = None) -> list[str]:
        """The other live runs using the cluster, described; records of dead runs are
        deleted on the way."""
        records = self.api.list(
            "v1", "ConfigMap", namespace=USERS_NAMESPACE, label_selector=f"{USER_LABEL}=true"
        )
        alive: list[str] = []
        for record in records:
            run = str(((record.get("metadata") or {}).get("labels") or {}).get(RUN_LABEL, ""))
            if run == self.run_id:
                continue
            if owner_gone(record, run_id=self.run_id, now=time.time() if now is None else now):
                with contextlib.suppress(Exception):
                    self.api.delete(
                        "v1", "ConfigMap", str(record["metadata"]["name"]), USERS_NAMESPACE
                    )
                continue
            owner = owner_of(record)
            alive.append(f"run {run}" + (f" ({owner.describe()})" if owner else ""))
        return alive


# -- creating ---------------------------------------------------------------------------------


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
    """The host port mapping of cluster ``name``'s control-plane container (Docker): its
    ``HostConfig.PortBindings``, what kind asked Docker for (``NetworkSettings.Ports`` is
    empty while the container is stopped).

    Raises:
        BackendError: when the container does not run (with the command that starts it),
            cannot be read, or does not map the ports pytest-canary needs.
    """
    node = f"{name}-control-plane"
    client = images.connect(timeout=30)
    try:
        attrs = dict(client.containers.get(node).attrs)
    except Exception as exc:
        raise BackendError(
            f"cannot read the node container {node} of kind cluster {name} from Docker: "
            f"{exc} (the kind backend supports kind's Docker provider)"
        ) from exc
    finally:
        client.close()
    state = attrs.get("State") or {}
    if not state.get("Running"):
        raise BackendError(
            f"kind cluster {name} exists, but its node container {node} is "
            f"{state.get('Status') or 'not running'} (after a reboot or a Docker restart): "
            f"start it with: docker start {node} -- or delete the cluster: kind delete "
            f"cluster --name {name}"
        )
    bindings = (attrs.get("HostConfig") or {}).get("PortBindings") or (
        (attrs.get("NetworkSettings") or {}).get("Ports") or {}
    )
    return ports_from_docker(bindings)


def host_cgroup_version() -> int | None:
    """The cgroup version of the host Docker runs the nodes on (``docker info``
    ``CgroupVersion``); None when Docker does not say (kind's own error follows then)."""
    try:
        client = images.connect(timeout=30)
    except BackendError:
        return None
    try:
        version = str(client.info().get("CgroupVersion") or "")
    except Exception:
        return None
    finally:
        client.close()
    return int(version) if version.isdigit() else None


def node_image_for(options: KindOptions, pin: addons.KindPin) -> str:
    """The node image of a new cluster: ``--canary-kind-image``, else the pinned one.

    Raises:
        BackendError: when a chosen image's Kubernetes version is outside the window of the
            add-ons (before anything is created), unless versions are not checked.
    """
    image = options.node_image or pin.node_image
    version = versions.image_minor(image)
    if version is None or options.kube.any_kubernetes_version:
        return image
    pins = addons.load_pins()
    windows = [w for name in options.addons if (w := pins[name].kubernetes) is not None]
    versions.check(version, image, windows, where="the kind node image")
    return image


def setup_cluster(
    options: KindOptions, *, run_id: str = "", progress: Progress = _quiet
) -> ClusterHandle:
    """Create (or reuse) the cluster, check it and install its add-ons, under an
    inter-process lock (see the module docstring for the steps).

    Raises:
        BackendError: naming the step that failed (and, for a cluster this run created and
            kept, how to delete it).
    """
    pin = addons.load_kind_pin()
    tools = find_tools(
        kind_path=options.kind_path, kubectl_path=options.kubectl_path, minimum=pin.minimum
    )
    cache = Path(options.cache_dir)
    if tools.kind is None:  # KIND_VERSION / KIND_DOWNLOAD_URL: let pytest-kind fetch it first
        tools = Tools(
            kind=_downloaded_kind(options.cluster, cache, tools, progress), kubectl=tools.kubectl
        )
    assert tools.kind is not None
    check_kind_version(tools.kind, pin.minimum)
    image = node_image_for(options, pin)
    home = cluster_home(cache, options.cluster)
    home.mkdir(parents=True, exist_ok=True)
    kubeconfig = Path(options.kubeconfig) if options.kubeconfig else home / "kubeconfig"
    with setup_lock(options.cluster, options.setup_timeout, progress):
        created = options.cluster not in existing_clusters(tools.kind)
        if created:
            handle = _create(options, home, kubeconfig, tools, image, progress)
        else:
            progress(f"reusing kind cluster {options.cluster} (not deleted at the end)")
            run_tool(
                [
                    tools.kind,
                    "export",
                    "kubeconfig",
                    "--name",
                    options.cluster,
                    "--kubeconfig",
                    str(kubeconfig),
                ],
                timeout=60,
            )
            with contextlib.suppress(OSError):
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
            _check_and_prepare(handle, options, tools, run_id=run_id, progress=progress)
        except BaseException as exc:
            raise _setup_failed(handle, options, exc, progress) from exc
        return handle


class SetupLockBusy(LockTimeout):
    """Another session holds a cluster's setup lock past the deadline."""


def cluster_home(cache_dir: str | Path, name: str) -> Path:
    """Where a cluster's config and kubeconfig live in the cache."""
    return Path(cache_dir) / "clusters" / name


def cluster_lock(name: str) -> Path:
    """The setup lock of kind cluster ``name``: in one fixed place per user
    (``~/.cache/pytest-canary/locks``), whatever ``--canary-cache-dir`` says -- cluster names
    are shared by everything on the Docker engine, so two sessions with different cache
    directories must still take turns."""
    return Path.home() / ".cache" / "pytest-canary" / "locks" / f"kind-cluster-{name}.lock"


@contextmanager
def setup_lock(name: str, timeout: float, progress: Progress = _quiet) -> Iterator[None]:
    """The lock sessions hold while they create, check, join or delete cluster ``name``."""
    with file_lock(
        cluster_lock(name),
        timeout=timeout,
        what=f"kind cluster {name}'s setup (another session sets it up or deletes it)",
        progress=progress,
        error=SetupLockBusy,
    ):
        yield


def _create(
    options: KindOptions,
    home: Path,
    kubeconfig: Path,
    tools: Tools,
    image: str,
    progress: Progress,
) -> ClusterHandle:
    ports = choose_ports(options)
    config = home / "kind-config.yaml"
    rendered = render_kind_config(load_kind_template(), ports)
    minor = versions.image_minor(image)
    if host_cgroup_version() == 1 and (
        minor is None or (minor.major, minor.minor) >= FAIL_CGROUP_V1_FROM
    ):
        rendered = allow_cgroup_v1(rendered)
        progress(
            "the Docker host runs cgroup v1: the kubelet of Kubernetes 1.35+ refuses it by "
            "default, so the kind config sets failCgroupV1: false (kubeadmConfigPatches). "
            "cgroup v1 is deprecated; a cgroup v2 host needs no such patch"
        )
    config.write_text(yaml.safe_dump(rendered, sort_keys=False), encoding="utf-8")
    handle = ClusterHandle(
        options.cluster,
        str(kubeconfig),
        ports,
        True,
        tools.kind,
        tools.kubectl,
        options.cache_dir,
        options.addons,
    )
    started = time.monotonic()
    progress(f"creating kind cluster {options.cluster} with {image} (about 1 min; config {config})")
    create_cluster(
        tools.kind or "kind", options.cluster, kubeconfig, image, config, options.setup_timeout
    )
    progress(f"created kind cluster {options.cluster} in {time.monotonic() - started:.0f}s")
    return handle


def _check_and_prepare(
    handle: ClusterHandle, options: KindOptions, tools: Tools, *, run_id: str, progress: Progress
) -> None:
    """Before anything is installed or applied: the server's version, this run's user
    record, the sweep; then nodes Ready and the add-ons."""
    api = cluster_api(handle)
    try:
        check_kubernetes_version(
            api,
            options.addons,
            where=f"kind cluster {handle.name}",
            allow_any=options.kube.any_kubernetes_version,
            progress=progress,
        )
        if run_id:
            try:
                ClusterUsers(api, run_id).register()
            except Exception as exc:
                raise BackendError(
                    f"cannot record this run as a user of kind cluster {handle.name}: "
                    f"{api_error_message(exc)}"
                ) from exc
            sweep_namespaces(api, run_id=run_id, progress=progress)
    finally:
        api.close()
    _prepare(options, Path(handle.kubeconfig), tools, progress)


def _setup_failed(
    handle: ClusterHandle, options: KindOptions, exc: BaseException, progress: Progress
) -> BaseException:
    """The error of a failed setup, with what became of the cluster."""
    name = handle.name
    if not handle.created:
        note = f"(kind cluster {name} existed before this run and was left as it was)"
    elif options.keep_cluster == "never":
        delete_cluster(handle, progress=progress, force=True)
        note = f"(the new cluster {name} was deleted again: --canary-keep-cluster=never)"
    else:
        note = (
            f"(the new kind cluster {name} was kept for inspection: kubectl --context "
            f"{handle.context} get pods -A; delete it with: kind delete cluster --name {name})"
        )
    if not isinstance(exc, BackendError):
        # Ctrl-C (or a bug): the exception passes on as it is, so say here what became of
        # the cluster -- a kept one is reused by the next run and never deleted by it.
        progress(f"setup of kind cluster {name} interrupted ({type(exc).__name__}) {note}")
        return exc
    return BackendError(f"{exc}\n{note}")


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
        timeout=options.setup_timeout + addons.TOOL_GRACE,
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


ALREADY_EXISTS = "already exist for a cluster with the name"
"""kind's refusal to create a cluster whose nodes exist (kind pkg/cluster/internal/create/
create.go ``alreadyExists``: "node(s) already exist for a cluster with the name ...")."""

DELETE_TIMEOUT = 180.0
"""Seconds ``kind delete cluster`` may take."""


def create_cluster(
    kind: str, name: str, kubeconfig: Path, image: str, config: Path, deadline: float
) -> None:
    """``kind create cluster``, run here (its output kept for the error) within ``deadline``.

    When it fails, overruns or is interrupted (Ctrl-C), what it made is deleted -- unless
    kind refused because the cluster's nodes already exist: that cluster is another
    session's.

    Raises:
        BackendError: naming the command, why it stopped and kind's last lines.
    """
    args = [
        kind,
        "create",
        "cluster",
        "--name",
        name,
        "--kubeconfig",
        str(kubeconfig),
        "--image",
        image,
        "--config",
        str(config),
    ]
    try:
        run_tool(args, timeout=deadline)
    except BaseException as exc:
        if isinstance(exc, BackendError) and ALREADY_EXISTS in str(exc):
            raise BackendError(
                f"creating kind cluster {name}: another session created it meanwhile "
                f"(left alone):\n{exc}"
            ) from exc
        note = "the half-made cluster was deleted"
        try:
            run_tool([kind, "delete", "cluster", "--name", name], timeout=DELETE_TIMEOUT)
        except BackendError as failed:
            note = (
                f"deleting the half-made cluster failed too ({failed}): delete it with "
                f"kind delete cluster --name {name}"
            )
        if not isinstance(exc, BackendError):
            raise  # Ctrl-C and other interruptions pass on as they are
        raise BackendError(
            f"creating kind cluster {name} failed (--canary-setup-timeout {deadline:.0f}s); "
            f"{note}:\n{exc}"
        ) from exc


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


# -- deleting -----------------------------------------------------------------------------------


def delete_cluster(
    handle: ClusterHandle,
    *,
    run_id: str = "",
    progress: Progress = _quiet,
    force: bool = False,
) -> bool:
    """Delete the cluster -- only if this session created it, and (unless ``force``) not
    while another live run uses it; returns whether it was deleted.

    Raises:
        BackendError: when ``kind delete cluster`` fails (with the command to run by hand).
    """
    if not handle.created:
        return False
    if not force:
        # Under the setup lock: a session joining the cluster records itself under it.
        try:
            with setup_lock(handle.name, 120.0):
                others = _other_users(handle, run_id)
                if not others:
                    _delete(handle, progress)
                    return True
        except SetupLockBusy:  # another session is setting the cluster up: it will use it
            others = ["a session setting it up"]
        progress(
            f"kind cluster {handle.name} is not deleted: {', '.join(others)} still uses it; "
            f"delete it when done: kind delete cluster --name {handle.name}"
        )
        return False
    _delete(handle, progress)
    return True


def _delete(handle: ClusterHandle, progress: Progress) -> None:
    progress(f"deleting kind cluster {handle.name}")
    kind = handle.kind or "kind"
    try:
        run_tool(
            [
                kind,
                "delete",
                "cluster",
                "--name",
                handle.name,
                "--kubeconfig",
                handle.kubeconfig,
            ],
            timeout=DELETE_TIMEOUT,
        )
    except BackendError as exc:
        raise BackendError(
            f"deleting kind cluster {handle.name} failed: {exc}\ndelete it yourself: "
            f"kind delete cluster --name {handle.name}"
        ) from exc


def _other_users(handle: ClusterHandle, run_id: str) -> list[str]:
    """Other live runs using the cluster. A cluster whose API does not answer has no other
    users (none could run tests on it)."""
    try:
        api = cluster_api(handle)
    except BackendError:
        return []
    try:
        return ClusterUsers(api, run_id).others()
    except Exception:
        return []
    finally:
        api.close()
